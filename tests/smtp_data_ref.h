/* A deliberately naive model of the DATA scanner's rules (proxy/smtp.c), shared by
 * the unit test and the fuzz target that check the real scanner against it. */
#ifndef SP_TESTS_SMTP_DATA_REF_H
#define SP_TESTS_SMTP_DATA_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* The first real end: ".\r\n" at the start or right after a CRLF; 0 when none. Returns
 * the offset just past it. */
static inline size_t ref_end(const char *in, size_t len) {
  for (size_t p = 0; p + 3 <= len; p++)
    if (memcmp(in + p, ".\r\n", 3) == 0 &&
        (p == 0 || (p >= 2 && in[p - 2] == '\r' && in[p - 1] == '\n')))
      return p + 3;
  return 0;
}

/* Whether in[0..len) holds a CR not followed by LF, or an LF not preceded by CR. */
static inline bool ref_bare(const char *in, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (in[i] == '\r' && i + 1 < len && in[i + 1] != '\n')
      return true;
    if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
      return true;
  }
  return false;
}

/* The normalized form of data[0..len) (the terminator excluded), written as plainly as
 * the rule reads (smtp.h): split into lines at CRLF, bare CR and bare LF; each line
 * ends in CRLF; a leading '.' gets a second one when the line is a lone "." or follows
 * a bare line end without a second '.'. out needs 2 * len + 2 bytes. Returns the
 * output length. */
static inline size_t ref_normalize(const char *in, size_t len, char *out) {
  size_t o = 0, i = 0;
  bool after_bare = false;
  for (;;) {
    size_t e = i;
    while (e < len && in[e] != '\r' && in[e] != '\n')
      e++;
    size_t n = e - i;
    bool lone = n == 1 && in[i] == '.';
    bool stuffed = n >= 2 && in[i] == '.' && in[i + 1] == '.';
    if (n > 0 && in[i] == '.' && (lone || (after_bare && !stuffed)))
      out[o++] = '.';
    memcpy(out + o, in + i, n);
    o += n;
    if (e == len)
      return o;
    size_t end_len = in[e] == '\r' && e + 1 < len && in[e + 1] == '\n' ? 2 : 1;
    after_bare = end_len == 1;
    out[o++] = '\r';
    out[o++] = '\n';
    i = e + end_len;
  }
}

#endif
