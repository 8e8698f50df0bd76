/* TLS reporting (RFC 8460): TXT record, result types, policy strings, JSON. Pure. */
#include "policy/tlsrpt.h"
#include "policy/chars.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TLSRPT_VERSION "v=TLSRPTv1"
#define TLSRPT_KEY_MAX 32
#define TLSRPT_LOCAL_MAX 64
#define TLSRPT_DOMAIN_MAX 253

/* tlsrpt-ext-value: %x21-3A / %x3C / %x3E-7E (VCHAR but ";" and "="). */
static bool is_ext_valch(unsigned char c) {
  return chars_vchar(c) && c != ';' && c != '=';
}
static unsigned char ascii_lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}
static bool has_prefix_ci(const char *s, size_t n, const char *lit) {
  size_t l = strlen(lit);
  if (n < l)
    return false;
  for (size_t i = 0; i < l; i++)
    if (ascii_lower((unsigned char)s[i]) != (unsigned char)lit[i])
      return false;
  return true;
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen,
                                                      const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return TLSRPT_TXT_INVALID;
}

/* ---- rua URIs ------------------------------------------------------------------------ */

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = ascii_lower(c);
  return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* Characters allowed in a mailto: address we will put into RCPT TO:<...>. */
static bool is_addr_char(unsigned char c) {
  return chars_vchar(c) && !strchr("<>\"(),;:\\[]", c);
}

static bool domain_ok(const char *d, size_t n) {
  if (n == 0 || n > TLSRPT_DOMAIN_MAX || d[0] == '.' || d[n - 1] == '.')
    return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)d[i];
    if (!(chars_alnum(c) || c == '-' || c == '.') ||
        (c == '.' && i + 1 < n && d[i + 1] == '.'))
      return false;
  }
  return true;
}

/* RFC 6068: the address before any "?", %-decoded; exactly one "@". */
static bool parse_mailto(const char *s, size_t n, char *addr) {
  size_t len = 0;
  for (size_t i = 0; i < n && s[i] != '?'; i++) {
    int c = (unsigned char)s[i];
    if (c == '%') {
      int hi = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
      int lo = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
      if (hi < 0 || lo < 0)
        return false;
      c = hi * 16 + lo;
      i += 2;
    }
    if (!is_addr_char((unsigned char)c) || len >= TLSRPT_ADDR_MAX)
      return false;
    addr[len++] = (char)c;
  }
  addr[len] = '\0';
  const char *at = strchr(addr, '@');
  if (!at || strchr(at + 1, '@'))
    return false;
  size_t local = (size_t)(at - addr);
  return local > 0 && local <= TLSRPT_LOCAL_MAX && domain_ok(at + 1, len - local - 1);
}

/* Keeps one URI when it is a usable mailto: or https: URI; counts it skipped else. */
static void add_uri(struct tlsrpt_record *out, const char *s, size_t n) {
  struct tlsrpt_uri u;
  bool ok = n > 0 && n <= TLSRPT_URI_MAX && out->nrua < TLSRPT_MAX_RUA;
  for (size_t i = 0; ok && i < n; i++)
    ok = chars_vchar((unsigned char)s[i]);
  memset(&u, 0, sizeof u);
  if (ok && has_prefix_ci(s, n, "mailto:")) {
    u.kind = TLSRPT_URI_MAILTO;
    ok = parse_mailto(s + 7, n - 7, u.addr);
  } else if (ok && has_prefix_ci(s, n, "https://")) {
    u.kind = TLSRPT_URI_HTTPS;
    ok = n > 8 && s[8] != '/' && s[8] != '?' && s[8] != '#';
  } else {
    ok = false;
  }
  if (!ok) {
    out->nskipped++;
    return;
  }
  memcpy(u.uri, s, n);
  u.uri[n] = '\0';
  out->rua[out->nrua++] = u;
}

/* tlsrpt-rua: URIs separated by *WSP "," *WSP. */
static void parse_rua(struct tlsrpt_record *out, const char *v, size_t n) {
  size_t pos = 0;
  while (pos <= n) {
    size_t end = pos;
    while (end < n && v[end] != ',')
      end++;
    size_t a = pos, b = end;
    while (a < b && chars_wsp((unsigned char)v[a]))
      a++;
    while (b > a && chars_wsp((unsigned char)v[b - 1]))
      b--;
    add_uri(out, v + a, b - a);
    pos = end + 1;
  }
}

/* ---- the record ---------------------------------------------------------------------- */

static bool is_tlsrpt_record(const char *s, size_t n) {
  size_t v = strlen(TLSRPT_VERSION);
  if (n < v || memcmp(s, TLSRPT_VERSION, v) != 0)
    return false;
  return n == v || s[v] == ';' || chars_wsp((unsigned char)s[v]);
}

