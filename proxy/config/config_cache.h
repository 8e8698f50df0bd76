/* Internals of the config module: the cache section (cache.backend, cache.redis.*).
 * Not for use outside proxy/config*.c, except config_redis_url_parse (tests). */
#ifndef SP_CONFIG_CACHE_H
#define SP_CONFIG_CACHE_H

#include <stddef.h>

#include "proxy/config/config.h"
#include "proxy/config/config_policy.h"
#include "proxy/config/config_yaml.h"

void config__cache_defaults(struct config *cfg);

/* cache: a mapping {backend, redis: {url, password, key_prefix, ca_file, timeout}}.
 * backend redis needs redis.url; redis keys without backend redis are an error too
 * (a fleet that silently runs on local files would split its policies). */
void config__cache(struct config__errs *errs, const char *key,
                   const struct config__node *n, struct config *cfg);

/* The keys config__cache() accepts, dotted below "cache" (for config_keys()). */
extern const char *const config__cache_keys[];

/* Parses "redis://[[user]:password@]host[:port][/db]" or rediss:// into r (host,
 * port, tls, username, password, db; other fields untouched). Percent-escapes are
 * decoded in the user and password. Returns NULL or the reason (static or buf). */
const char *config_redis_url_parse(const char *s, struct redis_settings *r, char *buf,
                                   size_t cap);

#endif
