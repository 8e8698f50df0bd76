/* Pure SMTP text handling; the contract is in smtp.h. */
#include "proxy/wire/smtp.h"

#include <arpa/inet.h>
#include <limits.h>
#include <string.h>

#include "policy/chars.h"
#include "proxy/core/error.h"

/* ---- Character classes (ASCII only: no locale) ------------------------------------
 */

static unsigned char to_upper(unsigned char c) {
  return (c >= 'a' && c <= 'z') ? (unsigned char)(c - 'a' + 'A') : c;
}
/* Control characters other than HTAB: never valid inside a command or reply line. */
static bool is_ctl(unsigned char c) {
  return (c < 0x20 && c != '\t') || c == 0x7f;
}

static bool has_ctl(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (is_ctl((unsigned char)s[i]))
      return true;
  return false;
}

/* RFC 5322 atext; octets >= 0x80 are UTF-8 for SMTPUTF8 (RFC 6531 §3.3). */
static bool is_atext(unsigned char c) {
  return chars_alnum(c) || c >= 0x80 ||
         (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Letters, digits, hyphen of a domain label; >= 0x80 for U-labels (RFC 6531). */
static bool is_uldh(unsigned char c) {
  return chars_ldh(c) || c >= 0x80;
}

static bool ieq_prefix(const char *s, size_t n, const char *word) {
  size_t wl = strlen(word);
  if (n < wl)
    return false;
  for (size_t i = 0; i < wl; i++)
    if (to_upper((unsigned char)s[i]) != to_upper((unsigned char)word[i]))
      return false;
  return true;
}

static bool ieq(const char *s, size_t n, const char *word) {
  return n == strlen(word) && ieq_prefix(s, n, word);
}

/* ---- Line framing ------------------------------------------------------------------
 */

int smtp_find_line(const char *buf, size_t len, size_t max, size_t *line_len,
                   size_t *consumed) {
  size_t limit = max > SIZE_MAX - 2 ? SIZE_MAX : max + 2;
  size_t scan = len < limit ? len : limit;
  const char *lf = scan > 0 ? memchr(buf, '\n', scan) : NULL;
  if (lf == NULL) {
    if (len >= limit)
      return SP_E_TOOLONG;
    /* max+1 bytes can still be a full-length line waiting for its LF only when the
     * last one is its CR. */
    if (max < SIZE_MAX && len == max + 1 && buf[max] != '\r')
      return SP_E_TOOLONG;
    return 0;
  }
  size_t i = (size_t)(lf - buf);
  size_t n = (i > 0 && buf[i - 1] == '\r') ? i - 1 : i;
  if (n > max)
    return SP_E_TOOLONG;
  *line_len = n;
  *consumed = i + 1;
  return 1;
}

/* ---- Addresses (RFC 5321 §4.1.2, RFC 6531) ------------------------------------------
 */

/* sub-domain *("." sub-domain): the length of the domain at s, or 0. */
static size_t domain_len(const char *s, size_t n) {
  size_t pos = 0;
  for (;;) {
    size_t start = pos;
    while (pos < n && is_uldh((unsigned char)s[pos]))
      pos++;
    if (pos == start || s[start] == '-' || s[pos - 1] == '-')
      return 0;
    if (pos < n && s[pos] == '.') {
      pos++;
      continue;
    }
    return pos;
  }
}

static bool is_dcontent(unsigned char c) {
  return (c >= 33 && c <= 90) || (c >= 94 && c <= 126);
}

static bool inet_ok(int af, const char *s, size_t n) {
  char buf[64];
  unsigned char addr[16];
  if (n == 0 || n >= sizeof buf)
    return false;
  memcpy(buf, s, n);
  buf[n] = '\0';
  return inet_pton(af, buf, addr) == 1;
}

/* The inside of "[...]": IPv4, "IPv6:" address, or General-address-literal. */
static bool literal_ok(const char *s, size_t n) {
  if (ieq_prefix(s, n, "IPv6:"))
    return inet_ok(AF_INET6, s + 5, n - 5);
  const char *colon = memchr(s, ':', n);
  if (colon == NULL)
    return inet_ok(AF_INET, s, n);
  size_t tag = (size_t)(colon - s);
  if (tag == 0 || tag + 1 == n || s[tag - 1] == '-')
    return false;
  for (size_t i = 0; i < tag; i++)
    if (!chars_alnum((unsigned char)s[i]) && s[i] != '-')
      return false;
  return true;
}

static size_t literal_len(const char *s, size_t n) {
  size_t pos = 1;
  while (pos < n && is_dcontent((unsigned char)s[pos]))
    pos++;
  if (pos >= n || s[pos] != ']' || pos == 1 || !literal_ok(s + 1, pos - 1))
    return 0;
  return pos + 1;
}

static size_t quoted_len(const char *s, size_t n) {
  for (size_t pos = 1; pos < n; pos++) {
    unsigned char c = (unsigned char)s[pos];
    if (c == '"')
      return pos + 1;
    if (c == '\\') {
      if (pos + 1 >= n || s[pos + 1] < 32 || s[pos + 1] > 126)
        return 0;
      pos++;
    } else if (c < 32 || c == 127) {
      return 0; /* qtextSMTP is printable ASCII, SP, and UTF-8 */
    }
  }
  return 0;
}

/* Dot-string or Quoted-string: the length of the local part at s, or 0. */
static size_t local_part_len(const char *s, size_t n) {
  if (n > 0 && s[0] == '"')
    return quoted_len(s, n);
  size_t pos = 0;
  for (;;) {
    size_t start = pos;
    while (pos < n && is_atext((unsigned char)s[pos]))
      pos++;
    if (pos == start)
      return 0;
    if (pos < n && s[pos] == '.') {
      pos++;
      continue;
    }
    return pos;
  }
}

/* An obsolete source route "@a,@b:" (RFC 5321 §4.1.2 A-d-l): *len is 0 when absent. */
static int route_len(const char *s, size_t n, size_t *len) {
  size_t pos = 0;
  *len = 0;
  if (n == 0 || s[0] != '@')
    return 0;
  for (;;) {
    pos++; /* '@' */
    size_t d = domain_len(s + pos, n - pos);
    if (d == 0)
      return SP_E_SYNTAX;
    pos += d;
    if (pos + 1 < n && s[pos] == ',' && s[pos + 1] == '@') {
      pos++;
      continue;
    }
    if (pos < n && s[pos] == ':') {
      *len = pos + 1;
      return 0;
    }
    return SP_E_SYNTAX;
  }
}

/* a[*posp] follows '<'. Parses the path through '>' into path. */
static int parse_path(const char *a, size_t n, size_t *posp, bool is_mail, char *path) {
  size_t pos = *posp, route;
  if (pos < n && a[pos] == '>') {
    if (!is_mail)
      return SP_E_SYNTAX;
    path[0] = '\0';
    *posp = pos + 1;
    return 0;
  }
  if (route_len(a + pos, n - pos, &route) != 0)
    return SP_E_SYNTAX;
  pos += route;
  size_t start = pos, lp = local_part_len(a + pos, n - pos);
  if (lp == 0)
    return SP_E_SYNTAX;
  pos += lp;
  bool postmaster = false;
  if (pos < n && a[pos] == '@') {
    pos++;
    size_t d = (pos < n && a[pos] == '[') ? literal_len(a + pos, n - pos)
                                          : domain_len(a + pos, n - pos);
    if (d == 0)
      return SP_E_SYNTAX;
    pos += d;
  } else if (is_mail || !ieq(a + start, lp, "postmaster")) {
    return SP_E_SYNTAX;
  } else {
    postmaster = true; /* RFC 5321 §4.5.1: the one address without a domain */
  }
  if (pos >= n || a[pos] != '>' || pos - start > SMTP_PATH_MAX)
    return SP_E_SYNTAX;
  if (postmaster) {
    memcpy(path, "postmaster", sizeof "postmaster");
  } else {
    memcpy(path, a + start, pos - start);
    path[pos - start] = '\0';
  }
  *posp = pos + 1;
  return 0;
}

int smtp_path_domain(const char *path, const char **domain, size_t *domain_len_out) {
  if (path == NULL)
    return SP_E_SYNTAX;
  size_t n = strlen(path), lp = local_part_len(path, n);
  if (lp == 0 || lp + 1 >= n || path[lp] != '@')
    return SP_E_SYNTAX;
  *domain = path + lp + 1;
  *domain_len_out = n - lp - 1;
  return 0;
}

/* ---- Commands ----------------------------------------------------------------------
 */

/* esmtp-keyword ["=" esmtp-value] (RFC 5321 §4.1.2; UTF-8 values per RFC 6531). */
static int parse_param(const char *s, size_t n, struct smtp_param *p) {
  const char *eq = memchr(s, '=', n);
  size_t klen = eq ? (size_t)(eq - s) : n;
  if (klen == 0 || klen >= sizeof p->key || !chars_alnum((unsigned char)s[0]))
    return SP_E_SYNTAX;
  for (size_t i = 0; i < klen; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!chars_alnum(c) && c != '-')
      return SP_E_SYNTAX;
    p->key[i] = (char)to_upper(c);
  }
  p->key[klen] = '\0';
  p->value[0] = '\0';
  p->has_value = eq != NULL;
  if (eq == NULL)
    return 0;
  size_t vlen = n - klen - 1;
  if (vlen == 0 || vlen >= sizeof p->value)
    return SP_E_SYNTAX;
  for (size_t i = 0; i < vlen; i++) {
    unsigned char c = (unsigned char)eq[1 + i];
    if (c <= ' ' || c == '=' || c == 127)
      return SP_E_SYNTAX;
  }
  memcpy(p->value, eq + 1, vlen);
  p->value[vlen] = '\0';
  return 0;
}

static bool is_hex(unsigned char c) {
  return chars_digit(c) || (to_upper(c) >= 'A' && to_upper(c) <= 'F');
}

/* RFC 3461 4: xtext, "+" and two hex digits for what it escapes (either case taken). */
static bool xtext_ok(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '+') {
      if (i + 2 >= n || !is_hex((unsigned char)s[i + 1]) ||
          !is_hex((unsigned char)s[i + 2]))
        return false;
      i += 2;
    } else if (c < 33 || c > 126 || c == '=') {
      return false;
    }
  }
  return n > 0;
}

