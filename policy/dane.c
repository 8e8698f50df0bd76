#include "policy/dane.h"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dane_tlsa_parse(const uint8_t *rdata, size_t len, struct dane_tlsa *out) {
  if (out == NULL)
    return -1;
  memset(out, 0, sizeof(*out));
  if (rdata == NULL || len < 4 || len - 3 > DANE_DATA_MAX)
    return -1;
  out->usage = rdata[0];
  out->selector = rdata[1];
  out->mtype = rdata[2];
  out->len = (uint16_t)(len - 3);
  out->data = rdata + 3;
  return 0;
}

struct dane_tlsa *dane_tlsa_dup(const struct dane_tlsa *records, size_t n) {
  size_t head = n * sizeof *records, bytes = 0;
  if (n == 0 || records == NULL)
    return NULL;
  for (size_t i = 0; i < n; i++)
    bytes += records[i].len;
  struct dane_tlsa *copy = malloc(head + bytes);
  if (copy == NULL)
    return NULL;
  uint8_t *data = (uint8_t *)copy + head;
  for (size_t i = 0; i < n; i++) {
    copy[i] = records[i];
    copy[i].data = records[i].len ? data : NULL;
    if (records[i].len)
      memcpy(data, records[i].data, records[i].len);
    data += records[i].len;
  }
  return copy;
}

/* Full(0) data is usable when OpenSSL's DANE code takes it (SSL_dane_tlsa_add): a DER
 * certificate with a public key (selector 0) or a DER SubjectPublicKeyInfo (selector
 * 1), and nothing after it. */
static bool full_data_ok(const struct dane_tlsa *r) {
  const unsigned char *p = r->data;
  bool ok = false;
  if (r->selector == 0) {
    X509 *x = d2i_X509(NULL, &p, r->len);
    ok = x != NULL && X509_get0_pubkey(x) != NULL;
    X509_free(x);
  } else {
    EVP_PKEY *k = d2i_PUBKEY(NULL, &p, r->len);
    ok = k != NULL;
    EVP_PKEY_free(k);
  }
  ERR_clear_error();
  return ok && p == r->data + r->len;
}

bool dane_tlsa_usable(const struct dane_tlsa *r) {
  if (r == NULL || r->malformed)
    return false;
  /* RFC 7672 §3.1.3: PKIX-TA(0) and PKIX-EE(1) are not usable in SMTP. */
  if (r->usage != DANE_TA && r->usage != DANE_EE)
    return false;
  if (r->selector > 1)
    return false;
  switch (r->mtype) {
  case 0:
    return r->len > 0 && r->len <= DANE_DATA_MAX && r->data && full_data_ok(r);
  case 1:
    return r->len == 32;
  case 2:
    return r->len == 64;
  default:
    return false;
  }
}

void dane_tlsa_format(const struct dane_tlsa *r, char *out, size_t cap) {
  static const char hex[] = "0123456789abcdef";
  if (out == NULL || cap == 0)
    return;
  out[0] = '\0';
  if (r == NULL)
    return;
  int n = r->malformed ? snprintf(out, cap, "\\# %u%s", r->len, r->len > 0 ? " " : "")
                       : snprintf(out, cap, "%u %u %u%s", r->usage, r->selector,
                                  r->mtype, r->len > 0 ? " " : "");
  if (n < 0 || (size_t)n >= cap)
    return;
  size_t pos = (size_t)n;
  size_t len = r->data ? r->len : 0;
  /* Whole bytes only, so a cut value never shows a misleading half nibble. */
  for (size_t i = 0; i < len && pos + 2 < cap; i++) {
    out[pos++] = hex[r->data[i] >> 4];
    out[pos++] = hex[r->data[i] & 0x0f];
  }
  out[pos] = '\0';
}
