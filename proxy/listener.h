/* Listening sockets and the set of live sessions. The listener owns its uv_tcp_t
 * handles and a list of sessions (each session frees itself and unlinks through
 * listener_session_gone). */
#ifndef SP_LISTENER_H
#define SP_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "runtime.h"

struct session;

struct listener {
  uv_loop_t *loop;
  struct runtime *rt; /* current runtime: new sessions take a reference */
  struct pool *pool;  /* idle MX connections shared by sessions (the daemon's) */
  uv_tcp_t *sockets;  /* owned, nsockets of them */
  size_t nsockets;
  size_t nclosing;
  struct session **sessions; /* live sessions, unordered */
  size_t nsessions, cap_sessions;
  bool draining;
  void (*on_idle)(struct listener *l); /* draining and no sessions left */
};

/* Binds and listens on every cfg->listen address. Writes the reason into err. */
int listener_start(struct listener *l, uv_loop_t *loop, struct runtime *rt, char *err,
                   size_t errlen);
/* The same on sockets already bound, one per cfg->listen address in that order (the
 * workers' SO_REUSEPORT sockets); the listener owns them from now on. */
int listener_start_fds(struct listener *l, uv_loop_t *loop, struct runtime *rt,
                       const uv_os_sock_t *fds, char *err, size_t errlen);
/* Switches new connections to rt (takes a reference; drops the old one). */
void listener_set_runtime(struct listener *l, struct runtime *rt);
/* Stops accepting and drains sessions; on_idle runs once none is left. */
void listener_drain(struct listener *l);
/* Aborts every remaining session. */
void listener_abort(struct listener *l);
/* Closes the listening handles and drops the runtime. */
void listener_close(struct listener *l);

/* For sessions. */
int listener_session_add(struct listener *l, struct session *s);
void listener_session_gone(struct listener *l, struct session *s);

#endif