/* NEVER, or 1#(SUCCESS / FAILURE / DELAY). */
static bool notify_ok(const char *s, size_t n) {
  if (ieq(s, n, "NEVER"))
    return true;
  size_t pos = 0;
  for (;;) {
    const char *comma = memchr(s + pos, ',', n - pos);
    size_t end = comma ? (size_t)(comma - s) : n;
    if (!ieq(s + pos, end - pos, "SUCCESS") && !ieq(s + pos, end - pos, "FAILURE") &&
        !ieq(s + pos, end - pos, "DELAY"))
      return false;
    if (!comma)
      return true;
    pos = end + 1;
  }
}

/* addr-type ";" xtext (RFC 3461 4.2); addr-type an atom. A utf-8 type's value (RFC
 * 6533) is taken as the parser took it. */
static bool orcpt_ok(const char *s, size_t n) {
  const char *semi = memchr(s, ';', n);
  size_t tlen = semi ? (size_t)(semi - s) : 0;
  if (!semi || tlen == 0 || tlen + 1 == n)
    return false;
  for (size_t i = 0; i < tlen; i++)
    if (!is_atext((unsigned char)s[i]) || (unsigned char)s[i] >= 0x80)
      return false;
  return ieq(s, tlen, "utf-8") || xtext_ok(semi + 1, n - tlen - 1);
}

