/* An LMTP transaction (RFC 2033): recipients for any number of domains, one leg per
 * domain, each routed and connected in parallel; RCPT replies in command order; the
 * message streamed to every leg at once; after the final dot one reply per accepted
 * recipient, in RCPT order, carrying its own destination's verdict.
 *
 * Leg callbacks only record results here (session__lmtp_rcpt_done,
 * session__lmtp_leg_settled); session__lmtp_kick(), the last thing every leg callback
 * does, writes what became due and runs the session on. So a leg is never freed while
 * one of its own functions is still running. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/inbound/session_internal.h"

bool session__lmtp_pending(const struct session *s) {
  return s->lm.flushed < s->lm.nslots;
}

static int slot_add(struct session *s, const char *addr, const char *params,
                    struct session_leg *g) {
  struct session_lmtp *lm = &s->lm;
  if (lm->nslots == lm->cap_slots) {
    size_t cap = lm->cap_slots ? lm->cap_slots * 2 : 16;
    struct lmtp_slot *grown = realloc(lm->slots, cap * sizeof *grown);
    if (!grown)
      return SP_E_NOMEM;
    lm->slots = grown;
    lm->cap_slots = cap;
  }
  struct lmtp_slot *slot = &lm->slots[lm->nslots];
  memset(slot, 0, sizeof *slot);
  if (addr && (!(slot->addr = strdup(addr)) || !(slot->params = strdup(params)))) {
    free(slot->addr);
    return SP_E_NOMEM;
  }
  slot->leg = g;
  return (int)lm->nslots++;
}

bool session__lmtp_queue_reply(struct session *s, const char *wire, size_t len) {
  if (!session__lmtp_pending(s) || s->state == SESSION_CLOSED)
    return false;
  int idx = slot_add(s, NULL, NULL, NULL);
  if (idx < 0)
    return false; /* out of memory: written now, out of order, rather than lost */
  struct lmtp_slot *slot = &s->lm.slots[idx];
  slot->resolved = true;
  slot->reply.wire = strndup(wire, len);
  slot->reply.code = atoi(wire);
  return slot->reply.wire != NULL;
}

/* Writes the RCPT replies that are due: every one whose predecessors were written. */
static void lmtp_flush(struct session *s) {
  struct session_lmtp *lm = &s->lm;
  while (lm->flushed < lm->nslots && lm->slots[lm->flushed].resolved) {
    struct lmtp_slot *slot = &lm->slots[lm->flushed++];
    char *wire = slot->reply.wire;
    slot->reply.wire = NULL;
    session__leg_reply_free(&slot->reply);
    if (slot->accepted) {
      if (++lm->naccepted == 1)
        session__log_received(s);
      if (s->state == SESSION_MAIL)
        session__set_state(s, SESSION_RCPT);
    }
    if (wire)
      session__write(s, wire, strlen(wire));
    free(wire);
    if (s->state == SESSION_CLOSED)
      return; /* the write failed: the transaction is gone */
  }
}

static const char *first_line(const struct leg_reply *r, char *out, size_t cap) {
  const char *w = r->wire ? r->wire : "";
  snprintf(out, cap, "%.*s", (int)strcspn(w, "\r\n"), w);
  return out;
}

static void log_slot(struct session *s, const struct lmtp_slot *slot,
                     const struct leg_reply *r) {
  char line[600];
  struct session_leg *g = slot->leg;
  session__log_delivery(s, g ? g->up : NULL, g ? g->policy : NULL, slot->addr, r->code,
                        r->enh, first_line(r, line, sizeof line));
}

void session__lmtp_rcpt_done(struct session *s, size_t idx, const struct leg_reply *r,
                             bool accepted) {
  struct lmtp_slot *slot = &s->lm.slots[idx];
  slot->resolved = true;
  slot->accepted = accepted;
  slot->reply.code = r->code;
  snprintf(slot->reply.enh, sizeof slot->reply.enh, "%s", r->enh);
  slot->reply.wire = strdup(r->wire ? r->wire : "");
  if (!slot->reply.wire || !slot->reply.wire[0]) {
    free(slot->reply.wire);
    slot->reply.wire = strdup("451 4.3.0 Error: out of memory\r\n");
  }
  if (!accepted)
    log_slot(s, slot, r);
}

