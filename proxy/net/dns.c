/* c-ares on the libuv loop, with raw queries built and parsed by dns_msg.
 *
 * Ownership: struct dns owns the channel, the timer, the idle handle and one
 * struct dns_poll per c-ares socket; it is freed in the last close callback
 * (pending_closes). A struct dns_query is owned by the dns and freed by
 * query_maybe_free() once every lookup it made was answered (pending == 0) and the
 * user no longer needs it (delivered or cancelled). Each lookup is a struct dns_sub
 * (embedded in its query): answered from the cache, or waiting on a flight of the
 * cache (dns_cache.h), whose one query on the wire c-ares holds as a struct
 * dns_wire (owned by c-ares until its callback, which frees it). A cancelled
 * query stays until its flights land, so the other waiters are never disturbed.
 *
 * User callbacks only ever run from the idle handle, never inside a c-ares frame:
 * ares_send may call back synchronously, and a user callback may call dns_close(),
 * which must not ares_destroy() the channel under a running ares_process_fd(). */
#include "proxy/net/dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "proxy/core/error.h"
#include "proxy/core/obj.h"
#include "proxy/core/observe.h"
#include "proxy/net/dns_cache.h"

#define container_of(p, type, field)                                                   \
  ((type *)(void *)((char *)(p)-offsetof(type, field)))

#define DNS_MAGIC 0x646e7330u
#define QUERY_MAGIC 0x646e7331u
#define SUB_MAGIC 0x646e7332u
#define POLL_MAGIC 0x646e7333u
#define WIRE_MAGIC 0x646e7334u
/* Message bytes the cache may hold per entry of dns.cache_size, on average: answers
 * are small (an MX or A RRset, ~100-300 bytes), a full-certificate TLSA is a few KB,
 * and a name an attacker mails to must not make an entry cost 64 KB. */
#define CACHE_BYTES_PER_ENTRY 1024
#define EDNS_PAYLOAD 1232

struct dns_poll {
  uint32_t magic;
  uv_poll_t handle; /* owned by the dns_poll; the dns_poll is freed in on_poll_closed */
  struct dns *dns;
  ares_socket_t fd;
  struct dns_poll *next;
};

struct dns {
  uint32_t magic;
  uv_loop_t *loop;
  ares_channel channel;      /* owned; destroyed by dns_close */
  uv_timer_t timer;          /* owned; fires at ares_timeout() */
  uv_idle_t idle;            /* owned; runs while the done list is not empty */
  struct dns_poll *polls;    /* owned; active sockets only */
  struct dns_query *queries; /* every query not yet freed */
  struct dns_query *done_head, *done_tail; /* finished, callback not yet run */
  struct dns_cache *cache;                 /* owned */
  uint64_t rng; /* splitmix64 state, seeded once from getrandom() */
  bool closing;
  unsigned pending_closes;
  void (*on_closed)(void *arg);
  void *on_closed_arg;
};

struct dns_sub { /* one lookup of a query */
  uint32_t magic;
  struct dns_query *q;
  uint16_t type;
  unsigned host;
  struct dns_cache_waiter wait; /* linked in a flight while it waits */
};

struct dns_wire { /* the arg c-ares holds for one ares_send */
  uint32_t magic;
  struct dns *dns;
  struct dns_cache_flight *flight;
};

struct host_work { /* A and AAAA results of one MX host, merged at the end */
  int st[2];       /* per family: 0, SP_E_DNS_NODATA, _NXDOMAIN or _TEMP */
  bool ad[2], got[2];
  char target[2][DNS_NAME_MAX + 1]; /* per family: the owner after CNAMEs */
  size_t n4, n6;
  struct in_addr a4[DNS_MAX_ADDRS];
  struct in6_addr a6[DNS_MAX_ADDRS];
};

enum query_kind { Q_RAW, Q_MX };

struct dns_query {
  uint32_t magic;
  struct dns *dns;
  struct dns_query *prev, *next, *done_next;
  enum query_kind kind;
  unsigned pending; /* ares_send calls not yet called back */
  bool sending;     /* inside the address fan-out loop */
  bool finished, in_done, delivered, in_cb, cancelled;
  dns_mx_cb mx_cb;
  dns_raw_cb raw_cb;
  void *arg;
  char name[DNS_NAME_MAX + 1]; /* lower-case, no trailing dot */
  int raw_status;
  struct dns_answer *raw_ans; /* owned; Q_RAW */
  struct dns_mx_result *res;  /* owned; Q_MX */
  struct host_work *work;     /* owned; Q_MX, DNS_MAX_MX entries */
  struct dns_sub mx_sub;
  struct dns_sub addr_sub[DNS_MAX_MX][2];
};

