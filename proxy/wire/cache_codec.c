#include "proxy/wire/cache_codec.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/error.h"

int cache_codec_int(const char *s, size_t len, int64_t *out) {
  size_t i = 0;
  bool neg = false;
  uint64_t v = 0;
  if (len > 0 && s[0] == '-') {
    neg = true;
    i = 1;
  }
  if (i >= len || len - i > 19 || (s[i] == '0' && len - i > 1))
    return SP_E_PROTOCOL;
  for (; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return SP_E_PROTOCOL;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (v > (uint64_t)INT64_MAX)
    return SP_E_PROTOCOL;
  *out = neg ? -(int64_t)v : (int64_t)v;
  return 0;
}

/* RFC 8461 section 3.1: id is 1 to 32 letters and digits. */
static bool id_ok(const char *s, size_t len) {
  if (len == 0 || len > STS_ID_MAX)
    return false;
  for (size_t i = 0; i < len; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
          (s[i] >= '0' && s[i] <= '9')))
      return false;
  return true;
}

int cache_codec_policy_decode(const char *domain, const char *const v[4],
                              const size_t len[4], struct store_policy *out) {
  if (!v[0] && !v[1] && !v[2] && !v[3])
    return 0;
  if (!v[0] || !v[1] || !v[2] || !v[3] || !id_ok(v[0], len[0]) ||
      len[3] > STS_POLICY_MAX_BYTES || memchr(v[3], '\0', len[3]) ||
      strlen(domain) >= sizeof out->domain)
    return SP_E_PROTOCOL;
  int64_t fetched, expires;
  if (cache_codec_int(v[1], len[1], &fetched) < 0 ||
      cache_codec_int(v[2], len[2], &expires) < 0 || fetched < 0 || expires < fetched)
    return SP_E_PROTOCOL;
  char *text = malloc(len[3] + 1);
  if (!text)
    return SP_E_NOMEM;
  memcpy(text, v[3], len[3]);
  text[len[3]] = '\0';
  memset(out, 0, sizeof *out);
  snprintf(out->domain, sizeof out->domain, "%s", domain);
  memcpy(out->id, v[0], len[0]);
  out->id[len[0]] = '\0';
  out->text = text;
  out->fetched_at = fetched;
  out->expires_at = expires;
  return 1;
}

/* ---- TLS-RPT rows ------------------------------------------------------------------ */

/* The ninth, sending_ip, only when not empty: a row without it encodes as it did
 * before it existed, so counts of older proxies and of newer ones meet. */
#define ROW_FIELDS 9

char *cache_codec_row_encode(const struct store_tlsrpt_row *r, size_t *len) {
  const char *f[ROW_FIELDS] = {r->domain,
                               r->policy_type,
                               r->policy_strings ? r->policy_strings : "",
                               r->mx_hosts ? r->mx_hosts : "",
                               r->result_type,
                               r->mx,
                               r->ip,
                               r->reason,
                               r->sending_ip};
  int nf = r->sending_ip[0] ? ROW_FIELDS : ROW_FIELDS - 1;
  size_t total = 0;
  for (int i = 0; i < nf; i++)
    total += strlen(f[i]) + 24;
  char *out = malloc(total + 1), *p = out;
  if (!out)
    return NULL;
  for (int i = 0; i < nf; i++) {
    size_t n = strlen(f[i]);
    p += sprintf(p, "%zu:", n);
    memcpy(p, f[i], n);
    p += n;
    *p++ = ',';
  }
  *p = '\0';
  *len = (size_t)(p - out);
  return out;
}

