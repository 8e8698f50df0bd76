/* Fuzzes sts_policy_parse, then checks sts_mx_match against what was parsed: every
 * pattern must match itself (any case, trailing dot), with "*." made into "x.". The
 * patterns' block must hold exactly nmx NUL-terminated names, be no larger than the
 * input, and copy (sts_policy_copy) to an equal block. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/mtasts.h"

static void check_block(const struct sts_policy *p, size_t size) {
  if ((p->mx == NULL) != (p->mx_len == 0) || (p->nmx == 0) != (p->mx_len == 0) ||
      p->mx_len > size || (p->mx_len && p->mx[p->mx_len - 1] != '\0'))
    abort();
  size_t n = 0;
  for (size_t i = 0; i < p->mx_len; i++)
    n += p->mx[i] == '\0';
  if (n != p->nmx)
    abort();
  struct sts_policy c;
  if (sts_policy_copy(&c, p) == 0) {
    if (c.nmx != p->nmx || c.mx_len != p->mx_len ||
        (p->mx_len && (c.mx == p->mx || memcmp(c.mx, p->mx, p->mx_len))))
      abort();
    sts_policy_free(&c);
  }
}

static void check_patterns(const struct sts_policy *p, size_t size) {
  char host[STS_NAME_MAX + 3];
  if (p->max_age > STS_MAX_AGE_CAP)
    abort();
  if (p->mode != STS_MODE_NONE && p->nmx == 0)
    abort();
  check_block(p, size);
  for (const char *m = sts_mx_next(p, NULL); m; m = sts_mx_next(p, m)) {
    size_t len = strlen(m);
    if (len == 0 || len > STS_NAME_MAX)
      abort();
    memcpy(host, m, len + 1);
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
  if (rc != 0 && rc != -1 && rc != -2)
    abort();
  if (rc != 0 && (err[0] == '\0' || p.nmx != 0 || p.mx != NULL || p.mx_len != 0))
    abort();
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    (void)sts_mx_match(&p, names[i]);
  if (rc == 0)
    check_patterns(&p, size);
  sts_policy_free(&p);
  return 0;
}
