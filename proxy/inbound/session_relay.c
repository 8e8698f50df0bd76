/* The upstream half of a session's transaction: routing the first recipient,
 * MAIL/RCPT/DATA through the upstream, streaming message data, and turning every
 * upstream outcome into the reply the MTA gets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/core/observe.h"
#include "proxy/inbound/session_internal.h"

/* ---- expected replies ------------------------------------------------------------ */

static void expect_push(struct session *s, enum session_expect e) {
  s->expect[(s->expect_head + s->nexpect) % SESSION_MAX_EXPECT] = e;
  s->nexpect++;
}

static enum session_expect expect_pop(struct session *s) {
  enum session_expect e = s->expect[s->expect_head];
  s->expect_head = (s->expect_head + 1) % SESSION_MAX_EXPECT;
  s->nexpect--;
  return e;
}

/* ---- logging ------------------------------------------------------------------ */

void session__log_delivery(struct session *s, struct upstream *up, const char *policy,
                           const char *to, int code, const char *enh,
                           const char *reply) {
  char dsn[16];
  if (enh && enh[0])
    snprintf(dsn, sizeof dsn, "%s", enh);
  else
    snprintf(dsn, sizeof dsn, "%d.0.0", code / 100);
  struct log_delivery d = {
      .id = s->txn.qid[0] ? s->txn.qid : s->id,
      .from = s->txn.from,
      .to = to,
      .relay = up ? upstream_relay(up) : "none",
      .delay = (double)(uv_now(s->conn.tcp.loop) - s->txn.started_ms) / 1000.0,
      .tls = up ? upstream_tls(up) : "none",
      .verdict = up ? upstream_verdict(up) : NULL,
      .policy = up                    ? upstream_policy(up)
                : policy && policy[0] ? policy
                                      : NULL,
      .dsn = dsn,
      .status = code / 100 == 2   ? "sent"
                : code / 100 == 5 ? "bounced"
                                  : "deferred",
      .reply = reply,
  };
  log_delivery(&d);
  observe_delivery(d.status, d.verdict, d.policy, d.delay);
}

void session__log_received(struct session *s) {
  log_as(LOG_PROG_SMTPD, LOG_INFO, s->txn.qid, "client=unknown[%s]", s->client_ip);
}

void session__log_queued(struct session *s, size_t nrcpt) {
  log_as(LOG_PROG_QMGR, LOG_INFO, s->txn.qid,
         "from=<%s>, size=%llu, nrcpt=%zu (queue active)", s->txn.from,
         (unsigned long long)s->scan.bytes, nrcpt);
  s->txn.queued = true;
}

void session__log_rcpt(struct session *s, const char *to, const struct smtp_reply *r,
                       const char *text) {
  char reply[600];
  int code = r ? r->code : 451;
  if (r)
    snprintf(reply, sizeof reply, "%d %s", r->code, r->nlines ? r->lines[0] : "");
  else
    snprintf(reply, sizeof reply, "%s", text);
  session__log_delivery(s, s->up, s->txn.policy, to, code, r ? r->enhanced : NULL,
                        reply);
}

static void session_relay_reply(struct session *s, const struct smtp_reply *r) {
  char wire[SMTP_REPLY_MAX_LINES * (SMTP_REPLY_LINE_MAX + 8)];
  int n = smtp_reply_format(r, 0, wire, sizeof wire);
  if (n > 0)
    session__write(s, wire, (size_t)n);
}

/* ---- the upstream's lifetime --------------------------------------------------- */

static void session_drop_upstream(struct session *s, bool graceful) {
  upstream_close(s->up, graceful);
  s->up = NULL;
  s->up_in_txn = false;
  s->nexpect = 0;
}

static void session_rcpt_state_after_reply(struct session *s) {
  session__set_state(s, s->txn.nrcpts > 0 ? SESSION_RCPT : SESSION_MAIL);
}

static void on_up_ready(void *arg);
static void on_up_failed(void *arg, const char *reasons, bool policy);
static void on_up_reply(void *arg, const struct smtp_reply *r);
static void on_up_drain(void *arg);
static void on_up_lost(void *arg, const char *reason);

static const struct upstream_events session_up_events = {
    .on_ready = on_up_ready,
    .on_failed = on_up_failed,
    .on_reply = on_up_reply,
    .on_drain = on_up_drain,
    .on_lost = on_up_lost,
};

