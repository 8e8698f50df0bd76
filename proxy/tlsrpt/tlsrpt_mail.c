/* TLS reports by mail (RFC 8460 §5.3): the report as a multipart/report message, and
 * its delivery straight to the MX hosts of the rua's domain through the outbound layer
 * (router, upstream), never through the proxy's listener. Reports "MUST be delivered
 * despite any TLS-related failures", and their sessions are not counted for the next
 * report: the route comes from router_route_report() (every MX host at tlsrpt/may,
 * nothing observed). Nothing from outside the process can ask for that treatment: it
 * is only reached from here.
 *
 * Ownership: struct tlsrpt__mail owns its routing query or its upstream (never
 * pooled), a runtime reference and a dot-stuffed copy of the message. It keeps no
 * pointer to the reporter: ending or cancelling closes the upstream (which frees
 * itself once closed) and frees the rest at once. */
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "policy/tlsrpt.h"
#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/core/obj.h"
#include "proxy/outbound/router.h"
#include "proxy/outbound/upstream.h"
#include "proxy/tlsrpt/tlsrpt_internal.h"

#define MAIL_MAGIC 0x746d6169u /* "tmai" */
#define MAIL_LOG_ID "tlsrpt"   /* the id of its log lines (sessions have a queue id) */
#define B64_LINE_BYTES 57      /* 76 base64 characters a line */

/* ---- the message ----------------------------------------------------------------- */

struct mbuf {
  char *p;
  size_t len, cap;
  bool oom;
};

__attribute__((format(printf, 2, 3))) static void mb_printf(struct mbuf *b,
                                                            const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = b->oom ? -1 : vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= b->cap - b->len)
    b->oom = true;
  else
    b->len += (size_t)n;
}

/* Header values from the configuration: no line breaks or controls. */
static void header_clean(char *dst, size_t cap, const char *src) {
  size_t n = 0;
  for (; src && *src && n + 1 < cap; src++)
    dst[n++] = (*src >= 0x20 && *src < 0x7f) ? *src : ' ';
  dst[n] = '\0';
}

static void mb_base64(struct mbuf *b, const unsigned char *data, size_t len) {
  for (size_t i = 0; i < len && !b->oom; i += B64_LINE_BYTES) {
    size_t n = len - i < B64_LINE_BYTES ? len - i : B64_LINE_BYTES;
    unsigned char line[80];
    EVP_EncodeBlock(line, data + i, (int)n);
    mb_printf(b, "%s\r\n", (const char *)line);
  }
}

static void mb_headers(struct mbuf *b, const struct tlsrpt__mail_info *m,
                       const char *boundary) {
  static unsigned serial;
  char submitter[200], date[64];
  header_clean(submitter, sizeof submitter, m->submitter);
  time_t now = (time_t)m->now;
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  mb_printf(b, "From: <%s>\r\nTo: <%s>\r\nDate: %s\r\n", m->from, m->rcpt, date);
  mb_printf(b, "Subject: Report Domain: %s\r\n Submitter: %s\r\n Report-ID: <%s>\r\n",
            m->domain, submitter, m->report_id);
  mb_printf(b, "TLS-Report-Domain: %s\r\nTLS-Report-Submitter: %s\r\n", m->domain,
            submitter);
  mb_printf(b, "Message-ID: <tlsrpt.%lld.%ld.%u@%s>\r\n", (long long)m->now,
            (long)getpid(), ++serial, m->hostname);
  mb_printf(b, "Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n");
  mb_printf(b,
            "Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n"
            " boundary=\"%s\"\r\n\r\n",
            boundary);
}

char *tlsrpt__mail_compose(const struct tlsrpt__mail_info *m, size_t *len) {
  char boundary[80], start[21], end[21];
  static unsigned serial;
  snprintf(boundary, sizeof boundary, "----=_tlsrpt_%lld_%ld_%u", (long long)m->now,
           (long)getpid(), ++serial);
  tlsrpt_datetime(m->start, start);
  tlsrpt_datetime(m->end, end);
  struct mbuf b = {.cap = 4096 + 2 * TLSRPT_ADDR_MAX + 1024 + m->gzlen * 4 / 3 +
                          (m->gzlen / B64_LINE_BYTES + 1) * 2};
  if (!(b.p = malloc(b.cap)))
    return NULL;
  mb_headers(&b, m, boundary);
  mb_printf(&b, "This is a multipart message in MIME format.\r\n\r\n--%s\r\n",
            boundary);
  mb_printf(&b, "Content-Type: text/plain; charset=\"us-ascii\"\r\n"
                "Content-Transfer-Encoding: 7bit\r\n\r\n");
  mb_printf(&b,
            "This is an aggregate TLS report (RFC 8460) for %s,\r\n"
            "covering %s to %s.\r\n\r\n--%s\r\n",
            m->domain, start, end, boundary);
  /* §5.1: sender!policy-domain!begin-timestamp!end-timestamp.json.gz, the sender
   * being the domain of contact-info. */
  char sender[200];
  header_clean(sender, sizeof sender, m->submitter);
  mb_printf(&b,
            "Content-Type: application/tlsrpt+gzip\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            "Content-Disposition: attachment;\r\n"
            " filename=\"%s!%s!%lld!%lld.json.gz\"\r\n\r\n",
            sender, m->domain, (long long)m->start, (long long)m->end);
  mb_base64(&b, m->gz, m->gzlen);
  mb_printf(&b, "\r\n--%s--\r\n", boundary);
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  *len = b.len;
  return b.p;
}

