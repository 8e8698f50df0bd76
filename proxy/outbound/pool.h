/* Idle MX connections kept for the next transaction to the same destination, from any
 * inbound connection: the fast path that saves a TCP + TLS handshake per message (as
 * Postfix's scache does). A connection is parked only between transactions (no MAIL
 * open at the MX), for at most idle_ms, and for at most POOL_MAX_MESSAGES
 * transactions in its life; any error while parked closes it.
 *
 * Adaptive by construction: a connection is opened only when none to its destination
 * is parked, and pool_take() hands out the most recently parked one (LIFO). So the
 * connections parked for a destination are never more than its peak concurrency of
 * the last idle_ms, and once that concurrency falls, the surplus stays at the bottom
 * of the stack unused and expires. The bounds only cap a burst: at most max_per_domain
 * parked per destination and max_idle in all; parking past either closes the oldest
 * parked connection (of the destination, or of any) to make room.
 *
 * A destination is the domain AND the runtime (configuration and policy table) the
 * connection was judged under: a connection made under one policy is never handed to
 * a transaction routed under another (after a reload, say, that raised the level).
 *
 * Ownership: the pool owns parked upstreams (it is their owner for callbacks) and its
 * timer; pool_take() hands one back to the caller, who becomes its owner. The daemon
 * owns the pool; pool_close() closes every parked connection (QUIT). */
#ifndef SP_POOL_H
#define SP_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "proxy/config/config.h"
#include "proxy/outbound/upstream.h"

#define POOL_MAX_MESSAGES 100

struct pool;

struct pool_limits {
  uint64_t idle_ms;      /* outbound.connection_cache_time; 0 disables parking */
  size_t max_idle;       /* outbound.connection_cache_size: parked in all */
  size_t max_per_domain; /* outbound.connection_cache_per_domain */
};

/* The limits set by cfg's outbound.connection_cache_* keys. */
struct pool_limits pool_limits_of(const struct config *cfg);
struct pool *pool_new(uv_loop_t *loop, const struct pool_limits *lim);
/* Parks up (taking ownership) or, when it cannot carry another transaction, closes it
 * politely. */
void pool_put(struct pool *p, struct upstream *up);
/* The most recently parked connection to domain made under runtime rt, or NULL. The
 * caller must set itself as the owner (upstream_set_owner) before returning to the
 * loop. */
struct upstream *pool_take(struct pool *p, const char *domain,
                           const struct runtime *rt);
void pool_close(struct pool *p); /* frees once its timer closed */

#endif