bool smtp_param_valid(const struct smtp_param *p) {
  const char *k = p->key, *v = p->value;
  size_t vlen = strnlen(v, sizeof p->value);
  if (strcmp(k, "SMTPUTF8") == 0)
    return !p->has_value;
  bool any = strcmp(k, "SIZE") && strcmp(k, "BODY") && strcmp(k, "RET") &&
             strcmp(k, "ENVID") && strcmp(k, "NOTIFY") && strcmp(k, "ORCPT");
  if (any)
    return true;
  if (!p->has_value || vlen == 0)
    return false;
  if (strcmp(k, "SIZE") == 0) {
    for (size_t i = 0; i < vlen; i++)
      if (!chars_digit((unsigned char)v[i]))
        return false;
    return vlen <= 20;
  }
  if (strcmp(k, "BODY") == 0)
    return ieq(v, vlen, "7BIT") || ieq(v, vlen, "8BITMIME");
  if (strcmp(k, "RET") == 0)
    return ieq(v, vlen, "FULL") || ieq(v, vlen, "HDRS");
  if (strcmp(k, "ENVID") == 0)
    return vlen <= 100 && xtext_ok(v, vlen);
  if (strcmp(k, "NOTIFY") == 0)
    return notify_ok(v, vlen);
  return orcpt_ok(v, vlen);
}

static int parse_params(const char *s, size_t n, struct smtp_command *cmd) {
  size_t pos = 0;
  for (;;) {
    while (pos < n && s[pos] == ' ')
      pos++;
    if (pos >= n)
      return 0;
    size_t tok = pos;
    while (pos < n && s[pos] != ' ')
      pos++;
    if (cmd->nparams == SMTP_MAX_PARAMS)
      return SP_E_SYNTAX;
    int rc = parse_param(s + tok, pos - tok, &cmd->params[cmd->nparams]);
    if (rc != 0)
      return rc;
    cmd->nparams++;
  }
}

