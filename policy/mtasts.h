/* MTA-STS (RFC 8461): the _mta-sts TXT record, the policy file, MX pattern matching,
 * and the cache rules of §5.1. Pure: no DNS, HTTP or storage here. Parsers of outside
 * input: each has a fuzz target and tests of malformed input. */
#ifndef SP_POLICY_MTASTS_H
#define SP_POLICY_MTASTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STS_ID_MAX 32
#define STS_NAME_MAX 253
#define STS_MAX_AGE_CAP 31557600u /* §3.2: larger values are capped */
#define STS_POLICY_MAX_BYTES 65536

enum sts_mode { STS_MODE_NONE, STS_MODE_TESTING, STS_MODE_ENFORCE };

enum sts_txt_result {
  STS_TXT_OK = 0,
  STS_TXT_NONE = -1,    /* no record starting "v=STSv1;" (after discarding others) */
  STS_TXT_INVALID = -2, /* more than one STSv1 record, or a bad one (no/bad id) */
};

/* Parses the TXT RRset of _mta-sts.<domain>: each record's strings already joined
 * (records[i], lens[i]). §3.1: records not starting with "v=STSv1;" are discarded;
 * exactly one must remain; fields "key=value" separated by ';' with optional
 * whitespace; id is 1..32 alphanumerics; unknown fields ignored when well-formed.
 * On STS_TXT_OK, id holds the id. */
int sts_txt_parse(const char *const *records, const size_t *lens, size_t n,
                  char id[STS_ID_MAX + 1]);

/* The mx patterns are lower-case A-label names, "*." allowed as the whole first label
 * only, each NUL-terminated and stored one after the other in one malloc'd block of
 * mx_len bytes (NULL when there are none). RFC 8461 sets no limit on their number; the
 * block is never larger than the policy file (STS_POLICY_MAX_BYTES). The struct owns
 * the block: a copy by value is a move (the source is then forgotten, never freed);
 * sts_policy_copy() makes an independent copy and sts_policy_free() ends it. */
struct sts_policy {
  enum sts_mode mode;
  uint32_t max_age; /* seconds, capped at STS_MAX_AGE_CAP */
  size_t nmx;       /* patterns in mx */
  size_t mx_len;    /* bytes in mx, NULs included */
  char *mx;         /* owned */
};

/* Frees p's patterns and empties it (p itself is the caller's); NULL is a no-op. */
void sts_policy_free(struct sts_policy *p);
/* dst = an independent copy of src (dst's old content is not freed). 0, or -1 when out
 * of memory (dst then empty). */
int sts_policy_copy(struct sts_policy *dst, const struct sts_policy *src);
/* The pattern after prev (NULL: the first), or NULL after the last:
 *   for (const char *m = sts_mx_next(p, NULL); m; m = sts_mx_next(p, m)) */
const char *sts_mx_next(const struct sts_policy *p, const char *prev);

/* Parses a policy file (§3.2). CRLF or LF line ends; "key: value" with optional
 * whitespace around both; the first of duplicate keys wins (but mx may repeat and
 * accumulates); unknown keys ignored when well-formed; version must be "STSv1"; mode
 * enforce|testing|none; mx required unless mode is none, as many as the file holds;
 * max_age required, decimal, at most 10 digits, capped. Any other problem → -1 with a
 * reason in err (out empty). Returns 0 (out's patterns then owned by the caller:
 * sts_policy_free), or -2 when out of memory (out empty; not a verdict on the
 * policy). */
int sts_policy_parse(const char *text, size_t len, struct sts_policy *out, char *err,
                     size_t errlen);

/* Whether host (an MX host name, any case, trailing dot allowed) matches one of the
 * policy's mx patterns (§4.1: "*.example.com" matches exactly one extra left-most
 * label). */
bool sts_mx_match(const struct sts_policy *p, const char *host);

/* ---- cache rules (§5.1, §10.2) ------------------------------------------------------- */

struct sts_cached {
  bool present;
  char id[STS_ID_MAX + 1];
  struct sts_policy policy;
  int64_t fetched_at; /* unix seconds */
  int64_t expires_at; /* fetched_at + max_age */
};

enum sts_txt_state {
  STS_DNS_FOUND,    /* a valid TXT record with an id */
  STS_DNS_ABSENT,   /* NXDOMAIN, no STSv1 record, or an invalid record set */
  STS_DNS_TEMPFAIL, /* SERVFAIL, timeout */
};

enum sts_action {
  STS_ACT_NO_POLICY, /* deliver without MTA-STS */
  STS_ACT_USE_CACHED,
  STS_ACT_FETCH, /* fetch; on failure fall back to the cached policy if still valid */
};

/* What to do for a domain now: a fresh cached policy with the same id is used as is;
 * a new id, or no cache, means fetch; a missing or failing TXT lookup keeps a valid
 * cached policy (a restart or a DNS attacker must not end enforcement early). */
enum sts_action sts_cache_decide(const struct sts_cached *c, enum sts_txt_state txt,
                                 const char *txt_id, int64_t now);

/* Whether a cached policy in use should be refreshed proactively now (§10.2): it is
 * past half its max_age. */
bool sts_cache_should_refresh(const struct sts_cached *c, int64_t now);

#endif
