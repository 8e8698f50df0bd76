/* MTA-STS (RFC 8461): TXT record, policy file, MX patterns, cache rules. Pure. */
#include "policy/mtasts.h"
#include "policy/chars.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STS_TXT_PREFIX "v=STSv1;"
#define STS_KEY_MAX 32
#define STS_LABEL_MAX 63

static bool is_vchar(unsigned char c) {
  return c >= 0x21 && c <= 0x7e;
}
/* sts-ext-name / sts-policy-ext-name after the first character. */
static bool is_keych(unsigned char c) {
  return chars_alnum(c) || c == '_' || c == '-' || c == '.';
}
static unsigned char ascii_lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

static bool ascii_ieq(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i]))
      return false;
  return true;
}

static bool str_eq(const char *s, size_t n, const char *lit) {
  return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

/* Length of a key at s (alnum, then up to 31 of alnum "_-."), or 0 if none. */
static size_t key_len(const char *s, size_t n) {
  size_t i = 0;
  if (n == 0 || !chars_alnum((unsigned char)s[0]))
    return 0;
  for (i = 1; i < n && i < STS_KEY_MAX && is_keych((unsigned char)s[i]); i++)
    ;
  return i;
}

/* ---- TXT record (§3.1) --------------------------------------------------------------- */

/* sts-ext-value: VCHAR except ";" and "=". */
static bool is_txt_valch(unsigned char c) {
  return is_vchar(c) && c != ';' && c != '=';
}

static size_t skip_wsp(const char *s, size_t i, size_t n) {
  while (i < n && chars_wsp((unsigned char)s[i]))
    i++;
  return i;
}

/* Parses the fields after "v=STSv1;". A second id is ambiguous (which policy is
 * meant?), so it makes the record invalid. Trailing whitespace with no ';' is
 * tolerated: it cannot change the meaning. */
static int txt_fields(const char *s, size_t n, char id[STS_ID_MAX + 1]) {
  bool have_id = false;
  size_t i = skip_wsp(s, strlen(STS_TXT_PREFIX), n);
  if (i == n)
    return STS_TXT_INVALID;
  for (;;) {
    size_t klen = key_len(s + i, n - i);
    if (klen == 0 || i + klen >= n || s[i + klen] != '=')
      return STS_TXT_INVALID;
    const char *key = s + i;
    size_t v = i + klen + 1;
    for (i = v; i < n && is_txt_valch((unsigned char)s[i]); i++)
      ;
    size_t vlen = i - v;
    if (vlen == 0)
      return STS_TXT_INVALID;
    if (str_eq(key, klen, "id")) {
      if (have_id || vlen > STS_ID_MAX)
        return STS_TXT_INVALID;
      for (size_t k = 0; k < vlen; k++)
        if (!chars_alnum((unsigned char)s[v + k]))
          return STS_TXT_INVALID;
      memcpy(id, s + v, vlen);
      id[vlen] = '\0';
      have_id = true;
    }
    i = skip_wsp(s, i, n);
    if (i == n)
      break;
    if (s[i] != ';')
      return STS_TXT_INVALID;
    i = skip_wsp(s, i + 1, n);
    if (i == n)
      break; /* one trailing sts-sep */
  }
  return have_id ? STS_TXT_OK : STS_TXT_INVALID;
}

int sts_txt_parse(const char *const *records, const size_t *lens, size_t n,
                  char id[STS_ID_MAX + 1]) {
  const size_t plen = strlen(STS_TXT_PREFIX);
  size_t found = 0, which = 0;
  if (n > 0 && (!records || !lens))
    return STS_TXT_NONE;
  for (size_t i = 0; i < n; i++) {
    /* §3.1: discard records not beginning "v=STSv1;" (%s: case-sensitive). */
    if (records[i] && lens[i] >= plen &&
        memcmp(records[i], STS_TXT_PREFIX, plen) == 0) {
      found++;
      which = i;
    }
  }
  if (found == 0)
    return STS_TXT_NONE;
  if (found > 1)
    return STS_TXT_INVALID;
  char tmp[STS_ID_MAX + 1];
  int rc = txt_fields(records[which], lens[which], tmp);
  if (rc == STS_TXT_OK)
    memcpy(id, tmp, sizeof tmp);
  return rc;
}

/* ---- host names and patterns (§3.2 sts-policy-mx-value, RFC 5321 Domain) ------------- */

/* LDH labels of 1..63, no leading or trailing hyphen, total 1..253. ASCII only, so
 * U-labels are refused; A-labels ("xn--...") are plain LDH. */
static bool domain_valid(const char *d, size_t n) {
  size_t start = 0;
  if (n == 0 || n > STS_NAME_MAX)
    return false;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && d[i] != '.') {
      unsigned char c = (unsigned char)d[i];
      if (!chars_alnum(c) && c != '-')
        return false;
      continue;
    }
    size_t llen = i - start;
    if (llen == 0 || llen > STS_LABEL_MAX || d[start] == '-' || d[i - 1] == '-')
      return false;
    start = i + 1;
  }
  return true;
}

