/* The Redis connection: one state machine (redis_set_state logs every change), one
 * FIFO of commands waiting for their reply, one FIFO of commands waiting for the
 * connection to come up. */
#include "proxy/net/redis.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certs/tls.h"
#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/core/obj.h"
#include "proxy/core/observe.h"
#include "proxy/net/conn.h"

#define REDIS_MAGIC 0x52454449u              /* "REDI" */
#define REDIS_MAX_QUEUE 10000                /* commands queued or awaiting replies */
#define REDIS_MAX_BUFFER (64u * 1024 * 1024) /* unparsed reply bytes */
#define REDIS_BACKOFF_MIN 100                /* ms */
#define REDIS_BACKOFF_MAX 5000               /* ms */

enum redis_state {
  REDIS_RESOLVING,  /* uv_getaddrinfo in flight */
  REDIS_CONNECTING, /* TCP connect (then the TLS handshake for rediss:) */
  REDIS_HELLO,      /* AUTH / SELECT / PING sent, waiting for PONG */
  REDIS_UP,         /* commands flow */
  REDIS_DOWN,       /* the connection is closing or closed; backoff timer runs */
  REDIS_CLOSED,     /* redis_close(): waiting for the handles */
};

static const char *const state_names[] = {"resolving", "connecting", "hello",
                                          "up",        "down",       "closed"};

struct redis_cmd {
  struct redis_cmd *next;
  redis_cb cb; /* NULL once cancelled */
  void *arg;
  char *bytes; /* formatted, until written (redisFreeCommand) */
  size_t len;
};

struct cmd_list {
  struct redis_cmd *head, *tail;
  size_t n;
};

struct redis {
  uint32_t magic;
  uv_loop_t *loop;
  const struct redis_settings *cfg;
  enum redis_state state;
  SSL_CTX *ctx;         /* owned; NULL for redis: */
  struct conn conn;     /* owned; open while conn_open */
  bool conn_open;       /* conn_init done, on_closed not yet run */
  uv_getaddrinfo_t gai; /* owned; in flight while resolving */
  bool gai_pending;
  uv_timer_t timer;         /* owned: connect/reply deadline, or the backoff */
  redisReader *reader;      /* owned; one per connection */
  struct cmd_list queued;   /* waiting for the connection (bytes kept) */
  struct cmd_list inflight; /* written, waiting for a reply */
  unsigned backoff_ms;
  unsigned failures; /* connection attempts failed since the last up */
  struct sockaddr_storage addr;
  void (*on_closed)(void *arg);
  void *on_closed_arg;
  unsigned pending_closes;
};

/* The client behind a callback's handle or conn: a wrong type is a bug, caught here. */
static struct redis *redis_of(void *p) {
  struct redis *r = p;
  CHECK_OBJ_NOTNULL(r, REDIS_MAGIC);
  return r;
}

void redis_count_error(void) {
  observe_cache_error();
}

static void list_push(struct cmd_list *l, struct redis_cmd *c) {
  c->next = NULL;
  if (l->tail)
    l->tail->next = c;
  else
    l->head = c;
  l->tail = c;
  l->n++;
}

static struct redis_cmd *list_pop(struct cmd_list *l) {
  struct redis_cmd *c = l->head;
  if (!c)
    return NULL;
  l->head = c->next;
  if (!l->head)
    l->tail = NULL;
  l->n--;
  return c;
}

static void cmd_free(struct redis_cmd *c) {
  if (c->bytes)
    redisFreeCommand(c->bytes);
  free(c);
}

static void redis_set_state(struct redis *r, enum redis_state st) {
  if (r->state == st)
    return;
  log_msg(LOG_DEBUG, NULL, "cache: redis %s:%u: %s -> %s", r->cfg->host, r->cfg->port,
          state_names[r->state], state_names[st]);
  if (r->state == REDIS_UP)
    observe_cache_clients(0, -1);
  if (st == REDIS_UP)
    observe_cache_clients(0, 1);
  r->state = st;
}

/* ---- failing and reconnecting ------------------------------------------------------ */

static void redis_connect_next(struct redis *r);

/* Every command in l fails with why (their callbacks may issue new commands: those
 * fail at once, as the state is no longer up). */
