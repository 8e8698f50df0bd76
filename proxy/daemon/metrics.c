/* Process-wide counters in Prometheus's text format, served by a tiny HTTP/1.1
 * listener on the loop: one request per connection, answered and closed. Label values
 * come from fixed tables (bounded cardinality: a domain or an MX name never becomes a
 * label), and are escaped all the same. */
#include "proxy/daemon/metrics.h"
#include "proxy/core/obj.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/buf.h"
#include "proxy/core/error.h"
#include "proxy/core/log.h"

#define METRICS_MAGIC 0x4d455452u     /* "METR" */
#define MCONN_MAGIC 0x4d434f4eu       /* "MCON" */
#define METRICS_MAX_CONNS 16          /* more at once are closed unanswered */
#define METRICS_REQUEST_TIMEOUT 10000 /* ms for the whole request head */
#define METRICS_BODY_MAX (1024 * 1024)
#define METRICS_LINGER 2000 /* ms to drain what the client still sends after a reply */

/* ---- counters ------------------------------------------------------------------- */

static const char *const status_names[] = {"sent", "deferred", "bounced", "other"};
static const char *const verdict_names[] = {"none", "Anonymous", "Untrusted", "Trusted",
                                            "Verified"};
static const char *const family_names[] = {"mta-sts", "dane", "table", "default"};
static const char *const result_names[] = {
    "success", "starttls-not-supported", "handshake-failure",
    "certificate-not-verified", "mx-not-listed", "tlsa-lookup-failure",
    "dnssec-failure",
    /* Indexed 7 + enum observe_sts_failure - 1: the domain's MTA-STS policy could not
     * be had (RFC 8460 §4.3.2.2). */
    "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid"};
#define N_FAILURE 7 /* enum observe_failure's values */

#define N_STATUS (sizeof status_names / sizeof *status_names)
#define N_VERDICT (sizeof verdict_names / sizeof *verdict_names)
#define N_FAMILY (sizeof family_names / sizeof *family_names)
#define N_RESULT (sizeof result_names / sizeof *result_names)
#define HIST_MAX_BUCKETS 16

struct histogram {
  const double *bounds; /* upper bounds, ascending; +Inf is implied */
  size_t nbounds;
  uint64_t counts[HIST_MAX_BUCKETS + 1]; /* per bucket, not cumulative */
  double sum;
  uint64_t count;
};

static const double handshake_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                          0.5,   1,    2.5,   5,    10};
static const double delivery_bounds[] = {0.05, 0.1, 0.25, 0.5, 1,   2.5,
                                         5,    10,  30,   60,  120, 300};

/* Every worker's loop updates these and the metrics listener's loop reads them, so
 * each update and each rendering holds M_lock (uncontended: a few per message). */
static pthread_mutex_t M_lock = PTHREAD_MUTEX_INITIALIZER;
#define LOCKED(stmt)                                                                   \
  do {                                                                                 \
    pthread_mutex_lock(&M_lock);                                                       \
    stmt;                                                                              \
    pthread_mutex_unlock(&M_lock);                                                     \
  } while (0)
static struct {
  uint64_t sessions_opened, sessions_closed;
  uint64_t deliveries[N_STATUS][N_VERDICT][N_FAMILY];
  uint64_t tls[N_FAMILY][N_RESULT];
  uint64_t mx[2]; /* [reused] */
  uint64_t dns_failures;
  uint64_t dns_queries;
  uint64_t dns_hits[2]; /* [inflight] */
  uint64_t sts[2];      /* [ok] */
  struct histogram handshake, delivery;
} M = {
    .handshake = {.bounds = handshake_bounds,
                  .nbounds = sizeof handshake_bounds / sizeof *handshake_bounds},
    .delivery = {.bounds = delivery_bounds,
                 .nbounds = sizeof delivery_bounds / sizeof *delivery_bounds},
};

static size_t name_index(const char *const *names, size_t n, const char *v,
                         size_t fallback) {
  for (size_t i = 0; v && i < n; i++)
    if (!strcmp(names[i], v))
      return i;
  return fallback;
}