/* Sends MAIL (once per upstream transaction) and this RCPT. */
static void session_send_rcpt(struct session *s) {
  if (s->txn.smtputf8 && !(upstream_caps(s->up)->flags & SMTP_CAP_SMTPUTF8)) {
    session__reply(s, 550, "5.6.7", "<%s>: %s does not support SMTPUTF8", s->txn.rcpt,
                   upstream_relay(s->up));
    session_rcpt_state_after_reply(s);
    session__process(s);
    return;
  }
  char line[SMTP_COMMAND_LINE_MAX];
  int rc = 0;
  if (!s->up_in_txn) {
    session__mail_line(s, s->up, line, sizeof line);
    rc = upstream_command(s->up, line);
    expect_push(s, EXPECT_MAIL);
    s->up_in_txn = true; /* until its reply says otherwise */
  }
  session__rcpt_line(s->up, s->txn.rcpt, s->txn.rcpt_params, line, sizeof line);
  if (rc == 0)
    rc = upstream_command(s->up, line);
  if (rc < 0) {
    on_up_lost(s, "cannot queue command");
    return;
  }
  expect_push(s, EXPECT_RCPT);
  session__set_state(s, SESSION_RCPT_WAIT);
}

static void on_route(void *arg, struct route *route) {
  struct session *s = arg;
  s->rq = NULL;
  if (route)
    snprintf(s->txn.policy, sizeof s->txn.policy, "%s", route->policy);
  if (!route || route->status != 0) {
    struct smtp_reply r = {.code = 451, .enhanced = "4.3.0", .nlines = 1};
    snprintf(r.lines[0], sizeof r.lines[0], "4.3.0 %s: out of memory", s->txn.domain);
    if (route) {
      r.code = route->reply_code;
      snprintf(r.enhanced, sizeof r.enhanced, "%s", route->reply_enh);
      snprintf(r.lines[0], sizeof r.lines[0], "%s <%s>: %s", route->reply_enh,
               s->txn.rcpt, route->reply_text);
    }
    route_free(route);
    session_relay_reply(s, &r);
    session__log_rcpt(s, s->txn.rcpt, &r, NULL);
    if (s->txn.nrcpts == 0)
      s->txn.domain[0] = '\0';
    session_rcpt_state_after_reply(s);
    session__process(s);
    return;
  }
  s->up = upstream_open(s->rt, route, s->txn.domain, s->id, &session_up_events, s);
  if (!s->up) {
    session__reply(s, 451, "4.3.0", "<%s>: out of memory", s->txn.rcpt);
    session_rcpt_state_after_reply(s);
    session__process(s);
  }
}

static void session_rcpt(struct session *s) {
  if (s->up && strcmp(upstream_domain(s->up), s->txn.domain) == 0) {
    session_send_rcpt(s);
    return;
  }
  session__upstream_release(s, s->up, s->up_in_txn, false);
  s->up = NULL;
  s->up_in_txn = false;
  s->nexpect = 0;
  s->up = session__upstream_pooled(s, s->txn.domain, &session_up_events, s);
  if (s->up) {
    session_send_rcpt(s);
    return;
  }
  session__set_state(s, SESSION_RCPT_ROUTE);
  s->rq = router_route(s->rt, s->txn.domain, on_route, s);
  if (!s->rq) {
    session__reply(s, 451, "4.3.0", "<%s>: out of memory", s->txn.rcpt);
    session_rcpt_state_after_reply(s);
  }
}

static void on_up_ready(void *arg) {
  struct session *s = arg;
  if (s->state == SESSION_RCPT_ROUTE)
    session_send_rcpt(s);
}

static void on_up_failed(void *arg, const char *reasons, bool policy) {
  struct session *s = arg;
  char text[SMTP_REPLY_LINE_MAX - 16];
  struct smtp_reply r = {.code = 451, .nlines = 1};
  const char *enh = route_no_mx(text, sizeof text, s->txn.domain, policy, reasons);
  snprintf(r.enhanced, sizeof r.enhanced, "%s", enh);
  snprintf(r.lines[0], sizeof r.lines[0], "%s %s", enh, text);
  session_relay_reply(s, &r);
  snprintf(s->txn.policy, sizeof s->txn.policy, "%s", upstream_policy(s->up));
  session__log_rcpt(s, s->txn.rcpt, &r, NULL);
  session_drop_upstream(s, false);
  if (s->txn.nrcpts == 0)
    s->txn.domain[0] = '\0';
  session_rcpt_state_after_reply(s);
  session__process(s);
}

