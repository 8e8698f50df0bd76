/* TLSA records (RFC 6698) and their usability for SMTP (RFC 7672 §2.2, §3.1). Pure. */
#ifndef SP_POLICY_DANE_H
#define SP_POLICY_DANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DANE_DATA_MAX 65532 /* what a TLSA RDATA (at most 65535 bytes) can carry */

enum dane_usage { DANE_PKIX_TA = 0, DANE_PKIX_EE = 1, DANE_TA = 2, DANE_EE = 3 };

/* data is not owned by the record: it stays valid as long as whatever it was read
 * from (the DNS answer, the RDATA given to dane_tlsa_parse, a dane_tlsa_dup block).
 * A full certificate (matching type 0) is kilobytes, so it is never copied inline. */
struct dane_tlsa {
  uint8_t usage, selector, mtype;
  uint16_t len;
  const uint8_t *data; /* len bytes (may be NULL when len is 0) */
  /* RDATA shorter than usage, selector and matching type (0 to 2 bytes): never
   * usable; usage, selector and mtype are 0 and data holds the whole RDATA. */
  bool malformed;
};

/* Parses TLSA RDATA (usage, selector, matching type, association data); out->data
 * points into rdata. Returns 0 or -1 when shorter than 4 bytes or data longer than
 * DANE_DATA_MAX. */
int dane_tlsa_parse(const uint8_t *rdata, size_t len, struct dane_tlsa *out);

/* A copy of records[0..n) that owns its data: one allocation holding the array and
 * every record's data, released with free(). NULL when n is 0 or out of memory. */
struct dane_tlsa *dane_tlsa_dup(const struct dane_tlsa *records, size_t n);

/* Usable for SMTP: usage DANE-TA(2) or DANE-EE(3), selector 0 or 1, matching type 0
 * (full: a DER certificate for selector 0, a DER SubjectPublicKeyInfo for selector 1),
 * 1 (SHA2-256, 32 bytes) or 2 (SHA2-512, 64 bytes). PKIX-TA(0) and PKIX-EE(1) are
 * unusable in SMTP (RFC 7672 §3.1.3); so is a malformed record (RDATA too short for
 * its three fields, a digest of the wrong length, a full record that is no
 * certificate or key), as in Postfix. */
bool dane_tlsa_usable(const struct dane_tlsa *r);

/* "3 1 1 ab12cd...": usage selector mtype and the data in hex, cut to fit. A malformed
 * record has no such fields: its RDATA in the generic form of RFC 3597 §5,
 * "\# 2 0301". */
void dane_tlsa_format(const struct dane_tlsa *r, char *out, size_t cap);

#endif
