#include "proxy/core/lru.h"

#include <stdlib.h>
#include <string.h>

#include "proxy/core/error.h"

/* ---- SipHash-2-4 (Aumasson and Bernstein, 2012) ------------------------------------ */

static uint64_t rotl(uint64_t x, int b) {
  return (x << b) | (x >> (64 - b));
}

static uint64_t load_le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

struct sip {
  uint64_t v0, v1, v2, v3;
};

static void sip_round(struct sip *s) {
  s->v0 += s->v1;
  s->v1 = rotl(s->v1, 13) ^ s->v0;
  s->v0 = rotl(s->v0, 32);
  s->v2 += s->v3;
  s->v3 = rotl(s->v3, 16) ^ s->v2;
  s->v0 += s->v3;
  s->v3 = rotl(s->v3, 21) ^ s->v0;
  s->v2 += s->v1;
  s->v1 = rotl(s->v1, 17) ^ s->v2;
  s->v2 = rotl(s->v2, 32);
}

static void sip_word(struct sip *s, uint64_t m) {
  s->v3 ^= m;
  sip_round(s);
  sip_round(s);
  s->v0 ^= m;
}

uint64_t lru_siphash(const uint8_t secret[LRU_KEY_BYTES], const void *data,
                     size_t len) {
  const uint8_t *p = data;
  uint64_t k0 = load_le64(secret), k1 = load_le64(secret + 8);
  struct sip s = {k0 ^ 0x736f6d6570736575ull, k1 ^ 0x646f72616e646f6dull,
                  k0 ^ 0x6c7967656e657261ull, k1 ^ 0x7465646279746573ull};
  size_t whole = len - len % 8;
  for (size_t i = 0; i < whole; i += 8)
    sip_word(&s, load_le64(p + i));
  uint64_t last = (uint64_t)(len & 0xff) << 56;
  for (size_t i = 0; i < len % 8; i++)
    last |= (uint64_t)p[whole + i] << (8 * i);
  sip_word(&s, last);
  s.v2 ^= 0xff;
  for (int i = 0; i < 4; i++)
    sip_round(&s);
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

/* ---- the map ------------------------------------------------------------------------ */

int lru_init(struct lru *l, size_t capacity, const uint8_t secret[LRU_KEY_BYTES]) {
  memset(l, 0, sizeof *l);
  if (capacity == 0)
    capacity = 1;
  size_t n = 1;
  while (n < capacity && n < ((size_t)1 << 30))
    n <<= 1;
  l->buckets = calloc(n, sizeof *l->buckets);
  if (!l->buckets)
    return SP_E_NOMEM;
  l->mask = n - 1;
  l->capacity = capacity;
  memcpy(l->secret, secret, LRU_KEY_BYTES);
  return 0;
}

void lru_free(struct lru *l) {
  free(l->buckets);
  memset(l, 0, sizeof *l);
}

static uint64_t key_hash(const struct lru *l, const char *key) {
  return lru_siphash(l->secret, key, strlen(key));
}

struct lru_node *lru_peek(const struct lru *l, const char *key) {
  uint64_t h = key_hash(l, key);
  for (struct lru_node *n = l->buckets[h & l->mask]; n; n = n->chain)
    if (n->hash == h && strcmp(n->key, key) == 0)
      return n;
  return NULL;
}

static void list_unlink(struct lru *l, struct lru_node *n) {
  if (n->newer)
    n->newer->older = n->older;
  else
    l->newest = n->older;
  if (n->older)
    n->older->newer = n->newer;
  else
    l->oldest = n->newer;
  n->newer = n->older = NULL;
}

static void list_push_newest(struct lru *l, struct lru_node *n) {
  n->older = l->newest;
  n->newer = NULL;
  if (l->newest)
    l->newest->newer = n;
  else
    l->oldest = n;
  l->newest = n;
}

struct lru_node *lru_find(struct lru *l, const char *key) {
  struct lru_node *n = lru_peek(l, key);
  if (n && n != l->newest) {
    list_unlink(l, n);
    list_push_newest(l, n);
  }
  return n;
}

void lru_insert(struct lru *l, struct lru_node *n, const char *key) {
  n->key = key;
  n->hash = key_hash(l, key);
  struct lru_node **b = &l->buckets[n->hash & l->mask];
  n->chain = *b;
  *b = n;
  list_push_newest(l, n);
  l->count++;
}

void lru_remove(struct lru *l, struct lru_node *n) {
  for (struct lru_node **p = &l->buckets[n->hash & l->mask]; *p; p = &(*p)->chain)
    if (*p == n) {
      *p = n->chain;
      break;
    }
  n->chain = NULL;
  list_unlink(l, n);
  l->count--;
}

bool lru_full(const struct lru *l) {
  return l->count >= l->capacity;
}

struct lru_node *lru_oldest(const struct lru *l) {
  return l->oldest;
}

struct lru_node *lru_newer(const struct lru_node *n) {
  return n->newer;
}