/* "mta-sts/enforce" → mta-sts, "table/secure" → table, "dane" → dane; anything else
 * (default/may, may, none) → default. */
static size_t policy_family(const char *policy) {
  if (!policy)
    return 3;
  size_t n = strcspn(policy, "/");
  for (size_t i = 0; i < 3; i++)
    if (strlen(family_names[i]) == n && !strncmp(policy, family_names[i], n))
      return i;
  return 3;
}

static void hist_observe(struct histogram *h, double v) {
  size_t i = 0;
  while (i < h->nbounds && v > h->bounds[i])
    i++;
  h->counts[i]++;
  h->sum += v;
  h->count++;
}

void metrics_tls_result(const struct observe_tls *t) {
  size_t r = (size_t)t->failure < N_FAILURE ? (size_t)t->failure : N_FAILURE - 1;
  size_t f = policy_family(t->policy);
  /* As in the TLS reports: a session without any policy to a domain whose MTA-STS
   * policy could not be had counts as that failure, instead of its own result. */
  if (t->sts_failure > OBSERVE_STS_OK && t->sts_failure <= OBSERVE_STS_WEBPKI &&
      f == 3 && !t->ntlsa)
    r = N_FAILURE + (size_t)t->sts_failure - 1;
  LOCKED(M.tls[f][r]++);
}

void metrics_delivery(const char *status, const char *verdict, const char *policy,
                      double seconds) {
  size_t s = name_index(status_names, N_STATUS, status, N_STATUS - 1);
  size_t v = name_index(verdict_names, N_VERDICT, verdict, 0);
  size_t f = policy_family(policy);
  LOCKED(M.deliveries[s][v][f]++; hist_observe(&M.delivery, seconds));
}

void metrics_mx_connection(bool reused) {
  LOCKED(M.mx[reused]++);
}
void metrics_handshake(double seconds) {
  LOCKED(hist_observe(&M.handshake, seconds));
}
void metrics_dns_failure(void) {
  LOCKED(M.dns_failures++);
}
void metrics_dns_query(void) {
  LOCKED(M.dns_queries++);
}
void metrics_dns_cache_hit(bool inflight) {
  LOCKED(M.dns_hits[inflight]++);
}
void metrics_sts_fetch(bool ok) {
  LOCKED(M.sts[ok]++);
}
void metrics_session(bool opened) {
  LOCKED(if (opened) M.sessions_opened++; else M.sessions_closed++);
}

/* Cache clients belong to runtimes, which may live on other threads than the one
 * rendering: atomics, and kept apart from M. */
static _Atomic long cache_clients, cache_clients_up;
static _Atomic unsigned long long cache_errors;

void metrics_cache_clients(int dclients, int dup) {
  cache_clients += dclients;
  cache_clients_up += dup;
}
void metrics_cache_error(void) {
  cache_errors++;
}

/* ---- rendering -------------------------------------------------------------------- */

struct out {
  struct buf b;
  bool failed;
};

static void put(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof line || buf_append(&o->b, line, (size_t)n) < 0)
    o->failed = true;
}

/* A label value as the exposition format wants it: \\, \" and \n escaped. */
static void put_label(struct out *o, const char *name, const char *value, bool first) {
  char esc[128];
  size_t n = 0;
  for (const char *p = value; *p && n + 3 < sizeof esc; p++) {
    if (*p == '\\' || *p == '"' || *p == '\n')
      esc[n++] = '\\';
    esc[n++] = *p == '\n' ? 'n' : *p;
  }
  esc[n] = '\0';
  put(o, "%s%s=\"%s\"", first ? "{" : ",", name, esc);
}

static void put_head(struct out *o, const char *name, const char *type,
                     const char *help) {
  put(o, "# HELP starttls_proxy_%s %s\n# TYPE starttls_proxy_%s %s\n", name, help, name,
      type);
}

static void put_histogram(struct out *o, const char *name, const char *help,
                          const struct histogram *h) {
  put_head(o, name, "histogram", help);
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= h->nbounds; i++) {
    cumulative += h->counts[i];
    if (i < h->nbounds)
      put(o, "starttls_proxy_%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i],
          (unsigned long long)cumulative);
    else
      put(o, "starttls_proxy_%s_bucket{le=\"+Inf\"} %llu\n", name,
          (unsigned long long)cumulative);
  }
  put(o, "starttls_proxy_%s_sum %.6f\nstarttls_proxy_%s_count %llu\n", name, h->sum,
      name, (unsigned long long)h->count);
}