/* One "key=value" field (whitespace already trimmed at both ends). */
static int parse_field(struct tlsrpt_record *out, bool *have_rua, const char *f,
                       size_t n, char *err, size_t errlen) {
  size_t k = 0;
  if (n == 0 || !chars_alnum((unsigned char)f[0]))
    return fail(err, errlen, "malformed field \"%.*s\"", (int)(n > 40 ? 40 : n), f);
  for (k = 1; k < n && k < TLSRPT_KEY_MAX &&
              (chars_alnum((unsigned char)f[k]) || (f[k] && strchr("_-.", f[k])));
       k++)
    ;
  size_t eq = k;
  while (eq < n && chars_wsp((unsigned char)f[eq]))
    eq++;
  if (eq >= n || f[eq] != '=')
    return fail(err, errlen, "malformed field \"%.*s\"", (int)(n > 40 ? 40 : n), f);
  size_t v = eq + 1;
  while (v < n && chars_wsp((unsigned char)f[v]))
    v++;
  if (v == n)
    return fail(err, errlen, "empty value for %.*s", (int)k, f);
  if (k == 3 && memcmp(f, "rua", 3) == 0) {
    if (!*have_rua)
      parse_rua(out, f + v, n - v);
    *have_rua = true;
    return 0;
  }
  for (size_t i = v; i < n; i++)
    if (!is_ext_valch((unsigned char)f[i]))
      return fail(err, errlen, "bad character in %.*s", (int)k, f);
  return 0;
}

static int parse_record(const char *s, size_t n, struct tlsrpt_record *out, char *err,
                        size_t errlen) {
  size_t pos = strlen(TLSRPT_VERSION);
  bool have_rua = false;
  for (;;) {
    while (pos < n && chars_wsp((unsigned char)s[pos]))
      pos++;
    if (pos == n)
      break;
    if (s[pos] != ';')
      return fail(err, errlen, "expected \";\" at offset %zu", pos);
    pos++;
    while (pos < n && chars_wsp((unsigned char)s[pos]))
      pos++;
    if (pos == n || s[pos] == ';')
      continue; /* an empty field */
    size_t end = pos;
    while (end < n && s[end] != ';')
      end++;
    size_t fend = end;
    while (fend > pos && chars_wsp((unsigned char)s[fend - 1]))
      fend--;
    int rc = parse_field(out, &have_rua, s + pos, fend - pos, err, errlen);
    if (rc != 0)
      return rc;
    pos = end;
  }
  if (!have_rua)
    return fail(err, errlen, "no rua field");
  if (out->nrua == 0)
    return fail(err, errlen, "no usable rua URI (%zu skipped)", out->nskipped);
  return TLSRPT_TXT_OK;
}

int tlsrpt_txt_parse(const char *const *records, const size_t *lens, size_t n,
                     struct tlsrpt_record *out, char *err, size_t errlen) {
  size_t found = 0, which = 0;
  memset(out, 0, sizeof *out);
  if (err && errlen)
    err[0] = '\0';
  for (size_t i = 0; i < n; i++)
    if (records[i] && is_tlsrpt_record(records[i], lens[i])) {
      found++;
      which = i;
    }
  if (found == 0)
    return TLSRPT_TXT_NONE;
  if (found > 1)
    return fail(err, errlen, "%zu TLSRPTv1 records", found);
  int rc = parse_record(records[which], lens[which], out, err, errlen);
  if (rc != TLSRPT_TXT_OK)
    memset(out, 0, sizeof *out);
  return rc;
}

/* ---- results ------------------------------------------------------------------------- */

static const char *const policy_type_names[] = {
    [TLSRPT_POLICY_STS] = "sts",
    [TLSRPT_POLICY_TLSA] = "tlsa",
    [TLSRPT_POLICY_NONE] = "no-policy-found",
};

static const char *const result_names[] = {
    [TLSRPT_SUCCESS] = "",
    [TLSRPT_STARTTLS_NOT_SUPPORTED] = "starttls-not-supported",
    [TLSRPT_CERTIFICATE_HOST_MISMATCH] = "certificate-host-mismatch",
    [TLSRPT_CERTIFICATE_EXPIRED] = "certificate-expired",
    [TLSRPT_CERTIFICATE_NOT_TRUSTED] = "certificate-not-trusted",
    [TLSRPT_VALIDATION_FAILURE] = "validation-failure",
    [TLSRPT_TLSA_INVALID] = "tlsa-invalid",
    [TLSRPT_DNSSEC_INVALID] = "dnssec-invalid",
    [TLSRPT_DANE_REQUIRED] = "dane-required",
    [TLSRPT_STS_POLICY_FETCH_ERROR] = "sts-policy-fetch-error",
    [TLSRPT_STS_POLICY_INVALID] = "sts-policy-invalid",
    [TLSRPT_STS_WEBPKI_INVALID] = "sts-webpki-invalid",
};