static int parse_mail_rcpt(struct smtp_command *cmd, bool is_mail) {
  const char *a = cmd->arg, *kw = is_mail ? "FROM:" : "TO:";
  size_t n = cmd->arg_len, pos = strlen(kw);
  if (!ieq_prefix(a, n, kw))
    return SP_E_SYNTAX;
  while (pos < n && a[pos] == ' ')
    pos++;
  if (pos >= n || a[pos] != '<')
    return SP_E_SYNTAX;
  pos++;
  int rc = parse_path(a, n, &pos, is_mail, cmd->path);
  if (rc != 0)
    return rc;
  if (pos == n)
    return 0;
  if (a[pos] != ' ')
    return SP_E_SYNTAX;
  return parse_params(a + pos, n - pos, cmd);
}

/* RFC 3030: chunk-size [SP "LAST"]. */
static int check_bdat(const char *a, size_t n) {
  size_t pos = 0;
  while (pos < n && chars_digit((unsigned char)a[pos]))
    pos++;
  if (pos == 0 || pos > 20)
    return SP_E_SYNTAX;
  if (pos == n)
    return 0;
  if (a[pos] != ' ')
    return SP_E_SYNTAX;
  while (pos < n && a[pos] == ' ')
    pos++;
  return ieq(a + pos, n - pos, "LAST") ? 0 : SP_E_SYNTAX;
}

enum arg_rule { ARG_NONE, ARG_OPTIONAL, ARG_REQUIRED, ARG_MAIL, ARG_RCPT, ARG_BDAT };

static const struct verb_def {
  const char *name;
  enum smtp_verb verb;
  enum arg_rule rule;
} verbs[] = {
    {"HELO", SMTP_VERB_HELO, ARG_REQUIRED}, {"EHLO", SMTP_VERB_EHLO, ARG_REQUIRED},
    {"LHLO", SMTP_VERB_LHLO, ARG_REQUIRED}, {"MAIL", SMTP_VERB_MAIL, ARG_MAIL},
    {"RCPT", SMTP_VERB_RCPT, ARG_RCPT},     {"DATA", SMTP_VERB_DATA, ARG_NONE},
    {"BDAT", SMTP_VERB_BDAT, ARG_BDAT},     {"RSET", SMTP_VERB_RSET, ARG_NONE},
    {"NOOP", SMTP_VERB_NOOP, ARG_OPTIONAL}, {"QUIT", SMTP_VERB_QUIT, ARG_NONE},
    {"VRFY", SMTP_VERB_VRFY, ARG_REQUIRED}, {"EXPN", SMTP_VERB_EXPN, ARG_REQUIRED},
    {"HELP", SMTP_VERB_HELP, ARG_OPTIONAL}, {"STARTTLS", SMTP_VERB_STARTTLS, ARG_NONE},
    {"AUTH", SMTP_VERB_AUTH, ARG_REQUIRED},
};

static int check_arg(enum arg_rule rule, struct smtp_command *cmd) {
  switch (rule) {
  case ARG_NONE:
    return cmd->arg_len == 0 ? 0 : SP_E_SYNTAX;
  case ARG_OPTIONAL:
    return 0;
  case ARG_REQUIRED:
    return cmd->arg_len > 0 ? 0 : SP_E_SYNTAX;
  case ARG_MAIL:
    return parse_mail_rcpt(cmd, true);
  case ARG_RCPT:
    return parse_mail_rcpt(cmd, false);
  case ARG_BDAT:
    return check_bdat(cmd->arg, cmd->arg_len);
  }
  return SP_E_SYNTAX;
}

int smtp_parse_command(const char *line, size_t len, struct smtp_command *out) {
  if (line == NULL) {
    if (len != 0)
      return SP_E_INVAL;
    line = "";
  }
  out->verb = SMTP_VERB_UNKNOWN;
  out->arg = line + len;
  out->arg_len = 0;
  out->path[0] = '\0';
  out->nparams = 0;
  if (has_ctl(line, len))
    return SP_E_SYNTAX;
  size_t vlen = 0;
  while (vlen < len && line[vlen] != ' ')
    vlen++;
  const struct verb_def *def = NULL;
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0] && def == NULL; i++)
    if (ieq(line, vlen, verbs[i].name))
      def = &verbs[i];
  if (def == NULL)
    return SP_E_UNKNOWN_CMD;
  out->verb = def->verb;
  size_t start = vlen, end = len;
  while (start < len && line[start] == ' ')
    start++;
  while (end > start && (line[end - 1] == ' ' || line[end - 1] == '\t'))
    end--;
  out->arg = line + start;
  out->arg_len = end - start;
  int rc = check_arg(def->rule, out);
  if (rc != 0) {
    out->path[0] = '\0';
    out->nparams = 0;
  }
  return rc;
}

