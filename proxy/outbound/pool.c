#include "proxy/outbound/pool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/log.h"
#include "proxy/core/obj.h"

#define POOL_BUCKETS 256
#define POOL_MAGIC 0x504f4f4cu /* "POOL" */

struct pool_dest;

/* One parked connection, on two lists ordered by parking time: all of the pool's
 * (for the total bound and expiry) and its destination's (for LIFO take). */
struct pool_slot {
  struct upstream *up;
  uint64_t parked_ms;
  struct pool_dest *dest;
  struct pool_slot *older, *newer;           /* pool-wide */
  struct pool_slot *dest_older, *dest_newer; /* within dest */
};

/* A destination with at least one parked connection; freed with its last one. */
struct pool_dest {
  struct pool_dest *next; /* hash chain */
  const struct runtime *rt;
  size_t n;
  struct pool_slot *oldest, *newest;
  char domain[];
};

struct pool {
  uint32_t magic;
  uv_loop_t *loop;
  uv_timer_t timer; /* owned: expires idle connections */
  struct pool_limits lim;
  struct pool_dest *buckets[POOL_BUCKETS];
  struct pool_slot *oldest, *newest;
  size_t n;
  bool closing;
};

static size_t dest_hash(const char *domain, const struct runtime *rt) {
  uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)(uintptr_t)rt;
  for (const unsigned char *c = (const unsigned char *)domain; *c; c++)
    h = (h ^ *c) * 0x100000001b3ull;
  return (size_t)(h % POOL_BUCKETS);
}

static struct pool_dest **dest_link(struct pool *p, const char *domain,
                                    const struct runtime *rt) {
  struct pool_dest **d = &p->buckets[dest_hash(domain, rt)];
  while (*d && ((*d)->rt != rt || strcmp((*d)->domain, domain) != 0))
    d = &(*d)->next;
  return d;
}

static struct pool_dest *dest_get(struct pool *p, const char *domain,
                                  const struct runtime *rt) {
  struct pool_dest **link = dest_link(p, domain, rt);
  if (*link)
    return *link;
  size_t len = strlen(domain) + 1;
  struct pool_dest *d = calloc(1, sizeof *d + len);
  if (!d)
    return NULL;
  memcpy(d->domain, domain, len);
  d->rt = rt;
  *link = d;
  return d;
}

/* Unlinks slot from both lists and frees it (and its destination when empty);
 * returns its connection, which the caller now owns. */
static struct upstream *slot_remove(struct pool *p, struct pool_slot *s) {
  struct pool_dest *d = s->dest;
  *(s->older ? &s->older->newer : &p->oldest) = s->newer;
  *(s->newer ? &s->newer->older : &p->newest) = s->older;
  *(s->dest_older ? &s->dest_older->dest_newer : &d->oldest) = s->dest_newer;
  *(s->dest_newer ? &s->dest_newer->dest_older : &d->newest) = s->dest_older;
  p->n--;
  if (--d->n == 0) {
    struct pool_dest **link = dest_link(p, d->domain, d->rt);
    *link = d->next;
    free(d);
  }
  struct upstream *up = s->up;
  free(s);
  return up;
}

static struct pool_slot *slot_of(struct pool *p, const struct upstream *up) {
  for (struct pool_slot *s = p->newest; s; s = s->older)
    if (s->up == up)
      return s;
  return NULL;
}

/* A parked connection broke (the MX closed it, a timeout): forget it. */
static void on_parked_lost(void *arg, const char *reason) {
  struct upstream *up = upstream_of(arg);
  (void)reason;
  struct pool *p;
  CAST_OBJ_NOTNULL(p, upstream_pool(up), POOL_MAGIC);
  struct pool_slot *s = slot_of(p, up);
  if (s)
    slot_remove(p, s);
  upstream_close(up, false);
}

static void on_parked_other(void *arg) {
  upstream_of(arg);
}
static void on_parked_reply(void *arg, const struct smtp_reply *r) {
  (void)r;
  on_parked_lost(arg, "unexpected reply");
}
static void on_parked_failed(void *arg, const char *reasons, bool policy) {
  (void)reasons, (void)policy;
  on_parked_lost(arg, "failed");
}

