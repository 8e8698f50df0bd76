#include "proxy/mtasts/sts_cache.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/error.h"
#include "proxy/core/log.h"

struct sts_cache {
  struct lru map;
};

static size_t entry_size(size_t domain_len) {
  return sizeof(struct sts_entry) + domain_len + 1;
}

int sts__cache_new(size_t capacity, struct sts_cache **out) {
  struct sts_cache *c = calloc(1, sizeof *c);
  if (!c)
    return SP_E_NOMEM;
  /* A secret bucket key: recipient domains are chosen by whoever sends mail, and a
   * known hash would let them pile every domain into one bucket. */
  uint8_t secret[LRU_KEY_BYTES];
  if (RAND_bytes(secret, sizeof secret) != 1 || lru_init(&c->map, capacity, secret)) {
    free(c);
    return SP_E_NOMEM;
  }
  *out = c;
  return 0;
}

static void entry_free(struct sts_entry *e) {
  if (e->cached)
    sts_policy_free(&e->cached->policy);
  free(e->cached);
  free(e->failure);
  free(e);
}

void sts__cache_free(struct sts_cache *c) {
  if (!c)
    return;
  struct lru_node *n = lru_oldest(&c->map);
  while (n) {
    struct lru_node *next = lru_newer(n);
    lru_remove(&c->map, n);
    entry_free((struct sts_entry *)n);
    n = next;
  }
  lru_free(&c->map);
  free(c);
}

static bool pinned(const struct sts_entry *e) {
  return e->fetch || e->answers > 0 || e->unpersisted;
}

/* Drops the least recently used entry nobody holds; false when all are held. */
static bool evict_one(struct sts_cache *c) {
  for (struct lru_node *n = lru_oldest(&c->map); n; n = lru_newer(n)) {
    struct sts_entry *e = (struct sts_entry *)n;
    if (!pinned(e)) {
      log_msg(LOG_DEBUG, NULL, "mta-sts: %s: dropped from memory (%zu domains held)",
              e->domain, c->map.count);
      lru_remove(&c->map, n);
      entry_free(e);
      return true;
    }
  }
  return false;
}

/* The persisted policy of e's domain, if the store has one that parses. */
static void entry_load(struct sts_entry *e, struct store *store) {
  struct store_policy sp;
  if (!store || store_get_policy(store, e->domain, &sp) != 1)
    return;
  struct sts_policy p;
  char why[200];
  if (sts_policy_parse(sp.text, strlen(sp.text), &p, why, sizeof why) == 0)
    sts__entry_set_policy(e, sp.id, &p, sp.fetched_at, sp.expires_at);
  sts_policy_free(&p);
  store_policy_free(&sp);
}

struct sts_entry *sts__cache_get(struct sts_cache *c, struct store *store,
                                 const char *domain) {
  struct lru_node *n = lru_find(&c->map, domain);
  if (n)
    return (struct sts_entry *)n;
  size_t len = strlen(domain);
  if (len > 255)
    return NULL;
  while (lru_full(&c->map) && evict_one(c))
    ;
  struct sts_entry *e = calloc(1, entry_size(len));
  if (!e)
    return NULL;
  memcpy(e->domain, domain, len + 1);
  lru_insert(&c->map, &e->node, e->domain);
  entry_load(e, store);
  return e;
}

int sts__entry_set_policy(struct sts_entry *e, const char *id, struct sts_policy *p,
                          int64_t fetched_at, int64_t expires_at) {
  if (!e->cached && !(e->cached = calloc(1, sizeof *e->cached)))
    return SP_E_NOMEM;
  e->cached->present = true;
  snprintf(e->cached->id, sizeof e->cached->id, "%s", id);
  sts_policy_free(&e->cached->policy);
  e->cached->policy = *p; /* moved */
  memset(p, 0, sizeof *p);
  e->cached->fetched_at = fetched_at;
  e->cached->expires_at = expires_at;
  e->failed_at = 0;
  free(e->failure);
  e->failure = NULL;
  return 0;
}

void sts__entry_set_failure(struct sts_entry *e, enum observe_sts_failure kind,
                            const char *id, const char *reason, int64_t now) {
  e->failed_at = now;
  if (!e->failure && !(e->failure = calloc(1, sizeof *e->failure)))
    return;
  e->failure->kind = kind;
  snprintf(e->failure->reason, sizeof e->failure->reason, "%s", reason ? reason : "");
  snprintf(e->failure->id, sizeof e->failure->id, "%s", id ? id : "");
}

size_t sts__cache_count(const struct sts_cache *c) {
  return c->map.count;
}

size_t sts__cache_bytes(const struct sts_cache *c) {
  size_t bytes = sizeof *c + (c->map.mask + 1) * sizeof *c->map.buckets;
  for (const struct lru_node *n = lru_oldest(&c->map); n; n = lru_newer(n)) {
    const struct sts_entry *e = (const struct sts_entry *)n;
    bytes += entry_size(strlen(e->domain));
    bytes += e->cached ? sizeof *e->cached + e->cached->policy.mx_len : 0;
    bytes += e->failure ? sizeof *e->failure : 0;
  }
  return bytes;
}
