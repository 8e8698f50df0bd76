/* How to reach the shared cache (Redis): the client's settings (redis.h), filled by
 * the configuration from cache.redis. Types only, so that the client needs nothing
 * else of the configuration. */
#ifndef SP_REDIS_SETTINGS_H
#define SP_REDIS_SETTINGS_H

#include <stdbool.h>
#include <stdint.h>

/* cache.redis.*: url "redis://[[user]:password@]host[:port][/db]" or "rediss://..."
 * (TLS), split into its parts; password (key) overrides the url's. */
struct redis_settings {
  char host[256];       /* a name or an IP literal (without brackets) */
  uint16_t port;        /* default 6379 */
  bool tls;             /* rediss: */
  char username[128];   /* "" = AUTH with the password only */
  char password[256];   /* "" = no AUTH */
  unsigned db;          /* SELECT db when > 0 */
  char key_prefix[128]; /* default "starttls-proxy:" */
  char ca_file[1024];   /* trust anchors for rediss:; "" = the system's */
  uint64_t timeout_ms;  /* connect and reply timeout, default 2 s */
};

#endif
