/* Fuzzes the DATA scanner. The first byte picks the chunk split; the rest is the data.
 * For both modes it checks, and abort()s on a violation:
 *  - whole, split, byte-at-a-time and small-out_cap scanning give the same result;
 *  - the end found is the first ".\r\n" at the start or after a CRLF, and `bare` is set
 *    exactly when the consumed data holds a bare CR or LF;
 *  - no output has a bare CR/LF or a line that is exactly ".";
 *  - REFUSE output is a prefix of the input; with bare == false it is the consumed
 *    input minus the ".\r\n" terminator (or minus the held-back "\r", ".", ".\r");
 *  - NORMALIZE of clean data equals REFUSE; each call's output fits 2 * len + 4;
 *  - NORMALIZE of the data followed by "\r\n.\r\n" equals the reference rule
 *    (ref_normalize): the held-back bytes are then released too. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/wire/smtp.h"
#include "tests/smtp_data_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct result {
  char *out;
  size_t out_len, consumed;
  bool done, bare;
  uint64_t bytes;
};

static void check(bool ok) {
  if (!ok)
    abort();
}

/* Scans in chunks of `step` bytes (0: split at `split`), each call with out_cap
 * 2 * chunk + 4, or `cap` when non-zero. r->out holds 2 * len + 4 bytes. */
static void scan(enum smtp_data_mode mode, const char *in, size_t len, size_t split,
                 size_t step, size_t cap, struct result *r, char *tmp) {
  struct smtp_data_scanner s;
  smtp_data_init(&s, mode);
  r->out_len = r->consumed = 0;
  size_t pos = 0;
  while (pos < len && !s.done) {
    size_t chunk = step ? step : (pos < split ? split - pos : len - pos);
    if (chunk > len - pos)
      chunk = len - pos;
    size_t out_cap = cap ? cap : 2 * chunk + 4, out_len = 0;
    size_t used = smtp_data_scan(&s, in + pos, chunk, tmp, out_cap, &out_len);
    check(used <= chunk && out_len <= out_cap);
    check(used == chunk || s.done || cap != 0);
    check(used > 0 || cap != 0);
    check(r->out_len + out_len <= 2 * len + 4);
    memcpy(r->out + r->out_len, tmp, out_len);
    r->out_len += out_len;
    pos += used;
  }
  r->consumed = pos;
  r->done = s.done;
  r->bare = s.bare;
  r->bytes = s.bytes;
}

static void check_output_lines(const char *out, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (out[i] == '\r')
      check(i + 1 < len && out[i + 1] == '\n');
    if (out[i] == '\n')
      check(i > 0 && out[i - 1] == '\r');
    if (out[i] == '.' && (i == 0 || out[i - 1] == '\n'))
      check(i + 1 >= len || out[i + 1] != '\r');
  }
}

static void check_same(const struct result *a, const struct result *b) {
  check(a->out_len == b->out_len && memcmp(a->out, b->out, a->out_len) == 0);
  check(a->consumed == b->consumed && a->done == b->done && a->bare == b->bare &&
        a->bytes == b->bytes);
}

static void check_refuse(const char *in, const struct result *r) {
  check(r->out_len <= r->consumed && memcmp(r->out, in, r->out_len) == 0);
  if (r->bare)
    return;
  if (r->done) {
    check(r->out_len == r->consumed - 3);
    return;
  }
  const char *held = in + r->out_len;
  size_t n = r->consumed - r->out_len;
  check(n == 0 || (n == 1 && (held[0] == '\r' || held[0] == '.')) ||
        (n == 2 && held[0] == '.' && held[1] == '\r'));
}

/* The data, ended for sure: the scanner's output is then the rule's, all of it. */
static void check_reference(const char *in, size_t len, struct result *r, char *tmp) {
  static const char tail[] = "\r\n.\r\n";
  size_t n = len + sizeof tail - 1;
  char *ended = malloc(n), *want = malloc(2 * n + 2);
  check(ended && want);
  memcpy(ended, in, len);
  memcpy(ended + len, tail, sizeof tail - 1);
  size_t end = ref_end(ended, n);
  check(end >= 3);
  scan(SMTP_DATA_NORMALIZE, ended, n, n, 0, 0, r, tmp);
  check(r->done && r->consumed == end);
  size_t want_len = ref_normalize(ended, end - 3, want);
  check(r->out_len == want_len && memcmp(r->out, want, want_len) == 0);
  free(ended);
  free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  const char *in = (const char *)data + 1;
  size_t len = size - 1, split = data[0] % (len + 1), end = ref_end(in, len);
  size_t bufsize = 2 * (len + 5) + 4; /* check_reference adds "\r\n.\r\n" */
  char *tmp = malloc(bufsize);
  struct result whole[2], part;
  whole[0].out = malloc(bufsize);
  whole[1].out = malloc(bufsize);
  part.out = malloc(bufsize);
  check(tmp && whole[0].out && whole[1].out && part.out);
  for (int m = 0; m < 2; m++) {
    enum smtp_data_mode mode = m ? SMTP_DATA_NORMALIZE : SMTP_DATA_REFUSE;
    struct result *w = &whole[m];
    scan(mode, in, len, len, 0, 0, w, tmp);
    check(w->done == (end != 0) && w->consumed == (end ? end : len));
    check(w->bytes == (w->done ? w->consumed - 3 : w->consumed));
    check(w->bare == ref_bare(in, w->consumed));
    check_output_lines(w->out, w->out_len);
    if (mode == SMTP_DATA_REFUSE)
      check_refuse(in, w);
    scan(mode, in, len, split, 0, 0, &part, tmp);
    check_same(&part, w);
    if (len <= 4096) {
      scan(mode, in, len, 0, 1, 0, &part, tmp);
      check_same(&part, w);
    }
    scan(mode, in, len, 0, len, 5 + data[0] % 8, &part, tmp);
    check_same(&part, w);
  }
  if (!whole[1].bare)
    check(whole[0].out_len == whole[1].out_len &&
          memcmp(whole[0].out, whole[1].out, whole[0].out_len) == 0);
  check_reference(in, len, &part, tmp);
  free(tmp);
  free(whole[0].out);
  free(whole[1].out);
  free(part.out);
  return 0;
}