/* Validates an mx value and stores it lower-cased, without a trailing dot. */
static bool pattern_store(const char *v, size_t n, char out[STS_NAME_MAX + 1]) {
  size_t pre = (n >= 2 && v[0] == '*' && v[1] == '.') ? 2 : 0;
  if (n > pre && v[n - 1] == '.')
    n--;
  if (n > STS_NAME_MAX || !domain_valid(v + pre, n - pre))
    return false;
  for (size_t i = 0; i < n; i++)
    out[i] = (char)ascii_lower((unsigned char)v[i]);
  out[n] = '\0';
  return true;
}

void sts_policy_free(struct sts_policy *p) {
  if (!p)
    return;
  free(p->mx);
  memset(p, 0, sizeof *p);
}

int sts_policy_copy(struct sts_policy *dst, const struct sts_policy *src) {
  char *mx = NULL;
  if (src->mx_len > 0) {
    if (!(mx = malloc(src->mx_len))) {
      memset(dst, 0, sizeof *dst);
      return -1;
    }
    memcpy(mx, src->mx, src->mx_len);
  }
  *dst = *src;
  dst->mx = mx;
  return 0;
}

const char *sts_mx_next(const struct sts_policy *p, const char *prev) {
  if (!p || !p->mx || p->mx_len == 0)
    return NULL;
  if (!prev)
    return p->mx;
  const char *next = prev + strlen(prev) + 1;
  return next < p->mx + p->mx_len ? next : NULL;
}

/* §4.1: "*.example.com" matches one extra left-most label, never the bare domain. */
bool sts_mx_match(const struct sts_policy *p, const char *host) {
  if (!p || !host)
    return false;
  size_t hl = strlen(host);
  if (hl > 0 && host[hl - 1] == '.')
    hl--;
  if (hl == 0 || hl > STS_NAME_MAX)
    return false;
  for (const char *pat = sts_mx_next(p, NULL); pat; pat = sts_mx_next(p, pat)) {
    size_t pl = strlen(pat);
    if (pl >= 2 && pat[0] == '*' && pat[1] == '.') {
      const char *suffix = pat + 1; /* ".example.com" */
      size_t sl = pl - 1;
      if (hl <= sl || !ascii_ieq(host + hl - sl, suffix, sl))
        continue;
      size_t ll = hl - sl;
      if (ll <= STS_LABEL_MAX && !memchr(host, '.', ll))
        return true;
    } else if (pl == hl && ascii_ieq(host, pat, hl)) {
      return true;
    }
  }
  return false;
}

/* ---- policy file (§3.2) -------------------------------------------------------------- */

struct policy_parse {
  struct sts_policy *out;
  size_t mx_cap; /* bytes allocated at out->mx */
  bool nomem;
  bool have_version, have_mode, have_max_age;
  unsigned line;
  char *err;
  size_t errlen;
};

__attribute__((format(printf, 2, 3))) static int policy_fail(struct policy_parse *st,
                                                             const char *fmt, ...) {
  if (st->err && st->errlen > 0) {
    int k = st->line ? snprintf(st->err, st->errlen, "line %u: ", st->line) : 0;
    if (k >= 0 && (size_t)k < st->errlen) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(st->err + k, st->errlen - (size_t)k, fmt, ap);
      va_end(ap);
    }
  }
  return -1;
}

