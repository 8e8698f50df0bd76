/* TLS reports by mail (RFC 8460 §5.3): the report as a multipart/report message, and
 * a small SMTP client that hands it to the proxy's own listener, so that it takes the
 * same route, policy and TLS as any other message.
 *
 * Ownership: struct tlsrpt__mail owns its conn (and so the uv_tcp_t), its timer and a
 * dot-stuffed copy of the message; it is freed after both handles closed. It keeps no
 * pointer to the reporter after start: cancel only detaches the callback and closes. */
#include <arpa/inet.h>
#include <netinet/in.h>
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
#include "proxy/net/conn.h"
#include "proxy/tlsrpt/tlsrpt_internal.h"
#include "proxy/wire/smtp.h"

#define MAIL_MAGIC 0x746d6169u /* "tmai" */
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

/* ---- the SMTP client -------------------------------------------------------------- */

enum mail_state {
  MAIL_CONNECT,
  MAIL_GREETING,
  MAIL_EHLO,
  MAIL_HELO,
  MAIL_MAIL,
  MAIL_RCPT,
  MAIL_DATA,
  MAIL_BODY,
  MAIL_QUIT,
  MAIL_CLOSED,
};

static const char *const mail_state_names[] = {
    "CONNECT", "GREETING", "EHLO", "HELO", "MAIL",
    "RCPT",    "DATA",     "BODY", "QUIT", "CLOSED",
};

struct tlsrpt__mail {
  uint32_t magic;
  struct conn conn;
  uv_timer_t timer;
  tlsrpt__done_cb cb; /* NULL once called or cancelled */
  void *arg;
  enum mail_state state;
  char helo[256];
  char from[TLSRPT_ADDR_MAX + 1], rcpt[TLSRPT_ADDR_MAX + 1];
  char relay[80]; /* the listener, for messages */
  uint64_t command_ms, data_done_ms;
  char *data; /* owned: dot-stuffed message and the final "." */
  size_t len;
  char in[SMTP_REPLY_LINE_MAX + 3];
  size_t inlen;
  struct smtp_reply_parser rp;
  struct smtp_reply reply;
  unsigned pending_closes;
};

static void mail_set_state(struct tlsrpt__mail *m, enum mail_state st) {
  log_msg(LOG_DEBUG, NULL, "tlsrpt: mail to <%s>: %s -> %s", m->rcpt,
          mail_state_names[m->state], mail_state_names[st]);
  m->state = st;
}

/* For both close callbacks, whose argument comes back untyped. */
static void on_mail_closed_handle(struct tlsrpt__mail *m) {
  CHECK_OBJ_NOTNULL(m, MAIL_MAGIC);
  if (--m->pending_closes > 0)
    return;
  m->magic = 0;
  free(m->data);
  free(m);
}
static void on_timer_closed(uv_handle_t *h) {
  on_mail_closed_handle(h->data);
}
static void on_conn_closed(struct conn *c) {
  on_mail_closed_handle(c->owner);
}

static void mail_close(struct tlsrpt__mail *m, bool graceful) {
  if (m->state == MAIL_CLOSED)
    return;
  mail_set_state(m, MAIL_CLOSED);
  m->pending_closes = 2;
  conn_close(&m->conn, graceful);
  uv_close((uv_handle_t *)&m->timer, on_timer_closed);
}

/* Tells the run once; the connection goes. */
static void mail_end(struct tlsrpt__mail *m, bool ok, const char *why) {
  tlsrpt__done_cb cb = m->cb;
  m->cb = NULL;
  if (cb)
    cb(m->arg, ok, why);
}

