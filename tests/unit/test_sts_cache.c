/* The MTA-STS memory cache: bounded by its capacity however many domains are looked
 * up (the allocator's own count, where the build has one), dropped entries read back
 * from the store (a persisted enforce policy is never forgotten), entries in use
 * never dropped. */
#include <malloc.h>
#include <time.h>
#include <unistd.h>

#include "proxy/mtasts/sts_cache.h"
#include "tests/unit/test.h"

#if defined(__SANITIZE_ADDRESS__)
#define SP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SP_ASAN 1
#endif
#endif

static char dir[64];
static char db[128];

static struct store *store_fresh(void) {
  static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
    char path[160];
    snprintf(path, sizeof path, "%s%s", db, suffixes[i]);
    unlink(path);
  }
  struct store *st = NULL;
  char err[256];
  if (store_open(db, &st, err, sizeof err) != 0)
    TEST_FAIL_("store_open(%s): %s", db, err);
  return st;
}

static size_t heap_in_use(void) {
  return mallinfo2().uordblks;
}

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The most one entry of a domain without a policy may cost: the entry, a name of the
 * test's length, and the allocator's header and rounding (16 on glibc x86-64/arm64). */
#define NAME_FMT "d%06zu.example.test"
#define NAME_LEN 20
#define ENTRY_MAX (sizeof(struct sts_entry) + NAME_LEN + 1 + 16 + 15)

/* Looks up n distinct domains with no policy; returns the heap growth. */
static size_t lookups(struct sts_cache *c, struct store *st, size_t n) {
  size_t before = heap_in_use();
  for (size_t i = 0; i < n; i++) {
    char name[64];
    snprintf(name, sizeof name, NAME_FMT, i);
    struct sts_entry *e = sts__cache_get(c, st, name);
    ASSERT(e != NULL);
    ASSERT(e->cached == NULL);
  }
  size_t after = heap_in_use();
  return after > before ? after - before : 0;
}

static void bounded_run(size_t capacity, size_t n) {
  struct store *st = store_fresh();
  struct sts_cache *c = NULL;
  ASSERT_EQ(sts__cache_new(capacity, &c), 0);
  size_t table = sts__cache_bytes(c);
  double t0 = seconds();
  size_t grown = lookups(c, st, n);
  double took = seconds() - t0;
  ASSERT_EQ(sts__cache_count(c), capacity);
  size_t bytes = sts__cache_bytes(c);
  size_t per_entry = (bytes - table) / capacity;
  printf("  cache_entries %zu, %zu domains in %.2f s: %zu entries, cache %zu bytes "
         "(%zu per entry + table %zu), heap growth %zu bytes\n",
         capacity, n, took, sts__cache_count(c), bytes, per_entry, table, grown);
  ASSERT(per_entry <= sizeof(struct sts_entry) + NAME_LEN + 1);
  /* The allocator's count: the entries, plus slack for sqlite's own allocations
   * (statements, page cache of an empty table). */
#ifndef SP_ASAN
  ASSERT(grown <= capacity * ENTRY_MAX + 256 * 1024);
#endif
  /* What the design before the bound would have held: one 8.5 KB entry per domain. */
  ASSERT(grown < n * 1000);
  sts__cache_free(c);
  store_close(st);
}

static void test_bounded_100k(void) {
  bounded_run(1000, 100000);
  bounded_run(10000, 100000); /* the default */
}

static const char ENFORCE[] = "version: STSv1\nmode: enforce\nmx: mx1.enforce.test\n"
                              "max_age: 86400\n";

/* A domain dropped from memory comes back with its persisted policy. */
static void test_dropped_reads_store(void) {
  struct store *st = store_fresh();
  int64_t now = (int64_t)time(NULL);
  struct store_policy sp = {.domain = "enforce.test",
                            .id = "7",
                            .text = (char *)ENFORCE,
                            .fetched_at = now,
                            .expires_at = now + 86400};
  ASSERT_EQ(store_put_policy(st, &sp), 0);
  struct sts_cache *c = NULL;
  ASSERT_EQ(sts__cache_new(2, &c), 0);
  struct sts_entry *e = sts__cache_get(c, st, "enforce.test");
  ASSERT(e && e->cached);
  ASSERT_EQ(e->cached->policy.mode, STS_MODE_ENFORCE);
  ASSERT(sts__cache_get(c, st, "a.test") && sts__cache_get(c, st, "b.test"));
  ASSERT_EQ(sts__cache_count(c), 2); /* enforce.test was the oldest: dropped */
  e = sts__cache_get(c, st, "enforce.test");
  ASSERT(e && e->cached);
  ASSERT_STR_EQ(e->cached->id, "7");
  ASSERT_EQ(e->cached->policy.mode, STS_MODE_ENFORCE);
  ASSERT_STR_EQ(sts_mx_next(&e->cached->policy, NULL), "mx1.enforce.test");
  ASSERT_EQ(e->cached->expires_at, now + 86400);
  ASSERT_EQ(sts__cache_count(c), 2);
  sts__cache_free(c);
  store_close(st);
}