static void lmtp_rcpt(struct session *s, const char *path, const char *params,
                      const char *domain) {
  struct session_lmtp *lm = &s->lm;
  const struct config *cfg = s->rt->cfg;
  struct session_leg *g = NULL;
  if (lm->nslots >= cfg->lmtp_max_recipients) {
    session__reply(s, 452, "4.5.3", "<%s>: too many recipients in one transaction",
                   path);
    return;
  }
  for (size_t i = 0; i < lm->nlegs && !g; i++)
    if (strcmp(lm->legs[i]->domain, domain) == 0)
      g = lm->legs[i];
  if (!g) {
    if (lm->nlegs >= cfg->lmtp_max_destinations) {
      session__reply(s, 452, "4.5.3",
                     "<%s>: too many destinations in one transaction: send %s in a "
                     "new one",
                     path, domain);
      return;
    }
    if (s->l && s->l->lmtp_upstreams >= cfg->outbound_max_connections) {
      log_msg(LOG_WARNING, s->id, "outbound.max_connections (%zu) reached: %s deferred",
              cfg->outbound_max_connections, domain);
      session__reply(s, 452, "4.5.3",
                     "<%s>: too many MX connections open: send it again later", path);
      return;
    }
    struct session_leg **grown = realloc(lm->legs, (lm->nlegs + 1) * sizeof *grown);
    if (grown)
      lm->legs = grown;
    if (!grown || !(g = session__leg_new(s, domain))) {
      session__reply(s, 451, "4.3.0", "<%s>: out of memory", path);
      return;
    }
    lm->legs[lm->nlegs++] = g;
  }
  int idx = slot_add(s, path, params, g);
  if (idx < 0 || session__leg_add(g, (size_t)idx) < 0) {
    if (idx >= 0) {
      struct lmtp_slot *slot = &lm->slots[idx];
      slot->resolved = true;
      slot->reply.wire = strdup("451 4.3.0 Error: out of memory\r\n");
      slot->reply.code = 451;
    } else {
      session__reply(s, 451, "4.3.0", "<%s>: out of memory", path);
    }
  }
  lmtp_flush(s);
}

/* ---- DATA ---------------------------------------------------------------------------- */

static bool lmtp_streaming(const struct session *s) {
  for (size_t i = 0; i < s->lm.nlegs; i++)
    if (s->lm.legs[i]->state == LEG_DATA)
      return true;
  return false;
}

static bool lmtp_data_busy(const struct session *s) {
  for (size_t i = 0; i < s->lm.nlegs; i++)
    if (session__leg_busy(s->lm.legs[i]))
      return true;
  return false;
}

/* The leg's only accepted recipient, for its trace header (no other leg's recipients
 * are named to a destination). */
static const char *leg_single_rcpt(const struct session *s,
                                   const struct session_leg *g) {
  if (g->naccepted != 1)
    return NULL;
  for (size_t i = 0; i < s->lm.nslots; i++)
    if (s->lm.slots[i].leg == g && s->lm.slots[i].accepted)
      return s->lm.slots[i].addr;
  return NULL;
}

/* Every leg answered DATA: the MTA may send the message. */
static void lmtp_start_data(struct session *s) {
  session__reply(s, 354, "", "End data with <CR><LF>.<CR><LF>");
  if (s->state == SESSION_CLOSED)
    return;
  smtp_data_init(&s->scan, s->rt->cfg->bare_newline == CONFIG_BARE_NORMALIZE
                               ? SMTP_DATA_NORMALIZE
                               : SMTP_DATA_REFUSE);
  for (size_t i = 0; i < s->lm.nlegs; i++) {
    struct session_leg *g = s->lm.legs[i];
    if (g->state != LEG_DATA)
      continue;
    char hdr[1024];
    session__received_header(s, leg_single_rcpt(s, g), hdr, sizeof hdr);
    session__leg_body(g, hdr, strlen(hdr));
  }
  session__set_state(s, lmtp_streaming(s) ? SESSION_DATA : SESSION_DATA_DISCARD);
}

static void lmtp_data(struct session *s) {
  s->lm.nwait = 0;
  for (size_t i = 0; i < s->lm.nlegs; i++)
    if (session__leg_data(s->lm.legs[i]))
      s->lm.nwait++;
  session__set_state(s, SESSION_DATA_WAIT);
  if (s->lm.nwait == 0)
    lmtp_start_data(s);
}