const char *tlsrpt_policy_type_name(enum tlsrpt_policy_type t) {
  return (unsigned)t <= TLSRPT_POLICY_NONE ? policy_type_names[t] : "no-policy-found";
}

bool tlsrpt_policy_type_parse(const char *name, enum tlsrpt_policy_type *out) {
  for (unsigned i = 0; i <= TLSRPT_POLICY_NONE; i++)
    if (name && strcmp(name, policy_type_names[i]) == 0) {
      *out = (enum tlsrpt_policy_type)i;
      return true;
    }
  return false;
}

const char *tlsrpt_result_name(enum tlsrpt_result r) {
  return (unsigned)r <= TLSRPT_STS_WEBPKI_INVALID ? result_names[r]
                                                  : "validation-failure";
}

enum tlsrpt_policy_type tlsrpt_policy_type_of(const char *policy, bool has_sts,
                                              size_t ntlsa, enum tlsrpt_event ev) {
  if (ev == TLSRPT_EV_STS_FETCH || ev == TLSRPT_EV_STS_INVALID ||
      ev == TLSRPT_EV_STS_WEBPKI)
    return TLSRPT_POLICY_STS;
  if (policy && strncmp(policy, "mta-sts/", 8) == 0 && has_sts)
    return TLSRPT_POLICY_STS;
  if (ev == TLSRPT_EV_TLSA_LOOKUP || ev == TLSRPT_EV_TLSA_UNUSABLE ||
      ev == TLSRPT_EV_DNSSEC || ev == TLSRPT_EV_DANE_REQUIRED || ntlsa > 0 ||
      (policy && !strcmp(policy, "dane")))
    return TLSRPT_POLICY_TLSA;
  return TLSRPT_POLICY_NONE;
}

/* RFC 8460 §4.3.2.2 makes the failure to get an MTA-STS policy (fetch error, invalid
 * policy, policy host's certificate not valid) a result of its own, and §4.4 counts
 * each session once, under the policy that applied to it. A domain whose policy
 * could not be had is reported under policy-type "sts" with its own name as
 * policy-domain, no policy-string (there is no policy to quote) and the MX host/IP of
 * the attempt, the fetch failure replacing whatever the session did without a policy
 * (success or not): that session was not protected by the policy the domain
 * published, which is what the report tells it. A session judged under another
 * policy is left alone: a local table entry or DANE take precedence over MTA-STS
 * (RFC 8461 §2), and a cached policy still in force is the policy that applied. */
enum tlsrpt_event tlsrpt_session_event(enum tlsrpt_event ev, enum tlsrpt_event sts_ev,
                                       const char *policy, bool has_sts, size_t ntlsa) {
  if (sts_ev != TLSRPT_EV_STS_FETCH && sts_ev != TLSRPT_EV_STS_INVALID &&
      sts_ev != TLSRPT_EV_STS_WEBPKI)
    return ev;
  if (has_sts ||
      tlsrpt_policy_type_of(policy, has_sts, ntlsa, ev) != TLSRPT_POLICY_NONE)
    return ev;
  if (policy && strncmp(policy, "table/", 6) == 0)
    return ev;
  return sts_ev;
}

static enum tlsrpt_result classify_cert(enum tlsrpt_policy_type t, enum tlsrpt_cert c) {
  switch (c) {
  case TLSRPT_CERT_HOST_MISMATCH:
    return TLSRPT_CERTIFICATE_HOST_MISMATCH;
  case TLSRPT_CERT_EXPIRED:
    return TLSRPT_CERTIFICATE_EXPIRED;
  case TLSRPT_CERT_DANE_NO_MATCH:
    return TLSRPT_VALIDATION_FAILURE;
  default:
    /* Under DANE the chain is judged by the TLSA records, not by a trust store. */
    return t == TLSRPT_POLICY_TLSA ? TLSRPT_VALIDATION_FAILURE
                                   : TLSRPT_CERTIFICATE_NOT_TRUSTED;
  }
}