/* Length of a well-formed UTF-8 sequence of 2..4 bytes at s (RFC 3629: no overlongs,
 * no surrogates, nothing past U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf)
    len = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    lo = c == 0xe0 ? 0xa0 : 0x80;
    hi = c == 0xed ? 0x9f : 0xbf;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    lo = c == 0xf0 ? 0x90 : 0x80;
    hi = c == 0xf4 ? 0x8f : 0xbf;
  } else
    return 0;
  if (n < len || s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xbf)
      return 0;
  return len;
}

/* sts-policy-ext-value: VCHAR, WSP and UTF-8; no other control characters. */
static bool value_chars_ok(const char *v, size_t n) {
  for (size_t i = 0; i < n;) {
    unsigned char c = (unsigned char)v[i];
    if (is_vchar(c) || chars_wsp(c)) {
      i++;
      continue;
    }
    size_t u = c >= 0x80 ? utf8_len((const unsigned char *)v + i, n - i) : 0;
    if (u == 0)
      return false;
    i += u;
  }
  return true;
}

/* sts-policy-max-age-value = 1*10(DIGIT), capped (§3.2). */
static bool parse_max_age(const char *v, size_t n, uint32_t *out) {
  uint64_t x = 0;
  if (n == 0 || n > 10)
    return false;
  for (size_t i = 0; i < n; i++) {
    if (!chars_digit((unsigned char)v[i]))
      return false;
    x = x * 10 + (uint64_t)(v[i] - '0');
  }
  *out = x > STS_MAX_AGE_CAP ? STS_MAX_AGE_CAP : (uint32_t)x;
  return true;
}

/* Adds pat to the policy's block, grown by doubling (the file bounds it: a pattern is
 * never longer than its line) and cut to size at the end. */
static int pattern_append(struct policy_parse *st, const char *pat) {
  struct sts_policy *p = st->out;
  size_t n = strlen(pat) + 1;
  if (st->mx_cap - p->mx_len < n) {
    size_t cap = st->mx_cap ? st->mx_cap : 64;
    while (cap - p->mx_len < n)
      cap *= 2;
    char *mx = realloc(p->mx, cap);
    if (!mx) {
      st->nomem = true;
      return policy_fail(st, "out of memory");
    }
    p->mx = mx;
    st->mx_cap = cap;
  }
  memcpy(p->mx + p->mx_len, pat, n);
  p->mx_len += n;
  p->nmx++;
  return 0;
}

/* One known or unknown field; for the singular keys the first occurrence wins. */
static int policy_field(struct policy_parse *st, const char *k, size_t kl,
                        const char *v, size_t vl) {
  struct sts_policy *p = st->out;
  if (str_eq(k, kl, "version") && !st->have_version) {
    st->have_version = true;
    if (!str_eq(v, vl, "STSv1"))
      return policy_fail(st, "version: must be STSv1");
  } else if (str_eq(k, kl, "mode") && !st->have_mode) {
    st->have_mode = true;
    if (str_eq(v, vl, "enforce"))
      p->mode = STS_MODE_ENFORCE;
    else if (str_eq(v, vl, "testing"))
      p->mode = STS_MODE_TESTING;
    else if (str_eq(v, vl, "none"))
      p->mode = STS_MODE_NONE;
    else
      return policy_fail(st, "mode: must be enforce, testing or none");
  } else if (str_eq(k, kl, "max_age") && !st->have_max_age) {
    st->have_max_age = true;
    if (!parse_max_age(v, vl, &p->max_age))
      return policy_fail(st, "max_age: must be 1 to 10 decimal digits");
  } else if (str_eq(k, kl, "mx")) {
    char pat[STS_NAME_MAX + 1];
    if (!pattern_store(v, vl, pat))
      return policy_fail(st, "mx: invalid host name pattern");
    return pattern_append(st, pat);
  }
  return 0;
}

/* One line without its line end. Blank lines are tolerated (common in the wild, and
 * they cannot change the meaning); whitespace before ':' too, as the header allows. */