/* ---- replies ------------------------------------------------------------------- */

static void session_on_rcpt_reply(struct session *s, const struct smtp_reply *r) {
  if (s->txn.mail_fail[0]) {
    /* The MX refused our MAIL: that refusal is this recipient's answer. */
    session__write(s, s->txn.mail_fail, strlen(s->txn.mail_fail));
    struct smtp_reply mr = {.code = atoi(s->txn.mail_fail), .nlines = 1};
    snprintf(mr.lines[0], sizeof mr.lines[0], "%.*s",
             (int)strcspn(s->txn.mail_fail + 4, "\r"), s->txn.mail_fail + 4);
    session__log_rcpt(s, s->txn.rcpt, &mr, NULL);
    s->txn.mail_fail[0] = '\0';
  } else {
    session_relay_reply(s, r);
    if (r->code / 100 != 2)
      session__log_rcpt(s, s->txn.rcpt, r, NULL);
    else {
      char **grown = realloc(s->txn.rcpts, (s->txn.nrcpts + 1) * sizeof *grown);
      char *copy = strdup(s->txn.rcpt);
      if (grown)
        s->txn.rcpts = grown;
      if (grown && copy)
        s->txn.rcpts[s->txn.nrcpts++] = copy;
      else
        free(copy);
      if (s->txn.nrcpts == 1)
        session__log_received(s);
    }
  }
  if (s->txn.nrcpts == 0 && !s->up_in_txn)
    s->txn.domain[0] = '\0';
  session_rcpt_state_after_reply(s);
}

void session__received_header(struct session *s, const char *for_rcpt, char *out,
                              size_t cap) {
  char date[64];
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z", &tm);
  char forpart[SMTP_PATH_MAX + 16] = "";
  if (for_rcpt)
    snprintf(forpart, sizeof forpart, "\r\n\tfor <%s>", for_rcpt);
  snprintf(out, cap,
           "Received: from %s ([%s])\r\n\tby %s (starttls-proxy) with %s id %s%s;\r\n"
           "\t%s\r\n",
           s->helo, s->client_ip, s->rt->cfg->hostname,
           s->txn.smtputf8 && s->proto->with_utf8 ? s->proto->with_utf8
                                                  : session__proto_name(s),
           s->txn.qid[0] ? s->txn.qid : s->id, forpart, date);
}

static void session_on_data_reply(struct session *s, const struct smtp_reply *r) {
  session_relay_reply(s, r);
  if (r->code != 354) {
    session__set_state(s, SESSION_RCPT);
    return;
  }
  char hdr[1024];
  session__received_header(s, s->txn.nrcpts == 1 ? s->txn.rcpts[0] : NULL, hdr,
                           sizeof hdr);
  smtp_data_init(&s->scan, s->rt->cfg->bare_newline == CONFIG_BARE_NORMALIZE
                               ? SMTP_DATA_NORMALIZE
                               : SMTP_DATA_REFUSE);
  session__set_state(s, SESSION_DATA);
  if (upstream_body(s->up, hdr, strlen(hdr)) < 0)
    session__discard(s, 451, "4.4.2", "connection to the MX failed during DATA");
}

static void session_on_final_reply(struct session *s, const struct smtp_reply *r) {
  session_relay_reply(s, r);
  for (size_t i = 0; i < s->txn.nrcpts; i++)
    session__log_rcpt(s, s->txn.rcpts[i], r, NULL);
  s->up_in_txn = false;
  session__txn_reset(s);
  session__set_state(s, SESSION_IDLE);
}

static void on_up_reply(void *arg, const struct smtp_reply *r) {
  struct session *s = arg;
  if (s->nexpect == 0)
    return;
  switch (expect_pop(s)) {
  case EXPECT_MAIL:
    s->up_in_txn = r->code / 100 == 2;
    if (!s->up_in_txn) {
      int n = smtp_reply_format(r, 0, s->txn.mail_fail, sizeof s->txn.mail_fail);
      if (n < 0)
        snprintf(s->txn.mail_fail, sizeof s->txn.mail_fail, "%d %s\r\n", r->code,
                 "sender refused by the destination");
    }
    return; /* the RCPT reply follows */
  case EXPECT_RCPT:
    session_on_rcpt_reply(s, r);
    break;
  case EXPECT_DATA:
    session_on_data_reply(s, r);
    break;
  case EXPECT_DOT:
    session_on_final_reply(s, r);
    break;
  case EXPECT_RSET:
    if (r->code / 100 != 2)
      session_drop_upstream(s, false);
    return;
  }
  session__process(s);
}

