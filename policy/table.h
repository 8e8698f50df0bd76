/* The local policy table: per destination domain, a TLS level and its options, as in
 * Postfix's smtp_tls_policy_maps. Pure: no I/O (the caller reads the file).
 *
 * Keys: "example.com" matches that domain only; ".example.com" matches every
 * subdomain (not example.com itself). An exact key wins over a suffix; the longest
 * suffix wins among suffixes. Keys are stored lower-case without a trailing dot. */
#ifndef SP_POLICY_TABLE_H
#define SP_POLICY_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "policy/level.h"

#define TABLE_MAX_MATCH 16
#define TABLE_NAME_MAX 255
/* Most entries one table holds (an entry is about 5 KiB). */
#define TABLE_MAX_ENTRIES 10000

struct table_entry {
  char key[TABLE_NAME_MAX + 1];
  enum tls_level level;
  /* verify/secure: names to match ("hostname", "nexthop", "dot-nexthop" or literal
   * names, ".example.com" for its subdomains), in order; none = the level's default.
   * (Postfix's match= for these levels, ':'-separated.) */
  char match[TABLE_MAX_MATCH][TABLE_NAME_MAX + 1];
  size_t nmatch;
  /* fingerprint: SHA-256 digests of the certificate or of its public key (Postfix's
   * match= for this level, "AB:CD:..." hex). */
  uint8_t fingerprints[TABLE_MAX_MATCH][32];
  size_t nfingerprints;
  /* From protocols= (Postfix syntax "!SSLv2:!SSLv3:!TLSv1:!TLSv1.1" or ">=TLSv1.2"):
   * 0 = the global minimum; 0x0303 (TLS 1.2) or 0x0304 (TLS 1.3). Never lower than
   * TLS 1.2 whatever the entry says; the effective minimum is the higher of this and
   * the global one (an entry cannot lower outbound.tls.min_protocol). */
  int min_protocol;
  unsigned line; /* where it was defined (1-based; 0 when built in code) */
};

struct table {
  struct table_entry *entries; /* owned */
  size_t n, cap;
  /* owned: open-addressing hash of the keys, index_cap slots (a power of two), each 0
   * (free) or an entry's position + 1. Maintained by table_add. */
  uint32_t *index;
  size_t index_cap;
};

void table_init(struct table *t);
void table_free(struct table *t);

/* Adds one entry built by the caller (e.g. from YAML). Returns 0, -1 on a duplicate
 * key (writes "duplicate key ..." to err) or a full table (TABLE_MAX_ENTRIES), or -2
 * out of memory. */
int table_add(struct table *t, const struct table_entry *e, char *err, size_t errlen);

/* Parses the attributes of one entry in Postfix syntax, e.g. "secure match=a:b
 * protocols=>=TLSv1.2" (level first, then attributes), into e (key and line untouched).
 * Returns 0, or -1 with a reason in err ("unknown level \"foo\"", "unsupported
 * attribute \"ciphers\"", "fingerprint must be SHA-256 (32 bytes)", ...). Attributes
 * are separated by whitespace or commas, as in Postfix. Attributes known to
 * Postfix that have no effect here (ciphers=, exclude=, tafile=) are errors too:
 * silently ignoring a security setting is worse than refusing it. */
int table_parse_value(const char *text, size_t len, struct table_entry *e, char *err,
                      size_t errlen);

/* Normalizes a key as written ("Example.COM.", ".example.com") into out: lower-case,
 * without the trailing dot. Returns 0, or -1 with a reason in err (not a domain name;
 * next-hop keys "[host]:port" and "host:port", which the proxy never looks up). */
int table_parse_key(const char *text, size_t len, char out[TABLE_NAME_MAX + 1],
                    char *err, size_t errlen);

/* The pieces of table_parse_value, for callers building an entry from structured
 * input (YAML). Each returns 0, or -1 with a reason in err.
 * table_add_match: one verify/secure name (checked, lower-cased) appended to e.
 * table_add_fingerprint: one SHA-256 digest, "AB:CD:..." (32 bytes) or 64 hex digits.
 * table_parse_protocols: a Postfix protocols value into *min_protocol (0x0303/0x0304).
 * table_check_entry: the attributes fit the level (at least one fingerprint at level
 * fingerprint; match names only at verify/secure; no protocols at level none). */
int table_add_match(struct table_entry *e, const char *name, size_t len, char *err,
                    size_t errlen);
int table_add_fingerprint(struct table_entry *e, const char *text, size_t len,
                          char *err, size_t errlen);
int table_parse_protocols(const char *text, size_t len, int *min_protocol, char *err,
                          size_t errlen);
int table_check_entry(const struct table_entry *e, char *err, size_t errlen);

/* Parses a whole table file in Postfix's text syntax: "key value..." lines, '#'
 * comments, blank lines, continuation lines starting with whitespace. Every problem
 * is reported through on_error(arg, line, reason), and parsing goes on; returns the
 * number of errors (0 = all entries added). */
int table_parse_file(struct table *t, const char *text, size_t len,
                     void (*on_error)(void *arg, unsigned line, const char *reason),
                     void *arg);

/* The entry for domain (lower-case, no trailing dot; upper case and a trailing dot
 * are tolerated), or NULL. The pointer is valid until the next table_add or
 * table_free. */
const struct table_entry *table_lookup(const struct table *t, const char *domain);

#endif
