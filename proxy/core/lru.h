/* A bounded map from names to the caller's entries: O(1) lookup through a hash table
 * keyed with SipHash-2-4 under a per-table secret (names come from mail, so an
 * attacker must not be able to pick names that fall into one bucket), and a recency
 * list so the least recently used entry is the one to drop when the map is full.
 *
 * Intrusive: the caller embeds a struct lru_node in its entry and owns the entry's
 * memory; the map only links nodes. A linked node's key must stay valid and unchanged
 * until the node is removed. The map never frees or evicts anything by itself: the
 * caller asks for the oldest node (lru_oldest, lru_newer) and removes what it chooses,
 * so entries in use can be kept. Pure: no I/O, no allocation but the bucket array. */
#ifndef SP_LRU_H
#define SP_LRU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LRU_KEY_BYTES 16

struct lru_node {
  struct lru_node *chain; /* next in the same bucket */
  struct lru_node *newer; /* toward the most recently used end; NULL at it */
  struct lru_node *older; /* toward the least recently used end; NULL at it */
  uint64_t hash;
  const char *key; /* NUL-terminated; the caller's */
};

struct lru {
  struct lru_node **buckets; /* owned */
  size_t mask;               /* bucket count - 1 (a power of two) */
  size_t count;
  size_t capacity;
  struct lru_node *newest, *oldest;
  uint8_t secret[LRU_KEY_BYTES];
};

/* Capacity entries (at least 1) with about one bucket per entry. secret keys the
 * hash: random in production, fixed in tests. 0, or SP_E_NOMEM. */
int lru_init(struct lru *l, size_t capacity, const uint8_t secret[LRU_KEY_BYTES]);
/* Frees the buckets. Nodes still linked are not touched: the caller frees its
 * entries first (or after, never using the map again). */
void lru_free(struct lru *l);

/* The node for key, made the most recently used; NULL when absent. */
struct lru_node *lru_find(struct lru *l, const char *key);
/* The node for key without changing the order; NULL when absent. */
struct lru_node *lru_peek(const struct lru *l, const char *key);
/* Links n under key (absent from the map) as the most recently used. Does not check
 * the capacity: lru_full() tells the caller to remove one first. */
void lru_insert(struct lru *l, struct lru_node *n, const char *key);
/* Unlinks n (linked in l). */
void lru_remove(struct lru *l, struct lru_node *n);

bool lru_full(const struct lru *l);
/* The least recently used node, NULL when empty; then the next newer one, NULL after
 * the newest. To remove nodes while walking, take the next one before removing. */
struct lru_node *lru_oldest(const struct lru *l);
struct lru_node *lru_newer(const struct lru_node *n);

/* SipHash-2-4 of data under secret (exposed for tests against a reference). */
uint64_t lru_siphash(const uint8_t secret[LRU_KEY_BYTES], const void *data, size_t len);

#endif
