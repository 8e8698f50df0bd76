/* SMTP TLS reporting (RFC 8460), the pure parts: the _smtp._tls TXT record (§3), the
 * result types of §4.3 and how the proxy's observations map onto them, the policy
 * strings of a report, and the JSON report itself (§4.4). No DNS, HTTP, storage or
 * OpenSSL here: the caller turns its X509 verify error into enum tlsrpt_cert.
 *
 * The TXT parser reads outside input: it has a fuzz target and malformed-input tests. */
#ifndef SP_POLICY_TLSRPT_H
#define SP_POLICY_TLSRPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/dane.h"
#include "policy/mtasts.h"

#define TLSRPT_MAX_RUA 8    /* report URIs kept from one record; more are skipped */
#define TLSRPT_URI_MAX 512  /* longer URIs are skipped */
#define TLSRPT_ADDR_MAX 320 /* a mailto: address: local part (64) "@" domain (253) */

/* ---- the TXT record (§3) ------------------------------------------------------------- */

enum tlsrpt_txt_result {
  TLSRPT_TXT_OK = 0,
  TLSRPT_TXT_NONE = -1,    /* no record starting with "v=TLSRPTv1" */
  TLSRPT_TXT_INVALID = -2, /* several such records, a malformed one, or no usable rua */
};

enum tlsrpt_uri_kind { TLSRPT_URI_MAILTO, TLSRPT_URI_HTTPS };

struct tlsrpt_uri {
  enum tlsrpt_uri_kind kind;
  char uri[TLSRPT_URI_MAX + 1];   /* as published */
  char addr[TLSRPT_ADDR_MAX + 1]; /* mailto: the address, %-decoded, no "?query" */
};

struct tlsrpt_record {
  size_t nrua;
  struct tlsrpt_uri rua[TLSRPT_MAX_RUA];
  size_t nskipped; /* URIs not used: other schemes, malformed, too long, too many */
};

/* Parses the TXT RRset of _smtp._tls.<domain>, each record's strings already joined
 * (records[i], lens[i]). Records not starting with "v=TLSRPTv1" (followed by ";",
 * whitespace or the end) are discarded; exactly one must remain. Fields are
 * "key=value", separated by ";" with optional whitespace (empty fields tolerated);
 * keys as tlsrpt-ext-name, values as tlsrpt-ext-value; unknown fields ignored; the
 * first rua wins. rua is a ","-separated list of URIs: mailto: (an address with one
 * "@", no whitespace, quotes or angle brackets after %-decoding) and https:// URIs are
 * kept, others skipped. At least one must be kept. err (may be NULL) gets the reason
 * for TLSRPT_TXT_INVALID. */
int tlsrpt_txt_parse(const char *const *records, const size_t *lens, size_t n,
                     struct tlsrpt_record *out, char *err, size_t errlen);

/* ---- results (§4.3) ------------------------------------------------------------------ */

enum tlsrpt_policy_type { TLSRPT_POLICY_STS, TLSRPT_POLICY_TLSA, TLSRPT_POLICY_NONE };

enum tlsrpt_result {
  TLSRPT_SUCCESS = 0,
  TLSRPT_STARTTLS_NOT_SUPPORTED,
  TLSRPT_CERTIFICATE_HOST_MISMATCH,
  TLSRPT_CERTIFICATE_EXPIRED,
  TLSRPT_CERTIFICATE_NOT_TRUSTED,
  TLSRPT_VALIDATION_FAILURE,
  TLSRPT_TLSA_INVALID,
  TLSRPT_DNSSEC_INVALID,
  TLSRPT_DANE_REQUIRED,
  TLSRPT_STS_POLICY_FETCH_ERROR,
  TLSRPT_STS_POLICY_INVALID,
  TLSRPT_STS_WEBPKI_INVALID,
};

/* What happened to one session attempt (the proxy's observation, mirrored here). */
enum tlsrpt_event {
  TLSRPT_EV_OK = 0,
  TLSRPT_EV_NO_STARTTLS,   /* TLS required, STARTTLS not offered or refused */
  TLSRPT_EV_HANDSHAKE,     /* the handshake failed */
  TLSRPT_EV_CERTIFICATE,   /* the certificate was rejected: see enum tlsrpt_cert */
  TLSRPT_EV_MX_NOT_LISTED, /* MTA-STS enforce: the host matches no mx pattern */
  TLSRPT_EV_TLSA_LOOKUP,   /* the TLSA lookup failed or was bogus */
  TLSRPT_EV_DNSSEC,        /* answers not DNSSEC-secure where DANE needs them */
  TLSRPT_EV_DANE_REQUIRED, /* dane-only and no (usable) secure TLSA records */
  TLSRPT_EV_STS_FETCH,     /* the MTA-STS policy could not be fetched */
  TLSRPT_EV_STS_INVALID,   /* the fetched MTA-STS policy did not parse */
  TLSRPT_EV_STS_WEBPKI,    /* the policy host's certificate did not validate */
  TLSRPT_EV_TLSA_UNUSABLE, /* dane-only: a secure TLSA RRset with no usable record */
};

