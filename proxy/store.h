/* Persistent state: MTA-STS policies (so a restart never reopens the trust-on-first-
 * use window) and TLS-RPT session counts (RFC 8460) in an sqlite file under the state
 * directory. Calls are synchronous and short (indexed rows, one transaction per batch);
 * the file is opened once at start-up. Several handles (the daemon's MTA-STS cache,
 * its reporter, `tlsrpt send`) may share the file: WAL and a busy timeout serialize.
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

/* One TLS-RPT counter: sessions of one period, policy domain, policy and outcome. All
 * fields but count form the key. */
struct store_tlsrpt_row {
  int64_t period_start, period_end; /* unix seconds, [start, end) */
  char domain[256];                 /* policy domain */
  char policy_type[16];             /* "sts", "tlsa", "no-policy-found" */
  char *policy_strings;             /* "\n"-joined (may be ""); see below */
  char *mx_hosts;                   /* "\n"-joined (may be "") */
  char result_type[32];             /* RFC 8460 result type; "" = successful sessions */
  char mx[256];                     /* receiving MX host ("" for successes) */
  char ip[64];                      /* receiving IP ("" when unknown) */
  char reason[256];                 /* failure-reason-code ("" = none) */
  int64_t count;
};

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
void store_tlsrpt_rows_free(struct store_tlsrpt_row *rows, size_t n);
/* Why the last call on s failed ("writing policy: database is locked"). */
const char *store_errmsg(const struct store *s);

#endif