static void put_deliveries(struct out *o) {
  put_head(o, "deliveries_total", "counter",
           "Recipients by final outcome, TLS verdict and policy family.");
  for (size_t s = 0; s < N_STATUS; s++)
    for (size_t v = 0; v < N_VERDICT; v++)
      for (size_t f = 0; f < N_FAMILY; f++) {
        if (!M.deliveries[s][v][f])
          continue;
        put(o, "starttls_proxy_deliveries_total");
        put_label(o, "status", status_names[s], true);
        put_label(o, "verdict", verdict_names[v], false);
        put_label(o, "policy", family_names[f], false);
        put(o, "} %llu\n", (unsigned long long)M.deliveries[s][v][f]);
      }
}

static void put_tls_results(struct out *o) {
  put_head(o, "tls_results_total", "counter",
           "TLS session attempts to MX hosts by policy family and result.");
  for (size_t f = 0; f < N_FAMILY; f++)
    for (size_t r = 0; r < N_RESULT; r++) {
      if (!M.tls[f][r])
        continue;
      put(o, "starttls_proxy_tls_results_total");
      put_label(o, "policy_type", family_names[f], true);
      put_label(o, "result", result_names[r], false);
      put(o, "} %llu\n", (unsigned long long)M.tls[f][r]);
    }
}

static void put_pair(struct out *o, const char *name, const char *label, const char *no,
                     const char *yes, const uint64_t v[2]) {
  for (size_t i = 0; i < 2; i++) {
    put(o, "starttls_proxy_%s", name);
    put_label(o, label, i ? yes : no, true);
    put(o, "} %llu\n", (unsigned long long)v[i]);
  }
}

/* Up unless a shared cache client is configured and not connected (sqlite: 1). */
static void put_cache(struct out *o) {
  long n = cache_clients, up = cache_clients_up;
  put_head(
      o, "cache_backend_up", "gauge",
      "1 when the policy and TLS-RPT cache backend is reachable (Redis connected).");
  put(o, "starttls_proxy_cache_backend_up %d\n", n <= 0 || up >= n ? 1 : 0);
  put_head(o, "cache_errors_total", "counter",
           "Cache operations that failed (Redis down, timed out or refused).");
  put(o, "starttls_proxy_cache_errors_total %llu\n", (unsigned long long)cache_errors);
}

static char *metrics_render_locked(size_t *len);

char *metrics_render(size_t *len) {
  pthread_mutex_lock(&M_lock);
  char *text = metrics_render_locked(len);
  pthread_mutex_unlock(&M_lock);
  return text;
}

static char *metrics_render_locked(size_t *len) {
  struct out o = {.failed = false};
  buf_init(&o.b, METRICS_BODY_MAX);
  put_head(&o, "sessions_open", "gauge", "Inbound SMTP sessions open now.");
  put(&o, "starttls_proxy_sessions_open %llu\n",
      (unsigned long long)(M.sessions_opened - M.sessions_closed));
  put_head(&o, "sessions_total", "counter", "Inbound SMTP sessions accepted.");
  put(&o, "starttls_proxy_sessions_total %llu\n",
      (unsigned long long)M.sessions_opened);
  put_deliveries(&o);
  put_tls_results(&o);
  put_head(&o, "mx_connections_total", "counter",
           "MX connections opened (reused=false) or reused from the cache.");
  put_pair(&o, "mx_connections_total", "reused", "false", "true", M.mx);
  put_histogram(&o, "handshake_seconds", "Outbound TLS handshake duration.",
                &M.handshake);
  put_histogram(&o, "delivery_seconds",
                "Time from the start of a transaction to the final reply.",
                &M.delivery);
  put_head(&o, "dns_failures_total", "counter", "MX lookups that failed temporarily.");
  put(&o, "starttls_proxy_dns_failures_total %llu\n",
      (unsigned long long)M.dns_failures);
  put_head(&o, "dns_queries_total", "counter",
           "DNS queries sent to the resolver (MX, A, AAAA, TLSA, TXT).");
  put(&o, "starttls_proxy_dns_queries_total %llu\n", (unsigned long long)M.dns_queries);
  put_head(&o, "dns_cache_hits_total", "counter",
           "DNS lookups answered without a query: from the cache, or by an identical "
           "query already in flight.");
  put_pair(&o, "dns_cache_hits_total", "inflight", "false", "true", M.dns_hits);
  put_head(&o, "sts_fetches_total", "counter", "MTA-STS policy fetches by result.");
  put_pair(&o, "sts_fetches_total", "result", "failed", "ok", M.sts);
  put_cache(&o);
  if (o.failed || buf_append(&o.b, "", 1) < 0) {
    buf_free(&o.b);
    return NULL;
  }
  *len = o.b.len - 1;
  return o.b.data;
}

