/* Where SMTP and LMTP (RFC 2033) differ: the protocol column of the command table and
 * of the transaction. An SMTP transaction has one destination (a second one is
 * refused with 452 4.5.3, so the MTA sends it in a later transaction) and the MTA gets
 * that destination's own replies to DATA and to the final dot. An LMTP transaction
 * has any number of destinations and one reply per accepted recipient after the dot,
 * each its own destination's verdict. */
#include <stdio.h>
#include <string.h>

#include "proxy/core/log.h"
#include "proxy/inbound/session_internal.h"

/* ---- SMTP ---------------------------------------------------------------------------- */

static bool smtp_admit(struct session *s, const char *path, const char *domain) {
  const struct session_leg *g = s->tx.nlegs ? s->tx.legs[0] : NULL;
  if (s->tx.naccepted >= s->rt->cfg->max_recipients) {
    session__reject_rcpt(s, path, 452, "4.5.3", "Error: too many recipients");
    return false;
  }
  if (g && strcmp(domain, g->domain) != 0) {
    session__reject_rcpt(s, path, 452, "4.5.3",
                         "<%s>: one destination per transaction: send "
                         "recipients at %s in a new transaction",
                         path, domain);
    return false;
  }
  /* The MX went away after accepting some: the message can only be deferred now. */
  if (g && g->state == LEG_FAILED && g->naccepted > 0) {
    session__reject_rcpt(s, path, 451, "4.4.2",
                         "<%s>: connection to %s lost, try again later", path,
                         g->domain);
    return false;
  }
  return true;
}

/* The MX's own reply to DATA, verbatim: its 354 starts the data phase; a refusal (or
 * the reason there is no MX transaction any more) leaves the transaction in RCPT. */
static void smtp_data_start(struct session *s) {
  struct session_leg *g = s->tx.nlegs ? s->tx.legs[0] : NULL;
  if (!g) { /* not reached: a recipient was accepted, so its leg is there */
    session__reply(s, 451, "4.3.0", "Error: no destination, try again later");
    session__set_state(s, SESSION_RCPT);
    return;
  }
  const struct leg_reply *r = session__leg_outcome(g);
  if (g->state == LEG_DATA) {
    session__write(s, g->final.wire, strlen(g->final.wire));
    session__txn_begin_data(s);
    return;
  }
  if (r->code && r->wire)
    session__write(s, r->wire, strlen(r->wire));
  else
    session__reply(s, 451, "4.4.2", "connection to %s lost, try again later",
                   g->domain);
  if (s->state == SESSION_CLOSED)
    return; /* the write failed: the transaction is gone */
  session__leg_rearm(g);
  session__set_state(s, SESSION_RCPT);
}

const struct session_proto session__smtp_proto = {
    .name = "ESMTP",
    .hello_verbs = 1u << SMTP_VERB_HELO | 1u << SMTP_VERB_EHLO,
    .hello_hint = "",
    .with_utf8 = "UTF8SMTP",
    .serial_rcpts = true,
    .one_destination = true,
    .keep_mx = true,
    .count_mx = false,
    .admit = smtp_admit,
    .data_start = smtp_data_start,
    .reply_per_rcpt = false,
};

/* ---- LMTP ---------------------------------------------------------------------------- */

static bool lmtp_admit(struct session *s, const char *path, const char *domain) {
  const struct config *cfg = s->rt->cfg;
  if (s->tx.nslots >= cfg->lmtp_max_recipients) {
    session__reply(s, 452, "4.5.3", "<%s>: too many recipients in one transaction",
                   path);
    return false;
  }
  if (session__txn_leg(s, domain))
    return true;
  if (s->tx.nlegs >= cfg->lmtp_max_destinations) {
    session__reply(s, 452, "4.5.3",
                   "<%s>: too many destinations in one transaction: send %s in a "
                   "new one",
                   path, domain);
    return false;
  }
  if (s->ctx && s->ctx->mx_legs >= cfg->outbound_max_connections) {
    log_msg(LOG_WARNING, s->id, "outbound.max_connections (%zu) reached: %s deferred",
            cfg->outbound_max_connections, domain);
    session__reply(s, 452, "4.5.3",
                   "<%s>: too many MX connections open: send it again later", path);
    return false;
  }
  return true;
}

/* Every leg answered DATA: the MTA may send the message; a leg that refused gives its
 * recipients that refusal after the dot. */
static void lmtp_data_start(struct session *s) {
  session__reply(s, 354, "", "End data with <CR><LF>.<CR><LF>");
  session__txn_begin_data(s);
}

const struct session_proto session__lmtp_proto = {
    .name = "LMTP",
    .hello_verbs = 1u << SMTP_VERB_LHLO,
    .hello_hint = " (this is an LMTP server: use LHLO)",
    .with_utf8 = NULL,
    .serial_rcpts = false,
    .one_destination = false,
    .keep_mx = false,
    .count_mx = true,
    .admit = lmtp_admit,
    .data_start = lmtp_data_start,
    .reply_per_rcpt = true,
};
