/* The bounded map under the MTA-STS cache: hits, recency order, collisions, removal,
 * a random run against a plain model, and SipHash-2-4 against OpenSSL's. Every entry
 * is freed at the end, so the ASan build's leak check covers the test. */
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/lru.h"
#include "tests/unit/test.h"

static const uint8_t SECRET[LRU_KEY_BYTES] = {0, 1, 2,  3,  4,  5,  6,  7,
                                              8, 9, 10, 11, 12, 13, 14, 15};

struct item {
  struct lru_node node;
  char name[32];
};

static struct item *item_new(const char *name) {
  struct item *it = calloc(1, sizeof *it);
  ASSERT(it != NULL);
  snprintf(it->name, sizeof it->name, "%s", name);
  return it;
}

static struct item *add(struct lru *l, const char *name) {
  struct item *it = item_new(name);
  lru_insert(l, &it->node, it->name);
  return it;
}

static const char *name_of(const struct lru_node *n) {
  return n ? ((const struct item *)n)->name : "(none)";
}

/* The names from the least to the most recently used, space-separated. */
static const char *order(const struct lru *l) {
  static char buf[512];
  buf[0] = '\0';
  for (const struct lru_node *n = lru_oldest(l); n; n = lru_newer(n)) {
    strcat(buf, buf[0] ? " " : "");
    strcat(buf, name_of(n));
  }
  return buf;
}

static void free_all(struct lru *l) {
  struct lru_node *n = lru_oldest(l);
  while (n) {
    struct lru_node *next = lru_newer(n);
    lru_remove(l, n);
    free(n);
    n = next;
  }
  ASSERT_EQ(l->count, 0);
  lru_free(l);
}

static void test_insert_and_hit(void) {
  struct lru l;
  ASSERT_EQ(lru_init(&l, 4, SECRET), 0);
  struct item *a = add(&l, "a.example"), *b = add(&l, "b.example");
  ASSERT(lru_find(&l, "a.example") == &a->node);
  ASSERT(lru_find(&l, "b.example") == &b->node);
  ASSERT(lru_find(&l, "c.example") == NULL);
  ASSERT(lru_find(&l, "a.exampl") == NULL);
  ASSERT(lru_find(&l, "") == NULL);
  ASSERT_EQ(l.count, 2);
  ASSERT(!lru_full(&l));
  free_all(&l);
}

static void test_recency_order(void) {
  struct lru l;
  ASSERT_EQ(lru_init(&l, 3, SECRET), 0);
  add(&l, "a");
  add(&l, "b");
  add(&l, "c");
  ASSERT(lru_full(&l));
  ASSERT_STR_EQ(order(&l), "a b c");
  ASSERT_STR_EQ(name_of(lru_oldest(&l)), "a");
  lru_find(&l, "a"); /* a use moves it to the newest end */
  ASSERT_STR_EQ(order(&l), "b c a");
  lru_peek(&l, "b"); /* a peek does not */
  ASSERT_STR_EQ(order(&l), "b c a");
  lru_find(&l, "a"); /* already the newest */
  ASSERT_STR_EQ(order(&l), "b c a");
  /* Evicting the oldest to make room, as the cache does. */
  struct lru_node *old = lru_oldest(&l);
  lru_remove(&l, old);
  free(old);
  add(&l, "d");
  ASSERT_STR_EQ(order(&l), "c a d");
  ASSERT(lru_find(&l, "b") == NULL);
  free_all(&l);
}

static void test_remove(void) {
  struct lru l;
  ASSERT_EQ(lru_init(&l, 8, SECRET), 0);
  struct item *it[5];
  const char *names[] = {"a", "b", "c", "d", "e"};
  for (int i = 0; i < 5; i++)
    it[i] = add(&l, names[i]);
  lru_remove(&l, &it[2]->node); /* middle */
  lru_remove(&l, &it[0]->node); /* oldest */
  lru_remove(&l, &it[4]->node); /* newest */
  ASSERT_STR_EQ(order(&l), "b d");
  ASSERT(lru_find(&l, "c") == NULL && lru_find(&l, "a") == NULL &&
         lru_find(&l, "e") == NULL);
  ASSERT(lru_find(&l, "b") == &it[1]->node);
  ASSERT_STR_EQ(order(&l), "d b");
  /* Removed then added again under the same name. */
  lru_insert(&l, &it[2]->node, it[2]->name);
  ASSERT(lru_find(&l, "c") == &it[2]->node);
  ASSERT_STR_EQ(order(&l), "d b c");
  free(it[0]);
  free(it[4]);
  free_all(&l);
}