/* ---- request parsing (pure) ------------------------------------------------------- */

static bool is_tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Where the head ends (after CRLFCRLF or LFLF), 0 when not yet, -1 on a control
 * character (no request has one). */
static long head_end(const char *buf, size_t len) {
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)buf[i];
    if ((c < 0x20 && c != '\r' && c != '\n' && c != '\t') || c == 0x7f)
      return -1;
    if (c != '\n' || i == 0)
      continue;
    if (buf[i - 1] == '\n')
      return (long)i + 1;
    if (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n')
      return (long)i + 1;
  }
  return 0;
}

/* "METHOD SP /target SP HTTP/1.x" (line without its end). */
static int parse_request_line(const char *line, size_t len,
                              enum metrics_target *target) {
  size_t m = 0;
  while (m < len && m <= 16 && is_tchar((unsigned char)line[m]))
    m++;
  if (m == 0 || m > 16 || m >= len || line[m] != ' ')
    return -1;
  size_t t = m + 1, tend = t;
  while (tend < len && line[tend] > 0x20 && line[tend] < 0x7f)
    tend++;
  if (tend == t || line[t] != '/' || tend >= len || line[tend] != ' ')
    return -1;
  const char *version = line + tend + 1;
  size_t vlen = len - tend - 1;
  if (vlen != 8 || (memcmp(version, "HTTP/1.1", 8) && memcmp(version, "HTTP/1.0", 8)))
    return -1;
  size_t plen = strcspn(line + t, "? ");
  if (plen > tend - t)
    plen = tend - t;
  if (m != 3 || memcmp(line, "GET", 3))
    *target = METRICS_TARGET_BAD_METHOD;
  else if (plen == 8 && !memcmp(line + t, "/metrics", 8))
    *target = METRICS_TARGET_METRICS;
  else if (plen == 8 && !memcmp(line + t, "/healthz", 8))
    *target = METRICS_TARGET_HEALTHZ;
  else
    *target = METRICS_TARGET_NOT_FOUND;
  return 0;
}

/* "name: value": a token, a colon; no folded (leading-space) lines. */
static int parse_header_line(const char *line, size_t len) {
  size_t n = 0;
  while (n < len && is_tchar((unsigned char)line[n]))
    n++;
  return n > 0 && n < len && line[n] == ':' ? 0 : -1;
}

int metrics_parse_request(const char *buf, size_t len, enum metrics_target *target) {
  long end = head_end(buf, len < METRICS_REQUEST_MAX ? len : METRICS_REQUEST_MAX);
  if (end < 0 || (end == 0 && len >= METRICS_REQUEST_MAX))
    return -1;
  if (end == 0)
    return 0;
  enum metrics_target t = METRICS_TARGET_NOT_FOUND;
  size_t pos = 0, nline = 0;
  while (pos < (size_t)end) {
    const char *nl = memchr(buf + pos, '\n', (size_t)end - pos);
    size_t llen = (size_t)(nl - (buf + pos)); /* nl exists: the head ends with one */
    if (llen > 0 && buf[pos + llen - 1] == '\r')
      llen--;
    if (llen == 0)
      break; /* the blank line */
    int rc = nline++ == 0 ? parse_request_line(buf + pos, llen, &t)
                          : parse_header_line(buf + pos, llen);
    if (rc < 0)
      return -1;
    pos = (size_t)(nl - buf) + 1;
  }
  if (nline == 0)
    return -1;
  *target = t;
  return (int)end;
}

