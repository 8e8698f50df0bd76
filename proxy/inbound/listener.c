#include "proxy/inbound/listener.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/core/obj.h"
#include "proxy/inbound/session.h"

#define LSOCK_MAGIC 0x4c534f4bu /* "LSOK" */

static void on_connection(uv_stream_t *server, int status) {
  struct listener_socket *ls;
  CAST_OBJ_NOTNULL(ls, server->data, LSOCK_MAGIC);
  struct listener *l = ls->l;
  if (status < 0) {
    log_msg(LOG_WARNING, NULL, "accept failed: %s", uv_strerror(status));
    return;
  }
  bool over = l->nsessions >= l->rt->cfg->max_connections;
  if (session_start(l, server, l->rt, ls->is_pipe, ls->lmtp, over) < 0)
    log_msg(LOG_ERROR, NULL, "cannot start a session: out of memory");
}

/* A unix socket left behind by an earlier run is removed first; anything else at
 * that path (a regular file) makes the bind fail rather than be deleted. fd: a TCP
 * socket already bound (the workers'), or LISTENER_FD_BIND. */
static int listener_bind(uv_loop_t *loop, struct listener_socket *ls,
                         const struct config_addr *a, uv_os_sock_t fd) {
  ls->lmtp = a->protocol == CONFIG_PROTO_LMTP;
  if (a->sa.ss_family != AF_UNIX) {
    uv_tcp_init(loop, &ls->tcp);
    ls->tcp.data = ls;
    if (fd != LISTENER_FD_BIND)
      return uv_tcp_open(&ls->tcp, fd);
    return uv_tcp_bind(&ls->tcp, (const struct sockaddr *)&a->sa, 0);
  }
  ls->is_pipe = true;
  uv_pipe_init(loop, &ls->pipe, 0);
  ls->pipe.data = ls;
  snprintf(ls->path, sizeof ls->path, "%s", a->text);
  struct stat st;
  if (lstat(ls->path, &st) == 0 && S_ISSOCK(st.st_mode))
    unlink(ls->path);
  /* Created owner-only, then given its configured mode: never more open between. */
  mode_t old = umask(0177);
  int rc = uv_pipe_bind(&ls->pipe, ls->path);
  umask(old);
  if (rc < 0)
    ls->path[0] = '\0'; /* not ours: never unlink it */
  return rc;
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
    const struct config_addr *a = &cfg->listen[i];
    uv_os_sock_t fd = fds ? fds[i] : LISTENER_FD_BIND;
    if (fd == LISTENER_FD_SKIP)
      continue;
    struct listener_socket *ls = &l->sockets[l->nsockets++];
    ls->magic = LSOCK_MAGIC;
    ls->l = l;
    int rc = listener_bind(loop, ls, a, fd);
    if (rc == 0)
      rc = uv_listen((uv_stream_t *)&ls->tcp, 511, on_connection);
    if (rc == 0 && ls->is_pipe && chmod(ls->path, a->mode) < 0)
      rc = uv_translate_sys_error(errno);
    if (rc < 0) {
      snprintf(err, errlen, "listen on %s: %s", a->text, uv_strerror(rc));
      return SP_E_IO;
    }
    log_msg(LOG_INFO, NULL, "listening on %s (%s)", a->text,
            ls->lmtp ? "LMTP" : "SMTP");
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
  struct listener_socket *ls;
  CAST_OBJ_NOTNULL(ls, h->data, LSOCK_MAGIC);
  struct listener *l = ls->l;
  if (--l->nclosing == 0) {
    for (size_t i = 0; i < l->nsockets; i++)
      l->sockets[i].magic = 0;
    free(l->sockets);
    l->sockets = NULL;
  }
}

static void listener_close_sockets(struct listener *l) {
  if (!l->sockets || l->nclosing)
    return;
  l->nclosing = l->nsockets;
  for (size_t i = 0; i < l->nsockets; i++) {
    if (l->sockets[i].path[0])
      unlink(l->sockets[i].path);
    uv_close((uv_handle_t *)&l->sockets[i].tcp, on_socket_closed);
  }
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
