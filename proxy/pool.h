/* Idle MX connections kept for the next transaction to the same destination domain,
 * from any inbound connection: the fast path that saves a TCP + TLS handshake per
 * message (as Postfix's scache does). A connection is parked only between
 * transactions (no MAIL open at the MX), for at most idle_ms, and for at most
 * POOL_MAX_MESSAGES transactions in its life; any error while parked closes it.
 *
 * Ownership: the pool owns parked upstreams (it is their owner for callbacks) and its
 * timer; pool_take() hands one back to the caller, who becomes its owner. The daemon
 * owns the pool; pool_close() closes every parked connection (QUIT). */
#ifndef SP_POOL_H
#define SP_POOL_H

#include <stdbool.h>
#include <uv.h>

#include "upstream.h"

#define POOL_MAX_MESSAGES 100
#define POOL_MAX_PER_DOMAIN 8
#define POOL_MAX_IDLE 256

struct pool;

/* idle_ms: outbound.connection_cache_time; 0 disables parking. */
struct pool *pool_new(uv_loop_t *loop, uint64_t idle_ms);
/* Parks up (taking ownership) or, past a limit, closes it politely. */
void pool_put(struct pool *p, struct upstream *up);
/* A parked connection to domain made under runtime rt (a reload's new policy never
 * reuses a connection judged under the old one), or NULL. The caller must set itself
 * as the owner (upstream_set_owner) before returning to the loop. */
struct upstream *pool_take(struct pool *p, const char *domain,
                           const struct runtime *rt);
void pool_close(struct pool *p); /* frees once its timer closed */

#endif