static void fail_all(struct redis *r, struct cmd_list *l, const char *why) {
  struct cmd_list todo = *l;
  memset(l, 0, sizeof *l);
  struct redis_cmd *c;
  while ((c = list_pop(&todo))) {
    if (c->cb && r->state != REDIS_CLOSED) {
      observe_cache_error();
      c->cb(c->arg, NULL, why);
    }
    cmd_free(c);
  }
}

static void on_backoff(uv_timer_t *t) {
  struct redis *r = redis_of(t->data);
  redis_connect_next(r);
}

/* The connection is lost (or never came up): fail what waits for replies, close,
 * and try again after the backoff. Commands queued before the first connect fail too:
 * Redis is down now, and callers fall back instead of waiting. */
static void redis_drop(struct redis *r, const char *why) {
  if (r->state == REDIS_DOWN || r->state == REDIS_CLOSED)
    return;
  bool was_up = r->state == REDIS_UP;
  redis_set_state(r, REDIS_DOWN);
  if (was_up || r->failures == 0)
    log_msg(LOG_WARNING, NULL,
            "cache: redis %s:%u unavailable: %s; using the policies in memory, "
            "retrying",
            r->cfg->host, r->cfg->port, why);
  r->failures++;
  if (r->gai_pending)
    uv_cancel((uv_req_t *)&r->gai); /* on_resolved sees the state and lets go */
  if (r->conn_open)
    conn_close(&r->conn, false);
  if (r->reader) {
    redisReaderFree(r->reader);
    r->reader = NULL;
  }
  uv_timer_stop(&r->timer);
  fail_all(r, &r->inflight, why);
  fail_all(r, &r->queued, why);
  if (r->state != REDIS_DOWN) /* a callback closed the client */
    return;
  unsigned ms = r->backoff_ms ? r->backoff_ms : REDIS_BACKOFF_MIN;
  r->backoff_ms = ms * 2 > REDIS_BACKOFF_MAX ? REDIS_BACKOFF_MAX : ms * 2;
  uv_timer_start(&r->timer, on_backoff, ms, 0);
}

static void on_deadline(uv_timer_t *t) {
  struct redis *r = redis_of(t->data);
  char why[96];
  snprintf(why, sizeof why, "no answer within %llu ms",
           (unsigned long long)r->cfg->timeout_ms);
  redis_drop(r, why);
}

static void arm_deadline(struct redis *r) {
  uv_timer_start(&r->timer, on_deadline, r->cfg->timeout_ms, 0);
}

/* ---- replies ---------------------------------------------------------------------- */

static int write_cmd(struct redis *r, struct redis_cmd *c) {
  int rc = conn_write(&r->conn, c->bytes, c->len);
  redisFreeCommand(c->bytes);
  c->bytes = NULL;
  if (rc < 0)
    return rc;
  if (r->inflight.n == 0)
    arm_deadline(r);
  list_push(&r->inflight, c);
  return 0;
}

static void on_hello_reply(void *arg, const redisReply *reply, const char *why);

static void become_up(struct redis *r) {
  redis_set_state(r, REDIS_UP);
  if (r->failures > 0)
    log_msg(LOG_INFO, NULL, "cache: redis %s:%u is back after %u failed attempt(s)",
            r->cfg->host, r->cfg->port, r->failures - 1);
  else
    log_msg(LOG_INFO, NULL, "cache: redis %s:%u connected%s", r->cfg->host,
            r->cfg->port, r->ctx ? " over TLS" : "");
  r->failures = 0;
  r->backoff_ms = 0;
  struct redis_cmd *c;
  while (r->state == REDIS_UP && (c = list_pop(&r->queued)))
    if (write_cmd(r, c) < 0) {
      list_push(&r->inflight, c);
      redis_drop(r, conn_error(&r->conn));
    }
}

static void on_hello_reply(void *arg, const redisReply *reply, const char *why) {
  struct redis *r = redis_of(arg);
  if (!reply) /* the connection is being dropped already */
    return;
  if (reply->type == REDIS_REPLY_ERROR) {
    char msg[200];
    snprintf(msg, sizeof msg, "%.*s", (int)(reply->len > 150 ? 150 : reply->len),
             reply->str);
    redis_drop(r, msg);
    return;
  }
  (void)why;
  if (reply->type == REDIS_REPLY_STATUS && !strcmp(reply->str, "PONG"))
    become_up(r);
}