static void test_collisions(void) {
  struct lru l;
  ASSERT_EQ(lru_init(&l, 8, SECRET), 0);
  ASSERT_EQ(l.mask, 7);
  /* Four names that share a bucket under this secret. */
  char same[4][32];
  int found = 0;
  uint64_t want = 0;
  for (int i = 0; found < 4 && i < 10000; i++) {
    char name[32];
    snprintf(name, sizeof name, "d%d.example", i);
    uint64_t b = lru_siphash(SECRET, name, strlen(name)) & l.mask;
    if (found == 0)
      want = b;
    if (b == want)
      snprintf(same[found++], sizeof same[0], "%s", name);
  }
  ASSERT_EQ(found, 4);
  struct item *it[4];
  for (int i = 0; i < 4; i++)
    it[i] = add(&l, same[i]);
  for (int i = 0; i < 4; i++)
    ASSERT(lru_find(&l, same[i]) == &it[i]->node);
  lru_remove(&l, &it[1]->node); /* inside the chain */
  lru_remove(&l, &it[3]->node); /* its head (inserted last) */
  ASSERT(lru_find(&l, same[1]) == NULL);
  ASSERT(lru_find(&l, same[3]) == NULL);
  ASSERT(lru_find(&l, same[0]) == &it[0]->node);
  ASSERT(lru_find(&l, same[2]) == &it[2]->node);
  ASSERT_EQ(l.count, 2);
  free(it[1]);
  free(it[3]);
  free_all(&l);
}

/* A long random run against a plain model: an array ordered oldest first. */
#define MODEL_CAP 16
static void test_against_model(void) {
  struct lru l;
  ASSERT_EQ(lru_init(&l, MODEL_CAP, SECRET), 0);
  char model[MODEL_CAP][32];
  int n = 0;
  srand(42);
  for (int step = 0; step < 20000; step++) {
    char name[32];
    snprintf(name, sizeof name, "m%d.test", rand() % 40);
    int at = -1;
    for (int i = 0; i < n; i++)
      if (strcmp(model[i], name) == 0)
        at = i;
    struct lru_node *hit = lru_find(&l, name);
    ASSERT_EQ(hit != NULL, at >= 0);
    if (at >= 0) {
      memmove(model[at], model[at + 1], (size_t)(n - at - 1) * sizeof model[0]);
      snprintf(model[n - 1], sizeof model[0], "%s", name);
    } else {
      if (lru_full(&l)) {
        struct lru_node *old = lru_oldest(&l);
        ASSERT_STR_EQ(name_of(old), model[0]);
        lru_remove(&l, old);
        free(old);
        memmove(model[0], model[1], (size_t)(n - 1) * sizeof model[0]);
        n--;
      }
      add(&l, name);
      snprintf(model[n++], sizeof model[0], "%s", name);
    }
    ASSERT_EQ(l.count, n);
  }
  int i = 0;
  for (const struct lru_node *p = lru_oldest(&l); p; p = lru_newer(p))
    ASSERT_STR_EQ(name_of(p), model[i++]);
  ASSERT_EQ(i, n);
  free_all(&l);
}

static uint64_t openssl_siphash(const uint8_t *key, const void *data, size_t len) {
  EVP_MAC *mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
  EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
  size_t size = 8, outl = 0;
  OSSL_PARAM params[] = {OSSL_PARAM_size_t(OSSL_MAC_PARAM_SIZE, &size), OSSL_PARAM_END};
  uint8_t out[8];
  ASSERT(ctx && EVP_MAC_init(ctx, key, LRU_KEY_BYTES, params) == 1);
  ASSERT(EVP_MAC_update(ctx, data, len) == 1);
  ASSERT(EVP_MAC_final(ctx, out, &outl, sizeof out) == 1 && outl == 8);
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | out[i];
  return v;
}

static void test_siphash(void) {
  /* The paper's vector: key 00..0f, message 00..0e. */
  uint8_t msg[64];
  for (int i = 0; i < 64; i++)
    msg[i] = (uint8_t)i;
  ASSERT(lru_siphash(SECRET, msg, 15) == 0xa129ca6149be45e5ull);
  for (size_t len = 0; len <= 64; len++)
    ASSERT(lru_siphash(SECRET, msg, len) == openssl_siphash(SECRET, msg, len));
}

int main(void) {
  RUN_TEST(test_insert_and_hit);
  RUN_TEST(test_recency_order);
  RUN_TEST(test_remove);
  RUN_TEST(test_collisions);
  RUN_TEST(test_against_model);
  RUN_TEST(test_siphash);
  return 0;
}
