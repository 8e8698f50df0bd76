/* MTA-STS (RFC 8461) on the loop: the _mta-sts TXT lookup, the policy cache (memory,
 * backed by the sqlite store so a restart never reopens the trust-on-first-use
 * window), and policy fetches over HTTPS, coalesced per domain.
 *
 * Ownership: struct sts owns its store, its http client, every fetch (with its
 * shared-cache operation) and the memory cache (sts_cache.h: at most
 * mta_sts.cache_entries domains, least recently used dropped first, read back from
 * the store when next seen); sts_close() frees it once the http client closed. A
 * query belongs to the sts
 * until its callback ran or sts_cancel(); after sts_cancel() it never runs. */
#ifndef SP_STS_H
#define SP_STS_H

#include <uv.h>

#include "policy/mtasts.h"
#include "proxy/config/config.h"
#include "proxy/core/observe.h"
#include "proxy/net/dns.h"
#include "proxy/net/redis.h"

struct sts;
struct sts_query;

/* Why the last policy fetch of a domain failed. */
struct sts_failure {
  enum observe_sts_failure kind; /* OBSERVE_STS_OK: none */
  char reason[160];
  char id[STS_ID_MAX + 1]; /* the TXT id whose policy could not be had */
};

/* policy: the policy in force for the domain (valid during the call only), or NULL.
 * failed: when policy is NULL because the domain announces a policy (TXT v=STSv1)
 * whose last fetch failed, why (valid during the call only); NULL otherwise, and
 * always NULL while a cached policy is in force. */
typedef void (*sts_cb)(void *arg, const struct sts_policy *policy,
                       const struct sts_failure *failed);

/* Opens <state_dir>/policies.sqlite3 (creating the directory). redis (the runtime's,
 * outliving the sts; NULL for backend sqlite) shares policies with a fleet: a policy
 * is looked up there before fetching, one proxy fetches per domain (a lease) while
 * the others wait for it, and what is fetched is published there. The file stays
 * this host's copy, so a policy it knew survives a restart while Redis is down. */
int sts_new(uv_loop_t *loop, const struct config *cfg, struct dns *dns,
            struct redis *redis, struct sts **out, char *err, size_t errlen);
void sts_close(struct sts *s, void (*on_closed)(void *arg), void *arg);

/* cb runs exactly once, never from inside this call. NULL when out of memory. */
struct sts_query *sts_lookup(struct sts *s, const char *domain, sts_cb cb, void *arg);
void sts_cancel(struct sts_query *q);

#endif