__attribute__((format(printf, 2, 3))) static void mail_fail(struct tlsrpt__mail *m,
                                                            const char *fmt, ...) {
  char why[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  mail_close(m, false);
  mail_end(m, false, why);
}

static void on_mail_timer(uv_timer_t *h) {
  struct tlsrpt__mail *m = h->data;
  CHECK_OBJ_NOTNULL(m, MAIL_MAGIC);
  if (m->state == MAIL_QUIT) {
    mail_close(m, true);
    return;
  }
  mail_fail(m, "%s: timeout in state %s", m->relay, mail_state_names[m->state]);
}

static void mail_send(struct tlsrpt__mail *m, enum mail_state st, const char *fmt,
                      const char *arg) {
  char line[SMTP_COMMAND_LINE_MAX];
  int n = snprintf(line, sizeof line, fmt, arg);
  mail_set_state(m, st);
  uv_timer_start(&m->timer, on_mail_timer, m->command_ms, 0);
  if (n < 0 || (size_t)n >= sizeof line || conn_write(&m->conn, line, (size_t)n) < 0)
    mail_fail(m, "%s: cannot send: %s", m->relay, conn_error(&m->conn));
}

static void mail_reply(struct tlsrpt__mail *m, const struct smtp_reply *r) {
  int cls = r->code / 100;
  const char *text = r->nlines ? r->lines[0] : "";
  enum mail_state st = m->state;
  if (st == MAIL_QUIT) {
    mail_close(m, true);
  } else if (st == MAIL_EHLO && cls == 5) {
    mail_send(m, MAIL_HELO, "HELO %s\r\n", m->helo);
  } else if (st == MAIL_DATA && r->code == 354) {
    mail_set_state(m, MAIL_BODY);
    uv_timer_start(&m->timer, on_mail_timer, m->data_done_ms, 0);
    if (conn_write(&m->conn, m->data, m->len) < 0)
      mail_fail(m, "%s: cannot send: %s", m->relay, conn_error(&m->conn));
  } else if (cls != 2 || st == MAIL_DATA) {
    mail_fail(m, "%s: %s reply: %d %s", m->relay, mail_state_names[st], r->code, text);
  } else if (st == MAIL_GREETING) {
    mail_send(m, MAIL_EHLO, "EHLO %s\r\n", m->helo);
  } else if (st == MAIL_EHLO || st == MAIL_HELO) {
    mail_send(m, MAIL_MAIL, "MAIL FROM:<%s>\r\n", m->from);
  } else if (st == MAIL_MAIL) {
    mail_send(m, MAIL_RCPT, "RCPT TO:<%s>\r\n", m->rcpt);
  } else if (st == MAIL_RCPT) {
    mail_send(m, MAIL_DATA, "%sDATA\r\n", "");
  } else if (st == MAIL_BODY) {
    log_msg(LOG_INFO, NULL, "tlsrpt: report to <%s> accepted: %d %s", m->rcpt, r->code,
            text);
    mail_end(m, true, NULL); /* accepted: what QUIT brings changes nothing */
    mail_send(m, MAIL_QUIT, "%sQUIT\r\n", "");
  }
}

static void on_mail_data(struct conn *c, const char *data, size_t len) {
  struct tlsrpt__mail *m = c->owner;
  CHECK_OBJ_NOTNULL(m, MAIL_MAGIC);
  while (len > 0 && m->state != MAIL_CLOSED) {
    size_t take = sizeof m->in - m->inlen;
    take = take < len ? take : len;
    memcpy(m->in + m->inlen, data, take);
    m->inlen += take;
    data += take;
    len -= take;
    size_t line_len, used;
    int rc;
    while (m->state != MAIL_CLOSED &&
           (rc = smtp_find_line(m->in, m->inlen, SMTP_REPLY_LINE_MAX, &line_len,
                                &used)) != 0) {
      int done = rc < 0 ? rc : smtp_reply_feed_line(&m->rp, m->in, line_len, &m->reply);
      if (done < 0) {
        mail_fail(m, "%s: malformed reply", m->relay);
        return;
      }
      memmove(m->in, m->in + used, m->inlen - used);
      m->inlen -= used;
      if (done == 1)
        mail_reply(m, &m->reply);
    }
  }
}

static void on_mail_error(struct conn *c, int err) {
  struct tlsrpt__mail *m = c->owner;
  CHECK_OBJ_NOTNULL(m, MAIL_MAGIC);
  if (m->state == MAIL_QUIT)
    mail_close(m, false);
  else
    mail_fail(m, "%s: %s in state %s", m->relay,
              conn_error(c)[0] ? conn_error(c) : sp_strerror(err),
              mail_state_names[m->state]);
}

static void on_mail_connect(struct conn *c, int status) {
  struct tlsrpt__mail *m = c->owner;
  CHECK_OBJ_NOTNULL(m, MAIL_MAGIC);
  if (status < 0) {
    mail_fail(m, "cannot connect to %s: %s", m->relay, conn_error(c));
    return;
  }
  mail_set_state(m, MAIL_GREETING);
  uv_timer_start(&m->timer, on_mail_timer, m->command_ms, 0);
  conn_read_start(c);
}

static void on_mail_handshake(struct conn *c, int err) {
  (void)c, (void)err; /* plain SMTP over loopback: never called */
}

static const struct conn_events mail_events = {
    .on_data = on_mail_data,
    .on_error = on_mail_error,
    .on_handshake = on_mail_handshake,
    .on_connect = on_mail_connect,
    .on_closed = on_conn_closed,
};

/* The message with leading dots doubled (RFC 5321 §4.5.2), then ".". */
static char *dot_stuff(const char *msg, size_t len, size_t *out_len) {
  char *out = malloc(2 * len + 8);
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
  memcpy(out + n, ".\r\n", 3);
  *out_len = n + 3;
  return out;
}

/* The first listen address; a wildcard means this host. */
static void listen_target(const struct config *cfg, struct sockaddr_storage *ss) {
  memcpy(ss, &cfg->listen[0].sa, sizeof *ss);
  if (ss->ss_family == AF_INET) {
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    if (sin->sin_addr.s_addr == htonl(INADDR_ANY))
      sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  } else if (ss->ss_family == AF_INET6) {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (!memcmp(&sin6->sin6_addr, &in6addr_any, sizeof in6addr_any))
      sin6->sin6_addr = in6addr_loopback;
  }
}

struct tlsrpt__mail *tlsrpt__mail_start(struct tlsrpt *t, const char *from,
                                        const char *rcpt, const char *msg, size_t len,
                                        tlsrpt__done_cb cb, void *arg, char *err,
                                        size_t errlen) {
  const struct config *cfg = t->cfg;
  struct tlsrpt__mail *m = calloc(1, sizeof *m);
  if (!m || !(m->data = dot_stuff(msg, len, &m->len))) {
    free(m);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  m->magic = MAIL_MAGIC;
  m->cb = cb;
  m->arg = arg;
  snprintf(m->helo, sizeof m->helo, "%s", cfg->hostname);
  snprintf(m->from, sizeof m->from, "%s", from);
  snprintf(m->rcpt, sizeof m->rcpt, "%s", rcpt);
  snprintf(m->relay, sizeof m->relay, "listener %s", cfg->listen[0].text);
  m->command_ms = cfg->timeout_connect + cfg->timeout_command;
  m->data_done_ms = cfg->timeout_data_done + cfg->timeout_connect;
  smtp_reply_parser_init(&m->rp);
  if (conn_init(t->loop, &m->conn, &mail_events, m) < 0) {
    snprintf(err, errlen, "cannot create a socket");
    free(m->data);
    free(m);
    return NULL;
  }
  uv_timer_init(t->loop, &m->timer);
  m->timer.data = m;
  struct sockaddr_storage ss;
  listen_target(cfg, &ss);
  if (conn_connect(&m->conn, (struct sockaddr *)&ss) < 0) {
    snprintf(err, errlen, "cannot connect to %s: %s", m->relay, conn_error(&m->conn));
    m->cb = NULL;
    mail_close(m, false); /* freed once closed */
    return NULL;
  }
  uv_timer_start(&m->timer, on_mail_timer, m->command_ms, 0);
  return m;
}

void tlsrpt__mail_cancel(struct tlsrpt__mail *m) {
  if (!OBJ_VALID(m, MAIL_MAGIC))
    return;
  m->cb = NULL;
  mail_close(m, false);
}