/* One reply per accepted recipient, in RCPT order, each its destination's verdict. */
static void lmtp_finish(struct session *s) {
  for (size_t i = 0; i < s->lm.nslots; i++) {
    struct lmtp_slot *slot = &s->lm.slots[i];
    if (!slot->accepted)
      continue;
    const struct leg_reply *r = session__leg_outcome(slot->leg);
    struct leg_reply fallback = {0};
    if (!r->code || !r->wire) {
      session__leg_reply_text(&fallback, 451, "4.3.0",
                              "<%s>: delivery state unknown, try again later",
                              slot->addr);
      r = &fallback;
    }
    log_slot(s, slot, r);
    session__write(s, r->wire, strlen(r->wire));
    session__leg_reply_free(&fallback);
    if (s->state == SESSION_CLOSED)
      return; /* the write failed: the transaction is gone */
  }
  session__lmtp_reset(s, false);
  session__txn_reset(s);
  session__set_state(s, SESSION_IDLE);
}

static void lmtp_data_end(struct session *s) {
  session__log_queued(s, s->lm.naccepted);
  s->lm.nwait = 0;
  for (size_t i = 0; i < s->lm.nlegs; i++)
    if (session__leg_end(s->lm.legs[i]))
      s->lm.nwait++;
  session__set_state(s, SESSION_DATA_DONE);
  if (s->lm.nwait == 0)
    lmtp_finish(s);
}

static void lmtp_abort_all(struct session *s, int code, const char *enh,
                           const char *text) {
  for (size_t i = 0; i < s->lm.nlegs; i++)
    if (s->lm.legs[i]->state == LEG_DATA)
      session__leg_abort(s->lm.legs[i], code, enh, text);
  session__set_state(s, SESSION_DATA_DISCARD);
}

static bool lmtp_data_step(struct session *s) {
  if (s->in.len == 0)
    return false;
  if (s->state == SESSION_DATA && lmtp_data_busy(s))
    return false;
  char out[SESSION_DATA_OUT];
  size_t out_len;
  const struct session_data_fault *fault;
  size_t used = session__data_scan(s, out, &out_len, &fault);
  if (fault) {
    lmtp_abort_all(s, fault->code, fault->enh, fault->text);
  } else if (s->state == SESSION_DATA) {
    /* A leg that fails here is closed without the final dot; the others go on. */
    for (size_t i = 0; i < s->lm.nlegs; i++)
      session__leg_body(s->lm.legs[i], out, out_len);
    if (!lmtp_streaming(s))
      session__set_state(s, SESSION_DATA_DISCARD);
  }
  buf_consume(&s->in, used);
  if (s->scan.done)
    lmtp_data_end(s);
  return true;
}

/* ---- events from legs ---------------------------------------------------------------- */

void session__lmtp_leg_settled(struct session *s, struct session_leg *g) {
  (void)g;
  if (s->lm.nwait > 0)
    s->lm.nwait--;
}

void session__lmtp_kick(struct session *s) {
  if (s->state == SESSION_CLOSED)
    return;
  lmtp_flush(s);
  if (s->state == SESSION_CLOSED)
    return;
  if (s->state == SESSION_DATA && !lmtp_streaming(s))
    session__set_state(s, SESSION_DATA_DISCARD);
  if (s->state == SESSION_DATA_WAIT && s->lm.nwait == 0)
    lmtp_start_data(s);
  else if (s->state == SESSION_DATA_DONE && s->lm.nwait == 0)
    lmtp_finish(s);
  session__process(s);
}

void session__lmtp_reset(struct session *s, bool abort) {
  struct session_lmtp *lm = &s->lm;
  for (size_t i = 0; i < lm->nlegs; i++)
    session__leg_release(lm->legs[i], abort);
  for (size_t i = 0; i < lm->nslots; i++) {
    free(lm->slots[i].addr);
    free(lm->slots[i].params);
    session__leg_reply_free(&lm->slots[i].reply);
  }
  free(lm->legs);
  free(lm->slots);
  memset(lm, 0, sizeof *lm);
}

const struct session_proto session__lmtp_proto = {
    .name = "LMTP",
    .hello_verbs = 1u << SMTP_VERB_LHLO,
    .hello_hint = " (this is an LMTP server: use LHLO)",
    .with_utf8 = NULL,
    .rcpt = lmtp_rcpt,
    .data = lmtp_data,
    .data_step = lmtp_data_step,
    .data_busy = lmtp_data_busy,
};
