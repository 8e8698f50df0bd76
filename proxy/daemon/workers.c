/* Worker loops; see workers.h for the contract.
 *
 * Threads talk only through atomics and uv_async handles: the main thread sets a
 * worker's command bits and wakes its loop (w->wake); a worker queues TLS results
 * (under ws->lock) and says it finished through the main loop's ws->main_async. */
#include "proxy/daemon/workers.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/core/obj.h"
#include "proxy/core/observe.h"
#include "proxy/inbound/listener.h"
#include "proxy/mtasts/sts.h"
#include "proxy/outbound/pool.h"
#include "proxy/outbound/runtime.h"

enum { CMD_RELOAD = 1, CMD_DRAIN = 2, CMD_ABORT = 4 };

#define WORKER_MAGIC 0x57524b52u  /* "WRKR" */
#define WORKERS_MAGIC 0x57524b53u /* "WRKS" */

struct worker {
  uint32_t magic;
  struct workers *ws;
  unsigned index;
  uv_thread_t thread;
  bool started; /* the thread runs (joined in workers_free) */
  uv_loop_t loop;
  uv_async_t wake; /* on loop: commands from the main thread */
  struct listener listener;
  uv_os_sock_t *fds; /* owned until the listener takes them */
  atomic_uint commands;
  atomic_bool finished; /* the loop ended */
  bool wake_closed;     /* wake is closing: no more uv_async_send (ws->lock) */
  bool draining;
  int start_rc;
  char start_err[512];
};

/* A TLS result copied out of a worker for the main loop's TLS reporting. */
struct forwarded {
  struct forwarded *next;
  struct observe_tls o;
  struct sts_policy sts;
  struct dane_tlsa *tlsa;
  char *strings; /* domain, mx_host, ip, local_ip, policy, detail, sts_detail: one
                  * allocation */
};

struct workers {
  uint32_t magic;
  uv_loop_t *main_loop;
  const char *config_path;
  unsigned n;
  size_t nfds;      /* sockets per loop: the listen addresses */
  struct worker *w; /* n of them; w[0] stands for the main loop (fds only) */
  uv_async_t main_async;
  uv_mutex_t lock;  /* guards queue */
  uv_sem_t started; /* posted by each worker once it listens (or failed) */
  struct forwarded *queue;
  void (*on_done)(void *arg);
  void *arg;
  bool done_reported;
};

/* The worker of the current thread, for the TLS result forwarder. */
static _Thread_local struct worker *current;

unsigned workers_count(const struct config *cfg) {
  if (cfg->workers > 0)
    return cfg->workers;
  /* One CPU is left to what relaying makes the kernel do (loopback and TCP work is
   * half of the proxy's CPU time in the profiles) and to the MTA beside it: on 2 CPUs
   * a second loop only competed with them and was slower (bench/README.md). */
  unsigned n = uv_available_parallelism();
  return n > 257 ? 256 : n < 3 ? 1 : n - 1;
}

/* ---- TLS results: worker thread -> main loop ------------------------------------- */

static char *put_string(char **p, const char *s) {
  if (!s)
    return NULL;
  char *at = *p;
  size_t n = strlen(s) + 1;
  memcpy(at, s, n);
  *p += n;
  return at;
}

