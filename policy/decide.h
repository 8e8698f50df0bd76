/* What TLS each MX host of a destination must get: the policy table entry (or the
 * default level) combined with DNSSEC and DANE facts. Pure: the router gathers the
 * facts (DNS answers, AD bits it trusts) and applies the verdict.
 *
 * Order (DESIGN §3): a table entry wins; its level (or the default level) then decides
 * whether DANE applies. For dane/dane-only (RFC 7672):
 *  - MX RRset not secure (or AD bits not trusted): dane → may; dane-only → skip host;
 *  - host address records not secure: dane → may; dane-only → skip host;
 *  - TLSA lookup failed (SERVFAIL, timeout, bogus): skip host (§2.1.2);
 *  - secure TLSA with a usable record: authenticate with the usable records;
 *  - secure TLSA with no usable record: TLS required, unauthenticated (§2.2);
 *    dane-only: skip host;
 *  - no TLSA (secure denial, or insecure TLSA answer): dane → may; dane-only → skip.
 * The failed DANE check of a host is never rescued by another policy source. */
#ifndef SP_POLICY_DECIDE_H
#define SP_POLICY_DECIDE_H

#include <stdbool.h>
#include <stddef.h>

#include "policy/dane.h"
#include "policy/level.h"
#include "policy/mtasts.h"
#include "policy/table.h"

enum decide_tlsa {
  DECIDE_TLSA_NOT_ASKED, /* no lookup was made (level not dane, or insecure) */
  DECIDE_TLSA_NONE,      /* no TLSA records, or not DNSSEC-secure */
  DECIDE_TLSA_FAILED,    /* SERVFAIL, timeout, malformed: the host is unusable */
  DECIDE_TLSA_FOUND,     /* secure RRset: records[] */
};

/* How the connection to one host is made and judged. */
enum decide_auth {
  DECIDE_AUTH_NONE,        /* no certificate check */
  DECIDE_AUTH_DANE,        /* TLSA records (OpenSSL DANE) */
  DECIDE_AUTH_FINGERPRINT, /* pinned SHA-256 of certificate or public key */
  DECIDE_AUTH_PKIX,        /* trust store + names[] */
};

#define DECIDE_MAX_NAMES TABLE_MAX_MATCH
/* A host's policy as logged: "dane", "mta-sts/enforce", "table/fingerprint"... */
#define DECIDE_POLICY_MAX 48

struct decide_host {
  /* in */
  const char *host; /* MX host name, lower-case */
  bool addr_secure; /* its A/AAAA answers were secure (trusted AD) */
  enum decide_tlsa tlsa;
  const struct dane_tlsa *records; /* tlsa == FOUND */
  size_t nrecords;
  /* out */
  bool skip;             /* not to be dialled */
  char skip_reason[160]; /* e.g. "TLSA lookup failed", "MX RRset not DNSSEC-secure" */
  enum tls_level level;  /* effective: NONE, MAY, or a level requiring TLS */
  bool tls_required; /* no plaintext: no STARTTLS or a failed handshake = next host */
  /* MTA-STS testing (RFC 8461 §5) where the level authenticates nothing: the host is
   * judged as enforce would judge it (STARTTLS, a certificate valid for names[], the
   * mx patterns) and each failure reported, but none stops delivery. */
  bool sts_testing;
  bool sts_unlisted; /* sts_testing: the host matches no mx pattern */
  enum decide_auth auth;
  size_t nusable; /* auth DANE: how many of records[] are usable (dane_tlsa_usable),
                     all of them used however many */
  char names[DECIDE_MAX_NAMES][256]; /* auth PKIX: names for OpenSSL's host check;
                                        ".example.com" = its subdomains */
  size_t nnames;
  int min_protocol; /* 0 = global, else from the table entry */
  char policy
      [DECIDE_POLICY_MAX]; /* for the log: "dane", "table/secure", "default/may" */
};

struct decide_domain {
  const char *domain;              /* lower-case, no trailing dot */
  const struct table_entry *entry; /* table_lookup(), or NULL */
  enum tls_level default_level;
  /* MX RRset secure (trusted AD); implicit MX: the domain's address records. */
  bool mx_secure;
  /* MTA-STS policy (RFC 8461), NULL when none. It applies only without a table entry
   * and where DANE did not decide the host (DANE wins, RFC 8461 §2; a failed DANE
   * check is never rescued by it). enforce: the host must match an mx pattern and
   * present a PKIX-valid certificate for its name over TLS; testing: the same checks,
   * reported but not enforced (sts_testing). */
  const struct sts_policy *sts;
};

/* The level that applies before any DNSSEC fact: entry's or the default. */
enum tls_level decide_level(const struct decide_domain *d);

/* Whether TLSA lookups are needed for hosts of this domain: dane/dane-only with a
 * secure MX RRset. */
bool decide_wants_tlsa(const struct decide_domain *d);

/* Fills h's out fields. */
void decide_host(const struct decide_domain *d, struct decide_host *h);

/* The delivery of a TLS report by mail (RFC 8460 §5.3: "MUST deliver reports despite
 * any TLS-related failures"): whatever decide_host() said, h becomes level may (TLS
 * when offered, any certificate, plaintext after a failed handshake), not skipped,
 * policy "tlsrpt/may". The caller logs the decision it replaces. */
void decide_report(struct decide_host *h);

#endif
