/* Pure, bounds-checked DNS message building and parsing (RFC 1035), because Debian 12's
 * c-ares (1.18) neither parses TLSA nor hands back the AD bit. Outside input: every
 * read is checked against the message length; compression pointers must point strictly
 * backwards and are followed at most 32 times; names are at most 255 octets. */
#ifndef SP_DNS_MSG_H
#define SP_DNS_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum dns_type {
  DNS_T_A = 1,
  DNS_T_CNAME = 5,
  DNS_T_SOA = 6,
  DNS_T_MX = 15,
  DNS_T_TXT = 16,
  DNS_T_AAAA = 28,
  DNS_T_TLSA = 52,
};
enum dns_rcode {
  DNS_R_NOERROR = 0,
  DNS_R_FORMERR = 1,
  DNS_R_SERVFAIL = 2,
  DNS_R_NXDOMAIN = 3,
  DNS_R_NOTIMP = 4,
  DNS_R_REFUSED = 5
};

#define DNS_NAME_MAX 255 /* presentation form without trailing dot fits in 254 */

/* One answer record. Every pointer points into the struct dns_answer that holds the
 * record and stays valid as long as it does. */
struct dns_rr {
  const char *owner; /* lower-case presentation form, no trailing dot */
  uint16_t type, klass;
  uint32_t ttl;
  union {
    uint8_t a[4];
    uint8_t aaaa[16];
    const char *cname; /* lower-case, no trailing dot ("" is the root) */
    struct {
      uint16_t pref;
      const char *host;
    } mx; /* host "" = null MX */
    struct {
      uint8_t usage, selector, mtype;
      uint16_t dlen;
      const uint8_t *data; /* dlen bytes (NULL when 0) */
      /* RDATA shorter than its 3 fixed fields (RFC 6698 §2.1): kept, as such a
       * record is unusable, not the RRset (RFC 7672 §2.2); usage, selector and
       * mtype are 0, data holds the whole RDATA (0 to 2 bytes). */
      bool malformed;
    } tlsa;
    struct {
      uint16_t len;
      const char *text; /* len bytes and a NUL */
    } txt;              /* strings concatenated */
  } u;
};

/* A parsed response: one allocation, sized from the message (its records, then the
 * names, texts and TLSA data they point to), released with free(). */
struct dns_answer {
  uint16_t id;
  bool ad, tc;
  uint8_t rcode;                /* enum dns_rcode */
  char qname[DNS_NAME_MAX + 1]; /* question, lower-case, no trailing dot */
  uint16_t qtype;
  size_t size; /* bytes allocated for this answer, all included */
  /* An SOA record in the authority section (IN class, the first one): neg_ttl is
   * the smaller of its TTL and its MINIMUM field, how long a negative answer may be
   * cached (RFC 2308 §5). */
  bool soa;
  uint32_t neg_ttl;
  size_t nrrs; /* answer-section records of known types (A, AAAA,
                  CNAME, MX, TXT, TLSA) in IN class; others skipped */
  struct dns_rr rrs[];
};

/* Builds a query for name/type with RD and AD set and an EDNS0 OPT record with the DO
 * bit and a 1232-byte payload. name may end with '.'. Returns the length, or
 * SP_E_INVAL (bad name: empty label, label > 63, name > 253) or SP_E_OVERFLOW. */
int dns_msg_build_query(uint16_t id, const char *name, uint16_t type, uint8_t *out,
                        size_t cap);

/* Parses a response into *out (malloc'd, the caller frees it; NULL on error).
 * Returns 0, SP_E_DNS_FORMAT (anything malformed or truncated, not a response, more
 * than one question, section counts that the message is too short to hold),
 * SP_E_OVERFLOW (the parsed answer would exceed DNS_ANSWER_MAX) or SP_E_NOMEM. Any
 * number of records and any RDATA length the message holds is accepted: the
 * allocation is bounded by what the message carries (at most one record per 11
 * message bytes, each name at most 255 bytes) and by DNS_ANSWER_MAX. The answer
 * section only is kept; authority and additional sections are walked for
 * well-formedness, and the authority section's SOA noted (soa, neg_ttl). */
#define DNS_ANSWER_MAX (512 * 1024)
int dns_msg_parse(const uint8_t *msg, size_t len, struct dns_answer **out);

/* Follows the CNAME chain from qname within the answer (at most 8 steps) and returns
 * the final owner name to match records against: a pointer into ans (or to qname). */
const char *dns_answer_target(const struct dns_answer *ans, const char *qname);

/* The TXT records of the answer's target (each record's strings joined), in answer
 * order: texts[i] and lens[i] point into ans (which must outlive them). */
struct dns_texts {
  size_t n;
  const char **texts; /* owned array (NULL when n == 0) */
  size_t *lens;       /* owned array (NULL when n == 0) */
};

/* Fills out with every TXT record of the target. Returns 0 or SP_E_NOMEM (out is then
 * empty). Release with dns_texts_free(). */
int dns_answer_texts(const struct dns_answer *ans, struct dns_texts *out);
void dns_texts_free(struct dns_texts *t);

/* The first A or AAAA address of the answer's target, as "192.0.2.1" or
 * "[2001:db8::1]" (the form libcurl's CURLOPT_RESOLVE takes). Returns false when the
 * answer has none. */
bool dns_answer_first_addr(const struct dns_answer *ans, char *out, size_t cap);

#endif