static void forward_tls(const struct observe_tls *t) {
  struct workers *ws = current->ws;
  const char *strs[] = {t->domain, t->mx_host, t->ip,        t->local_ip,
                        t->policy, t->detail,  t->sts_detail};
  size_t total = 0;
  for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
    total += strs[i] ? strlen(strs[i]) + 1 : 0;
  struct forwarded *f = calloc(1, sizeof *f);
  char *p = f ? malloc(total + 1) : NULL;
  struct dane_tlsa *tlsa = p ? dane_tlsa_dup(t->tlsa, t->ntlsa) : NULL;
  bool sts_ok = p && (t->ntlsa == 0 || tlsa) &&
                (!t->sts || sts_policy_copy(&f->sts, t->sts) == 0);
  if (!f || !p || (t->ntlsa && !tlsa) || !sts_ok) {
    free(f);
    free(p);
    free(tlsa);
    log_msg(LOG_WARNING, NULL, "tlsrpt: %s: session not counted (out of memory)",
            t->domain ? t->domain : "");
    return;
  }
  f->strings = p;
  f->o = *t;
  f->o.domain = put_string(&p, t->domain);
  f->o.mx_host = put_string(&p, t->mx_host);
  f->o.ip = put_string(&p, t->ip);
  f->o.local_ip = put_string(&p, t->local_ip);
  f->o.policy = put_string(&p, t->policy);
  f->o.detail = put_string(&p, t->detail);
  f->o.sts_detail = put_string(&p, t->sts_detail);
  if (t->sts)
    f->o.sts = &f->sts; /* copied above */
  f->tlsa = tlsa;
  f->o.tlsa = tlsa;
  uv_mutex_lock(&ws->lock);
  f->next = ws->queue;
  ws->queue = f;
  uv_mutex_unlock(&ws->lock);
  uv_async_send(&ws->main_async);
}

static void forwarded_free(struct forwarded *f) {
  free(f->strings);
  free(f->tlsa);
  sts_policy_free(&f->sts);
  free(f);
}

/* Main loop: record what the workers saw (oldest first), and report the end. */
static void on_main_async(uv_async_t *a) {
  struct workers *ws;
  CAST_OBJ_NOTNULL(ws, a->data, WORKERS_MAGIC);
  uv_mutex_lock(&ws->lock);
  struct forwarded *f = ws->queue, *rev = NULL;
  ws->queue = NULL;
  uv_mutex_unlock(&ws->lock);
  while (f) {
    struct forwarded *next = f->next;
    f->next = rev;
    rev = f;
    f = next;
  }
  for (f = rev; f;) {
    struct forwarded *next = f->next;
    observe_tls_forwarded(&f->o);
    forwarded_free(f);
    f = next;
  }
  if (!ws->done_reported && workers_done(ws) && ws->on_done) {
    ws->done_reported = true;
    ws->on_done(ws->arg);
  }
}

/* ---- a worker's loop ------------------------------------------------------------- */

static void worker_on_idle(struct listener *l) {
  struct worker *w;
  CAST_OBJ_NOTNULL(w, l->loop->data, WORKER_MAGIC);
  pool_close(w->listener.ctx.pool);
  w->listener.ctx.pool = NULL;
  listener_close(&w->listener);
  uv_mutex_lock(&w->ws->lock);
  w->wake_closed = true;
  uv_mutex_unlock(&w->ws->lock);
  uv_close((uv_handle_t *)&w->wake, NULL);
}

/* Builds a runtime from the file (each worker has its own configuration object, so
 * no reference count is shared between threads). */
static int worker_runtime(struct worker *w, struct runtime **rt, char *err,
                          size_t errlen) {
  struct config *cfg;
  char *errors = NULL;
  if (config_load(w->ws->config_path, &cfg, &errors) < 0) {
    snprintf(err, errlen, "%s", errors ? errors : "cannot load configuration");
    free(errors);
    return SP_E_CONFIG;
  }
  int rc = runtime_new(&w->loop, cfg, rt, err, errlen);
  config_unref(cfg);
  return rc;
}

static void worker_reload(struct worker *w) {
  struct runtime *rt;
  char err[512];
  if (worker_runtime(w, &rt, err, sizeof err) < 0) {
    log_msg(LOG_ERROR, NULL,
            "worker %u: reload failed: %s: keeping the running "
            "configuration",
            w->index, err);
    return;
  }
  listener_set_runtime(&w->listener, rt);
  runtime_unref(rt);
  log_msg(LOG_INFO, NULL, "worker %u: configuration reloaded", w->index);
}

static void on_wake(uv_async_t *a) {
  struct worker *w;
  CAST_OBJ_NOTNULL(w, a->data, WORKER_MAGIC);
  unsigned cmd = atomic_exchange(&w->commands, 0);
  if ((cmd & CMD_RELOAD) && !w->draining)
    worker_reload(w);
  if ((cmd & CMD_DRAIN) && !w->draining) {
    w->draining = true;
    listener_drain(&w->listener); /* may close everything at once (worker_on_idle) */
  }
  if ((cmd & CMD_ABORT) && w->draining && w->listener.rt)
    listener_abort(&w->listener);
}