/* An entry with answers pending or a fetch in flight stays; the bound is caught up
 * once they are released. */
static void test_pinned_kept(void) {
  struct sts_cache *c = NULL;
  ASSERT_EQ(sts__cache_new(2, &c), 0);
  struct sts_entry *x = sts__cache_get(c, NULL, "x.test");
  x->answers = 1;
  sts__cache_get(c, NULL, "y.test");
  struct sts_entry *z = sts__cache_get(c, NULL, "z.test"); /* drops y, not x */
  ASSERT_EQ(sts__cache_count(c), 2);
  ASSERT(sts__cache_get(c, NULL, "x.test") == x);
  z->fetch = (struct sts_fetch *)1;  /* only compared with NULL */
  sts__cache_get(c, NULL, "w.test"); /* nothing may go: over the bound */
  ASSERT_EQ(sts__cache_count(c), 3);
  x->answers = 0;
  z->fetch = NULL;
  sts__cache_get(c, NULL, "v.test"); /* back under the bound */
  ASSERT_EQ(sts__cache_count(c), 2);
  /* A policy the store could not take stays in memory. */
  struct sts_entry *u = sts__cache_get(c, NULL, "u.test");
  u->unpersisted = true;
  sts__cache_get(c, NULL, "t.test");
  sts__cache_get(c, NULL, "s.test");
  ASSERT(sts__cache_get(c, NULL, "u.test") == u);
  ASSERT(u->unpersisted);
  sts__cache_free(c);
}

/* A failed fetch keeps its facts (time, kind, reason); a policy clears them. */
static void test_failure_then_policy(void) {
  struct sts_cache *c = NULL;
  ASSERT_EQ(sts__cache_new(4, &c), 0);
  struct sts_entry *e = sts__cache_get(c, NULL, "f.test");
  size_t small = sts__cache_bytes(c);
  sts__entry_set_failure(e, OBSERVE_STS_FETCH, "id0", "connection refused", 1000);
  ASSERT_EQ(e->failed_at, 1000);
  ASSERT_EQ(e->failure->kind, OBSERVE_STS_FETCH);
  ASSERT_STR_EQ(e->failure->reason, "connection refused");
  ASSERT_STR_EQ(e->failure->id, "id0");
  struct sts_policy p = {.mode = STS_MODE_TESTING, .max_age = 60, .nmx = 0};
  ASSERT_EQ(sts__entry_set_policy(e, "id1", &p, 2000, 2060), 0);
  ASSERT_EQ(e->failed_at, 0);
  ASSERT(e->failure == NULL);
  ASSERT(e->cached && e->cached->present);
  ASSERT_EQ(sts__cache_bytes(c), small + sizeof(struct sts_cached));
  /* A policy costs its patterns' text besides: no fixed-size table of names. */
  ASSERT(sizeof(struct sts_cached) < 128);
  char err[128];
  ASSERT_EQ(sts_policy_parse(ENFORCE, strlen(ENFORCE), &p, err, sizeof err), 0);
  ASSERT_EQ(sts__entry_set_policy(e, "id2", &p, 3000, 3060), 0);
  ASSERT(p.mx == NULL && p.nmx == 0); /* moved into the entry */
  ASSERT_EQ(e->cached->policy.nmx, 1);
  ASSERT_EQ(sts__cache_bytes(c),
            small + sizeof(struct sts_cached) + sizeof "mx1.enforce.test");
  sts__cache_free(c);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/sp-test-sts-cache-XXXXXX");
  ASSERT(mkdtemp(dir) != NULL);
  snprintf(db, sizeof db, "%s/policies.sqlite3", dir);
  RUN_TEST(test_bounded_100k);
  RUN_TEST(test_dropped_reads_store);
  RUN_TEST(test_pinned_kept);
  RUN_TEST(test_failure_then_policy);
  static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
    char path[160];
    snprintf(path, sizeof path, "%s%s", db, suffixes[i]);
    unlink(path);
  }
  ASSERT_EQ(rmdir(dir), 0);
  return 0;
}
