/* Fuzzes the metrics listener's request parser (outside input on a TCP port): the
 * result must be within bounds, and stable as more bytes arrive (what the listener
 * sees when a request comes in pieces). The first byte also drives the counters with
 * strings taken from the input, whose labels must stay within their fixed tables. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/daemon/metrics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok) {
  if (!ok)
    abort();
}

static int parse(const char *in, size_t len, enum metrics_target *t) {
  int rc = metrics_parse_request(in, len, t);
  check(rc == -1 || (rc >= 0 && (size_t)rc <= len && rc <= METRICS_REQUEST_MAX));
  if (rc > 0)
    check(*t <= METRICS_TARGET_BAD_METHOD && (in[rc - 1] == '\n'));
  return rc;
}

static const char *const allowed[] = {
    "sent",      "deferred", "bounced",  "other",   "none",  "Anonymous",
    "Untrusted", "Trusted",  "Verified", "mta-sts", "dane",  "table",
    "default",   "true",     "false",    "ok",      "failed"};

/* A label value must be a fixed name, or a histogram bound ("0.5", "+Inf"). */
static bool label_allowed(const char *v, size_t n) {
  for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++)
    if (strlen(allowed[i]) == n && !memcmp(allowed[i], v, n))
      return true;
  return n > 0 && n < 16 && strspn(v, "0123456789.e+-Inf") >= n;
}

/* Counters fed with input strings: only fixed label values may come out. */
static void check_labels(const char *in, size_t len) {
  char s[64];
  size_t n = len < sizeof s - 1 ? len : sizeof s - 1;
  memcpy(s, in, n);
  s[n] = '\0';
  metrics_delivery(s, s + n / 2, s + n / 3, (double)n);
  size_t out_len;
  char *out = metrics_render(&out_len);
  check(out != NULL && out_len > 0 && out[out_len - 1] == '\n');
  check(strlen(out) == out_len);
  for (const char *p = out; (p = strstr(p, "=\"")) != NULL;) {
    p += 2;
    const char *q = strchr(p, '"');
    check(q != NULL);
    check(label_allowed(p, (size_t)(q - p)));
    p = q + 1;
  }
  free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *in = (const char *)data;
  enum metrics_target whole = METRICS_TARGET_NOT_FOUND, part = METRICS_TARGET_NOT_FOUND;
  int rc = parse(in, size, &whole);
  size_t cuts[3] = {size / 2, size ? size - 1 : 0, size ? data[0] % (size + 1) : 0};
  for (size_t i = 0; i < 3; i++) {
    int prc = parse(in, cuts[i], &part);
    if (prc != 0) /* decided early: more bytes change nothing */
      check(prc == rc && (prc < 0 || part == whole));
  }
  if (size > 0 && data[0] == 'M')
    check_labels(in + 1, size - 1);
  return 0;
}
