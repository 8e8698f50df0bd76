/* Persistent state: MTA-STS policies (so a restart never reopens the trust-on-first-
 * use window) in an sqlite file under the state directory. Calls are synchronous and
 * short (one indexed row); the file is opened once at start-up.
 *
 * Ownership: struct store owns the sqlite3 handle and its prepared statements. */
#ifndef SP_STORE_H
#define SP_STORE_H

#include <stdint.h>

#include "policy/mtasts.h"

struct store;

struct store_policy {
  char domain[256];
  char id[STS_ID_MAX + 1];
  char *text; /* the policy file as fetched (malloc'd; store_policy_free) */
  int64_t fetched_at;
  int64_t expires_at;
};

/* Opens (creating) path; the schema is created or checked. err gets the reason. */
int store_open(const char *path, struct store **out, char *err, size_t errlen);
void store_close(struct store *s);

/* Returns 1 and fills out when present, 0 when absent, negative on error. */
int store_get_policy(struct store *s, const char *domain, struct store_policy *out);
int store_put_policy(struct store *s, const struct store_policy *p);
/* Returns 1 when a row was removed, 0 when there was none. */
int store_delete_policy(struct store *s, const char *domain);
void store_policy_free(struct store_policy *p);
/* Why the last call on s failed ("writing policy: database is locked"). */
const char *store_errmsg(const struct store *s);

#endif
