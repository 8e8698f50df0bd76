/* A Redis client on the loop: RESP over struct conn (plain TCP, or TLS for rediss:
 * through the same memory-BIO engine as SMTP), replies parsed by hiredis's reader,
 * commands formatted by hiredis. Nothing here blocks: the host name is resolved by
 * uv_getaddrinfo, and a command issued while Redis is down fails at once (NULL) so
 * that callers fall back to what they hold in memory.
 *
 * One connection, kept up: AUTH and SELECT after each connect, then PING; while that
 * is under way commands queue (bounded) and are sent once it is up. A lost connection
 * fails every command waiting for a reply and is retried with backoff (100 ms doubling
 * to 5 s). A reply later than cache.redis.timeout drops the connection.
 *
 * Ownership: struct redis owns its conn (and through it the TLS state), its SSL_CTX,
 * its reader, its timer, the address lookup in flight and every command until the
 * command's callback has run; redis_close() frees it once its handles are closed. No
 * callback runs after redis_close() or after redis_cancel() of that command. */
#ifndef SP_REDIS_H
#define SP_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "certs/trust.h"
#include "proxy/config/redis_settings.h"

struct redis;
struct redis_cmd;

/* reply: the reply (valid during the call only; an error reply is REDIS_REPLY_ERROR),
 * or NULL when the command failed without one (why says how). */
typedef void (*redis_cb)(void *arg, const redisReply *reply, const char *why);

/* Starts connecting at once. cfg (the configuration's cache.redis) must outlive the
 * client. trust: the anchors for
 * rediss: (see certs/trust.h), used during the call only; NULL = the defaults. */
int redis_new(uv_loop_t *loop, const struct redis_settings *cfg,
              const struct tls_trust *trust, struct redis **out, char *err,
              size_t errlen);
void redis_close(struct redis *r, void (*on_closed)(void *arg), void *arg);

/* Whether commands are accepted now (up, or connecting with room in the queue). */
bool redis_usable(const struct redis *r);
/* Whether the connection is up (AUTH/SELECT done). */
bool redis_up(const struct redis *r);

/* Sends argv[0..argc) (binary-safe, lengths in argvlen). cb runs exactly once, never
 * from inside this call, unless redis_cancel() comes first. Returns NULL when Redis is
 * down, the queue is full, or out of memory (counted as a cache error). */
struct redis_cmd *redis_command(struct redis *r, redis_cb cb, void *arg, int argc,
                                const char **argv, const size_t *argvlen);
/* cb will not run; the reply, when it comes, is discarded. */
void redis_cancel(struct redis_cmd *c);

/* "<key_prefix><suffix>" into out; false when it does not fit. */
bool redis_key(const struct redis *r, char *out, size_t cap, const char *suffix);

/* Counts one failed cache operation (observe_cache_error) without a command. */
void redis_count_error(void);

#endif
