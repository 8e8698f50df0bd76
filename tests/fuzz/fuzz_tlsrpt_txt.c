/* Fuzzes tlsrpt_txt_parse: the input, split on '\n', is the TXT RRset of
 * _smtp._tls.<domain> (one record a line, its strings already joined). The same bytes
 * also go through the JSON report builder as a string value, whose output must stay
 * free of raw control characters. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/tlsrpt.h"

#define FUZZ_MAX_RECORDS 64

static void check_record(const struct tlsrpt_record *r) {
  if (r->nrua == 0 || r->nrua > TLSRPT_MAX_RUA)
    abort();
  for (size_t i = 0; i < r->nrua; i++) {
    const struct tlsrpt_uri *u = &r->rua[i];
    size_t n = strnlen(u->uri, sizeof u->uri);
    if (n == 0 || n == sizeof u->uri)
      abort();
    for (size_t k = 0; k < n; k++)
      if ((unsigned char)u->uri[k] <= 0x20 || (unsigned char)u->uri[k] >= 0x7f)
        abort();
    if (u->kind == TLSRPT_URI_HTTPS)
      continue;
    size_t a = strnlen(u->addr, sizeof u->addr);
    const char *at = memchr(u->addr, '@', a);
    if (a == sizeof u->addr || !at ||
        memchr(at + 1, '@', a - (size_t)(at - u->addr) - 1))
      abort();
    if (strpbrk(u->addr, "<>\r\n \t\"\\,;:"))
      abort();
  }
}

static void check_json(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text)
    return;
  memcpy(text, data, size);
  text[size] = '\0';
  struct tlsrpt_detail d = {.result_type = "validation-failure",
                            .mx = text,
                            .ip = "",
                            .reason = text,
                            .count = 1};
  struct tlsrpt_policy_block p = {.type = "sts",
                                  .domain = text,
                                  .strings = text,
                                  .mx_host = text,
                                  .details = &d,
                                  .ndetails = 1};
  struct tlsrpt_report rep = {.organization = text,
                              .contact = text,
                              .report_id = text,
                              .start = (int64_t)size,
                              .end = (int64_t)size * 1000,
                              .policies = &p,
                              .npolicies = 1};
  size_t len = 0;
  char *json = tlsrpt_report_json(&rep, &len);
  if (json) {
    if (strlen(json) != len || json[0] != '{' || json[len - 1] != '}')
      abort();
    for (size_t i = 0; i < len; i++)
      if ((unsigned char)json[i] < 0x20)
        abort();
  }
  free(json);
  free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *recs[FUZZ_MAX_RECORDS];
  size_t lens[FUZZ_MAX_RECORDS], n = 0, pos = 0;
  const char *text = (const char *)data;
  while (n < FUZZ_MAX_RECORDS && pos < size) {
    const char *lf = memchr(text + pos, '\n', size - pos);
    size_t end = lf ? (size_t)(lf - text) : size;
    recs[n] = text + pos;
    lens[n] = end - pos;
    n++;
    pos = end + 1;
  }
  struct tlsrpt_record *r = malloc(sizeof *r);
  if (!r)
    return 0;
  char err[128];
  int rc = tlsrpt_txt_parse(recs, lens, n, r, err, sizeof err);
  if (rc != TLSRPT_TXT_OK && rc != TLSRPT_TXT_NONE && rc != TLSRPT_TXT_INVALID)
    abort();
  if (rc == TLSRPT_TXT_OK)
    check_record(r);
  else if (r->nrua != 0)
    abort();
  free(r);
  if (size < 4096)
    check_json(data, size);
  return 0;
}