static void on_ares_reply(void *arg, int status, int timeouts, unsigned char *abuf,
                          int alen);
static void sub_reply(struct dns_sub *sub, int status, const unsigned char *abuf,
                      int alen, uint32_t age);
static void waiters_reply(struct dns_cache_waiter *w, int status,
                          const unsigned char *abuf, int alen);

/* ---- random ------------------------------------------------------------------- */

static uint64_t rng_next(struct dns *dns) {
  uint64_t z = (dns->rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Names come from mail: the hash of the cache is keyed so that no sender can pick
 * names that share a bucket. */
static int cache_create(struct dns *dns, const struct dns_settings *ds) {
  uint8_t secret[LRU_KEY_BYTES];
  for (size_t i = 0; i < sizeof secret; i += 8) {
    uint64_t r = rng_next(dns);
    memcpy(secret + i, &r, 8);
  }
  struct dns_cache_limits lim = {
      .entries = ds->cache_size,
      .bytes = ds->cache_size * CACHE_BYTES_PER_ENTRY,
      .max_ttl = ds->cache_max_ttl,
      .negative_ttl = ds->cache_negative_ttl,
  };
  return dns_cache_new(&lim, secret, &dns->cache);
}

static void rng_seed(struct dns *dns) {
  uint64_t seed;
  if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
    seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)dns;
  dns->rng = seed;
}

/* ---- lifetime ----------------------------------------------------------------- */

static void dns_maybe_free(struct dns *dns) {
  if (!dns->closing || dns->pending_closes > 0)
    return;
  void (*cb)(void *) = dns->on_closed;
  void *arg = dns->on_closed_arg;
  dns->magic = 0;
  free(dns);
  ares_library_cleanup();
  if (cb)
    cb(arg);
}

static void on_handle_closed(uv_handle_t *h) {
  struct dns *dns = h->data;
  CHECK_OBJ_NOTNULL(dns, DNS_MAGIC);
  dns->pending_closes--;
  dns_maybe_free(dns);
}

static void on_poll_closed(uv_handle_t *h) {
  struct dns_poll *p = container_of(h, struct dns_poll, handle);
  CHECK_OBJ_NOTNULL(p, POLL_MAGIC);
  struct dns *dns = p->dns;
  p->magic = 0;
  free(p);
  dns->pending_closes--;
  dns_maybe_free(dns);
}

static void poll_close(struct dns_poll *p) {
  p->dns->pending_closes++;
  uv_close((uv_handle_t *)&p->handle, on_poll_closed);
}

static void query_maybe_free(struct dns_query *q) {
  if (q->pending > 0 || q->in_done || q->in_cb || !(q->delivered || q->cancelled))
    return;
  struct dns *dns = q->dns;
  if (q->prev)
    q->prev->next = q->next;
  else
    dns->queries = q->next;
  if (q->next)
    q->next->prev = q->prev;
  free(q->raw_ans);
  free(q->res);
  free(q->work);
  q->magic = 0;
  free(q);
}

/* ---- c-ares on libuv ---------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

static void timer_update(struct dns *dns) {
  if (dns->closing)
    return;
  struct timeval tv, *tvp = ares_timeout(dns->channel, NULL, &tv);
  if (!tvp) {
    uv_timer_stop(&dns->timer);
    return;
  }
  uint64_t ms = (uint64_t)tvp->tv_sec * 1000 + ((uint64_t)tvp->tv_usec + 999) / 1000;
  uv_timer_start(&dns->timer, on_timer, ms, 0);
}

static void on_timer(uv_timer_t *t) {
  struct dns *dns = t->data;
  CHECK_OBJ_NOTNULL(dns, DNS_MAGIC);
  ares_process_fd(dns->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  timer_update(dns);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  struct dns_poll *p = container_of(h, struct dns_poll, handle);
  CHECK_OBJ_NOTNULL(p, POLL_MAGIC);
  struct dns *dns = p->dns; /* p may be closed by c-ares below */
  ares_socket_t fd = p->fd;
  ares_socket_t r = ARES_SOCKET_BAD, w = ARES_SOCKET_BAD;
  if (status < 0 || (events & UV_READABLE)) /* on error let c-ares find it */
    r = fd;
  if (status < 0 || (events & UV_WRITABLE))
    w = fd;
  ares_process_fd(dns->channel, r, w);
  timer_update(dns);
}

