/* Fuzzes the decoders of what the shared cache (Redis) holds: the first byte picks
 * one, the rest is its input. 0: a TLS-RPT row key (and, when it decodes, its
 * encoding must decode to the same row); 1: a period member; 2: a policy entry, four
 * fields split on NUL (fewer fields: the rest are nil). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/error.h"
#include "proxy/wire/cache_codec.h"

static void same_row(const struct store_tlsrpt_row *a,
                     const struct store_tlsrpt_row *b) {
  if (strcmp(a->domain, b->domain) || strcmp(a->policy_type, b->policy_type) ||
      strcmp(a->policy_strings, b->policy_strings) ||
      strcmp(a->mx_hosts, b->mx_hosts) || strcmp(a->result_type, b->result_type) ||
      strcmp(a->mx, b->mx) || strcmp(a->ip, b->ip) || strcmp(a->reason, b->reason) ||
      strcmp(a->sending_ip, b->sending_ip))
    abort();
}

static void row(const char *s, size_t len) {
  struct store_tlsrpt_row r = {0}, again = {0};
  int rc = cache_codec_row_decode(s, len, &r);
  if (rc == SP_E_NOMEM || rc == SP_E_PROTOCOL)
    return;
  if (rc != 0 || !r.domain[0])
    abort();
  size_t elen;
  char *enc = cache_codec_row_encode(&r, &elen);
  if (enc) {
    if (elen != len || memcmp(enc, s, len) || cache_codec_row_decode(enc, elen, &again))
      abort();
    same_row(&r, &again);
    free(again.policy_strings);
    free(again.mx_hosts);
  }
  free(enc);
  free(r.policy_strings);
  free(r.mx_hosts);
}

static void policy(const char *s, size_t len) {
  const char *v[4] = {NULL, NULL, NULL, NULL};
  size_t l[4] = {0, 0, 0, 0};
  size_t pos = 0;
  for (int i = 0; i < 4 && pos <= len; i++) {
    const char *nul = memchr(s + pos, '\0', len - pos);
    size_t n = nul ? (size_t)(nul - (s + pos)) : len - pos;
    v[i] = s + pos;
    l[i] = i == 3 ? len - pos : n;
    pos += n + 1;
  }
  struct store_policy p;
  int rc = cache_codec_policy_decode("example.test", v, l, &p);
  if (rc == 1) {
    if (p.expires_at < p.fetched_at || strlen(p.text) != l[3] || !p.id[0])
      abort();
    free(p.text);
  } else if (rc != 0 && rc != SP_E_PROTOCOL && rc != SP_E_NOMEM) {
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  const char *s = (const char *)data + 1;
  size_t len = size - 1;
  int64_t a, b;
  switch (data[0] % 3) {
  case 0:
    row(s, len);
    break;
  case 1:
    if (cache_codec_period_decode(s, len, &a, &b) == 0 && (a < 0 || a >= b))
      abort();
    break;
  default:
    policy(s, len);
  }
  return 0;
}
