/* The syntax of the policy table: keys and values in Postfix's smtp_tls_policy_maps
 * notation. Storage and lookup are in table.c. */
#include "policy/chars.h"
#include "policy/table.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define PROTO_TLS12 0x0303
#define PROTO_TLS13 0x0304

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen,
                                                      const char *fmt, ...) {
  va_list ap;
  if (err && errlen) {
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

/* A printable, bounded rendering of outside text for an error message: bytes outside
 * printable ASCII (and '"') become '?', and a long text is cut with "...". */
static const char *show(const char *s, size_t len, char out[80]) {
  size_t n = len > 60 ? 60 : len, i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    out[i] = c > 0x20 && c < 0x7f && c != '"' ? (char)c : '?';
  }
  if (len > n) {
    memcpy(out + i, "...", 3);
    i += 3;
  }
  out[i] = '\0';
  return out;
}

/* Separators between the attributes of a value, as in Postfix. */
static bool is_sep(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',';
}

static char lower(char c) {
  return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Why [s, s+len) is not a domain name (LDH labels of 1..63 characters, at most 253 in
 * all), or NULL when it is one. */
static const char *domain_problem(const char *s, size_t len, char *buf, size_t cap) {
  size_t start = 0;
  if (len == 0)
    return "empty name";
  if (len > 253)
    return "longer than 253 characters";
  for (size_t i = 0; i <= len; i++) {
    if (i == len || s[i] == '.') {
      size_t label = i - start;
      if (label == 0)
        return "empty label";
      if (label > 63)
        return "label longer than 63 characters";
      if (s[start] == '-' || s[i - 1] == '-')
        return "label begins or ends with '-'";
      start = i + 1;
    } else if (!chars_ldh(s[i])) {
      unsigned char c = (unsigned char)s[i];
      if (c > 0x20 && c < 0x7f)
        snprintf(buf, cap, "'%c' is not allowed", c);
      else if (c >= 0x80)
        snprintf(buf, cap, "byte 0x%02x is not allowed (write IDNs as xn--)", c);
      else
        snprintf(buf, cap, "control character 0x%02x is not allowed", c);
      return buf;
    }
  }
  return NULL;
}

/* Copies a name with an optional leading '.' (subdomains) and trailing '.' (absolute)
 * into out, lower-cased and without the trailing dot. */
static int copy_name(const char *s, size_t len, char out[TABLE_NAME_MAX + 1],
                     const char *what, char *err, size_t errlen) {
  char shown[80], buf[80];
  const char *problem;
  size_t lead = len && s[0] == '.';
  size_t body = len - lead;
  if (body > 1 && s[len - 1] == '.')
    body--;
  if (body >= 2 && s[lead] == '*' && s[lead + 1] == '.')
    return fail(err, errlen, "%s \"%s\": write \"%s\" for its subdomains", what,
                show(s, len, shown), show(s + lead + 1, body - 1, buf));
  if ((problem = domain_problem(s + lead, body, buf, sizeof buf)) != NULL)
    return fail(err, errlen, "%s \"%s\" is not a domain name: %s", what,
                show(s, len, shown), problem);
  for (size_t i = 0; i < lead + body; i++)
    out[i] = lower(s[i]);
  out[lead + body] = '\0';
  return 0;
}

int table_parse_key(const char *text, size_t len, char out[TABLE_NAME_MAX + 1],
                    char *err, size_t errlen) {
  if (len == 0)
    return fail(err, errlen, "empty key");
  if (text[0] == '[' || memchr(text, ':', len))
    return fail(err, errlen,
                "next-hop keys [host]:port are not supported: the proxy looks up "
                "recipient domains");
  return copy_name(text, len, out, "key", err, errlen);
}

int table_add_match(struct table_entry *e, const char *name, size_t len, char *err,
                    size_t errlen) {
  if (len == 0)
    return fail(err, errlen, "empty match name");
  if (e->nmatch == TABLE_MAX_MATCH)
    return fail(err, errlen, "more than %d match names", TABLE_MAX_MATCH);
  if (copy_name(name, len, e->match[e->nmatch], "match name", err, errlen) < 0)
    return -1;
  e->nmatch++;
  return 0;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = lower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes "AB:CD:..." (exactly two digits per byte) or bare hex into out (cap bytes);
 * returns the byte count, or -1 when the text is neither. A count above cap is
 * returned without writing past out. */
static long decode_hex(const char *s, size_t len, uint8_t *out, size_t cap) {
  bool colons = memchr(s, ':', len) != NULL;
  size_t n = 0, i = 0;
  while (i < len) {
    int hi, lo;
    if (i + 2 > len || (hi = hex_value(s[i])) < 0 || (lo = hex_value(s[i + 1])) < 0)
      return -1;
    if (n < cap)
      out[n] = (uint8_t)(hi << 4 | lo);
    n++;
    i += 2;
    if (colons && i < len && (s[i++] != ':' || i == len))
      return -1;
  }
  return (long)n;
}

int table_add_fingerprint(struct table_entry *e, const char *text, size_t len,
                          char *err, size_t errlen) {
  char shown[80];
  long n;
  if (len == 0)
    return fail(err, errlen, "empty fingerprint");
  if (e->nfingerprints == TABLE_MAX_MATCH)
    return fail(err, errlen, "more than %d fingerprints", TABLE_MAX_MATCH);
  n = decode_hex(text, len, e->fingerprints[e->nfingerprints], 32);
  if (n < 0)
    return fail(err, errlen,
                "fingerprint \"%s\" is not hex bytes (\"AB:CD:...\" or 64 hex digits)",
                show(text, len, shown));
  if (n != 32)
    return fail(err, errlen, "fingerprint must be SHA-256 (32 bytes), not %ld: \"%s\"",
                n, show(text, len, shown));
  e->nfingerprints++;
  return 0;
}

/* ---- protocols= ---- */

static const char *const proto_names[] = {"SSLv2",   "SSLv3",   "TLSv1",
                                          "TLSv1.1", "TLSv1.2", "TLSv1.3"};
enum { PROTO_COUNT = 6, PROTO_I12 = 4, PROTO_I13 = 5 };

static int proto_index(const char *s, size_t len) {
  for (int i = 0; i < PROTO_COUNT; i++)
    if (strlen(proto_names[i]) == len && strncasecmp(proto_names[i], s, len) == 0)
      return i;
  return -1;
}

/* Postfix's grammar: "!name" excludes, "name" includes (then only the included ones
 * count), ">=name" sets a lower bound. Only the resulting minimum is kept, and never
 * below TLS 1.2: the table can raise our floor but not lower it. */
int table_parse_protocols(const char *text, size_t len, int *min_protocol, char *err,
                          size_t errlen) {
  unsigned include = 0, exclude = 0, allowed;
  int floor_i = 0;
  char shown[80];
  for (size_t i = 0; i <= len;) {
    size_t end = i, skip = 0;
    int idx;
    while (end < len && text[end] != ':')
      end++;
    if (end == i)
      return fail(err, errlen, "empty protocol name in \"%s\"", show(text, len, shown));
    if (text[i] == '!' ||
        (end - i >= 2 && text[i + 1] == '=' && (text[i] == '>' || text[i] == '<')))
      skip = text[i] == '!' ? 1 : 2;
    if ((idx = proto_index(text + i + skip, end - i - skip)) < 0)
      return fail(err, errlen, "unknown protocol \"%s\"",
                  show(text + i + skip, end - i - skip, shown));
    if (skip == 2 && text[i] == '<')
      return fail(err, errlen, "an upper bound (<=) is not supported");
    if (skip == 2)
      floor_i = idx > floor_i ? idx : floor_i;
    else if (skip == 1)
      exclude |= 1u << idx;
    else
      include |= 1u << idx;
    i = end + 1;
  }
  allowed = (include ? include : (1u << PROTO_COUNT) - 1) & ~exclude;
  allowed &= ~((1u << floor_i) - 1);
  if (!(allowed & (1u << PROTO_I12 | 1u << PROTO_I13)))
    return fail(err, errlen, "leaves neither TLSv1.2 nor TLSv1.3");
  if (!(allowed & 1u << PROTO_I13))
    return fail(err, errlen,
                "excluding TLSv1.3 is not supported: there is no maximum protocol");
  *min_protocol = allowed & 1u << PROTO_I12 ? PROTO_TLS12 : PROTO_TLS13;
  return 0;
}

int table_check_entry(const struct table_entry *e, char *err, size_t errlen) {
  if (e->level == TLS_LEVEL_FINGERPRINT && e->nfingerprints == 0)
    return fail(err, errlen, "level fingerprint needs at least one fingerprint");
  if (e->nfingerprints && e->level != TLS_LEVEL_FINGERPRINT)
    return fail(err, errlen, "fingerprints are only for level fingerprint");
  if (e->nmatch && e->level != TLS_LEVEL_VERIFY && e->level != TLS_LEVEL_SECURE)
    return fail(err, errlen, "match names are only for levels verify and secure");
  if (e->min_protocol && e->level == TLS_LEVEL_NONE)
    return fail(err, errlen, "protocols have no effect at level none");
  return 0;
}

/* ---- one value: "level attr=value ..." ---- */

/* Attributes of Postfix's policy tables that this proxy does not implement. */
static const char *const unsupported_attrs[] = {
    "ciphers", "exclude", "tafile", "connection_reuse", "servername", "enable_rpk",
};

static bool attr_is(const char *name, size_t len, const char *want) {
  return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

/* Splits val on sep and feeds each piece to add. */
static int add_list(struct table_entry *e, const char *val, size_t len, char sep,
                    int (*add)(struct table_entry *, const char *, size_t, char *,
                               size_t),
                    char *err, size_t errlen) {
  for (size_t i = 0; i <= len;) {
    size_t end = i;
    while (end < len && val[end] != sep)
      end++;
    if (add(e, val + i, end - i, err, errlen) < 0)
      return -1;
    i = end + 1;
  }
  return 0;
}

static int parse_match(struct table_entry *e, const char *val, size_t len, char *err,
                       size_t errlen) {
  if (e->level == TLS_LEVEL_FINGERPRINT)
    return add_list(e, val, len, '|', table_add_fingerprint, err, errlen);
  if (e->level == TLS_LEVEL_VERIFY || e->level == TLS_LEVEL_SECURE)
    return add_list(e, val, len, ':', table_add_match, err, errlen);
  return fail(err, errlen, "attribute \"match\" is not allowed at level %s",
              tls_level_name(e->level));
}

static int parse_attr(struct table_entry *e, const char *tok, size_t len,
                      bool *seen_protocols, char *err, size_t errlen) {
  const char *eq = memchr(tok, '=', len);
  size_t nlen = eq ? (size_t)(eq - tok) : 0, vlen = eq ? len - nlen - 1 : 0;
  char shown[80];
  if (!eq || nlen == 0)
    return fail(err, errlen, "expected attribute=value, found \"%s\"",
                show(tok, len, shown));
  if (vlen == 0)
    return fail(err, errlen, "attribute \"%s\" has an empty value",
                show(tok, nlen, shown));
  if (attr_is(tok, nlen, "match"))
    return parse_match(e, eq + 1, vlen, err, errlen);
  if (attr_is(tok, nlen, "protocols")) {
    if (*seen_protocols)
      return fail(err, errlen, "attribute \"protocols\" given twice");
    *seen_protocols = true;
    if (table_parse_protocols(eq + 1, vlen, &e->min_protocol, err, errlen) < 0) {
      char reason[160];
      snprintf(reason, sizeof reason, "%s", err ? err : "");
      return fail(err, errlen, "protocols: %s", reason);
    }
    return 0;
  }
  for (size_t i = 0; i < sizeof unsupported_attrs / sizeof unsupported_attrs[0]; i++)
    if (attr_is(tok, nlen, unsupported_attrs[i]))
      return fail(err, errlen, "unsupported attribute \"%s\": not implemented here",
                  unsupported_attrs[i]);
  return fail(err, errlen, "unknown attribute \"%s\"", show(tok, nlen, shown));
}

/* The next token of [*pos, len) between separators; false at the end. */
static bool next_token(const char *text, size_t len, size_t *pos, size_t *start,
                       size_t *tlen) {
  size_t i = *pos;
  while (i < len && is_sep(text[i]))
    i++;
  if (i == len)
    return false;
  *start = i;
  while (i < len && !is_sep(text[i]))
    i++;
  *tlen = i - *start;
  *pos = i;
  return true;
}

static int parse_level(const char *tok, size_t len, enum tls_level *level, char *err,
                       size_t errlen) {
  char name[16], shown[80];
  if (len < sizeof name) {
    memcpy(name, tok, len);
    name[len] = '\0';
    if (tls_level_parse(name, level) == 0)
      return 0;
  }
  return fail(err, errlen,
              "unknown level \"%s\" (none, may, encrypt, dane, dane-only, "
              "fingerprint, verify or secure)",
              show(tok, len, shown));
}

int table_parse_value(const char *text, size_t len, struct table_entry *e, char *err,
                      size_t errlen) {
  size_t pos = 0, start, tlen;
  bool seen_protocols = false;
  e->level = TLS_LEVEL_NONE;
  e->nmatch = e->nfingerprints = 0;
  e->min_protocol = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)text[i];
    if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f)
      return fail(err, errlen, "control character 0x%02x in the value", c);
  }
  if (!next_token(text, len, &pos, &start, &tlen))
    return fail(err, errlen, "missing level");
  if (parse_level(text + start, tlen, &e->level, err, errlen) < 0)
    return -1;
  while (next_token(text, len, &pos, &start, &tlen))
    if (parse_attr(e, text + start, tlen, &seen_protocols, err, errlen) < 0)
      return -1;
  return table_check_entry(e, err, errlen);
}