/* c-ares opens, re-arms and closes its sockets through this callback. */
static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable) {
  struct dns *dns = data;
  CHECK_OBJ_NOTNULL(dns, DNS_MAGIC);
  struct dns_poll **pp = &dns->polls, *p;
  while ((p = *pp) != NULL && p->fd != fd)
    pp = &p->next;
  if (!readable && !writable) {
    if (p) {
      *pp = p->next;
      poll_close(p);
    }
    return;
  }
  if (dns->closing)
    return;
  if (!p) {
    p = calloc(1, sizeof *p);
    if (!p)
      return; /* unwatched: the query times out through the timer */
    if (uv_poll_init_socket(dns->loop, &p->handle, fd) != 0) {
      free(p);
      return;
    }
    p->magic = POLL_MAGIC;
    p->dns = dns;
    p->fd = fd;
    p->next = dns->polls;
    dns->polls = p;
  }
  uv_poll_start(&p->handle, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0),
                on_poll);
}

/* ---- query plumbing ----------------------------------------------------------- */

static void on_idle(uv_idle_t *h);

static void query_finish(struct dns_query *q) {
  struct dns *dns = q->dns;
  q->finished = true;
  q->in_done = true;
  q->done_next = NULL;
  if (dns->done_tail)
    dns->done_tail->done_next = q;
  else
    dns->done_head = q;
  dns->done_tail = q;
  uv_idle_start(&dns->idle, on_idle);
}

static struct dns_query *done_pop(struct dns *dns) {
  struct dns_query *q = dns->done_head;
  if (q) {
    dns->done_head = q->done_next;
    if (!dns->done_head)
      dns->done_tail = NULL;
    q->in_done = false;
  }
  return q;
}

static void on_idle(uv_idle_t *h) {
  struct dns *dns = h->data;
  CHECK_OBJ_NOTNULL(dns, DNS_MAGIC);
  struct dns_query *q;
  while (!dns->closing && (q = done_pop(dns)) != NULL) {
    if (!q->cancelled) {
      q->delivered = true;
      q->in_cb = true;
      if (q->kind == Q_MX)
        q->mx_cb(q->arg, q->res);
      else
        q->raw_cb(q->arg, q->raw_status, q->raw_status == 0 ? q->raw_ans : NULL);
      q->in_cb = false;
    }
    query_maybe_free(q); /* dns is still alive: it is freed in a close callback */
  }
  if (!dns->closing && !dns->done_head)
    uv_idle_stop(h);
}

static struct dns_query *query_new(struct dns *dns, enum query_kind kind, void *arg) {
  if (!dns || dns->closing)
    return NULL;
  struct dns_query *q = calloc(1, sizeof *q);
  if (!q)
    return NULL;
  q->magic = QUERY_MAGIC;
  q->dns = dns;
  q->kind = kind;
  q->arg = arg;
  q->next = dns->queries;
  if (q->next)
    q->next->prev = q;
  dns->queries = q;
  return q;
}

/* Lower-cases name and drops one trailing dot; false when it does not fit. */
static bool name_normalize(const char *name, char out[DNS_NAME_MAX + 1]) {
  size_t n = name ? strlen(name) : 0;
  if (n > 0 && name[n - 1] == '.')
    n--;
  if (n > DNS_NAME_MAX)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    out[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
  }
  out[n] = '\0';
  return true;
}

/* Puts the flight's query on the wire; its reply lands the flight in on_ares_reply
 * (which may happen before ares_send returns). */
static void wire_send(struct dns *dns, struct dns_cache_flight *f, const uint8_t *buf,
                      int n) {
  struct dns_wire *wr = malloc(sizeof *wr);
  if (!wr) {
    waiters_reply(dns_cache_land(dns->cache, f, NULL, 0, 0, 0), ARES_ENOMEM, NULL, 0);
    return;
  }
  wr->magic = WIRE_MAGIC;
  wr->dns = dns;
  wr->flight = f;
  observe_dns_query();
  ares_send(dns->channel, buf, n, on_ares_reply, wr);
  timer_update(dns);
}

/* Looks name/type up for sub: answered from the cache at once, by a query already in
 * flight, or by a new one. The answer reaches sub_reply (maybe before this returns).
 * Returns 0, or the build error for a name that cannot be queried. */