const struct smtp_param *smtp_command_param(const struct smtp_command *cmd,
                                            const char *key) {
  size_t n = cmd->nparams < SMTP_MAX_PARAMS ? cmd->nparams : SMTP_MAX_PARAMS;
  for (size_t i = 0; i < n; i++)
    if (ieq(cmd->params[i].key, strnlen(cmd->params[i].key, sizeof cmd->params[i].key),
            key))
      return &cmd->params[i];
  return NULL;
}

/* ---- Replies -----------------------------------------------------------------------
 */

/* RFC 3463 status code "class.subject.detail" at the start of t, ended by SP or the
 * end: its length, or 0. Only classes 2, 4 and 5 exist. */
static size_t enhanced_len(const char *t, size_t n) {
  if (n < 5 || (t[0] != '2' && t[0] != '4' && t[0] != '5') || t[1] != '.')
    return 0;
  size_t pos = 2;
  for (int part = 0; part < 2; part++) {
    size_t start = pos;
    while (pos < n && pos - start < 4 && chars_digit((unsigned char)t[pos]))
      pos++;
    if (pos == start || pos - start > 3)
      return 0;
    if (part == 0) {
      if (pos >= n || t[pos] != '.')
        return 0;
      pos++;
    }
  }
  return (pos == n || t[pos] == ' ') ? pos : 0;
}

/* "NNN", "NNN text" or "NNN-text" with a 2xx..5xx code. */
static bool reply_prefix(const char *line, size_t len, int *code, bool *last) {
  if (len < 3 || line[0] < '2' || line[0] > '5' ||
      !chars_digit((unsigned char)line[1]) || !chars_digit((unsigned char)line[2]))
    return false;
  if (len > 3 && line[3] != ' ' && line[3] != '-')
    return false;
  *code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  *last = len == 3 || line[3] == ' ';
  return true;
}

static void reply_add_line(struct smtp_reply *r, const char *text, size_t n) {
  /* Past the cap the last slot is overwritten: the first 31 and the final line stay. */
  size_t i = r->nlines < SMTP_REPLY_MAX_LINES ? r->nlines++ : SMTP_REPLY_MAX_LINES - 1;
  if (n > SMTP_REPLY_LINE_MAX)
    n = SMTP_REPLY_LINE_MAX;
  memcpy(r->lines[i], text, n);
  r->lines[i][n] = '\0';
}

void smtp_reply_parser_init(struct smtp_reply_parser *p) {
  p->in_progress = false;
  p->code = 0;
}

int smtp_reply_feed_line(struct smtp_reply_parser *p, const char *line, size_t len,
                         struct smtp_reply *out) {
  int code;
  bool last;
  if (line == NULL || !reply_prefix(line, len, &code, &last) || has_ctl(line, len) ||
      (p->in_progress && code != p->code)) {
    smtp_reply_parser_init(p);
    return SP_E_PROTOCOL;
  }
  const char *text = line + (len > 3 ? 4 : 3);
  size_t tlen = len > 3 ? len - 4 : 0;
  if (!p->in_progress) {
    p->in_progress = true;
    p->code = code;
    out->code = code;
    out->enhanced[0] = '\0';
    out->nlines = 0;
    size_t e = enhanced_len(text, tlen);
    if (e > 0 && text[0] - '0' == code / 100) {
      memcpy(out->enhanced, text, e);
      out->enhanced[e] = '\0';
    }
  }
  reply_add_line(out, text, tlen);
  if (!last)
    return 0;
  p->in_progress = false;
  return 1;
}

bool smtp_reply_parser_busy(const struct smtp_reply_parser *p) {
  return p->in_progress;
}

/* Bounded writer: remembers an overflow instead of writing past cap. */
struct wbuf {
  char *p;
  size_t cap, len;
  bool over;
};

static void wb_put(struct wbuf *b, const char *s, size_t n) {
  if (b->over || n > b->cap - b->len) {
    b->over = true;
    return;
  }
  if (n > 0)
    memcpy(b->p + b->len, s, n);
  b->len += n;
}

