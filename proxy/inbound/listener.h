/* Listening sockets and the set of live sessions. The listener owns its listening
 * handles (TCP, or unix sockets whose file it creates and removes) and a list of sessions (each session frees itself and unlinks through
 * listener_session_gone). */
#ifndef SP_LISTENER_H
#define SP_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "proxy/outbound/runtime.h"

struct session;

/* One listening socket: what it speaks comes from its listen entry. */
struct listener_socket {
  uint32_t magic; /* core/obj.h: the handle's data points back here */
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  };
  struct listener *l;
  bool is_pipe;
  bool lmtp;
  char path[112]; /* a unix socket's file, removed at close; "" for TCP */
};

/* What the sessions of one event loop share. The listener owns it; a session reaches
 * it through its own pointer (session.ctx), never through the listener's fields. */
struct loop_ctx {
  struct pool *pool; /* idle MX connections of this loop (set by its owner), or NULL */
  size_t mx_legs;    /* MX connections open for legs that count (LMTP), all sessions */
};

struct listener {
  uv_loop_t *loop;
  struct runtime *rt;              /* current runtime: new sessions take a reference */
  struct loop_ctx ctx;             /* shared by this loop's sessions */
  struct listener_socket *sockets; /* owned, nsockets of them */
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
 * workers' SO_REUSEPORT sockets); the listener owns them from now on. An entry may
 * instead be LISTENER_FD_BIND (bind it here: a unix socket, served by one loop only,
 * as its file has one owner) or LISTENER_FD_SKIP (another loop serves it). */
#define LISTENER_FD_BIND (-1)
#define LISTENER_FD_SKIP (-2)
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