static void on_up_drain(void *arg) {
  struct session *s = arg;
  if (s->state == SESSION_DATA)
    session__process(s);
}

static void on_up_lost(void *arg, const char *reason) {
  struct session *s = arg;
  char relay[320];
  snprintf(relay, sizeof relay, "%s", s->up ? upstream_relay(s->up) : "the MX");
  enum session_state st = s->state;
  bool in_txn = s->txn.nrcpts > 0 || st == SESSION_RCPT_WAIT;
  if (st == SESSION_DATA) {
    char text[512];
    snprintf(text, sizeof text, "connection to %s lost during DATA: %s", relay, reason);
    session__discard(s, 451, "4.4.2", text);
    session__process(s); /* reading may have been paused for the MX: resume it */
    return;
  }
  struct smtp_reply r = {.code = 451, .enhanced = "4.4.2", .nlines = 1};
  snprintf(r.lines[0], sizeof r.lines[0], "4.4.2 connection to %s lost: %.400s", relay,
           reason);
  if (st == SESSION_RCPT_WAIT || st == SESSION_DATA_WAIT || st == SESSION_DATA_DONE) {
    session_relay_reply(s, &r);
    if (st == SESSION_RCPT_WAIT)
      session__log_rcpt(s, s->txn.rcpt, &r, NULL);
    for (size_t i = 0; st != SESSION_RCPT_WAIT && i < s->txn.nrcpts; i++)
      session__log_rcpt(s, s->txn.rcpts[i], &r, NULL);
  }
  session_drop_upstream(s, false);
  if (st == SESSION_DATA_DONE) {
    session__txn_reset(s);
    session__set_state(s, SESSION_IDLE);
  } else if (st == SESSION_RCPT_WAIT || st == SESSION_DATA_WAIT) {
    s->txn.lost = in_txn;
    session_rcpt_state_after_reply(s);
  } else if (in_txn) {
    s->txn.lost = true;
  }
  session__process(s);
}

/* ---- DATA -------------------------------------------------------------------- */

static void session_data(struct session *s) {
  if (upstream_command(s->up, "DATA") < 0) {
    on_up_lost(s, "cannot queue DATA");
    return;
  }
  expect_push(s, EXPECT_DATA);
  session__set_state(s, SESSION_DATA_WAIT);
}

void session__rset_upstream(struct session *s) {
  if (!s->up || !s->up_in_txn)
    return;
  if (upstream_command(s->up, "RSET") < 0) {
    session_drop_upstream(s, false);
    return;
  }
  expect_push(s, EXPECT_RSET);
  s->up_in_txn = false;
}

/* Stops passing data on: the MX connection is reset without the final dot, so it
 * discards the partial message; the MTA gets `text` once its data is over. */
void session__discard(struct session *s, int code, const char *enh, const char *text) {
  if (s->up)
    session_drop_upstream(s, false);
  int n = smtp_reply_build(s->txn.discard_reply, sizeof s->txn.discard_reply, code, enh,
                           text);
  if (n < 0)
    smtp_reply_build(s->txn.discard_reply, sizeof s->txn.discard_reply, code, enh,
                     "message not delivered");
  session__set_state(s, SESSION_DATA_DISCARD);
}

static void session_data_end(struct session *s) {
  session__log_queued(s, s->txn.nrcpts);
  if (s->state == SESSION_DATA) {
    if (upstream_body_end(s->up) < 0) {
      on_up_lost(s, "cannot send end of data");
      return;
    }
    expect_push(s, EXPECT_DOT);
    session__set_state(s, SESSION_DATA_DONE);
    return;
  }
  session__write(s, s->txn.discard_reply, strlen(s->txn.discard_reply));
  struct smtp_reply r = {.nlines = 1};
  r.code = atoi(s->txn.discard_reply);
  snprintf(r.lines[0], sizeof r.lines[0], "%.*s",
           (int)strcspn(s->txn.discard_reply + 4, "\r"), s->txn.discard_reply + 4);
  snprintf(r.enhanced, sizeof r.enhanced, "%.*s", (int)strcspn(r.lines[0], " "),
           r.lines[0]);
  for (size_t i = 0; i < s->txn.nrcpts; i++)
    session__log_rcpt(s, s->txn.rcpts[i], &r, NULL);
  session__txn_reset(s);
  session__set_state(s, SESSION_IDLE);
}

