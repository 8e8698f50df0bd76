/* Fuzzes sts_policy_parse, then checks sts_mx_match against what was parsed: every
 * pattern must match itself (any case, trailing dot), with "*." made into "x.". */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/mtasts.h"

static void check_patterns(const struct sts_policy *p) {
  char host[STS_NAME_MAX + 3];
  if (p->nmx > STS_MAX_MX || p->max_age > STS_MAX_AGE_CAP)
    abort();
  if (p->mode != STS_MODE_NONE && p->nmx == 0)
    abort();
  for (size_t i = 0; i < p->nmx; i++) {
    size_t len = strnlen(p->mx[i], sizeof p->mx[i]);
    if (len == 0 || len > STS_NAME_MAX)
      abort();
    memcpy(host, p->mx[i], len + 1);
    if (host[0] == '*')
      host[0] = 'x';
    for (size_t k = 0; k < len; k++) {
      if (host[k] >= 'A' && host[k] <= 'Z')
        abort(); /* patterns are stored lower-case */
      if (host[k] == '*')
        abort(); /* only as the whole first label */
    }
    if (!sts_mx_match(p, host))
      abort();
    for (size_t k = 0; k < len; k++)
      if (host[k] >= 'a' && host[k] <= 'z')
        host[k] = (char)(host[k] - 'a' + 'A');
    host[len] = '.';
    host[len + 1] = '\0';
    if (!sts_mx_match(p, host))
      abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const names[] = {
      "mail.example.com",  "mx.example.net", "example.net", "a.b.example.net", "", ".",
      "MAIL.EXAMPLE.COM.",
  };
  struct sts_policy p;
  char err[128];
  int rc = sts_policy_parse((const char *)data, size, &p, err, sizeof err);
  if (rc != 0 && rc != -1)
    abort();
  if (rc == -1 && (err[0] == '\0' || p.nmx != 0))
    abort();
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    (void)sts_mx_match(&p, names[i]);
  if (rc == 0)
    check_patterns(&p);
  return 0;
}