static void deliver(struct redis *r, redisReply *reply) {
  struct redis_cmd *c = list_pop(&r->inflight);
  if (r->inflight.n == 0)
    uv_timer_stop(&r->timer);
  else
    arm_deadline(r); /* progress: the next reply gets a full timeout */
  if (c->cb)
    c->cb(c->arg, reply, NULL);
  cmd_free(c);
}

static void on_data(struct conn *cn, const char *data, size_t len) {
  struct redis *r = redis_of(cn->owner);
  if (redisReaderFeed(r->reader, data, len) != REDIS_OK) {
    redis_drop(r, "out of memory");
    return;
  }
  while (r->state == REDIS_UP || r->state == REDIS_HELLO) {
    void *reply = NULL;
    if (redisReaderGetReply(r->reader, &reply) != REDIS_OK) {
      char why[160];
      snprintf(why, sizeof why, "protocol error: %s", r->reader->errstr);
      redis_drop(r, why);
      return;
    }
    if (!reply)
      break;
    if (r->inflight.n == 0) {
      freeReplyObject(reply);
      redis_drop(r, "protocol error: a reply nobody asked for");
      return;
    }
    deliver(r, reply);
    freeReplyObject(reply);
  }
  if (r->reader && r->reader->len > REDIS_MAX_BUFFER)
    redis_drop(r, "reply too large");
}

/* ---- connecting ------------------------------------------------------------------- */

/* Internal commands of the hello phase: written at once, first in line. */
static int hello_cmd(struct redis *r, int argc, const char **argv) {
  struct redis_cmd *c = calloc(1, sizeof *c);
  if (!c)
    return SP_E_NOMEM;
  int n = redisFormatCommandArgv(&c->bytes, argc, argv, NULL);
  if (n < 0) {
    free(c);
    return SP_E_NOMEM;
  }
  c->len = (size_t)n;
  c->cb = on_hello_reply;
  c->arg = r;
  int rc = write_cmd(r, c);
  if (rc < 0)
    cmd_free(c);
  return rc;
}

static void send_hello(struct redis *r) {
  char db[16];
  int rc = 0;
  redis_set_state(r, REDIS_HELLO);
  if (r->cfg->password[0] && r->cfg->username[0]) {
    const char *argv[] = {"AUTH", r->cfg->username, r->cfg->password};
    rc = hello_cmd(r, 3, argv);
  } else if (r->cfg->password[0]) {
    const char *argv[] = {"AUTH", r->cfg->password};
    rc = hello_cmd(r, 2, argv);
  }
  if (rc == 0 && r->cfg->db > 0) {
    snprintf(db, sizeof db, "%u", r->cfg->db);
    const char *argv[] = {"SELECT", db};
    rc = hello_cmd(r, 2, argv);
  }
  if (rc == 0) {
    const char *argv[] = {"PING"};
    rc = hello_cmd(r, 1, argv);
  }
  if (rc < 0)
    redis_drop(r, conn_error(&r->conn)[0] ? conn_error(&r->conn) : sp_strerror(rc));
}

static void on_error(struct conn *cn, int err) {
  struct redis *r = redis_of(cn->owner);
  char why[300];
  snprintf(why, sizeof why, "%s",
           err == SP_E_EOF ? "connection closed by Redis" : conn_error(cn));
  redis_drop(r, why);
}

static void on_handshake(struct conn *cn, int err) {
  struct redis *r = redis_of(cn->owner);
  if (err < 0) {
    char why[300];
    snprintf(why, sizeof why, "TLS handshake: %s", conn_error(cn));
    redis_drop(r, why);
    return;
  }
  send_hello(r);
}

static int start_tls(struct redis *r) {
  struct tls *t = NULL;
  int rc = tls_new_client(r->ctx, r->cfg->host, &t);
  if (rc < 0)
    return rc;
  SSL *ssl = tls_ssl(t);
  X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
  unsigned char ip[16];
  bool literal = inet_pton(AF_INET, r->cfg->host, ip) == 1 ||
                 inet_pton(AF_INET6, r->cfg->host, ip) == 1;
  ERR_clear_error();
  /* The server's certificate must name the host of the url (RFC 6125). */
  int ok = literal ? X509_VERIFY_PARAM_set1_ip_asc(vp, r->cfg->host)
                   : X509_VERIFY_PARAM_set1_host(vp, r->cfg->host, 0);
  if (ok != 1) {
    ERR_clear_error();
    tls_free(t);
    return SP_E_TLS;
  }
  return conn_start_tls(&r->conn, t);
}

