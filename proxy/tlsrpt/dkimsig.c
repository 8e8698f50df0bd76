/* DKIM signing through libopendkim: one library handle per message, since reports
 * are few (one per domain and period) and a fresh handle shares nothing between
 * threads or reloads. */
#include "proxy/tlsrpt/dkimsig.h"

#include <dkim.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/error.h"

#define SIG_FIELD "DKIM-Signature: "

/* RFC 8460 §5.3 names From, Subject, Date, Message-ID, the two TLS-Report-* fields and
 * the MIME ones; To and Auto-Submitted say who it is for and that no one should reply.
 * libopendkim wants "from" in any list it is given (RFC 6376 §5.4). */
static const char *const signed_fields[] = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "tls-report-domain",
    "tls-report-submitter",
    "auto-submitted",
    NULL,
};

bool dkimsig_supported(enum config_dkim_alg alg) {
  if (alg == CONFIG_DKIM_RSA_SHA256)
    return true;
  if (alg != CONFIG_DKIM_ED25519_SHA256)
    return false;
  DKIM_LIB *lib = dkim_init(NULL, NULL);
  bool ok = lib && dkim_libfeature(lib, DKIM_FEATURE_ED25519);
  if (lib)
    dkim_close(lib);
  return ok;
}

static void say(char *err, size_t errlen, const char *what, DKIM *d, DKIM_STAT st) {
  const char *detail = d ? dkim_geterror(d) : NULL;
  snprintf(err, errlen, "%s: %s%s%s", what, dkim_getresultstr(st), detail ? ": " : "",
           detail ? detail : "");
}

/* Feeds each header field (with its folded lines, without the last CRLF) and returns
 * where the body starts, or NULL when there is no empty line ending the header. */
static const char *feed_header(DKIM *d, const char *msg, size_t len, DKIM_STAT *st) {
  const char *p = msg, *end = msg + len;
  while (p + 1 < end && !(p[0] == '\r' && p[1] == '\n')) {
    const char *q = p;
    for (;;) {
      const char *nl = memchr(q, '\n', (size_t)(end - q));
      if (!nl)
        return NULL;
      q = nl + 1;
      if (q >= end || (*q != ' ' && *q != '\t'))
        break; /* the next field, or the empty line */
    }
    size_t n = (size_t)(q - p);
    n -= n >= 2 && q[-2] == '\r' ? 2 : 1;
    if ((*st = dkim_header(d, (u_char *)p, n)) != DKIM_STAT_OK)
      return NULL;
    p = q;
  }
  return p + 1 < end ? p + 2 : NULL;
}

/* The signature field as it goes on the message: CRLF line ends throughout. */
static char *with_signature(const u_char *sig, size_t siglen, const char *msg,
                            size_t len, size_t *outlen) {
  size_t cap = sizeof SIG_FIELD + 2 * siglen + 2 + len;
  char *out = malloc(cap), *o = out;
  if (!out)
    return NULL;
  memcpy(o, SIG_FIELD, strlen(SIG_FIELD));
  o += strlen(SIG_FIELD);
  for (size_t i = 0; i < siglen; i++) {
    if (sig[i] == '\n' && (i == 0 || sig[i - 1] != '\r'))
      *o++ = '\r';
    *o++ = (char)sig[i];
  }
  memcpy(o, "\r\n", 2);
  o += 2;
  memcpy(o, msg, len);
  *outlen = (size_t)(o - out) + len;
  return out;
}

int dkimsig_sign(const struct dkimsig_key *k, const char *msg, size_t len, char **out,
                 size_t *outlen, char *err, size_t errlen) {
  DKIM_STAT st = DKIM_STAT_OK;
  DKIM *d = NULL;
  u_char *sig = NULL;
  size_t siglen = 0;
  const char *body;
  int rc = SP_E_DKIM;
  dkim_alg_t alg = k->alg == CONFIG_DKIM_ED25519_SHA256 ? DKIM_SIGN_ED25519SHA256
                                                        : DKIM_SIGN_RSASHA256;
  DKIM_LIB *lib = dkim_init(NULL, NULL);
  *out = NULL;
  if (!lib) {
    snprintf(err, errlen, "cannot initialize libopendkim");
    return SP_E_NOMEM;
  }
  /* Over-signing: each field listed once more than it appears. */
  st = dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, (void *)signed_fields,
                    sizeof(char **)); /* the list itself, sized as its pointer */
  if (st != DKIM_STAT_OK) {
    say(err, errlen, "over-signed fields", NULL, st);
    goto out;
  }
  d = dkim_sign(lib, (const u_char *)"tlsrpt", NULL, (dkim_sigkey_t)k->pem,
                (const u_char *)k->selector, (const u_char *)k->domain,
                DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, alg, -1, &st);
  if (!d) {
    say(err, errlen, "dkim_sign", NULL, st);
    goto out;
  }
  if ((st = dkim_signhdrs(d, (const char **)signed_fields)) != DKIM_STAT_OK) {
    say(err, errlen, "signed fields", d, st);
    goto out;
  }
  if (!(body = feed_header(d, msg, len, &st))) {
    if (st == DKIM_STAT_OK)
      snprintf(err, errlen, "the message has no end of header");
    else
      say(err, errlen, "header", d, st);
    goto out;
  }
  if ((st = dkim_eoh(d)) != DKIM_STAT_OK ||
      (body < msg + len &&
       (st = dkim_body(d, (u_char *)body, (size_t)(msg + len - body))) !=
           DKIM_STAT_OK) ||
      (st = dkim_eom(d, NULL)) != DKIM_STAT_OK ||
      (st = dkim_getsighdr_d(d, strlen(SIG_FIELD), &sig, &siglen)) != DKIM_STAT_OK) {
    say(err, errlen, "signing", d, st);
    goto out;
  }
  if (!(*out = with_signature(sig, siglen, msg, len, outlen))) {
    snprintf(err, errlen, "out of memory");
    rc = SP_E_NOMEM;
    goto out;
  }
  rc = 0;
out:
  if (d)
    dkim_free(d); /* sig belongs to d */
  dkim_close(lib);
  return rc;
}
