/* Fuzzes reply handling: line framing, smtp_reply_feed_line, then on each complete
 * reply smtp_ehlo_caps, smtp_reply_format (whose output must parse back to the same
 * reply) and smtp_reply_build. Aborts when an output breaks the contract in smtp.h. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/error.h"
#include "proxy/wire/smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define WIRE_MAX (SMTP_REPLY_MAX_LINES * (SMTP_REPLY_LINE_MAX + 6) + 1)
#define FRAME_MAX (SMTP_REPLY_LINE_MAX + 4) /* "NNN-" and a full line */

static struct smtp_reply_parser parser, back_parser;
static struct smtp_reply back;
static char wire[WIRE_MAX], small[WIRE_MAX], text[WIRE_MAX];

static void check(bool ok) {
  if (!ok)
    abort();
}

/* Parses wire text that must hold exactly one reply into back. */
static void reparse(const char *w, size_t len) {
  size_t pos = 0, ll, used;
  int rc = 0;
  smtp_reply_parser_init(&back_parser);
  while (pos < len) {
    check(rc == 0);
    check(smtp_find_line(w + pos, len - pos, FRAME_MAX, &ll, &used) == 1);
    check(used == ll + 2 && w[pos + ll] == '\r');
    rc = smtp_reply_feed_line(&back_parser, w + pos, ll, &back);
    pos += used;
  }
  check(rc == 1);
}

static void check_shape(const struct smtp_reply *r) {
  size_t elen = strnlen(r->enhanced, sizeof r->enhanced);
  check(r->code >= 200 && r->code <= 599);
  check(r->nlines >= 1 && r->nlines <= SMTP_REPLY_MAX_LINES);
  check(elen < sizeof r->enhanced);
  if (elen > 0)
    check(r->enhanced[0] - '0' == r->code / 100 &&
          strncmp(r->lines[0], r->enhanced, elen) == 0);
  for (size_t i = 0; i < r->nlines; i++) {
    size_t n = strnlen(r->lines[i], SMTP_REPLY_LINE_MAX + 1);
    check(n <= SMTP_REPLY_LINE_MAX);
    for (size_t k = 0; k < n; k++)
      check((unsigned char)r->lines[i][k] >= 0x20 || r->lines[i][k] == '\t');
  }
  struct smtp_caps caps;
  smtp_ehlo_caps(r, &caps);
  check((caps.flags & ~0xffu) == 0);
  check((caps.flags & SMTP_CAP_SIZE) || caps.size_max == 0);
}

static void check_format(const struct smtp_reply *r, size_t small_cap) {
  int n = smtp_reply_format(r, 0, wire, sizeof wire);
  check(n > 0 && strlen(wire) == (size_t)n);
  reparse(wire, (size_t)n);
  check(back.code == r->code && back.nlines == r->nlines);
  check(strcmp(back.enhanced, r->enhanced) == 0);
  for (size_t i = 0; i < r->nlines; i++)
    check(strcmp(back.lines[i], r->lines[i]) == 0);
  int m = smtp_reply_format(r, 0, small, small_cap);
  if ((size_t)n < small_cap)
    check(m == n && memcmp(small, wire, (size_t)n + 1) == 0);
  else
    check(m == SP_E_OVERFLOW && (small_cap == 0 || small[0] == '\0'));
  check(smtp_reply_format(r, 421, small, sizeof small) == n);
}

/* The lines joined by '\n' rebuild the reply (less a trailing empty line, which a
 * final '\n' does not add). */
static void check_build(const struct smtp_reply *r) {
  size_t len = 0;
  for (size_t i = 0; i < r->nlines; i++) {
    size_t n = strlen(r->lines[i]);
    memcpy(text + len, r->lines[i], n);
    len += n;
    if (i + 1 < r->nlines)
      text[len++] = '\n';
  }
  text[len] = '\0';
  int n = smtp_reply_build(wire, sizeof wire, r->code, "", text);
  check(n > 0);
  reparse(wire, (size_t)n);
  size_t want = r->nlines;
  if (want > 1 && r->lines[want - 1][0] == '\0')
    want--;
  check(back.code == r->code && back.nlines == want);
  for (size_t i = 0; i < want; i++)
    check(strcmp(back.lines[i], r->lines[i]) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static struct smtp_reply reply;
  const char *in = (const char *)data;
  size_t small_cap = size > 0 ? (size_t)data[0] * 8 : 0;
  size_t pos = 0, ll, used;
  smtp_reply_parser_init(&parser);
  while (pos < size) {
    int rc = smtp_find_line(in + pos, size - pos, FRAME_MAX, &ll, &used);
    if (rc == 0)
      break;
    if (rc == SP_E_TOOLONG) {
      const char *lf = memchr(in + pos, '\n', size - pos);
      if (lf == NULL)
        break;
      pos = (size_t)(lf - in) + 1;
      smtp_reply_parser_init(&parser);
      continue;
    }
    rc = smtp_reply_feed_line(&parser, in + pos, ll, &reply);
    check(rc == 0 || rc == 1 || rc == SP_E_PROTOCOL);
    if (rc == 1) {
      check(!parser.in_progress);
      check_shape(&reply);
      check_format(&reply, small_cap);
      check_build(&reply);
    }
    pos += used;
  }
  return 0;
}