/* ---- the delivery ----------------------------------------------------------------- */

enum mail_state { MAIL_ROUTE, MAIL_CONNECT, MAIL_MAIL, MAIL_RCPT, MAIL_DATA, MAIL_DOT };

static const char *const mail_state_names[] = {"ROUTE", "CONNECT", "MAIL",
                                               "RCPT",  "DATA",    "DOT"};

struct tlsrpt__mail {
  uint32_t magic;
  struct runtime *rt;      /* one reference */
  struct router_query *rq; /* routing the rcpt's domain, until answered */
  struct upstream *up;     /* the MX connection, once routed */
  tlsrpt__done_cb cb;
  void *arg;
  enum mail_state state;
  char from[TLSRPT_ADDR_MAX + 1], rcpt[TLSRPT_ADDR_MAX + 1];
  char domain[TLSRPT_ADDR_MAX + 1]; /* rcpt's, lower-case */
  uint64_t started_ms;
  char *data; /* owned: the message, dot-stuffed; upstream_body_end() sends the "." */
  size_t len;
};

/* A callback's argument, checked. */
static struct tlsrpt__mail *mail_of(void *arg) {
  struct tlsrpt__mail *m;
  CAST_OBJ_NOTNULL(m, arg, MAIL_MAGIC);
  return m;
}

static void mail_set_state(struct tlsrpt__mail *m, enum mail_state st) {
  log_msg(LOG_DEBUG, MAIL_LOG_ID, "mail to <%s>: %s -> %s", m->rcpt,
          mail_state_names[m->state], mail_state_names[st]);
  m->state = st;
}

/* The line a session logs for each recipient, here with policy=tlsrpt/may. */
static void mail_log(const struct tlsrpt__mail *m, int code, const char *enh,
                     const char *reply) {
  struct log_delivery d = {
      .id = MAIL_LOG_ID,
      .from = m->from,
      .to = m->rcpt,
      .delay = (double)(uv_now(m->rt->loop) - m->started_ms) / 1000.0,
      .reply = reply,
  };
  upstream_log_delivery(m->up, "tlsrpt/may", code, enh, &d);
}

/* graceful: QUIT after an accepted report; otherwise a reset, so that the MX drops a
 * message without its final dot. */
static void mail_free(struct tlsrpt__mail *m, bool graceful) {
  router_cancel(m->rq);
  upstream_close(m->up, graceful);
  runtime_unref(m->rt);
  free(m->data);
  m->magic = 0;
  free(m);
}

/* Logs the outcome and lets go of everything, then tells the run (which may start
 * its next delivery from the callback). why is NULL when the report was accepted. */
static void mail_end(struct tlsrpt__mail *m, int code, const char *enh,
                     const char *reply, const char *why) {
  mail_log(m, code, enh, reply);
  tlsrpt__done_cb cb = m->cb;
  void *arg = m->arg;
  mail_free(m, why == NULL);
  cb(arg, why == NULL, why);
}

/* A failure of ours, not an MX reply: logged as a 451. */
static void mail_fail(struct tlsrpt__mail *m, const char *enh, const char *why) {
  char reply[SMTP_REPLY_LINE_MAX];
  snprintf(reply, sizeof reply, "451 %s %s", enh, why);
  mail_end(m, 451, enh, reply, why);
}

static void on_mail_ready(void *arg) {
  struct tlsrpt__mail *m = mail_of(arg);
  char mail[SMTP_COMMAND_LINE_MAX], rcpt[SMTP_COMMAND_LINE_MAX];
  snprintf(mail, sizeof mail, "MAIL FROM:<%s>", m->from);
  snprintf(rcpt, sizeof rcpt, "RCPT TO:<%s>", m->rcpt);
  mail_set_state(m, MAIL_MAIL);
  /* Pipelined when the MX offers PIPELINING. */
  if (upstream_command(m->up, mail) < 0 || upstream_command(m->up, rcpt) < 0)
    mail_fail(m, "4.3.0", "cannot queue MAIL and RCPT");
}

