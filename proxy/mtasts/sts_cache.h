/* The MTA-STS memory cache, part of the sts module: what this process knows of each
 * destination domain, for at most a configured number of domains (mta_sts.
 * cache_entries). Lookup by domain is O(1) (lru.h); when the cache is full the least
 * recently used entry that is not in use is dropped.
 *
 * Memory per domain: a domain with no policy costs a small entry (the name and the
 * negative facts: "nothing persisted for it", and when a fetch failed, when and why,
 * so the fetch is not retried on every message); a policy is allocated only for a
 * domain that has one, and costs about a hundred bytes plus its mx patterns (their
 * text, each NUL-terminated: a policy's usual few names take tens of bytes).
 *
 * Dropping an entry never reopens the trust-on-first-use window: a policy in force
 * was persisted to the store when it was fetched or adopted, and a domain not in
 * memory is read back from the store on its next lookup (a policy the store could
 * not take is kept in memory, pinned). What a drop forgets is
 * short-lived: the failure backoff (a fetch may be retried sooner) and the "not yet
 * published to Redis" mark (the next fetch publishes).
 *
 * Ownership: the cache owns its entries and what they point to, except fetch (the
 * sts's). An entry pointer stays valid while the entry is pinned (a fetch in flight,
 * or answers pending); otherwise only until the next sts__cache_get. */
#ifndef SP_STS_CACHE_H
#define SP_STS_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "policy/mtasts.h"
#include "proxy/core/lru.h"
#include "proxy/mtasts/store.h"
#include "proxy/mtasts/sts.h"

struct sts_fetch;
struct sts_cache;

struct sts_entry {
  struct lru_node node;        /* the cache's */
  struct sts_cached *cached;   /* the policy in force (owned), or NULL: none known */
  struct sts_failure *failure; /* why the last fetch failed (owned), or NULL */
  int64_t failed_at;           /* when it failed (unix seconds); 0: no failure */
  struct sts_fetch *fetch;     /* in flight, or NULL; pins the entry */
  unsigned answers;            /* answers given from it, callbacks pending; pin */
  bool unshared;               /* fetched while Redis was down: publish when back */
  bool unpersisted;            /* its policy is only here (the store write failed):
                                  a pin, so dropping it never forgets the policy */
  char domain[];               /* NUL-terminated, as looked up */
};

/* capacity: at most this many entries not pinned (at least 1). 0 or SP_E_NOMEM. */
int sts__cache_new(size_t capacity, struct sts_cache **out);
/* Frees the cache and every entry. No entry may have a fetch left. */
void sts__cache_free(struct sts_cache *c);

/* The entry for domain (at most 255 bytes), made the most recently used. One not in
 * memory is created and filled from store (NULL: none) with the persisted policy, if
 * any. To make room the least recently used entry that is not pinned is dropped; if
 * every entry is pinned the cache holds more than its capacity until they are
 * released. NULL when out of memory or domain is too long. */
struct sts_entry *sts__cache_get(struct sts_cache *c, struct store *store,
                                 const char *domain);

/* Sets the policy in force and clears the failure. p's patterns move into the entry
 * (p is left empty; sts_policy_free(p) stays harmless). SP_E_NOMEM: both unchanged. */
int sts__entry_set_policy(struct sts_entry *e, const char *id, struct sts_policy *p,
                          int64_t fetched_at, int64_t expires_at);
/* Records a failed fetch of the policy with TXT id at now; the policy in force, if
 * any, stays. Without memory for the reason and id, only the time is kept (the
 * backoff then holds for any id). */
void sts__entry_set_failure(struct sts_entry *e, enum observe_sts_failure kind,
                            const char *id, const char *reason, int64_t now);

size_t sts__cache_count(const struct sts_cache *c);
/* Bytes the cache asked for: its table and its entries with what they own (not the
 * allocator's overhead). O(n): for tests and diagnostics. */
size_t sts__cache_bytes(const struct sts_cache *c);

#endif