enum tlsrpt_result tlsrpt_classify(enum tlsrpt_policy_type t, enum tlsrpt_event ev,
                                   enum tlsrpt_cert cert) {
  switch (ev) {
  case TLSRPT_EV_OK:
    return TLSRPT_SUCCESS;
  case TLSRPT_EV_NO_STARTTLS:
    return TLSRPT_STARTTLS_NOT_SUPPORTED;
  case TLSRPT_EV_CERTIFICATE:
    return classify_cert(t, cert);
  case TLSRPT_EV_TLSA_LOOKUP:
    /* §4.3.2.1: a lookup that failed (SERVFAIL: bogus to a validating resolver, or
     * a timeout) returned "no valid records"; tlsa-invalid is for records that came
     * back secure and none of which was valid. */
    return TLSRPT_DNSSEC_INVALID;
  case TLSRPT_EV_TLSA_UNUSABLE:
    return TLSRPT_TLSA_INVALID;
  case TLSRPT_EV_DNSSEC:
    return TLSRPT_DNSSEC_INVALID;
  case TLSRPT_EV_DANE_REQUIRED:
    return TLSRPT_DANE_REQUIRED;
  case TLSRPT_EV_STS_FETCH:
    return TLSRPT_STS_POLICY_FETCH_ERROR;
  case TLSRPT_EV_STS_INVALID:
    return TLSRPT_STS_POLICY_INVALID;
  case TLSRPT_EV_STS_WEBPKI:
    return TLSRPT_STS_WEBPKI_INVALID;
  case TLSRPT_EV_HANDSHAKE:
  case TLSRPT_EV_MX_NOT_LISTED:
  default:
    return TLSRPT_VALIDATION_FAILURE;
  }
}

/* ---- policy strings ------------------------------------------------------------------ */

char *tlsrpt_sts_strings(const struct sts_policy *p) {
  size_t cap = 96 + p->mx_len + p->nmx * 5; /* "\nmx: " and the name for each */
  char *out = malloc(cap);
  if (!out)
    return NULL;
  const char *mode = p->mode == STS_MODE_ENFORCE   ? "enforce"
                     : p->mode == STS_MODE_TESTING ? "testing"
                                                   : "none";
  size_t pos = (size_t)snprintf(out, cap, "version: STSv1\nmode: %s", mode);
  for (const char *m = sts_mx_next(p, NULL); m; m = sts_mx_next(p, m))
    pos += (size_t)snprintf(out + pos, cap - pos, "\nmx: %s", m);
  snprintf(out + pos, cap - pos, "\nmax_age: %u", (unsigned)p->max_age);
  return out;
}

char *tlsrpt_tlsa_strings(const struct dane_tlsa *records, size_t n) {
  size_t cap = 1;
  for (size_t i = 0; i < n; i++)
    cap += 16 + 2 * (size_t)records[i].len;
  char *out = malloc(cap);
  if (!out)
    return NULL;
  size_t pos = 0;
  out[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    /* RFC 8460 §4.4 quotes a record as its four TLSA fields: a malformed record has
     * none, and is left out. */
    if (records[i].malformed)
      continue;
    if (pos > 0)
      out[pos++] = '\n';
    dane_tlsa_format(&records[i], out + pos, cap - pos);
    pos += strlen(out + pos);
  }
  return out;
}

char *tlsrpt_sts_mx_hosts(const struct sts_policy *p) {
  size_t cap = 1 + p->mx_len, pos = 0; /* a '\n' or the final NUL for each */
  char *out = malloc(cap);
  if (!out)
    return NULL;
  out[0] = '\0';
  for (const char *m = sts_mx_next(p, NULL); m; m = sts_mx_next(p, m))
    pos += (size_t)snprintf(out + pos, cap - pos, "%s%s", pos ? "\n" : "", m);
  return out;
}

/* ---- JSON ---------------------------------------------------------------------------- */

struct jbuf {
  char *p;
  size_t len, cap;
  bool oom;
};

