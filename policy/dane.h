/* TLSA records (RFC 6698) and their usability for SMTP (RFC 7672 §2.2, §3.1). Pure. */
#ifndef SP_POLICY_DANE_H
#define SP_POLICY_DANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DANE_MAX_RECORDS 8
#define DANE_DATA_MAX 2048

enum dane_usage { DANE_PKIX_TA = 0, DANE_PKIX_EE = 1, DANE_TA = 2, DANE_EE = 3 };

struct dane_tlsa {
  uint8_t usage, selector, mtype;
  uint16_t len;
  uint8_t data[DANE_DATA_MAX];
};

/* Parses TLSA RDATA (usage, selector, matching type, association data). Returns 0 or
 * -1 when shorter than 4 bytes or data longer than DANE_DATA_MAX. */
int dane_tlsa_parse(const uint8_t *rdata, size_t len, struct dane_tlsa *out);

/* Usable for SMTP: usage DANE-TA(2) or DANE-EE(3), selector 0 or 1, matching type 0
 * (full, non-empty), 1 (SHA2-256, 32 bytes) or 2 (SHA2-512, 64 bytes). PKIX-TA(0) and
 * PKIX-EE(1) are unusable in SMTP (RFC 7672 §3.1.3). */
bool dane_tlsa_usable(const struct dane_tlsa *r);

/* "3 1 1 ab12cd...": usage selector mtype and the data in hex, cut to fit. */
void dane_tlsa_format(const struct dane_tlsa *r, char *out, size_t cap);

#endif