/* The certificate failure, from the caller's X509 verify error. */
enum tlsrpt_cert {
  TLSRPT_CERT_UNKNOWN = 0, /* no verify error recorded */
  TLSRPT_CERT_HOST_MISMATCH,
  TLSRPT_CERT_EXPIRED,
  TLSRPT_CERT_UNTRUSTED, /* unknown issuer, self-signed, untrusted chain */
  TLSRPT_CERT_DANE_NO_MATCH,
  TLSRPT_CERT_OTHER,
};

/* "sts", "tlsa", "no-policy-found". */
const char *tlsrpt_policy_type_name(enum tlsrpt_policy_type t);
/* The reverse; returns false for anything else. */
bool tlsrpt_policy_type_parse(const char *name, enum tlsrpt_policy_type *out);
/* "starttls-not-supported", ...; "" for TLSRPT_SUCCESS. */
const char *tlsrpt_result_name(enum tlsrpt_result r);

/* Which policy judged the session. policy is the proxy's policy label
 * ("mta-sts/enforce", "mta-sts/testing", "dane", "table/dane-only", "default/may");
 * has_sts: an MTA-STS policy was in force; ntlsa: TLSA records in force. "mta-sts/..."
 * with a policy → sts; DANE ("dane", a TLSA RRset, or a DNSSEC/TLSA event) → tlsa;
 * anything else → no-policy-found. */
enum tlsrpt_policy_type tlsrpt_policy_type_of(const char *policy, bool has_sts,
                                              size_t ntlsa, enum tlsrpt_event ev);

/* The event a session attempt is counted under when the domain publishes an MTA-STS
 * policy that could not be had. ev: what happened to the session; sts_ev: the
 * failure to get the policy (TLSRPT_EV_STS_FETCH, _STS_INVALID, _STS_WEBPKI), or
 * TLSRPT_EV_OK when none; policy, has_sts, ntlsa as for tlsrpt_policy_type_of().
 * Returns sts_ev when the session would otherwise count under no-policy-found, else
 * ev: see the rule in tlsrpt.c. */
enum tlsrpt_event tlsrpt_session_event(enum tlsrpt_event ev, enum tlsrpt_event sts_ev,
                                       const char *policy, bool has_sts, size_t ntlsa);

/* The §4.3 result type of one session attempt under policy type t. */
enum tlsrpt_result tlsrpt_classify(enum tlsrpt_policy_type t, enum tlsrpt_event ev,
                                   enum tlsrpt_cert cert);

/* ---- policy strings ------------------------------------------------------------------ */

/* The report's lists are kept as text, one item a line ("\n"-joined, no trailing
 * newline); items never contain CR or LF. Both return malloc'd text (NULL when out of
 * memory). sts: "version: STSv1", "mode: <mode>", each "mx: <pattern>",
 * "max_age: <n>". tlsa: each record "<usage> <selector> <mtype> <hex>". */
char *tlsrpt_sts_strings(const struct sts_policy *p);
char *tlsrpt_tlsa_strings(const struct dane_tlsa *records, size_t n);
/* The mx-host list of an MTA-STS policy: its patterns, one a line (malloc'd). */
char *tlsrpt_sts_mx_hosts(const struct sts_policy *p);

/* ---- the JSON report (§4.4) ---------------------------------------------------------- */

struct tlsrpt_detail {
  const char *result_type; /* tlsrpt_result_name() */
  const char *sending_ip;  /* sending-mta-ip ("" or NULL = omitted: no connection) */
  const char *mx;          /* receiving-mx-hostname ("" = omitted) */
  const char *ip;          /* receiving-ip ("" = omitted) */
  const char *reason;      /* failure-reason-code ("" = omitted) */
  uint64_t count;          /* failed-session-count */
};

struct tlsrpt_policy_block {
  const char *type;    /* tlsrpt_policy_type_name() */
  const char *domain;  /* policy-domain */
  const char *strings; /* policy-string, one a line; "" = omitted */
  const char *mx_host; /* mx-host, one a line; "" = omitted */
  uint64_t successes;  /* total-successful-session-count */
  const struct tlsrpt_detail *details;
  size_t ndetails; /* total-failure-session-count is the sum of their counts */
};

struct tlsrpt_report {
  const char *organization; /* organization-name */
  const char *contact;      /* contact-info */
  const char *report_id;    /* report-id */
  int64_t start, end;       /* date-range, unix seconds (RFC 3339 UTC in the JSON) */
  const struct tlsrpt_policy_block *policies;
  size_t npolicies;
};

/* The report as one JSON object (UTF-8: invalid bytes in strings become U+FFFD;
 * control characters escaped). malloc'd, NUL-terminated, length in *len; NULL when
 * out of memory. */
char *tlsrpt_report_json(const struct tlsrpt_report *r, size_t *len);

/* "2024-01-02T03:04:05Z" for unix seconds t (UTC). out needs 21 bytes. */
void tlsrpt_datetime(int64_t t, char out[21]);

#endif
