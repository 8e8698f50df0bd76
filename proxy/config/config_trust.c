/* Which trust anchors each TLS client takes from the configuration (config.h). */
#include "proxy/config/config.h"

static const char *set_or_null(const char *s) {
  return s && *s ? s : NULL;
}

static const char *own_ca_file(const struct config *cfg, enum config_trust_client c) {
  switch (c) {
  case CONFIG_TRUST_MTA_STS:
    return cfg->sts_ca_file;
  case CONFIG_TRUST_TLSRPT:
    return cfg->tlsrpt_ca_file;
  case CONFIG_TRUST_REDIS:
    return cfg->redis.ca_file;
  }
  return NULL;
}

/* A user who sets one trust store (outbound.tls) means it for every client: falling
 * through to the system store here made policy hosts Untrusted that the MX
 * connections trusted. */
struct tls_trust config_trust(const struct config *cfg, enum config_trust_client c) {
  struct tls_trust t = {set_or_null(own_ca_file(cfg, c)), NULL};
  if (t.file)
    return t;
  t.file = set_or_null(cfg->tls.ca_file);
  t.path = set_or_null(cfg->tls.ca_path);
  return t;
}