static int query_send(struct dns_query *q, struct dns_sub *sub, const char *name,
                      uint16_t type) {
  struct dns *dns = q->dns;
  uint8_t buf[DNS_NAME_MAX + 64];
  int n = dns_msg_build_query((uint16_t)rng_next(dns), name, type, buf, sizeof buf);
  if (n < 0)
    return n;
  sub->magic = SUB_MAGIC;
  sub->q = q;
  sub->type = type;
  q->pending++;
  struct dns_cache_hit hit;
  struct dns_cache_flight *f = NULL;
  int r =
      dns_cache_lookup(dns->cache, name, type, uv_now(dns->loop), &sub->wait, &hit, &f);
  if (r == DNS_CACHE_HIT) {
    observe_dns_cache_hit(false);
    sub_reply(sub, ARES_SUCCESS, hit.msg, (int)hit.len, hit.age);
  } else if (r == DNS_CACHE_JOINED) {
    observe_dns_cache_hit(true);
  } else if (r == DNS_CACHE_SEND) {
    wire_send(dns, f, buf, n);
  } else {
    sub_reply(sub, ARES_ENOMEM, NULL, 0, 0);
  }
  return 0;
}

static const char *ares_reason(int status) {
  switch (status) {
  case ARES_ETIMEOUT:
    return "timeout";
  case ARES_ESERVFAIL:
    return "SERVFAIL";
  case ARES_EREFUSED:
    return "REFUSED";
  case ARES_ENOTIMP:
    return "NOTIMP";
  case ARES_EFORMERR:
    return "FORMERR";
  case ARES_ECONNREFUSED:
    return "connection refused";
  case ARES_EBADRESP:
    return "malformed answer";
  case ARES_ENOMEM:
    return "out of memory";
  }
  return ares_strerror(status);
}

static const char *rcode_reason(unsigned rcode) {
  static const char *const names[] = {"NOERROR",  "FORMERR", "SERVFAIL",
                                      "NXDOMAIN", "NOTIMP",  "REFUSED"};
  return rcode < sizeof names / sizeof names[0] ? names[rcode] : "bad rcode";
}

/* The reply as a parsed answer (malloc'd, the caller frees it), or a negative error
 * and *reason. */
static int reply_parse(int status, const unsigned char *abuf, int alen,
                       struct dns_answer **out, const char **reason) {
  *out = NULL;
  if (status != ARES_SUCCESS || !abuf || alen < 0) {
    *reason = ares_reason(status);
    return SP_E_DNS_TEMP;
  }
  int rc = dns_msg_parse(abuf, (size_t)alen, out);
  if (rc != 0)
    *reason = rc == SP_E_NOMEM      ? "out of memory"
              : rc == SP_E_OVERFLOW ? "answer too large"
                                    : "malformed answer";
  return rc;
}

/* ---- MX ----------------------------------------------------------------------- */

struct mx_cand {
  uint16_t pref;
  const char *host;
};

static void mx_fail(struct dns_query *q, int status, const char *reason) {
  q->res->status = status;
  snprintf(q->res->reason, sizeof q->res->reason, "%s", reason);
  query_finish(q);
}

/* Shuffles, then stable-sorts by preference: equal preferences end up in random
 * order (RFC 5321 §5.1). */
static void mx_order(struct dns *dns, struct mx_cand *c, size_t n) {
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)(rng_next(dns) % i);
    struct mx_cand t = c[i - 1];
    c[i - 1] = c[j];
    c[j] = t;
  }
  for (size_t i = 1; i < n; i++) {
    struct mx_cand t = c[i];
    size_t j = i;
    for (; j > 0 && c[j - 1].pref > t.pref; j--)
      c[j] = c[j - 1];
    c[j] = t;
  }
}

static int mx_hosts(struct dns_query *q, const struct dns_answer *ans,
                    struct mx_cand *cand, const char **reason);

/* Fills res->hosts from the MX answer; returns 0 or a status with *reason. */
static int mx_collect(struct dns_query *q, const struct dns_answer *ans,
                      const char **reason) {
  struct dns_mx_result *res = q->res;
  if (ans->rcode == DNS_R_NXDOMAIN) {
    *reason = "NXDOMAIN";
    return SP_E_DNS_NXDOMAIN;
  }
  if (ans->rcode != DNS_R_NOERROR || ans->tc) {
    *reason = ans->tc ? "truncated answer" : rcode_reason(ans->rcode);
    return SP_E_DNS_TEMP;
  }
  res->mx_secure = ans->ad;
  /* One slot per record, and one for the implicit MX. */
  struct mx_cand *cand = malloc((ans->nrrs + 1) * sizeof *cand);
  if (!cand) {
    *reason = "out of memory";
    return SP_E_DNS_TEMP;
  }
  int rc = mx_hosts(q, ans, cand, reason);
  free(cand);
  return rc;
}

