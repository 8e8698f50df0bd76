/* What a transaction leaves in the logs, in Postfix's words so that log tools keep
 * working (smtpd's client= and reject lines, qmgr's from=/size=/nrcpt= and removed,
 * the delivery lines), and the trace header it adds to the message. */
#include <stdio.h>
#include <time.h>

#include "proxy/core/log.h"
#include "proxy/core/observe.h"
#include "proxy/inbound/session_internal.h"

void session__log_delivery(struct session *s, struct upstream *up, const char *policy,
                           const char *to, int code, const char *enh,
                           const char *reply) {
  struct log_delivery d = {
      .id = s->txn.qid[0] ? s->txn.qid : s->id,
      .from = s->txn.from,
      .to = to,
      .delay = (double)(uv_now(s->conn.tcp.loop) - s->txn.started_ms) / 1000.0,
      .reply = reply,
  };
  upstream_log_delivery(up, policy, code, enh, &d);
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