static int wb_finish(struct wbuf *b) {
  if (b->over || b->len >= b->cap || b->len > INT_MAX) {
    if (b->cap > 0)
      b->p[0] = '\0';
    return SP_E_OVERFLOW;
  }
  b->p[b->len] = '\0';
  return (int)b->len;
}

/* "NNN-" or "NNN " ("NNN" alone for an empty last line). */
static void wb_code(struct wbuf *b, int code, bool last, bool empty) {
  char pre[4] = {(char)('0' + code / 100), (char)('0' + code / 10 % 10),
                 (char)('0' + code % 10), last ? ' ' : '-'};
  wb_put(b, pre, (last && empty) ? 3 : 4);
}

int smtp_reply_format_enhanced(const struct smtp_reply *r, int code, const char *enh,
                               char *out, size_t cap) {
  struct wbuf b = {out, cap, 0, false};
  size_t elen = enh ? strlen(enh) : 0;
  if (code == 0)
    code = r->code;
  if (code < 200 || code > 599 || r->nlines > SMTP_REPLY_MAX_LINES || (!out && cap))
    return SP_E_INVAL;
  if (elen > 0 && (enhanced_len(enh, elen) != elen || enh[0] - '0' != code / 100))
    return SP_E_INVAL;
  size_t n = r->nlines > 0 ? r->nlines : 1;
  for (size_t i = 0; i < n; i++) {
    const char *t = r->nlines > 0 ? r->lines[i] : "";
    size_t tlen = strnlen(t, SMTP_REPLY_LINE_MAX + 1);
    if (tlen > SMTP_REPLY_LINE_MAX || has_ctl(t, tlen))
      return SP_E_INVAL;
    wb_code(&b, code, i + 1 == n, tlen == 0 && elen == 0);
    wb_put(&b, enh, elen);
    if (elen > 0 && tlen > 0)
      wb_put(&b, " ", 1);
    wb_put(&b, t, tlen);
    wb_put(&b, "\r\n", 2);
  }
  return wb_finish(&b);
}

int smtp_reply_format(const struct smtp_reply *r, int code, char *out, size_t cap) {
  return smtp_reply_format_enhanced(r, code, NULL, out, cap);
}

int smtp_reply_build(char *out, size_t cap, int code, const char *enhanced,
                     const char *text) {
  struct wbuf b = {out, cap, 0, false};
  const char *enh = enhanced ? enhanced : "", *t = text ? text : "";
  size_t elen = strlen(enh), tlen = strlen(t);
  if (code < 200 || code > 599 || (!out && cap))
    return SP_E_INVAL;
  if (elen > 0 && (enhanced_len(enh, elen) != elen || enh[0] - '0' != code / 100))
    return SP_E_INVAL;
  for (size_t i = 0; i < tlen; i++)
    if (t[i] != '\n' && is_ctl((unsigned char)t[i]))
      return SP_E_INVAL;
  if (tlen > 0 && t[tlen - 1] == '\n')
    tlen--; /* a final newline ends the last line rather than adding an empty one */
  size_t start = 0;
  for (;;) {
    const char *nl = memchr(t + start, '\n', tlen - start);
    size_t end = nl ? (size_t)(nl - t) : tlen;
    wb_code(&b, code, nl == NULL, elen == 0 && end == start);
    wb_put(&b, enh, elen);
    if (elen > 0 && end > start)
      wb_put(&b, " ", 1);
    wb_put(&b, t + start, end - start);
    wb_put(&b, "\r\n", 2);
    if (nl == NULL)
      break;
    start = end + 1;
  }
  return wb_finish(&b);
}

/* ---- EHLO capabilities -------------------------------------------------------------
 */

static const struct {
  const char *name;
  unsigned flag;
} cap_names[] = {
    {"STARTTLS", SMTP_CAP_STARTTLS},
    {"PIPELINING", SMTP_CAP_PIPELINING},
    {"SIZE", SMTP_CAP_SIZE},
    {"8BITMIME", SMTP_CAP_8BITMIME},
    {"SMTPUTF8", SMTP_CAP_SMTPUTF8},
    {"DSN", SMTP_CAP_DSN},
    {"ENHANCEDSTATUSCODES", SMTP_CAP_ENHANCEDSTATUSCODES},
    {"CHUNKING", SMTP_CAP_CHUNKING},
};