static int policy_line(struct policy_parse *st, const char *s, size_t n) {
  size_t i = skip_wsp(s, 0, n);
  while (n > i && chars_wsp((unsigned char)s[n - 1]))
    n--;
  if (i == n)
    return 0;
  size_t kl = key_len(s + i, n - i);
  if (kl == 0)
    return policy_fail(st, "expected a key");
  const char *k = s + i;
  i = skip_wsp(s, i + kl, n);
  if (i == n || s[i] != ':')
    return policy_fail(st, "expected \"key: value\"");
  i = skip_wsp(s, i + 1, n);
  if (i == n)
    return policy_fail(st, "%.*s: empty value", (int)kl, k);
  if (!value_chars_ok(s + i, n - i))
    return policy_fail(st, "%.*s: invalid character in value", (int)kl, k);
  return policy_field(st, k, kl, s + i, n - i);
}

static int policy_finish(struct policy_parse *st) {
  st->line = 0;
  if (!st->have_version)
    return policy_fail(st, "version: missing");
  if (!st->have_mode)
    return policy_fail(st, "mode: missing");
  if (!st->have_max_age)
    return policy_fail(st, "max_age: missing");
  if (st->out->mode != STS_MODE_NONE && st->out->nmx == 0)
    return policy_fail(st, "mx: missing (required unless mode is none)");
  return 0;
}

static int policy_lines(struct policy_parse *st, const char *text, size_t len) {
  if (len > STS_POLICY_MAX_BYTES)
    return policy_fail(st, "policy larger than %d bytes", STS_POLICY_MAX_BYTES);
  if (len > 0 && memchr(text, '\0', len))
    return policy_fail(st, "NUL byte in policy");
  size_t pos = 0;
  while (pos < len) {
    st->line++;
    const char *lf = memchr(text + pos, '\n', len - pos);
    size_t end = lf ? (size_t)(lf - text) : len, lend = end;
    if (lend > pos && text[lend - 1] == '\r')
      lend--; /* CRLF or LF (§3.2 sts-policy-term); a lone CR is refused below */
    if (memchr(text + pos, '\r', lend - pos))
      return policy_fail(st, "CR not followed by LF");
    if (policy_line(st, text + pos, lend - pos) < 0)
      return -1;
    pos = end + 1;
  }
  return policy_finish(st);
}

int sts_policy_parse(const char *text, size_t len, struct sts_policy *out, char *err,
                     size_t errlen) {
  struct policy_parse st = {.out = out, .err = err, .errlen = errlen};
  if (err && errlen > 0)
    err[0] = '\0';
  memset(out, 0, sizeof *out);
  if (!text && len > 0)
    return policy_fail(&st, "no policy text");
  if (policy_lines(&st, text, len) < 0) {
    sts_policy_free(out);
    return st.nomem ? -2 : -1;
  }
  if (st.mx_cap > out->mx_len) { /* compact: a cached policy keeps only its patterns */
    char *mx = realloc(out->mx, out->mx_len);
    if (mx)
      out->mx = mx;
  }
  return 0;
}

/* ---- cache rules (§3.3, §5.1, §10.2) ------------------------------------------------- */

enum sts_action sts_cache_decide(const struct sts_cached *c, enum sts_txt_state txt,
                                 const char *txt_id, int64_t now) {
  bool fresh = c && c->present && now < c->expires_at;
  if (txt == STS_DNS_FOUND) {
    if (fresh && txt_id && strcmp(txt_id, c->id) == 0)
      return STS_ACT_USE_CACHED;
    return STS_ACT_FETCH; /* new id, expired or no cache */
  }
  /* §3.3: with no live policy, a valid cached one still applies until max_age. */
  return fresh ? STS_ACT_USE_CACHED : STS_ACT_NO_POLICY;
}

bool sts_cache_should_refresh(const struct sts_cached *c, int64_t now) {
  if (!c || !c->present)
    return false;
  if (now >= c->expires_at || c->expires_at <= c->fetched_at)
    return true;
  /* Unsigned differences: stored times come from disk and may be extreme. */
  uint64_t span = (uint64_t)c->expires_at - (uint64_t)c->fetched_at;
  uint64_t left = (uint64_t)c->expires_at - (uint64_t)now;
  /* Past half the lifetime. Not "within a day of expiry": with max_age of a day or
   * less that would refetch on every message. */
  return left <= span - span / 2;
}
