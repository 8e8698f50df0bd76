/* Internals of the config module: tlsrpt.dkim (domain, selector, key_file), the key
 * that signs mailed TLS reports. Not for use outside proxy/config*.c. */
#ifndef SP_CONFIG_DKIM_H
#define SP_CONFIG_DKIM_H

#include "proxy/config/config.h"
#include "proxy/config/config_policy.h"
#include "proxy/config/config_yaml.h"

/* tlsrpt.dkim.key_file: reads the PEM private key now (RSA of 1024 bits or more, or
 * Ed25519), refusing a file others may read or write (as OpenDKIM's RequireSafeKeys),
 * and keeps it in cfg->tlsrpt_dkim_key with its algorithm and size. */
void config__dkim_key_file(struct config__errs *errs, const char *key,
                           const struct config__node *n, struct config *cfg);

/* tlsrpt.dkim as a whole, after its keys: all three or none. */
void config__dkim_section(struct config__errs *errs, const char *key,
                          const struct config__node *n, struct config *cfg);

/* Wipes and frees the key (config_free). */
void config__dkim_free(struct config *cfg);

#endif