/* RFC 1870 "SIZE [number]"; a number too big for 64 bits saturates. */
static uint64_t parse_size(const char *s, size_t n) {
  size_t pos = 0;
  uint64_t v = 0;
  while (pos < n && s[pos] == ' ')
    pos++;
  for (; pos < n && chars_digit((unsigned char)s[pos]); pos++) {
    unsigned d = (unsigned)(s[pos] - '0');
    if (v > (UINT64_MAX - d) / 10)
      return UINT64_MAX;
    v = v * 10 + d;
  }
  return v;
}

void smtp_ehlo_caps(const struct smtp_reply *ehlo, struct smtp_caps *caps) {
  size_t n = ehlo->nlines < SMTP_REPLY_MAX_LINES ? ehlo->nlines : SMTP_REPLY_MAX_LINES;
  caps->flags = 0;
  caps->size_max = 0;
  for (size_t i = 1; i < n; i++) {
    const char *l = ehlo->lines[i];
    size_t len = strnlen(l, SMTP_REPLY_LINE_MAX + 1), kw = 0;
    while (kw < len && l[kw] != ' ')
      kw++;
    for (size_t c = 0; c < sizeof cap_names / sizeof cap_names[0]; c++) {
      if (!ieq(l, kw, cap_names[c].name))
        continue;
      caps->flags |= cap_names[c].flag;
      if (cap_names[c].flag == SMTP_CAP_SIZE)
        caps->size_max = parse_size(l + kw, len - kw);
    }
  }
}

/* ---- DATA scanner ------------------------------------------------------------------
 * States: BOL is the start of a line that follows a real CRLF (or the data's start),
 * where ".\r\n" ends the data; NBOL the start of a line after a bare CR/LF, where it
 * does not. CR, DOT, DOTCR and NDOT hold back "\r", "." (at BOL), ".\r" and "." (at
 * NBOL) until the next byte tells whether they are a line end, the terminator, or
 * data, and whether a leading dot is the client's stuffing.
 *
 * Normalizing (the rule in smtp.h): the output is what a strict client would have
 * sent for the lines the client meant, so the MX un-stuffs each line to the text
 * received. A leading '.' is kept as the client's stuffing where the client could have
 * put it there as stuffing, and gets a second '.' where it cannot be stuffing:
 *  - stuffing never yields a lone ".", so a lone "." that is not the end (ended by a
 *    bare CR/LF, or after one) is text: "..";
 *  - after a bare CR/LF, ".." is the client's stuffing (a client ending lines with a
 *    bare LF stuffs them like any other: "\n..\n" delivers "." exactly as
 *    "\r\n..\r\n" does), and '.' followed by anything else is text the client did
 *    not stuff, because for a strict reader it was not at a line start: "..x";
 *  - after a real CRLF, ".x" is kept: the MX deletes the dot as RFC 5321 §4.5.2 says
 *    any receiver of the client's bytes would. */
enum { D_BOL, D_NBOL, D_MID, D_CR, D_DOT, D_DOTCR, D_NDOT };

/* What one input byte releases (at most 5 bytes) and where it leads. */
struct data_step {
  char out[6];
  size_t n;
  int next;
  bool bare, end;
};

static void step_emit(struct data_step *st, const char *s, size_t n) {
  memcpy(st->out + st->n, s, n);
  st->n += n;
}

static void step_mid(struct data_step *st, char c) {
  st->next = D_MID;
  if (c == '\r') {
    st->next = D_CR;
  } else if (c == '\n') {
    st->bare = true;
    step_emit(st, "\r\n", 2);
    st->next = D_NBOL;
  } else {
    step_emit(st, &c, 1);
  }
}

/* A line after a bare CR/LF: a leading '.' waits for the next byte (NDOT), so the
 * next hop can never read the line as the end (SMTP smuggling, CVE-2023-51764). */
static void step_nbol(struct data_step *st, char c) {
  if (c == '.')
    st->next = D_NDOT;
  else
    step_mid(st, c);
}

/* A lone "." line ended by a bare CR/LF (the client's idea of the end): its dot is
 * text, so it is stuffed; the line end and the next byte follow as after any bare
 * line end. */
static void step_lone_dot(struct data_step *st) {
  st->bare = true;
  step_emit(st, "..\r\n", 4);
}

/* After "." at a line that follows a bare CR/LF. */
static void step_ndot(struct data_step *st, char c) {
  step_emit(st, "..", 2);
  if (c == '.')
    st->next = D_MID; /* ".." is the client's stuffing: kept as sent */
  else
    step_mid(st, c); /* a lone '.' (c is CR or LF) or '.' + text: stuffed */
}