/* The MX hosts of the answer, ordered, into q->res (cand: scratch of nrrs + 1). */
static int mx_hosts(struct dns_query *q, const struct dns_answer *ans,
                    struct mx_cand *cand, const char **reason) {
  struct dns_mx_result *res = q->res;
  const char *target = dns_answer_target(ans, q->name);
  size_t n = 0, nnull = 0;
  for (size_t i = 0; i < ans->nrrs; i++) {
    const struct dns_rr *rr = &ans->rrs[i];
    if (rr->type != DNS_T_MX || strcmp(rr->owner, target) != 0)
      continue;
    if (rr->u.mx.host[0] == '\0') { /* RFC 7505 null MX; ignored next to real ones */
      nnull++;
      continue;
    }
    size_t k = 0;
    while (k < n && strcmp(cand[k].host, rr->u.mx.host) != 0)
      k++;
    if (k < n) {
      if (rr->u.mx.pref < cand[k].pref)
        cand[k].pref = rr->u.mx.pref;
      continue;
    }
    cand[n].pref = rr->u.mx.pref;
    cand[n++].host = rr->u.mx.host;
  }
  if (n == 0 && nnull > 0) {
    *reason = "null MX";
    return SP_E_DNS_NULLMX;
  }
  if (n == 0) { /* NODATA: the domain is its own mail host, RFC 5321 §5.1 */
    res->implicit = true;
    cand[n].pref = 0;
    cand[n++].host = q->name;
  }
  mx_order(q->dns, cand, n);
  res->nhosts = n < DNS_MAX_MX ? n : DNS_MAX_MX;
  for (size_t i = 0; i < res->nhosts; i++) {
    res->hosts[i].pref = cand[i].pref;
    snprintf(res->hosts[i].name, sizeof res->hosts[i].name, "%s", cand[i].host);
  }
  return 0;
}

static void host_add_v4(struct dns_mx_host *h, const struct host_work *w) {
  for (size_t i = 0; i < w->n4 && h->naddrs < DNS_MAX_ADDRS; i++) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&h->addrs[h->naddrs++];
    memset(sin, 0, sizeof *sin);
    sin->sin_family = AF_INET;
    sin->sin_addr = w->a4[i];
  }
}

static void host_add_v6(struct dns_mx_host *h, const struct host_work *w) {
  for (size_t i = 0; i < w->n6 && h->naddrs < DNS_MAX_ADDRS; i++) {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&h->addrs[h->naddrs++];
    memset(sin6, 0, sizeof *sin6);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_addr = w->a6[i];
  }
}

/* See dns_mx_host.addr_secure: each family's RRset is judged on its own. */
static void host_merge(struct dns_mx_host *h, const struct host_work *w) {
  bool secure[2] = {w->got[0] && w->ad[0] && w->n4 > 0,
                    w->got[1] && w->ad[1] && w->n6 > 0};
  h->addr_secure = secure[0] || secure[1];
  h->naddrs = 0;
  if (!h->addr_secure || secure[0])
    host_add_v4(h, w);
  if (!h->addr_secure || secure[1])
    host_add_v6(h, w);
  int fam = h->addr_secure ? (secure[0] ? 0 : 1) : (w->n4 > 0 ? 0 : 1);
  h->cname[0] = '\0';
  if (h->naddrs > 0 && w->target[fam][0] && strcmp(w->target[fam], h->name) != 0)
    snprintf(h->cname, sizeof h->cname, "%s", w->target[fam]);
  if (h->naddrs > 0)
    h->status = 0;
  else if (w->st[0] == SP_E_DNS_TEMP || w->st[1] == SP_E_DNS_TEMP)
    h->status = SP_E_DNS_TEMP;
  else if (w->st[0] == SP_E_DNS_NXDOMAIN || w->st[1] == SP_E_DNS_NXDOMAIN)
    h->status = SP_E_DNS_NXDOMAIN;
  else
    h->status = SP_E_DNS_NODATA;
}

static void addr_done(struct dns_query *q) {
  for (size_t i = 0; i < q->res->nhosts; i++)
    host_merge(&q->res->hosts[i], &q->work[i]);
  q->res->status = 0;
  query_finish(q);
}

