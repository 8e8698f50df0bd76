#include "listener.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "session.h"

static void on_connection(uv_stream_t *server, int status) {
  struct listener *l = server->data;
  if (status < 0) {
    log_msg(LOG_WARNING, NULL, "accept failed: %s", uv_strerror(status));
    return;
  }
  bool over = l->nsessions >= l->rt->cfg->max_connections;
  if (session_start(l, server, l->rt, over) < 0)
    log_msg(LOG_ERROR, NULL, "cannot start a session: out of memory");
}

int listener_start(struct listener *l, uv_loop_t *loop, struct runtime *rt, char *err,
                   size_t errlen) {
  return listener_start_fds(l, loop, rt, NULL, err, errlen);
}

int listener_start_fds(struct listener *l, uv_loop_t *loop, struct runtime *rt,
                       const uv_os_sock_t *fds, char *err, size_t errlen) {
  const struct config *cfg = rt->cfg;
  memset(l, 0, sizeof *l);
  l->loop = loop;
  l->rt = runtime_ref(rt);
  l->sockets = calloc(cfg->nlisten, sizeof *l->sockets);
  if (!l->sockets)
    return SP_E_NOMEM;
  for (size_t i = 0; i < cfg->nlisten; i++) {
    uv_tcp_t *t = &l->sockets[i];
    uv_tcp_init(loop, t);
    t->data = l;
    l->nsockets++;
    int rc = fds ? uv_tcp_open(t, fds[i])
                 : uv_tcp_bind(t, (const struct sockaddr *)&cfg->listen[i].sa, 0);
    if (rc == 0)
      rc = uv_listen((uv_stream_t *)t, 511, on_connection);
    if (rc < 0) {
      snprintf(err, errlen, "listen on %s: %s", cfg->listen[i].text, uv_strerror(rc));
      return SP_E_IO;
    }
    log_msg(LOG_INFO, NULL, "listening on %s", cfg->listen[i].text);
  }
  return 0;
}

void listener_set_runtime(struct listener *l, struct runtime *rt) {
  struct runtime *old = l->rt;
  l->rt = runtime_ref(rt);
  runtime_unref(old);
}

int listener_session_add(struct listener *l, struct session *s) {
  if (l->nsessions == l->cap_sessions) {
    size_t cap = l->cap_sessions ? l->cap_sessions * 2 : 64;
    struct session **grown = realloc(l->sessions, cap * sizeof *grown);
    if (!grown)
      return SP_E_NOMEM;
    l->sessions = grown;
    l->cap_sessions = cap;
  }
  l->sessions[l->nsessions++] = s;
  return 0;
}

void listener_session_gone(struct listener *l, struct session *s) {
  if (!l)
    return;
  for (size_t i = 0; i < l->nsessions; i++) {
    if (l->sessions[i] == s) {
      l->sessions[i] = l->sessions[--l->nsessions];
      break;
    }
  }
  if (l->draining && l->nsessions == 0 && l->on_idle)
    l->on_idle(l);
}

static void on_socket_closed(uv_handle_t *h) {
  struct listener *l = h->data;
  if (--l->nclosing == 0) {
    free(l->sockets);
    l->sockets = NULL;
  }
}

static void listener_close_sockets(struct listener *l) {
  if (!l->sockets || l->nclosing)
    return;
  l->nclosing = l->nsockets;
  for (size_t i = 0; i < l->nsockets; i++)
    uv_close((uv_handle_t *)&l->sockets[i], on_socket_closed);
  if (l->nsockets == 0) {
    free(l->sockets);
    l->sockets = NULL;
  }
}

/* Calls fn on every live session. fn may close sessions (they unlink themselves only
 * in a later close callback, but walk a copy all the same). */
static void listener_each(struct listener *l, void (*fn)(struct session *s)) {
  size_t n = l->nsessions;
  struct session **copy = n ? malloc(n * sizeof *copy) : NULL;
  if (copy)
    memcpy(copy, l->sessions, n * sizeof *copy);
  for (size_t i = 0; copy && i < n; i++)
    fn(copy[i]);
  free(copy);
}

void listener_drain(struct listener *l) {
  l->draining = true;
  listener_close_sockets(l);
  listener_each(l, session_drain);
  if (l->nsessions == 0 && l->on_idle)
    l->on_idle(l);
}

void listener_abort(struct listener *l) {
  listener_each(l, session_abort);
}

void listener_close(struct listener *l) {
  listener_close_sockets(l);
  runtime_unref(l->rt);
  l->rt = NULL;
  free(l->sessions);
  l->sessions = NULL;
}