static void worker_main(void *arg) {
  struct worker *w;
  CAST_OBJ_NOTNULL(w, arg, WORKER_MAGIC);
  current = w;
  struct runtime *rt = NULL;
  w->loop.data = w;
  observe_set_tls_forward(forward_tls);
  w->start_rc = worker_runtime(w, &rt, w->start_err, sizeof w->start_err);
  if (w->start_rc == 0)
    w->start_rc = listener_start_fds(&w->listener, &w->loop, rt, w->fds, w->start_err,
                                     sizeof w->start_err);
  if (w->start_rc == 0) {
    free(w->fds); /* the listener's handles own the sockets now */
    w->fds = NULL;
    w->listener.on_idle = worker_on_idle;
    struct pool_limits lim = pool_limits_of(rt->cfg);
    w->listener.ctx.pool = pool_new(&w->loop, &lim);
    uv_async_init(&w->loop, &w->wake, on_wake);
    w->wake.data = w;
  } else {
    /* Start-up failed: the process exits. Sockets a listener handle took close
     * with it; the rest are closed by workers_free. */
    if (w->listener.sockets) {
      size_t taken = w->listener.nsockets; /* in order, skipped entries aside */
      for (size_t i = 0; i < w->ws->nfds && taken > 0; i++)
        if (w->fds[i] != LISTENER_FD_SKIP) {
          w->fds[i] = -1;
          taken--;
        }
      listener_close(&w->listener);
    }
    uv_mutex_lock(&w->ws->lock);
    w->wake_closed = true;
    uv_mutex_unlock(&w->ws->lock);
  }
  runtime_unref(rt);
  /* The main thread waits for this before starting the next worker or giving up. */
  uv_sem_post(&w->ws->started);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&w->loop) != 0)
    log_msg(LOG_ERROR, NULL, "worker %u: event loop closed with handles open",
            w->index);
  atomic_store(&w->finished, true);
  uv_async_send(&w->ws->main_async);
}

/* ---- the main thread ------------------------------------------------------------- */

static void on_main_async_closed(uv_handle_t *h) {
  struct workers *ws;
  CAST_OBJ_NOTNULL(ws, h->data, WORKERS_MAGIC);
  ws->magic = 0;
  free(ws);
}

/* One listening socket per listen address for one loop, SO_REUSEPORT so that every
 * loop has its own accept queue on the same address. A unix socket is the main loop's
 * alone (set 0 binds it in its listener; the others skip it): its file has one owner,
 * who creates, chmods and removes it. */
static int bind_set(const struct config *cfg, unsigned set, uv_os_sock_t *fds,
                    char *err, size_t errlen) {
  for (size_t i = 0; i < cfg->nlisten; i++)
    fds[i] = -1;
  for (size_t i = 0; i < cfg->nlisten; i++) {
    const struct sockaddr *sa = (const struct sockaddr *)&cfg->listen[i].sa;
    if (sa->sa_family == AF_UNIX) {
      fds[i] = set == 0 ? LISTENER_FD_BIND : LISTENER_FD_SKIP;
      continue;
    }
    int one = 1;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
        bind(fd, sa, (socklen_t)cfg->listen[i].salen) < 0) {
      snprintf(err, errlen, "listen on %s: %s", cfg->listen[i].text, strerror(errno));
      if (fd >= 0)
        close(fd);
      return SP_E_IO;
    }
    fds[i] = fd;
  }
  return 0;
}

static void close_set(uv_os_sock_t *fds, size_t n) {
  for (size_t i = 0; fds && i < n; i++)
    if (fds[i] >= 0)
      close(fds[i]);
}

static void wake(struct worker *w, unsigned cmd) {
  if (!w->started)
    return;
  atomic_fetch_or(&w->commands, cmd);
  uv_mutex_lock(&w->ws->lock);
  if (!w->wake_closed)
    uv_async_send(&w->wake);
  uv_mutex_unlock(&w->ws->lock);
}