static void addr_start(struct dns_query *q) {
  q->sending = true;
  for (unsigned i = 0; i < q->res->nhosts; i++) {
    struct host_work *w = &q->work[i];
    for (int fam = 0; fam < 2; fam++) {
      w->st[fam] = SP_E_DNS_TEMP;
      struct dns_sub *sub = &q->addr_sub[i][fam];
      sub->host = i;
      /* A name that cannot be queried (escaped bytes) has no usable address. */
      if (query_send(q, sub, q->res->hosts[i].name, fam ? DNS_T_AAAA : DNS_T_A) < 0)
        w->st[fam] = SP_E_DNS_NODATA;
    }
  }
  q->sending = false;
  if (q->pending == 0)
    addr_done(q);
}

static void addr_on_reply(struct dns_query *q, const struct dns_sub *sub, int rc,
                          const struct dns_answer *ans) {
  struct host_work *w = &q->work[sub->host];
  int fam = sub->type == DNS_T_AAAA;
  if (rc != 0)
    w->st[fam] = SP_E_DNS_TEMP;
  else if (ans->rcode == DNS_R_NXDOMAIN)
    w->st[fam] = SP_E_DNS_NXDOMAIN;
  else if (ans->rcode != DNS_R_NOERROR || ans->tc)
    w->st[fam] = SP_E_DNS_TEMP;
  else {
    const char *target = dns_answer_target(ans, q->res->hosts[sub->host].name);
    w->got[fam] = true;
    w->ad[fam] = ans->ad;
    snprintf(w->target[fam], sizeof w->target[fam], "%s", target);
    for (size_t i = 0; i < ans->nrrs; i++) {
      const struct dns_rr *rr = &ans->rrs[i];
      if (rr->type != sub->type || strcmp(rr->owner, target) != 0)
        continue;
      if (fam == 0 && w->n4 < DNS_MAX_ADDRS)
        memcpy(&w->a4[w->n4++], rr->u.a, 4);
      else if (fam == 1 && w->n6 < DNS_MAX_ADDRS)
        memcpy(&w->a6[w->n6++], rr->u.aaaa, 16);
    }
    w->st[fam] = (fam ? w->n6 : w->n4) > 0 ? 0 : SP_E_DNS_NODATA;
  }
  if (q->pending == 0 && !q->sending)
    addr_done(q);
}

/* One lookup's answer: abuf as received, or a c-ares failure status. age: seconds
 * the answer spent in the cache. */
static void sub_reply(struct dns_sub *sub, int status, const unsigned char *abuf,
                      int alen, uint32_t age) {
  CHECK_OBJ_NOTNULL(sub, SUB_MAGIC);
  struct dns_query *q = sub->q;
  CHECK_OBJ_NOTNULL(q, QUERY_MAGIC);
  assert(q->pending > 0);
  q->pending--;
  /* ARES_EDESTRUCTION / ARES_ECANCELLED only come from dns_close, which cancelled
   * every query first: nothing but the query itself may be touched then. */
  if (q->cancelled || q->dns->closing || q->finished) {
    query_maybe_free(q);
    return;
  }
  struct dns_answer *ans;
  const char *reason = "";
  int rc = reply_parse(status, abuf, alen, &ans, &reason);
  if (rc == 0 && age > 0)
    dns_cache_age(ans, age);
  if (q->kind == Q_RAW) {
    /* NOERROR and NXDOMAIN are answers; other rcodes are failures of the lookup. A
     * truncated answer (c-ares retries TC over TCP, so only a broken server gets here)
     * is a failure too: read as an empty TLSA RRset it would switch DANE off. */
    if (rc == 0 &&
        ((ans->rcode != DNS_R_NOERROR && ans->rcode != DNS_R_NXDOMAIN) || ans->tc)) {
      free(ans);
      ans = NULL;
      rc = SP_E_DNS_TEMP;
    }
    q->raw_status = rc;
    q->raw_ans = ans; /* owned by q now */
    query_finish(q);
    return;
  }
  if (sub == &q->mx_sub) {
    if (rc == 0)
      rc = mx_collect(q, ans, &reason);
    else
      rc = SP_E_DNS_TEMP;
    if (rc != 0)
      mx_fail(q, rc, reason);
    else
      addr_start(q);
  } else {
    addr_on_reply(q, sub, rc, ans);
  }
  free(ans);
}

static void waiters_reply(struct dns_cache_waiter *w, int status,
                          const unsigned char *abuf, int alen) {
  while (w) {
    struct dns_cache_waiter *next = w->next; /* w may be freed below */
    sub_reply(container_of(w, struct dns_sub, wait), status, abuf, alen, 0);
    w = next;
  }
}

