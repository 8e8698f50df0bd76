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

#endif
