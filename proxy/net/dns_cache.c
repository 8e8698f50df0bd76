#include "proxy/net/dns_cache.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/error.h"

#define container_of(p, type, field)                                                   \
  ((type *)(void *)((char *)(p)-offsetof(type, field)))

/* "type/name": the type first so the key never depends on where the name ends. */
#define KEY_MAX (6 + DNS_NAME_MAX + 1)
#define MIN_BUCKETS 256 /* flights need buckets even when no answer is kept */

/* A flight (waiters linked, no message yet) or a stored answer. */
struct dns_cache_flight {
  struct lru_node node;
  bool flying;
  struct dns_cache_waiter *head, *tail; /* flying */
  uint8_t *msg;                         /* owned; stored */
  size_t len;
  uint64_t stored_ms, expires_ms;
  char key[KEY_MAX];
};

struct dns_cache {
  struct dns_cache_limits lim;
  struct lru map;
  size_t nanswers, nbytes;
};

int dns_cache_new(const struct dns_cache_limits *lim,
                  const uint8_t secret[LRU_KEY_BYTES], struct dns_cache **out) {
  if (!out || !lim)
    return SP_E_INVAL;
  *out = NULL;
  struct dns_cache *c = calloc(1, sizeof *c);
  if (!c)
    return SP_E_NOMEM;
  c->lim = *lim;
  size_t cap = lim->entries > MIN_BUCKETS ? lim->entries : MIN_BUCKETS;
  if (lru_init(&c->map, cap, secret) != 0) {
    free(c);
    return SP_E_NOMEM;
  }
  *out = c;
  return 0;
}

static void entry_drop(struct dns_cache *c, struct dns_cache_flight *e) {
  lru_remove(&c->map, &e->node);
  if (!e->flying) {
    c->nanswers--;
    c->nbytes -= e->len;
  }
  free(e->msg);
  free(e);
}

void dns_cache_free(struct dns_cache *c) {
  if (!c)
    return;
  struct lru_node *n = lru_oldest(&c->map);
  while (n) {
    struct lru_node *next = lru_newer(n);
    entry_drop(c, container_of(n, struct dns_cache_flight, node));
    n = next;
  }
  lru_free(&c->map);
  free(c);
}

static uint32_t min32(uint32_t a, uint32_t b) {
  return a < b ? a : b;
}

/* Whether the answer holds a record of the asked type at the end of its CNAMEs. */
static bool has_data(const struct dns_answer *ans) {
  const char *target = dns_answer_target(ans, ans->qname);
  for (size_t i = 0; i < ans->nrrs; i++)
    if (ans->rrs[i].type == ans->qtype && strcmp(ans->rrs[i].owner, target) == 0)
      return true;
  return false;
}

uint32_t dns_cache_ttl(const struct dns_answer *ans,
                       const struct dns_cache_limits *lim) {
  if (!ans || ans->tc || (ans->rcode != DNS_R_NOERROR && ans->rcode != DNS_R_NXDOMAIN))
    return 0;
  uint32_t ttl = lim->max_ttl;
  for (size_t i = 0; i < ans->nrrs; i++) /* CNAMEs on the way count too */
    ttl = min32(ttl, ans->rrs[i].ttl);
  /* RFC 2308 §5: NXDOMAIN and NODATA, also at the end of a CNAME chain. */
  if (ans->rcode == DNS_R_NXDOMAIN || !has_data(ans))
    ttl = min32(ttl, ans->soa ? ans->neg_ttl : lim->negative_ttl);
  return ttl;
}

void dns_cache_age(struct dns_answer *ans, uint32_t age) {
  for (size_t i = 0; i < ans->nrrs; i++)
    ans->rrs[i].ttl = ans->rrs[i].ttl > age ? ans->rrs[i].ttl - age : 0;
}

/* Makes an expired answer a flight again, keeping its place in the map. */
static void entry_to_flight(struct dns_cache *c, struct dns_cache_flight *e) {
  c->nanswers--;
  c->nbytes -= e->len;
  free(e->msg);
  e->msg = NULL;
  e->len = 0;
  e->flying = true;
  e->head = e->tail = NULL;
}