/* One netstring at s[*pos..len): its bytes in *str, *slen. */
static int netstring(const char *s, size_t len, size_t *pos, const char **str,
                     size_t *slen) {
  size_t i = *pos, n = 0, digits = 0;
  while (i < len && s[i] >= '0' && s[i] <= '9') {
    if (digits++ && n == 0) /* no leading zeros */
      return SP_E_PROTOCOL;
    n = n * 10 + (size_t)(s[i] - '0');
    if (n > CACHE_CODEC_FIELD_MAX)
      return SP_E_PROTOCOL;
    i++;
  }
  if (digits == 0 || i >= len || s[i] != ':' || len - i - 1 < n + 1 ||
      s[i + 1 + n] != ',')
    return SP_E_PROTOCOL;
  *str = s + i + 1;
  *slen = n;
  *pos = i + 2 + n;
  return 0;
}

/* Fixed-size fields hold printable text only, as tlsrpt.c writes them. */
static bool copy_fixed(char *dst, size_t cap, const char *s, size_t n) {
  if (n >= cap)
    return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
      return false;
  memcpy(dst, s, n);
  dst[n] = '\0';
  return true;
}

/* Lists ("\n"-joined) may hold newlines too, never NUL. */
static char *dup_list(const char *s, size_t n, bool *bad) {
  for (size_t i = 0; i < n; i++)
    if (s[i] == '\0' || ((unsigned char)s[i] < 0x20 && s[i] != '\n') ||
        (unsigned char)s[i] == 0x7f)
      *bad = true;
  char *d = *bad ? NULL : malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

int cache_codec_row_decode(const char *s, size_t len, struct store_tlsrpt_row *out) {
  const char *f[ROW_FIELDS] = {[ROW_FIELDS - 1] = ""};
  size_t fl[ROW_FIELDS] = {0}, pos = 0;
  for (int i = 0; i < ROW_FIELDS - 1; i++)
    if (netstring(s, len, &pos, &f[i], &fl[i]) < 0)
      return SP_E_PROTOCOL;
  /* The ninth field, when there, is never empty (one encoding a row). */
  if (pos < len &&
      (netstring(s, len, &pos, &f[ROW_FIELDS - 1], &fl[ROW_FIELDS - 1]) < 0 ||
       fl[ROW_FIELDS - 1] == 0))
    return SP_E_PROTOCOL;
  if (pos != len || fl[0] == 0)
    return SP_E_PROTOCOL;
  struct store_tlsrpt_row r;
  memset(&r, 0, sizeof r);
  if (!copy_fixed(r.domain, sizeof r.domain, f[0], fl[0]) ||
      !copy_fixed(r.policy_type, sizeof r.policy_type, f[1], fl[1]) ||
      !copy_fixed(r.result_type, sizeof r.result_type, f[4], fl[4]) ||
      !copy_fixed(r.mx, sizeof r.mx, f[5], fl[5]) ||
      !copy_fixed(r.ip, sizeof r.ip, f[6], fl[6]) ||
      !copy_fixed(r.reason, sizeof r.reason, f[7], fl[7]) ||
      !copy_fixed(r.sending_ip, sizeof r.sending_ip, f[8], fl[8]))
    return SP_E_PROTOCOL;
  bool bad = false;
  r.policy_strings = dup_list(f[2], fl[2], &bad);
  r.mx_hosts = bad ? NULL : dup_list(f[3], fl[3], &bad);
  if (bad || !r.policy_strings || !r.mx_hosts) {
    free(r.policy_strings);
    free(r.mx_hosts);
    return bad ? SP_E_PROTOCOL : SP_E_NOMEM;
  }
  r.period_start = out->period_start;
  r.period_end = out->period_end;
  r.count = out->count;
  *out = r;
  return 0;
}

int cache_codec_period_decode(const char *s, size_t len, int64_t *start, int64_t *end) {
  const char *colon = memchr(s, ':', len);
  int64_t a, b;
  if (!colon || cache_codec_int(s, (size_t)(colon - s), &a) < 0 ||
      cache_codec_int(colon + 1, len - (size_t)(colon - s) - 1, &b) < 0 || a < 0 ||
      a >= b)
    return SP_E_PROTOCOL;
  *start = a;
  *end = b;
  return 0;
}