static void step_dot(struct data_step *st, char c) {
  if (c == '\r') {
    st->next = D_DOTCR;
  } else if (c == '\n') {
    step_lone_dot(st);
    st->next = D_NBOL;
  } else {
    step_emit(st, ".", 1); /* the client's stuffing, or a '.' RFC 5321 has us drop */
    step_mid(st, c);
  }
}

static void data_step(int state, char c, struct data_step *st) {
  st->n = 0;
  st->bare = st->end = false;
  switch (state) {
  case D_BOL:
    if (c == '.')
      st->next = D_DOT;
    else
      step_mid(st, c);
    return;
  case D_NBOL:
    step_nbol(st, c);
    return;
  case D_NDOT:
    step_ndot(st, c);
    return;
  case D_CR:
    step_emit(st, "\r\n", 2);
    if (c == '\n') {
      st->next = D_BOL;
      return;
    }
    st->bare = true;
    step_nbol(st, c);
    return;
  case D_DOT:
    step_dot(st, c);
    return;
  case D_DOTCR:
    if (c == '\n') {
      st->end = true;
      st->next = D_BOL;
      return;
    }
    step_lone_dot(st); /* ".\r" + other: a lone "." ended by a bare CR */
    step_nbol(st, c);
    return;
  default:
    step_mid(st, c);
  }
}

void smtp_data_init(struct smtp_data_scanner *s, enum smtp_data_mode mode) {
  s->mode = mode;
  s->state = D_BOL;
  s->done = false;
  s->bare = false;
  s->bare_ends = 0;
  s->bytes = 0;
}

/* In the MID state: the length of the longest prefix of in[0..len) the state machine
 * would pass on unchanged, byte for byte — text, and CRLF line ends each followed by a
 * byte that is neither '.', CR nor LF — found with memchr rather than byte by byte.
 * *bol tells whether the prefix ends right after a CRLF (state BOL) or not (MID). It
 * stops before a bare CR or LF, before a CR at the end of the input (held back), and
 * after a CRLF followed by '.', CR, LF or the end of the input: the byte machine takes
 * those. */
static size_t mid_run(const char *in, size_t len, bool *bol) {
  size_t i = 0;
  *bol = false;
  for (;;) {
    const char *lf = memchr(in + i, '\n', len - i);
    size_t e = lf ? (size_t)(lf - in) : len;
    const char *cr = memchr(in + i, '\r', e - i);
    if (!lf)
      return cr ? (size_t)(cr - in) : len;
    if (cr && cr != lf - 1)
      return (size_t)(cr - in); /* a CR not followed by LF, or the byte machine's */
    if (!cr)
      return e; /* an LF without CR (at in[i] the byte before was plain text) */
    i = e + 1;  /* a CRLF */
    if (i == len || in[i] == '.' || in[i] == '\r' || in[i] == '\n') {
      *bol = true;
      return i;
    }
  }
}

size_t smtp_data_scan(struct smtp_data_scanner *s, const char *in, size_t len,
                      char *out, size_t out_cap, size_t *out_len) {
  size_t i = 0, o = 0;
  while (i < len && !s->done) {
    bool quiet = s->bare && s->mode == SMTP_DATA_REFUSE;
    if (s->state == D_MID) {
      bool bol;
      size_t run = mid_run(in + i, len - i, &bol);
      if (!quiet && run > out_cap - o) {
        /* Below the documented bound: stop there, never between a CR and its LF;
         * every LF in the run ends a CRLF, so a cut after one leaves us at BOL. */
        run = out_cap - o;
        if (run > 0 && in[i + run - 1] == '\r')
          run--;
        bol = run > 0 && in[i + run - 1] == '\n';
      }
      if (!quiet && run > 0)
        memcpy(out + o, in + i, run);
      o += quiet ? 0 : run;
      i += run;
      if (bol)
        s->state = D_BOL;
      if (run > 0)
        continue;
    }
    struct data_step st;
    data_step(s->state, in[i], &st);
    quiet = (s->bare || st.bare) && s->mode == SMTP_DATA_REFUSE;
    if (!quiet && st.n > out_cap - o)
      break; /* caller's out_cap below the documented bound: stop, never overflow */
    if (!quiet && st.n > 0)
      memcpy(out + o, st.out, st.n);
    o += quiet ? 0 : st.n;
    s->state = st.next;
    s->bare = s->bare || st.bare;
    s->bare_ends += st.bare;
    s->done = st.end;
    i++;
  }
  s->bytes += i;
  if (s->done && i > 0)
    s->bytes -= 3; /* this call consumed the end: ".\r\n" is no data */
  *out_len = o;
  return i;
}