/* How long the cache may keep the reply (0: not at all). */
static uint32_t reply_ttl(const struct dns *dns, int status, const unsigned char *abuf,
                          int alen) {
  struct dns_answer *ans;
  const char *reason;
  if (dns->closing || reply_parse(status, abuf, alen, &ans, &reason) != 0)
    return 0;
  uint32_t ttl = dns_cache_ttl(ans, dns_cache_limits(dns->cache));
  free(ans);
  return ttl;
}

/* The flight's query ended: the answer is kept when it may be, then every waiter
 * gets it (all of them: one waiter cancelled leaves the others theirs). During
 * dns_close (ARES_EDESTRUCTION) the waiters only free their cancelled queries. */
static void on_ares_reply(void *arg, int status, int timeouts, unsigned char *abuf,
                          int alen) {
  struct dns_wire *wr = arg;
  (void)timeouts;
  CHECK_OBJ_NOTNULL(wr, WIRE_MAGIC);
  struct dns *dns = wr->dns;
  struct dns_cache_flight *f = wr->flight;
  wr->magic = 0;
  free(wr);
  uint32_t ttl = reply_ttl(dns, status, abuf, alen);
  struct dns_cache_waiter *w = dns_cache_land(
      dns->cache, f, abuf, alen > 0 ? (size_t)alen : 0, ttl, uv_now(dns->loop));
  waiters_reply(w, status, abuf, alen);
}

/* ---- public ------------------------------------------------------------------- */

struct dns_query *dns_resolve_mx(struct dns *dns, const char *domain, dns_mx_cb cb,
                                 void *arg) {
  if (!cb)
    return NULL;
  struct dns_query *q = query_new(dns, Q_MX, arg);
  if (!q)
    return NULL;
  q->mx_cb = cb;
  q->res = calloc(1, sizeof *q->res);
  q->work = calloc(DNS_MAX_MX, sizeof *q->work);
  if (!q->res || !q->work) {
    q->cancelled = true;
    query_maybe_free(q);
    return NULL;
  }
  if (!name_normalize(domain, q->name) ||
      query_send(q, &q->mx_sub, q->name, DNS_T_MX) < 0)
    mx_fail(q, SP_E_DNS_NXDOMAIN, "invalid domain name"); /* delivered from idle */
  return q;
}

struct dns_query *dns_query_raw(struct dns *dns, const char *name, uint16_t type,
                                dns_raw_cb cb, void *arg) {
  if (!cb)
    return NULL;
  struct dns_query *q = query_new(dns, Q_RAW, arg);
  if (!q)
    return NULL;
  q->raw_cb = cb;
  q->raw_status = SP_E_INVAL;
  if (!name_normalize(name, q->name) || query_send(q, &q->mx_sub, q->name, type) < 0)
    query_finish(q);
  return q;
}

void dns_cancel(struct dns_query *q) {
  if (!q)
    return;
  CHECK_OBJ_NOTNULL(q, QUERY_MAGIC);
  q->cancelled = true;
  query_maybe_free(q);
}

static int servers_set(struct dns *dns, const struct dns_settings *ds) {
  struct ares_addr_port_node *nodes = calloc(ds->nservers, sizeof *nodes);
  if (!nodes)
    return SP_E_NOMEM;
  int rc = 0;
  for (size_t i = 0; i < ds->nservers; i++) {
    const struct sockaddr_storage *ss = &ds->servers[i];
    struct ares_addr_port_node *n = &nodes[i];
    unsigned port;
    n->next = i + 1 < ds->nservers ? &nodes[i + 1] : NULL;
    n->family = ss->ss_family;
    if (ss->ss_family == AF_INET) {
      const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
      n->addr.addr4 = sin->sin_addr;
      port = ntohs(sin->sin_port);
    } else if (ss->ss_family == AF_INET6) {
      const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
      memcpy(&n->addr.addr6, &sin6->sin6_addr, sizeof n->addr.addr6);
      port = ntohs(sin6->sin6_port);
    } else {
      rc = SP_E_INVAL;
      goto out;
    }
    n->udp_port = n->tcp_port = (int)(port ? port : 53);
  }
  if (ares_set_servers_ports(dns->channel, nodes) != ARES_SUCCESS)
    rc = SP_E_NOMEM;
out:
  free(nodes);
  return rc;
}