static void jb_put(struct jbuf *b, const char *s, size_t n) {
  if (b->oom)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void jb_lit(struct jbuf *b, const char *s) {
  jb_put(b, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (no overlongs, surrogates or > U+10FFFF),
 * or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : 2;
  if (s[0] < 0xc2 || s[0] > 0xf4 || n < len)
    return 0;
  for (size_t i = 1; i < len; i++)
    if ((s[i] & 0xc0) != 0x80)
      return 0;
  if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
      (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
    return 0;
  return len;
}

static void jb_str(struct jbuf *b, const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  jb_lit(b, "\"");
  for (size_t i = 0; i < n;) {
    unsigned char c = s[i];
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\', esc[1] = (char)c;
      jb_put(b, esc, 2);
    } else if (c < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      jb_put(b, esc, 6);
    } else if (c >= 0x80) {
      size_t l = utf8_seq(s + i, n - i);
      if (l == 0) {
        jb_lit(b, "\\ufffd");
        i++;
        continue;
      }
      jb_put(b, str + i, l);
      i += l;
      continue;
    } else {
      jb_put(b, str + i, 1);
    }
    i++;
  }
  jb_lit(b, "\"");
}

static void jb_key_str(struct jbuf *b, const char *key, const char *val, bool comma) {
  if (comma)
    jb_lit(b, ",");
  jb_str(b, key, strlen(key));
  jb_lit(b, ":");
  jb_str(b, val ? val : "", val ? strlen(val) : 0);
}

static void jb_key_u64(struct jbuf *b, const char *key, uint64_t v, bool comma) {
  char num[96];
  snprintf(num, sizeof num, "%s\"%s\":%llu", comma ? "," : "", key,
           (unsigned long long)v);
  jb_lit(b, num);
}

/* "key":["line1","line2"] from "\n"-joined text. */
static void jb_key_lines(struct jbuf *b, const char *key, const char *text) {
  jb_lit(b, ",");
  jb_str(b, key, strlen(key));
  jb_lit(b, ":[");
  for (const char *s = text; *s;) {
    const char *nl = strchr(s, '\n');
    size_t n = nl ? (size_t)(nl - s) : strlen(s);
    if (s != text)
      jb_lit(b, ",");
    jb_str(b, s, n);
    s += n + (nl ? 1 : 0);
  }
  jb_lit(b, "]");
}

static void jb_detail(struct jbuf *b, const struct tlsrpt_detail *d) {
  jb_lit(b, "{");
  jb_key_str(b, "result-type", d->result_type, false);
  if (d->sending_ip && *d->sending_ip)
    jb_key_str(b, "sending-mta-ip", d->sending_ip, true);
  if (d->mx && *d->mx)
    jb_key_str(b, "receiving-mx-hostname", d->mx, true);
  if (d->ip && *d->ip)
    jb_key_str(b, "receiving-ip", d->ip, true);
  jb_key_u64(b, "failed-session-count", d->count, true);
  if (d->reason && *d->reason)
    jb_key_str(b, "failure-reason-code", d->reason, true);
  jb_lit(b, "}");
}

static void jb_policy(struct jbuf *b, const struct tlsrpt_policy_block *p) {
  uint64_t failures = 0;
  for (size_t i = 0; i < p->ndetails; i++)
    failures += p->details[i].count;
  jb_lit(b, "{\"policy\":{");
  jb_key_str(b, "policy-type", p->type, false);
  if (p->strings && *p->strings)
    jb_key_lines(b, "policy-string", p->strings);
  jb_key_str(b, "policy-domain", p->domain, true);
  if (p->mx_host && *p->mx_host)
    jb_key_lines(b, "mx-host", p->mx_host);
  jb_lit(b, "},\"summary\":{");
  jb_key_u64(b, "total-successful-session-count", p->successes, false);
  jb_key_u64(b, "total-failure-session-count", failures, true);
  jb_lit(b, "}");
  if (p->ndetails > 0) {
    jb_lit(b, ",\"failure-details\":[");
    for (size_t i = 0; i < p->ndetails; i++) {
      if (i > 0)
        jb_lit(b, ",");
      jb_detail(b, &p->details[i]);
    }
    jb_lit(b, "]");
  }
  jb_lit(b, "}");
}

void tlsrpt_datetime(int64_t t, char out[21]) {
  time_t tt = (time_t)t;
  struct tm tm;
  if (!gmtime_r(&tt, &tm) || !strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm))
    snprintf(out, 21, "1970-01-01T00:00:00Z");
}

char *tlsrpt_report_json(const struct tlsrpt_report *r, size_t *len) {
  struct jbuf b = {0};
  char start[21], end[21];
  tlsrpt_datetime(r->start, start);
  tlsrpt_datetime(r->end, end);
  jb_lit(&b, "{");
  jb_key_str(&b, "organization-name", r->organization, false);
  jb_lit(&b, ",\"date-range\":{");
  jb_key_str(&b, "start-datetime", start, false);
  jb_key_str(&b, "end-datetime", end, true);
  jb_lit(&b, "}");
  jb_key_str(&b, "contact-info", r->contact, true);
  jb_key_str(&b, "report-id", r->report_id, true);
  jb_lit(&b, ",\"policies\":[");
  for (size_t i = 0; i < r->npolicies; i++) {
    if (i > 0)
      jb_lit(&b, ",");
    jb_policy(&b, &r->policies[i]);
  }
  jb_lit(&b, "]}");
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  if (len)
    *len = b.len;
  return b.p;
}