static const struct upstream_events pool_events = {
    .on_ready = on_parked_other,
    .on_failed = on_parked_failed,
    .on_reply = on_parked_reply,
    .on_drain = on_parked_other,
    .on_lost = on_parked_lost,
};

/* The oldest are at the head of the pool-wide list: expire from there. */
static void on_expire(uv_timer_t *t) {
  struct pool *p;
  CAST_OBJ_NOTNULL(p, t->data, POOL_MAGIC);
  uint64_t now = uv_now(p->loop);
  while (p->oldest && now - p->oldest->parked_ms >= p->lim.idle_ms)
    upstream_close(slot_remove(p, p->oldest), true);
  if (p->n == 0)
    uv_timer_stop(t);
}

struct pool_limits pool_limits_of(const struct config *cfg) {
  return (struct pool_limits){.idle_ms = (uint64_t)cfg->conn_cache_secs * 1000,
                              .max_idle = cfg->conn_cache_size,
                              .max_per_domain = cfg->conn_cache_per_domain};
}

struct pool *pool_new(uv_loop_t *loop, const struct pool_limits *lim) {
  struct pool *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->magic = POOL_MAGIC;
  p->loop = loop;
  p->lim = *lim;
  uv_timer_init(loop, &p->timer);
  p->timer.data = p;
  return p;
}

static bool pool_refuses(const struct pool *p, const struct upstream *up) {
  return !p || p->closing || p->lim.idle_ms == 0 || p->lim.max_idle == 0 ||
         p->lim.max_per_domain == 0 || upstream_messages(up) >= POOL_MAX_MESSAGES ||
         !upstream_idle(up) || upstream_for_report(up); /* never judged by its policy */
}

void pool_put(struct pool *p, struct upstream *up) {
  if (pool_refuses(p, up)) {
    upstream_close(up, true);
    return;
  }
  const char *domain = upstream_domain(up);
  const struct runtime *rt = upstream_runtime(up);
  /* A burst past a bound: the oldest parked connection is the least likely to be
   * needed again before it expires. */
  struct pool_dest *d = *dest_link(p, domain, rt);
  if (d && d->n >= p->lim.max_per_domain)
    upstream_close(slot_remove(p, d->oldest), true);
  if (p->n >= p->lim.max_idle)
    upstream_close(slot_remove(p, p->oldest), true);
  struct pool_slot *s = calloc(1, sizeof *s);
  d = s ? dest_get(p, domain, rt) : NULL;
  if (!d) {
    free(s);
    upstream_close(up, true);
    return;
  }
  upstream_set_owner(up, &pool_events, up, p, NULL);
  *s = (struct pool_slot){.up = up,
                          .parked_ms = uv_now(p->loop),
                          .dest = d,
                          .older = p->newest,
                          .dest_older = d->newest};
  *(p->newest ? &p->newest->newer : &p->oldest) = s;
  p->newest = s;
  *(d->newest ? &d->newest->dest_newer : &d->oldest) = s;
  d->newest = s;
  p->n++;
  d->n++;
  if (!uv_is_active((uv_handle_t *)&p->timer))
    uv_timer_start(&p->timer, on_expire, p->lim.idle_ms / 4 + 1,
                   p->lim.idle_ms / 4 + 1);
}

struct upstream *pool_take(struct pool *p, const char *domain,
                           const struct runtime *rt) {
  struct pool_dest *d = p ? *dest_link(p, domain, rt) : NULL;
  if (!d)
    return NULL;
  /* The most recently parked connection is the likeliest to be alive, and taking
   * from the top lets the ones a smaller load no longer needs expire. */
  struct upstream *up = slot_remove(p, d->newest);
  log_msg(LOG_DEBUG, NULL, "reusing the connection to %s for %s", upstream_relay(up),
          domain);
  return up;
}

static void on_timer_closed(uv_handle_t *h) {
  struct pool *p;
  CAST_OBJ_NOTNULL(p, h->data, POOL_MAGIC);
  p->magic = 0;
  free(p);
}

void pool_close(struct pool *p) {
  if (!p)
    return;
  p->closing = true;
  while (p->newest)
    upstream_close(slot_remove(p, p->newest), true);
  uv_close((uv_handle_t *)&p->timer, on_timer_closed);
}
