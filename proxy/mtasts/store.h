/* Persistent state: MTA-STS policies (so a restart never reopens the trust-on-first-
 * use window) and TLS-RPT session counts (RFC 8460) in an sqlite file under the state
 * directory. Calls are synchronous and short (indexed rows, one transaction per batch);
 * the file is opened once at start-up. Several handles (the daemon's MTA-STS cache,
 * its reporter, `tlsrpt send`) may share the file: WAL and a busy timeout serialize.
 *
 * Ownership: struct store owns the sqlite3 handle and its prepared statements. */
#ifndef SP_STORE_H
#define SP_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/wire/store_rows.h"

struct store;

/* The store file under a state directory: <state_dir>/policies.sqlite3. */
#define STORE_PATH_MAX 1100 /* state_dir (at most 1023) and the file's name */
void store_path(const char *state_dir, char *out, size_t cap);

/* Opens (creating) path; the schema is created or checked. err gets the reason. */
int store_open(const char *path, struct store **out, char *err, size_t errlen);
void store_close(struct store *s);

/* Returns 1 and fills out when present, 0 when absent, negative on error. */
int store_get_policy(struct store *s, const char *domain, struct store_policy *out);
int store_put_policy(struct store *s, const struct store_policy *p);
/* Returns 1 when a row was removed, 0 when there was none. */
int store_delete_policy(struct store *s, const char *domain);

/* Adds each row's count to its counter (creating it), all in one transaction. The
 * strings are only read. Returns 0 or a negative error (nothing added). */
int store_tlsrpt_add(struct store *s, const struct store_tlsrpt_row *rows, size_t n);
/* Every counter with period_end <= end_before, ordered by domain, period, policy,
 * then outcome. *rows is malloc'd with malloc'd strings: store_tlsrpt_rows_free. */
int store_tlsrpt_load(struct store *s, int64_t end_before,
                      struct store_tlsrpt_row **rows, size_t *n);
/* Takes rows (as loaded) off the counters in one transaction: what was counted since
 * the load stays. Counters at zero are deleted. */
int store_tlsrpt_subtract(struct store *s, const struct store_tlsrpt_row *rows,
                          size_t n);
/* Why the last call on s failed ("writing policy: database is locked"). */
const char *store_errmsg(const struct store *s);

#endif