/* Scans the next chunk of client data into out (cap: SESSION_DATA_OUT) and judges it:
 * *fault is set (code, enhanced code, text) when the message must be refused. The
 * caller consumes the bytes used (the return value) once it has passed out on. */
size_t session__data_scan(struct session *s, char *out, size_t *out_len,
                          const struct session_data_fault **fault) {
  static const struct session_data_fault bare = {
      550, "5.6.11",
      "message refused: bare CR or LF in message data (SMTP smuggling protection)"};
  static const struct session_data_fault too_big = {552, "5.3.4",
                                                    "Message size exceeds fixed limit"};
  size_t chunk = s->in.len < DATA_CHUNK ? s->in.len : DATA_CHUNK;
  *out_len = 0;
  *fault = NULL;
  size_t used =
      smtp_data_scan(&s->scan, s->in.data, chunk, out, SESSION_DATA_OUT, out_len);
  uint64_t max = s->rt->cfg->max_message_size;
  if (s->state != SESSION_DATA)
    return used;
  if (s->scan.bare && s->scan.mode == SMTP_DATA_REFUSE) {
    log_as(LOG_PROG_SMTPD, LOG_WARNING, s->id,
           "bare CR or LF in message data from %s: refused", s->client_ip);
    *fault = &bare;
  } else if (max && s->scan.bytes > max) {
    *fault = &too_big;
  } else if (s->scan.done && s->scan.bare_ends > 0) {
    log_msg(LOG_INFO, s->id, "bare newline normalized: %llu line ends from %s",
            (unsigned long long)s->scan.bare_ends, s->client_ip);
  }
  return used;
}

/* Moves one chunk of message data. Returns false when it cannot go on now. */
static bool session_data_step(struct session *s) {
  if (s->in.len == 0)
    return false;
  if (s->state == SESSION_DATA && upstream_body_busy(s->up))
    return false;
  char out[SESSION_DATA_OUT];
  size_t out_len;
  const struct session_data_fault *fault;
  size_t used = session__data_scan(s, out, &out_len, &fault);
  if (fault)
    session__discard(s, fault->code, fault->enh, fault->text);
  else if (s->state == SESSION_DATA && upstream_body(s->up, out, out_len) < 0)
    session__discard(s, 451, "4.4.2", "connection to the MX failed during DATA");
  buf_consume(&s->in, used);
  if (s->scan.done)
    session_data_end(s);
  return true;
}

/* ---- the protocol column -------------------------------------------------------- */

static void smtp_rcpt(struct session *s, const char *path, const char *params,
                      const char *domain) {
  if (s->txn.nrcpts >= s->rt->cfg->max_recipients) {
    session__reject_rcpt(s, path, 452, "4.5.3", "Error: too many recipients");
    return;
  }
  if (s->txn.domain[0] && strcmp(domain, s->txn.domain) != 0) {
    session__reject_rcpt(s, path, 452, "4.5.3",
                         "<%s>: one destination per transaction: send "
                         "recipients at %s in a new transaction",
                         path, domain);
    return;
  }
  if (s->txn.lost) {
    session__reject_rcpt(s, path, 451, "4.4.2",
                         "<%s>: connection to %s lost, try again later", path,
                         s->txn.domain);
    return;
  }
  snprintf(s->txn.domain, sizeof s->txn.domain, "%s", domain);
  snprintf(s->txn.rcpt, sizeof s->txn.rcpt, "%s", path);
  snprintf(s->txn.rcpt_params, sizeof s->txn.rcpt_params, "%s", params);
  session_rcpt(s);
}

static void smtp_data(struct session *s) {
  if (s->txn.lost || !s->up)
    session__reply(s, 451, "4.4.2", "connection to %s lost, try again later",
                   s->txn.domain);
  else
    session_data(s);
}

static bool smtp_data_busy(const struct session *s) {
  return s->up && upstream_body_busy(s->up);
}

const struct session_proto session__smtp_proto = {
    .name = "ESMTP",
    .hello_verbs = 1u << SMTP_VERB_HELO | 1u << SMTP_VERB_EHLO,
    .hello_hint = "",
    .with_utf8 = "UTF8SMTP",
    .rcpt = smtp_rcpt,
    .data = smtp_data,
    .data_step = session_data_step,
    .data_busy = smtp_data_busy,
};