static void waiter_add(struct dns_cache_flight *f, struct dns_cache_waiter *w) {
  w->next = NULL;
  if (f->tail)
    f->tail->next = w;
  else
    f->head = w;
  f->tail = w;
}

static struct dns_cache_flight *flight_new(struct dns_cache *c, const char *key) {
  struct dns_cache_flight *f = calloc(1, sizeof *f);
  if (!f)
    return NULL;
  snprintf(f->key, sizeof f->key, "%s", key);
  f->flying = true;
  lru_insert(&c->map, &f->node, f->key);
  return f;
}

int dns_cache_lookup(struct dns_cache *c, const char *name, uint16_t type,
                     uint64_t now_ms, struct dns_cache_waiter *w,
                     struct dns_cache_hit *hit, struct dns_cache_flight **flight) {
  char key[KEY_MAX];
  snprintf(key, sizeof key, "%u/%s", (unsigned)type, name);
  struct lru_node *n = lru_find(&c->map, key);
  struct dns_cache_flight *e =
      n ? container_of(n, struct dns_cache_flight, node) : NULL;
  if (e && !e->flying && now_ms < e->expires_ms) {
    hit->msg = e->msg;
    hit->len = e->len;
    hit->age = (uint32_t)((now_ms - e->stored_ms) / 1000);
    return DNS_CACHE_HIT;
  }
  if (e && e->flying) {
    waiter_add(e, w);
    return DNS_CACHE_JOINED;
  }
  if (e)
    entry_to_flight(c, e);
  else if (!(e = flight_new(c, key)))
    return SP_E_NOMEM;
  waiter_add(e, w);
  *flight = e;
  return DNS_CACHE_SEND;
}

/* Drops the least recently used answers (never a flight) until one of len bytes
 * fits; false when it cannot. */
static bool make_room(struct dns_cache *c, size_t len) {
  if (c->lim.entries == 0 || len > c->lim.bytes)
    return false;
  struct lru_node *n = lru_oldest(&c->map);
  while (n && (c->nanswers >= c->lim.entries || c->nbytes + len > c->lim.bytes)) {
    struct lru_node *next = lru_newer(n);
    struct dns_cache_flight *e = container_of(n, struct dns_cache_flight, node);
    if (!e->flying)
      entry_drop(c, e);
    n = next;
  }
  return c->nanswers < c->lim.entries && c->nbytes + len <= c->lim.bytes;
}

/* Links f (landed, unlinked) back as an answer; false when it is not kept. */
static bool store(struct dns_cache *c, struct dns_cache_flight *f, const uint8_t *msg,
                  size_t len, uint32_t ttl, uint64_t now_ms) {
  if (!make_room(c, len) || !(f->msg = malloc(len)))
    return false;
  memcpy(f->msg, msg, len);
  f->len = len;
  f->stored_ms = now_ms;
  f->expires_ms = now_ms + (uint64_t)ttl * 1000;
  lru_insert(&c->map, &f->node, f->key);
  c->nanswers++;
  c->nbytes += len;
  return true;
}

struct dns_cache_waiter *dns_cache_land(struct dns_cache *c, struct dns_cache_flight *f,
                                        const uint8_t *msg, size_t len, uint32_t ttl,
                                        uint64_t now_ms) {
  struct dns_cache_waiter *waiters = f->head;
  f->head = f->tail = NULL;
  f->flying = false;
  lru_remove(&c->map, &f->node); /* so that making room never meets it */
  if (!msg || ttl == 0 || !store(c, f, msg, len, ttl, now_ms))
    free(f);
  return waiters;
}

const struct dns_cache_limits *dns_cache_limits(const struct dns_cache *c) {
  return &c->lim;
}

size_t dns_cache_count(const struct dns_cache *c) {
  return c->nanswers;
}

size_t dns_cache_bytes(const struct dns_cache *c) {
  return c->nbytes;
}
