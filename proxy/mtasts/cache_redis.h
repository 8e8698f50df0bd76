/* The shared cache's operations on Redis, for sts.c (policies, fetch leases) and
 * tlsrpt*.c (counters, the report lock). Keys, after cache.redis.key_prefix:
 *   sts:policy:<domain>   hash id, fetched_at, expires_at, policy; expires with it
 *   sts:lease:<domain>    the proxy fetching that policy now (SET NX PX)
 *   tlsrpt:<start>:<end>  hash of encoded row keys (cache_codec.h) to counts
 *   tlsrpt:periods        set of "<start>:<end>" with counts
 *   tlsrpt:lock:<end>     the proxy sending the reports of periods ending by <end>
 *
 * Every function returns NULL (or a negative error) when Redis is unavailable now;
 * a callback runs once, never from inside the call, unless cache_op_cancel() comes
 * first. Ownership: an op belongs to this module until its callback ran or it was
 * cancelled; it owns its commands in flight and what it collects. */
#ifndef SP_CACHE_REDIS_H
#define SP_CACHE_REDIS_H

#include <stdint.h>

#include "proxy/mtasts/store.h"
#include "proxy/net/redis.h"

struct cache_op;

/* rc: 1 found (p valid during the call), 0 none, < 0 failed or malformed (logged). */
typedef void (*cache_policy_cb)(void *arg, int rc, const struct store_policy *p);
/* rc: 1 done / taken, 0 held by another proxy, < 0 failed. */
typedef void (*cache_done_cb)(void *arg, int rc);
/* rc 0: rows (sorted by domain, period, then the rest; owned by the callee:
 * store_tlsrpt_rows_free); < 0 failed. */
typedef void (*cache_rows_cb)(void *arg, int rc, struct store_tlsrpt_row *rows,
                              size_t n);

struct cache_op *cache_redis_policy_get(struct redis *r, const char *domain,
                                        cache_policy_cb cb, void *arg);
/* Stores p (expiring at p->expires_at); fire and forget. */
int cache_redis_policy_put(struct redis *r, const struct store_policy *p);

/* SET sts:lease:<domain> <owner> NX PX ms: cb rc 1 when this proxy holds it. */
struct cache_op *cache_redis_lease(struct redis *r, const char *domain,
                                   const char *owner, uint64_t ms, cache_done_cb cb,
                                   void *arg);
/* Gives the lease back (only when owner still holds it). */
void cache_redis_lease_release(struct redis *r, const char *domain, const char *owner);

/* Adds each row's count, in one MULTI/EXEC: all or nothing. cb rc 1 when applied. */
struct cache_op *cache_redis_tlsrpt_add(struct redis *r,
                                        const struct store_tlsrpt_row *rows, size_t n,
                                        cache_done_cb cb, void *arg);
/* Every counter of periods ending at or before end_before. */
struct cache_op *cache_redis_tlsrpt_load(struct redis *r, int64_t end_before,
                                         cache_rows_cb cb, void *arg);
/* Takes rows (as loaded) off the counters (a counter at zero goes away); fire and
 * forget. */
int cache_redis_tlsrpt_subtract(struct redis *r, const struct store_tlsrpt_row *rows,
                                size_t n);
/* SET tlsrpt:lock:<end> <owner> NX EX ttl: cb rc 1 when this proxy sends. */
struct cache_op *cache_redis_report_lock(struct redis *r, int64_t end,
                                         const char *owner, uint64_t ttl_s,
                                         cache_done_cb cb, void *arg);

void cache_op_cancel(struct cache_op *op);

#endif