/* ---- the HTTP listener ------------------------------------------------------------ */

struct mconn {
  uint32_t magic;
  struct metrics *m;
  struct mconn *prev, *next;
  uv_tcp_t tcp;          /* owned */
  uv_timer_t timer;      /* owned: the request deadline */
  unsigned open_handles; /* freed when both are closed */
  bool closing;
  char in[METRICS_REQUEST_MAX];
  size_t len;
  uv_write_t wr;
  uv_shutdown_t sd;
  bool answered; /* the reply is written or being written: input is discarded */
  char *out;     /* the response, until the connection is freed */
};

struct metrics {
  uint32_t magic;
  uv_loop_t *loop;
  uv_tcp_t server; /* owned */
  bool server_open;
  bool closing;
  struct mconn *conns; /* open connections, owned */
  size_t nconns;
};

static void metrics_maybe_free(struct metrics *m) {
  if (m->closing && !m->server_open && m->nconns == 0) {
    m->magic = 0;
    free(m);
  }
}

static struct mconn *mconn_of(uv_handle_t *h) {
  struct mconn *c;
  CAST_OBJ_NOTNULL(c, h->data, MCONN_MAGIC);
  return c;
}

static void on_mconn_closed(uv_handle_t *h) {
  struct mconn *c = mconn_of(h);
  if (--c->open_handles > 0)
    return;
  struct metrics *m = c->m;
  if (c->prev)
    c->prev->next = c->next;
  else
    m->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  m->nconns--;
  free(c->out);
  c->magic = 0;
  free(c);
  metrics_maybe_free(m);
}

static void mconn_close(struct mconn *c) {
  if (c->closing)
    return;
  c->closing = true;
  uv_close((uv_handle_t *)&c->tcp, on_mconn_closed);
  uv_close((uv_handle_t *)&c->timer, on_mconn_closed);
}

static void on_deadline(uv_timer_t *t) {
  mconn_close(mconn_of((uv_handle_t *)t));
}

static void on_shutdown(uv_shutdown_t *sd, int status) {
  struct mconn *c = mconn_of((uv_handle_t *)sd->handle);
  if (status < 0)
    mconn_close(c);
}

/* Closing with unread input would reset the connection and could destroy the reply
 * before the client read it (a 400 to an oversized request): send FIN, then discard
 * input until the client closes or the linger time is over. */
static void on_written(uv_write_t *wr, int status) {
  struct mconn *c = mconn_of((uv_handle_t *)wr->handle);
  if (status < 0 || c->closing ||
      uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
    mconn_close(c);
    return;
  }
  uv_timer_start(&c->timer, on_deadline, METRICS_LINGER, 0);
}

/* One response, then the connection is closed (Connection: close). */
static void mconn_respond(struct mconn *c, int code, const char *reason,
                          const char *type, const char *body, size_t blen) {
  char head[256];
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                   "%sConnection: close\r\n\r\n",
                   code, reason, type, blen, code == 405 ? "Allow: GET\r\n" : "");
  c->answered = true;
  c->len = 0;
  uv_timer_stop(&c->timer);
  c->out = malloc((size_t)n + blen);
  if (!c->out) {
    mconn_close(c);
    return;
  }
  memcpy(c->out, head, (size_t)n);
  memcpy(c->out + n, body, blen);
  uv_buf_t b = uv_buf_init(c->out, (unsigned)((size_t)n + blen));
  if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0)
    mconn_close(c);
}

