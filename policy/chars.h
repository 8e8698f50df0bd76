/* ASCII character classes of the grammars we parse (SMTP, DNS names, MTA-STS and
 * TLS-RPT records, the policy table, the configuration): one copy, locale-free, safe
 * for any byte (the argument is unsigned char, so a char >= 0x80 never indexes a
 * table or sign-extends). */
#ifndef SP_POLICY_CHARS_H
#define SP_POLICY_CHARS_H

#include <stdbool.h>

static inline bool chars_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}
static inline bool chars_alpha(unsigned char c) {
  return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}
static inline bool chars_alnum(unsigned char c) {
  return chars_digit(c) || chars_alpha(c);
}
/* Letters, digits, hyphen: what a DNS label is made of (RFC 1035 §2.3.1). */
static inline bool chars_ldh(unsigned char c) {
  return chars_alnum(c) || c == '-';
}
static inline bool chars_wsp(unsigned char c) {
  return c == ' ' || c == '\t';
}
/* Visible characters (RFC 5234 VCHAR). */
static inline bool chars_vchar(unsigned char c) {
  return c >= 0x21 && c <= 0x7e;
}

#endif
