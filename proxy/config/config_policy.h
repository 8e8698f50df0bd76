/* Internals of the config module: the keys of the TLS policy (policy.table,
 * policy.table_file, outbound.tls.default_level). Not for use outside
 * proxy/config*.c.
 *
 * policy.table and policy.table_file both add to cfg->policy_table, in the order the
 * keys appear; a key present in both is an error, reported on the one read second. */
#ifndef SP_CONFIG_POLICY_H
#define SP_CONFIG_POLICY_H

#include <stddef.h>

#include "proxy/config/config.h"
#include "proxy/config/config_yaml.h"

/* Larger table files are refused. */
#define CONFIG__TABLE_FILE_MAX (16 * 1024 * 1024)

/* Fills part of cfg from a whole node of any shape, reporting each problem under key
 * (the node's dotted path). The node is neither an alias nor tagged. */
typedef void (*config__node_fn)(struct config__errs *errs, const char *key,
                                const struct config__node *n, struct config *cfg);

/* policy.table: a mapping of domain keys to a Postfix value string ("secure
 * match=nexthop protocols=>=TLSv1.3") or to a mapping {level, match, fingerprints,
 * protocols}. Errors are "file:line:col: policy.table.KEY: reason". */
void config__policy_table(struct config__errs *errs, const char *key,
                          const struct config__node *n, struct config *cfg);

/* policy.table_file: a Postfix-syntax table file, read now. Each problem in it is one
 * error "file:line:col: policy.table_file: TABLEFILE:LINE: reason". */
void config__policy_table_file(struct config__errs *errs, const char *key,
                               const struct config__node *n, struct config *cfg);

/* dst is an enum tls_level: a level name other than fingerprint (which needs
 * per-domain fingerprints). */
const char *config__parse_level(const char *s, void *dst, char *buf, size_t cap);

#endif