int workers_start(uv_loop_t *main_loop, const struct config *cfg,
                  const char *config_path, unsigned n, void (*on_done)(void *arg),
                  void *arg, struct workers **out, char *err, size_t errlen) {
  *out = NULL;
  struct workers *ws = calloc(1, sizeof *ws);
  if (!ws)
    return SP_E_NOMEM;
  ws->magic = WORKERS_MAGIC;
  ws->main_loop = main_loop;
  ws->config_path = config_path;
  ws->n = n;
  ws->nfds = cfg->nlisten;
  ws->on_done = on_done;
  ws->arg = arg;
  ws->w = calloc(n, sizeof *ws->w);
  if (!ws->w) {
    ws->magic = 0;
    free(ws);
    return SP_E_NOMEM;
  }
  for (unsigned i = 0; i < n; i++)
    ws->w[i].magic = WORKER_MAGIC;
  uv_mutex_init(&ws->lock);
  uv_sem_init(&ws->started, 0);
  uv_async_init(main_loop, &ws->main_async, on_main_async);
  ws->main_async.data = ws;
  int rc = 0;
  for (unsigned i = 0; i < n && rc == 0; i++) {
    struct worker *w = &ws->w[i];
    w->ws = ws;
    w->index = i;
    w->fds = malloc(cfg->nlisten * sizeof *w->fds);
    rc = w->fds ? bind_set(cfg, i, w->fds, err, errlen) : SP_E_NOMEM;
  }
  /* One at a time: a worker's start-up (configuration, resolver and TLS library
   * initialisation) never runs alongside another's. */
  for (unsigned i = 1; i < n && rc == 0; i++) {
    struct worker *w = &ws->w[i];
    if (uv_loop_init(&w->loop) != 0 || uv_thread_create(&w->thread, worker_main, w)) {
      snprintf(err, errlen, "cannot start worker %u", i);
      rc = SP_E_NOMEM;
      break;
    }
    w->started = true;
    uv_sem_wait(&ws->started);
    if (w->start_rc < 0) {
      snprintf(err, errlen, "worker %u: %s", i, w->start_err);
      rc = w->start_rc;
    }
  }
  if (rc < 0) {
    workers_free(ws);
    return rc;
  }
  log_msg(LOG_INFO, NULL, "%u event loops (workers)", n);
  *out = ws;
  return 0;
}

uv_os_sock_t *workers_take_main_fds(struct workers *ws) {
  uv_os_sock_t *fds = ws->w[0].fds;
  ws->w[0].fds = NULL;
  return fds;
}

void workers_reload(struct workers *ws) {
  for (unsigned i = 1; ws && i < ws->n; i++)
    wake(&ws->w[i], CMD_RELOAD);
}

void workers_drain(struct workers *ws) {
  for (unsigned i = 1; ws && i < ws->n; i++)
    wake(&ws->w[i], CMD_DRAIN);
}

void workers_abort(struct workers *ws) {
  for (unsigned i = 1; ws && i < ws->n; i++)
    wake(&ws->w[i], CMD_ABORT);
}

bool workers_done(const struct workers *ws) {
  for (unsigned i = 1; ws && i < ws->n; i++)
    if (ws->w[i].started && !atomic_load(&ws->w[i].finished))
      return false;
  return true;
}

void workers_free(struct workers *ws) {
  if (!ws)
    return;
  workers_drain(ws);
  workers_abort(ws);
  for (unsigned i = 1; i < ws->n; i++) {
    struct worker *w = &ws->w[i];
    if (w->started)
      uv_thread_join(&w->thread);
  }
  for (unsigned i = 0; i < ws->n; i++) {
    close_set(ws->w[i].fds, ws->nfds);
    free(ws->w[i].fds);
    ws->w[i].magic = 0;
  }
  struct forwarded *f = ws->queue;
  while (f) {
    struct forwarded *next = f->next;
    forwarded_free(f);
    f = next;
  }
  uv_sem_destroy(&ws->started);
  uv_mutex_destroy(&ws->lock);
  free(ws->w);
  /* main_async is closed last; its close callback frees ws. */
  uv_close((uv_handle_t *)&ws->main_async, on_main_async_closed);
}