static void on_connect(struct conn *cn, int status) {
  struct redis *r = redis_of(cn->owner);
  if (status < 0) {
    redis_drop(r, conn_error(cn));
    return;
  }
  conn_read_start(&r->conn);
  if (!r->ctx) {
    send_hello(r);
    return;
  }
  int rc = start_tls(r);
  if (rc < 0)
    redis_drop(r, conn_error(cn)[0] ? conn_error(cn) : "cannot start TLS");
}

static void redis_maybe_free(struct redis *r);

static void on_conn_closed(struct conn *cn) {
  struct redis *r = redis_of(cn->owner);
  r->conn_open = false;
  if (r->state == REDIS_CLOSED)
    redis_maybe_free(r);
}

static const struct conn_events redis_events = {
    .on_data = on_data,
    .on_error = on_error,
    .on_handshake = on_handshake,
    .on_connect = on_connect,
    .on_closed = on_conn_closed,
};

static void redis_connect_addr(struct redis *r) {
  if (r->conn_open) { /* the last connection is still closing: come back later */
    uv_timer_start(&r->timer, on_backoff, 10, 0);
    return;
  }
  redis_set_state(r, REDIS_CONNECTING);
  r->reader = redisReaderCreate();
  if (!r->reader || conn_init(r->loop, &r->conn, &redis_events, r) < 0) {
    redis_drop(r, "out of memory");
    return;
  }
  r->conn_open = true;
  arm_deadline(r);
  if (conn_connect(&r->conn, (struct sockaddr *)&r->addr) < 0)
    redis_drop(r, conn_error(&r->conn));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  struct redis *r = redis_of(req->data);
  r->gai_pending = false;
  if (r->state == REDIS_CLOSED) {
    uv_freeaddrinfo(res);
    redis_maybe_free(r);
    return;
  }
  if (r->state != REDIS_RESOLVING) { /* dropped meanwhile (the deadline) */
    uv_freeaddrinfo(res);
    return;
  }
  if (status < 0 || !res) {
    char why[300];
    snprintf(why, sizeof why, "cannot resolve %s: %s", r->cfg->host,
             uv_strerror(status));
    uv_freeaddrinfo(res);
    redis_drop(r, why);
    return;
  }
  memcpy(&r->addr, res->ai_addr, res->ai_addrlen);
  uv_freeaddrinfo(res);
  redis_connect_addr(r);
}

static bool literal_addr(struct redis *r) {
  struct sockaddr_in *in4 = (struct sockaddr_in *)&r->addr;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&r->addr;
  memset(&r->addr, 0, sizeof r->addr);
  if (uv_ip4_addr(r->cfg->host, r->cfg->port, in4) == 0)
    return true;
  return uv_ip6_addr(r->cfg->host, r->cfg->port, in6) == 0;
}

static void redis_connect_next(struct redis *r) {
  if (r->gai_pending) { /* the last lookup has not let go yet */
    uv_timer_start(&r->timer, on_backoff, 10, 0);
    return;
  }
  if (literal_addr(r)) {
    redis_connect_addr(r);
    return;
  }
  char port[8];
  snprintf(port, sizeof port, "%u", r->cfg->port);
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
  redis_set_state(r, REDIS_RESOLVING);
  r->gai.data = r;
  arm_deadline(r);
  if (uv_getaddrinfo(r->loop, &r->gai, on_resolved, r->cfg->host, port, &hints) < 0) {
    redis_drop(r, "cannot start the address lookup");
    return;
  }
  r->gai_pending = true;
}

/* ---- the API ---------------------------------------------------------------------- */

static SSL_CTX *redis_tls_ctx(const struct tls_trust *trust, char *err, size_t errlen) {
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx)
    goto fail;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  if (tls_trust_load(ctx, trust) != 1)
    goto fail;
  return ctx;