int dns_new(uv_loop_t *loop, const struct dns_settings *ds, struct dns **out) {
  if (!out)
    return SP_E_INVAL;
  *out = NULL;
  if (!loop || !ds || ds->nservers > DNS_SETTINGS_MAX_SERVERS)
    return SP_E_INVAL;
  if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
    return SP_E_NOMEM;
  int rc = 0;
  struct dns *dns = calloc(1, sizeof *dns);
  if (!dns) {
    rc = SP_E_NOMEM;
    goto out;
  }
  dns->magic = DNS_MAGIC;
  dns->loop = loop;
  struct ares_options opts;
  memset(&opts, 0, sizeof opts);
  int mask = ARES_OPT_FLAGS | ARES_OPT_SOCK_STATE_CB | ARES_OPT_EDNSPSZ;
  /* EDNS: accept UDP answers up to ednspsz. NOCHECKRESP: c-ares 1.18 reports a
   * SERVFAIL/REFUSED answer as ARES_ECONNREFUSED; we want the rcode itself, at the
   * price of not trying the next server on those rcodes (timeouts still do). */
  opts.flags = ARES_FLAG_EDNS | ARES_FLAG_NOSEARCH | ARES_FLAG_NOCHECKRESP;
  opts.ednspsz = EDNS_PAYLOAD;
  opts.sock_state_cb = on_sock_state;
  opts.sock_state_cb_data = dns;
  if (ds->timeout_ms > 0) {
    mask |= ARES_OPT_TIMEOUTMS;
    opts.timeout = (int)ds->timeout_ms;
  }
  if (ds->tries > 0) {
    mask |= ARES_OPT_TRIES;
    opts.tries = (int)ds->tries;
  }
  int st = ares_init_options(&dns->channel, &opts, mask);
  if (st != ARES_SUCCESS) {
    rc = st == ARES_ENOMEM ? SP_E_NOMEM : SP_E_CONFIG;
    goto out;
  }
  rng_seed(dns);
  if ((ds->nservers > 0 && (rc = servers_set(dns, ds)) != 0) ||
      (rc = cache_create(dns, ds)) != 0) {
    ares_destroy(dns->channel);
    goto out;
  }
  uv_timer_init(loop, &dns->timer); /* cannot fail on a valid loop */
  uv_idle_init(loop, &dns->idle);
  dns->timer.data = dns;
  dns->idle.data = dns;
  *out = dns;
  return 0;
out:
  free(dns);
  ares_library_cleanup();
  return rc;
}

void dns_close(struct dns *dns, void (*on_closed)(void *arg), void *arg) {
  if (!dns || dns->closing)
    return;
  CHECK_OBJ_NOTNULL(dns, DNS_MAGIC);
  dns->closing = true;
  dns->on_closed = on_closed;
  dns->on_closed_arg = arg;
  for (struct dns_query *q = dns->queries; q; q = q->next)
    q->cancelled = true;
  while (done_pop(dns) != NULL)
    ; /* freed below */
  /* Runs every outstanding ares callback with ARES_EDESTRUCTION (they only free
   * their cancelled query) and reports each socket closed through on_sock_state. */
  ares_destroy(dns->channel);
  dns->channel = NULL;
  dns_cache_free(dns->cache); /* every flight landed in ares_destroy */
  dns->cache = NULL;
  struct dns_query *q = dns->queries, *next;
  for (; q; q = next) {
    next = q->next;
    q->pending = 0;      /* the channel is gone: nothing else will call back */
    query_maybe_free(q); /* except one whose callback is running right now */
  }
  while (dns->polls) {
    struct dns_poll *p = dns->polls;
    dns->polls = p->next;
    poll_close(p);
  }
  dns->pending_closes += 2;
  uv_close((uv_handle_t *)&dns->timer, on_handle_closed);
  uv_close((uv_handle_t *)&dns->idle, on_handle_closed);
}

bool dns_servers_loopback(const struct dns *dns) {
  struct ares_addr_port_node *servers = NULL;
  if (ares_get_servers_ports(dns->channel, &servers) != ARES_SUCCESS)
    return false;
  bool all = servers != NULL;
  for (struct ares_addr_port_node *n = servers; n; n = n->next) {
    if (n->family == AF_INET)
      all = all && (ntohl(n->addr.addr4.s_addr) >> 24) == 127;
    else if (n->family == AF_INET6)
      all = all && memcmp(&n->addr.addr6, &in6addr_loopback, 16) == 0;
    else
      all = false;
  }
  ares_free_data(servers);
  return all;
}