static void on_mail_reply(void *arg, const struct smtp_reply *r) {
  struct tlsrpt__mail *m = mail_of(arg);
  char reply[SMTP_REPLY_LINE_MAX + 8], why[sizeof reply + UPSTREAM_RELAY_MAX + 32];
  snprintf(reply, sizeof reply, "%d %s", r->code, r->nlines ? r->lines[0] : "");
  if (m->state == MAIL_DATA ? r->code != 354 : r->code / 100 != 2) {
    snprintf(why, sizeof why, "%s: %s reply: %s", upstream_relay(m->up),
             mail_state_names[m->state], reply);
    mail_end(m, r->code, r->enhanced, reply, why);
    return;
  }
  switch (m->state) {
  case MAIL_MAIL:
    mail_set_state(m, MAIL_RCPT);
    break;
  case MAIL_RCPT:
    mail_set_state(m, MAIL_DATA);
    if (upstream_command(m->up, "DATA") < 0)
      mail_fail(m, "4.3.0", "cannot queue DATA");
    break;
  case MAIL_DATA:
    mail_set_state(m, MAIL_DOT);
    if (upstream_body(m->up, m->data, m->len) < 0 || upstream_body_end(m->up) < 0)
      mail_fail(m, "4.4.2", "cannot send the message");
    break;
  case MAIL_DOT:
    mail_end(m, r->code, r->enhanced, reply, NULL);
    break;
  default:
    break;
  }
}

static void on_mail_failed(void *arg, const char *reasons, bool policy) {
  struct tlsrpt__mail *m = mail_of(arg);
  char text[SMTP_REPLY_LINE_MAX - 16];
  const char *enh = route_no_mx(text, sizeof text, m->domain, policy, reasons);
  upstream_close(m->up, false);
  m->up = NULL;
  mail_fail(m, enh, text);
}

static void on_mail_lost(void *arg, const char *reason) {
  struct tlsrpt__mail *m = mail_of(arg);
  char why[SMTP_REPLY_LINE_MAX - 16];
  snprintf(why, sizeof why, "connection to %s lost: %s", upstream_relay(m->up), reason);
  mail_fail(m, "4.4.2", why);
}

static const struct upstream_events mail_up_events = {
    .on_ready = on_mail_ready,
    .on_failed = on_mail_failed,
    .on_reply = on_mail_reply,
    .on_lost = on_mail_lost, /* no on_drain: the whole message is queued at once */
};

static void on_mail_route(void *arg, struct route *route) {
  struct tlsrpt__mail *m = mail_of(arg);
  m->rq = NULL;
  if (!route) {
    mail_fail(m, "4.3.0", "out of memory");
  } else if (route->status != 0) {
    char reply[sizeof route->reply_text + 32];
    snprintf(reply, sizeof reply, "%d %s %s", route->reply_code, route->reply_enh,
             route->reply_text);
    mail_end(m, route->reply_code, route->reply_enh, reply, route->reply_text);
    route_free(route); /* ours, not m's: still here */
  } else {
    mail_set_state(m, MAIL_CONNECT);
    m->up = upstream_open(m->rt, route, m->domain, MAIL_LOG_ID, &mail_up_events, m);
    if (!m->up)
      mail_fail(m, "4.3.0", "out of memory");
  }
}

/* The message with leading dots doubled (RFC 5321 §4.5.2), ending with CRLF. */
static char *dot_stuff(const char *msg, size_t len, size_t *out_len) {
  char *out = malloc(2 * len + 2);
  size_t n = 0;
  if (!out)
    return NULL;
  for (size_t i = 0; i < len; i++) {
    if (msg[i] == '.' && (i == 0 || msg[i - 1] == '\n'))
      out[n++] = '.';
    out[n++] = msg[i];
  }
  if (n < 2 || out[n - 2] != '\r' || out[n - 1] != '\n') {
    out[n++] = '\r';
    out[n++] = '\n';
  }
  *out_len = n;
  return out;
}

struct tlsrpt__mail *tlsrpt__mail_start(struct tlsrpt *t, const char *from,
                                        const char *rcpt, const char *msg, size_t len,
                                        tlsrpt__done_cb cb, void *arg, char *err,
                                        size_t errlen) {
  const char *at = strrchr(rcpt, '@');
  if (!at || !at[1] || strlen(rcpt) > TLSRPT_ADDR_MAX ||
      strlen(from) > TLSRPT_ADDR_MAX) {
    snprintf(err, errlen, "unusable address");
    return NULL;
  }
  struct tlsrpt__mail *m = calloc(1, sizeof *m);
  if (!m || !(m->data = dot_stuff(msg, len, &m->len))) {
    free(m);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  m->magic = MAIL_MAGIC;
  m->cb = cb;
  m->arg = arg;
  snprintf(m->from, sizeof m->from, "%s", from);
  snprintf(m->rcpt, sizeof m->rcpt, "%s", rcpt);
  size_t n = 0;
  for (const char *c = at + 1; *c; c++)
    m->domain[n++] = (char)((*c >= 'A' && *c <= 'Z') ? *c + 32 : *c);
  m->rt = runtime_ref(t->rt);
  m->started_ms = uv_now(t->loop);
  m->rq = router_route_report(m->rt, m->domain, on_mail_route, m);
  if (!m->rq) {
    snprintf(err, errlen, "cannot route %s: out of memory", m->domain);
    mail_free(m, false);
    return NULL;
  }
  return m;
}

void tlsrpt__mail_cancel(struct tlsrpt__mail *m) {
  if (OBJ_VALID(m, MAIL_MAGIC))
    mail_free(m, false);
}