fail:
  snprintf(err, errlen, "cache.redis: TLS context: %s",
           ERR_reason_error_string(ERR_peek_last_error())
               ? ERR_reason_error_string(ERR_peek_last_error())
               : "unknown error");
  ERR_clear_error();
  SSL_CTX_free(ctx);
  return NULL;
}

int redis_new(uv_loop_t *loop, const struct redis_settings *cfg,
              const struct tls_trust *trust, struct redis **out, char *err,
              size_t errlen) {
  struct redis *r = calloc(1, sizeof *r);
  if (!r) {
    snprintf(err, errlen, "out of memory");
    return SP_E_NOMEM;
  }
  r->loop = loop;
  r->cfg = cfg;
  r->state = REDIS_DOWN;
  if (cfg->tls && !(r->ctx = redis_tls_ctx(trust, err, errlen))) {
    free(r);
    return SP_E_CONFIG;
  }
  uv_timer_init(loop, &r->timer);
  r->timer.data = r;
  r->magic = REDIS_MAGIC;
  observe_cache_clients(1, 0);
  redis_connect_next(r);
  *out = r;
  return 0;
}

static void redis_maybe_free(struct redis *r) {
  if (r->pending_closes > 0 || r->conn_open || r->gai_pending)
    return;
  void (*cb)(void *) = r->on_closed;
  void *arg = r->on_closed_arg;
  SSL_CTX_free(r->ctx);
  r->magic = 0;
  free(r);
  if (cb)
    cb(arg);
}

static void on_timer_closed(uv_handle_t *h) {
  struct redis *r = redis_of(h->data);
  r->pending_closes--;
  redis_maybe_free(r);
}

static void drop_all(struct cmd_list *l) {
  struct redis_cmd *c;
  while ((c = list_pop(l)))
    cmd_free(c);
}

void redis_close(struct redis *r, void (*on_closed)(void *arg), void *arg) {
  if (!OBJ_VALID(r, REDIS_MAGIC) || r->state == REDIS_CLOSED)
    return;
  redis_set_state(r, REDIS_CLOSED);
  observe_cache_clients(-1, 0);
  r->on_closed = on_closed;
  r->on_closed_arg = arg;
  drop_all(&r->inflight);
  drop_all(&r->queued);
  if (r->reader)
    redisReaderFree(r->reader);
  r->reader = NULL;
  if (r->gai_pending)
    uv_cancel((uv_req_t *)&r->gai); /* on_resolved runs, with UV_ECANCELED or not */
  if (r->conn_open)
    conn_close(&r->conn, true);
  r->pending_closes = 1;
  uv_close((uv_handle_t *)&r->timer, on_timer_closed);
}

bool redis_up(const struct redis *r) {
  return r && r->state == REDIS_UP;
}

bool redis_usable(const struct redis *r) {
  if (!r)
    return false;
  size_t n = r->queued.n + r->inflight.n;
  return n < REDIS_MAX_QUEUE &&
         (r->state == REDIS_UP || r->state == REDIS_HELLO ||
          r->state == REDIS_CONNECTING || r->state == REDIS_RESOLVING);
}

struct redis_cmd *redis_command(struct redis *r, redis_cb cb, void *arg, int argc,
                                const char **argv, const size_t *argvlen) {
  if (!redis_usable(r)) {
    observe_cache_error();
    return NULL;
  }
  struct redis_cmd *c = calloc(1, sizeof *c);
  int n = c ? redisFormatCommandArgv(&c->bytes, argc, argv, argvlen) : -1;
  if (n < 0) {
    free(c);
    observe_cache_error();
    return NULL;
  }
  c->len = (size_t)n;
  c->cb = cb;
  c->arg = arg;
  if (r->state != REDIS_UP) {
    list_push(&r->queued, c);
    return c;
  }
  if (write_cmd(r, c) < 0) {
    /* The socket is broken: the drop (and this command's failure) comes from the
     * loop, not from inside this call. */
    list_push(&r->inflight, c);
    uv_timer_start(&r->timer, on_deadline, 0, 0);
  }
  return c;
}

void redis_cancel(struct redis_cmd *c) {
  if (c)
    c->cb = NULL;
}

bool redis_key(const struct redis *r, char *out, size_t cap, const char *suffix) {
  int n = snprintf(out, cap, "%s%s", r->cfg->key_prefix, suffix);
  return n >= 0 && (size_t)n < cap;
}
