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
   * TLS 1.2 whatever the entry says. */
  int min_protocol;
  unsigned line; /* where it was defined (1-based; 0 when built in code) */
};

struct table {
  struct table_entry *entries; /* owned */
  size_t n, cap;
};

void table_init(struct table *t);
void table_free(struct table *t);

/* Adds one entry built by the caller (e.g. from YAML). Returns 0, -1 on a duplicate
 * key (writes "duplicate key" to err) or -2 out of memory. */
int table_add(struct table *t, const struct table_entry *e, char *err, size_t errlen);

/* Parses the attributes of one entry in Postfix syntax, e.g. "secure match=a:b
 * protocols=>=TLSv1.2" (level first, then attributes), into e (key untouched).
 * Returns 0, or -1 with a reason in err ("unknown level \"foo\"", "unknown attribute
 * \"ciphers\"", "fingerprint must be SHA-256 (32 bytes)", ...). Attributes known to
 * Postfix that have no effect here (ciphers=, exclude=, tafile=) are errors too:
 * silently ignoring a security setting is worse than refusing it. */
int table_parse_value(const char *text, size_t len, struct table_entry *e, char *err,
                      size_t errlen);

/* Parses a whole table file in Postfix's text syntax: "key value..." lines, '#'
 * comments, blank lines, continuation lines starting with whitespace. Every problem
 * is reported through on_error(arg, line, reason), and parsing goes on; returns the
 * number of errors (0 = all entries added). */
int table_parse_file(struct table *t, const char *text, size_t len,
                     void (*on_error)(void *arg, unsigned line, const char *reason),
                     void *arg);

/* The entry for domain (lower-case, no trailing dot), or NULL. */
const struct table_entry *table_lookup(const struct table *t, const char *domain);

#endif