static void mconn_answer(struct mconn *c, int rc, enum metrics_target t) {
  static const char text[] = "text/plain; charset=utf-8";
  if (rc < 0) {
    mconn_respond(c, 400, "Bad Request", text, "bad request\n", 12);
  } else if (t == METRICS_TARGET_BAD_METHOD) {
    mconn_respond(c, 405, "Method Not Allowed", text, "method not allowed\n", 19);
  } else if (t == METRICS_TARGET_HEALTHZ) {
    mconn_respond(c, 200, "OK", text, "ok\n", 3);
  } else if (t == METRICS_TARGET_NOT_FOUND) {
    mconn_respond(c, 404, "Not Found", text, "not found\n", 10);
  } else {
    size_t len;
    char *body = metrics_render(&len);
    if (body)
      mconn_respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body,
                    len);
    else
      mconn_respond(c, 500, "Internal Server Error", text, "out of memory\n", 14);
    free(body);
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)suggested;
  struct mconn *c = mconn_of(h);
  *b = uv_buf_init(c->in + c->len, (unsigned)(sizeof c->in - c->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  (void)b;
  struct mconn *c = mconn_of((uv_handle_t *)s);
  if (nread < 0) {
    mconn_close(c);
    return;
  }
  if (c->answered) {
    c->len = 0; /* lingering: discarded */
    return;
  }
  c->len += (size_t)nread;
  enum metrics_target t = METRICS_TARGET_NOT_FOUND;
  int rc = metrics_parse_request(c->in, c->len, &t);
  if (rc != 0)
    mconn_answer(c, rc, t);
}

static void on_metrics_connection(uv_stream_t *server, int status) {
  struct metrics *m;
  CAST_OBJ_NOTNULL(m, server->data, METRICS_MAGIC);
  if (status < 0)
    return;
  struct mconn *c = calloc(1, sizeof *c);
  if (!c)
    return; /* the pending connection waits in the backlog */
  c->magic = MCONN_MAGIC;
  c->m = m;
  uv_tcp_init(m->loop, &c->tcp);
  uv_timer_init(m->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->open_handles = 2;
  c->next = m->conns;
  if (m->conns)
    m->conns->prev = c;
  m->conns = c;
  m->nconns++;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 || m->nconns > METRICS_MAX_CONNS) {
    mconn_close(c);
    return;
  }
  uv_timer_start(&c->timer, on_deadline, METRICS_REQUEST_TIMEOUT, 0);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_server_closed(uv_handle_t *h) {
  struct metrics *m;
  CAST_OBJ_NOTNULL(m, h->data, METRICS_MAGIC);
  m->server_open = false;
  metrics_maybe_free(m);
}

int metrics_start(uv_loop_t *loop, const struct config_addr *listen,
                  struct metrics **out, char *err, size_t errlen) {
  *out = NULL;
  if (!listen)
    return 0;
  struct metrics *m = calloc(1, sizeof *m);
  if (!m) {
    snprintf(err, errlen, "metrics: out of memory");
    return SP_E_NOMEM;
  }
  m->magic = METRICS_MAGIC;
  m->loop = loop;
  uv_tcp_init(loop, &m->server);
  m->server.data = m;
  m->server_open = true;
  int rc = uv_tcp_bind(&m->server, (const struct sockaddr *)&listen->sa, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&m->server, 64, on_metrics_connection);
  if (rc < 0) {
    snprintf(err, errlen, "metrics.listen %s: %s", listen->text, uv_strerror(rc));
    metrics_close(m);
    return SP_E_IO;
  }
  log_msg(LOG_INFO, NULL, "metrics on http://%s/metrics", listen->text);
  *out = m;
  return 0;
}

void metrics_close(struct metrics *m) {
  if (!m || m->closing)
    return;
  m->closing = true;
  for (struct mconn *c = m->conns; c; c = c->next)
    mconn_close(c);
  uv_close((uv_handle_t *)&m->server, on_server_closed);
}

const struct observe_counters metrics_counters = {
    .tls_result = metrics_tls_result,
    .delivery = metrics_delivery,
    .mx_connection = metrics_mx_connection,
    .handshake = metrics_handshake,
    .dns_failure = metrics_dns_failure,
    .dns_query = metrics_dns_query,
    .dns_cache_hit = metrics_dns_cache_hit,
    .sts_fetch = metrics_sts_fetch,
    .session = metrics_session,
    .cache_clients = metrics_cache_clients,
    .cache_error = metrics_cache_error,
};
