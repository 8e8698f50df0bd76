/* A transaction: its recipients in command order (a slot each), one leg per
 * destination, routed and connected in parallel, the message streamed to every leg at
 * once, and the replies after the final dot. SMTP and LMTP run the same code; where
 * they differ (how many destinations, the reply to DATA, one reply after the dot or
 * one per recipient) the session's protocol column says (session_proto.c).
 *
 * Leg callbacks only record results here (session__txn_rcpt_done,
 * session__txn_leg_settled); session__txn_kick(), the last thing every leg callback
 * does, writes what became due and runs the session on. So a leg is never freed while
 * one of its own functions is still running. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/inbound/session_internal.h"

bool session__txn_pending(const struct session *s) {
  return s->tx.flushed < s->tx.nslots;
}

static int slot_add(struct session *s, const char *addr, const char *params,
                    struct session_leg *g) {
  struct session_fanout *tx = &s->tx;
  if (tx->nslots == tx->cap_slots) {
    size_t cap = tx->cap_slots ? tx->cap_slots * 2 : 16;
    struct txn_slot *grown = realloc(tx->slots, cap * sizeof *grown);
    if (!grown)
      return SP_E_NOMEM;
    tx->slots = grown;
    tx->cap_slots = cap;
  }
  struct txn_slot *slot = &tx->slots[tx->nslots];
  memset(slot, 0, sizeof *slot);
  if (addr && (!(slot->addr = strdup(addr)) || !(slot->params = strdup(params)))) {
    free(slot->addr);
    return SP_E_NOMEM;
  }
  slot->leg = g;
  return (int)tx->nslots++;
}

bool session__txn_queue_reply(struct session *s, const char *wire, size_t len) {
  if (!session__txn_pending(s) || s->state == SESSION_CLOSED)
    return false;
  int idx = slot_add(s, NULL, NULL, NULL);
  if (idx < 0)
    return false; /* out of memory: written now, out of order, rather than lost */
  struct txn_slot *slot = &s->tx.slots[idx];
  slot->resolved = true;
  slot->reply.wire = strndup(wire, len);
  slot->reply.code = atoi(wire);
  return slot->reply.wire != NULL;
}

struct session_leg *session__txn_leg(const struct session *s, const char *domain) {
  for (size_t i = 0; i < s->tx.nlegs; i++)
    if (strcmp(s->tx.legs[i]->domain, domain) == 0)
      return s->tx.legs[i];
  return NULL;
}

/* one_destination: a destination that accepted nobody and has no MX transaction open
 * (no route, no connection, MAIL refused), with every reply in, is let go (its MX
 * connection kept), so that the next RCPT may choose the destination afresh. */
static void txn_drop_refused_leg(struct session *s) {
  struct session_fanout *tx = &s->tx;
  if (!s->proto->one_destination || tx->nlegs != 1 || session__txn_pending(s))
    return;
  struct session_leg *g = tx->legs[0];
  if (g->naccepted > 0 || g->nanswered < g->ntodo || g->in_txn || g->mail_pending)
    return;
  for (size_t i = 0; i < tx->nslots; i++)
    if (tx->slots[i].leg == g)
      tx->slots[i].leg = NULL;
  tx->nlegs = 0;
  session__leg_release(g, false);
}

/* Writes the RCPT replies that are due: every one whose predecessors were written. */
static void txn_flush(struct session *s) {
  struct session_fanout *tx = &s->tx;
  while (tx->flushed < tx->nslots && tx->slots[tx->flushed].resolved) {
    struct txn_slot *slot = &tx->slots[tx->flushed++];
    char *wire = slot->reply.wire;
    slot->reply.wire = NULL;
    session__leg_reply_free(&slot->reply);
    if (slot->accepted) {
      if (++tx->naccepted == 1)
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
  txn_drop_refused_leg(s);
}

static const char *first_line(const struct leg_reply *r, char *out, size_t cap) {
  const char *w = r->wire ? r->wire : "";
  snprintf(out, cap, "%.*s", (int)strcspn(w, "\r\n"), w);
  return out;
}

static void txn_log_slot(struct session *s, const struct txn_slot *slot,
                         const struct leg_reply *r) {
  char line[600];
  struct session_leg *g = slot->leg;
  session__log_delivery(s, g ? g->up : NULL, g ? g->policy : NULL, slot->addr, r->code,
                        r->enh, first_line(r, line, sizeof line));
}

void session__txn_rcpt_done(struct session *s, size_t idx, const struct leg_reply *r,
                            bool accepted) {
  struct txn_slot *slot = &s->tx.slots[idx];
  slot->resolved = true;
  slot->accepted = accepted;
  slot->reply.code = r->code;
  snprintf(slot->reply.enh, sizeof slot->reply.enh, "%s", r->enh);
  slot->reply.wire = session__leg_reply_for(r, slot->addr);
  if (!slot->reply.wire || !slot->reply.wire[0]) {
    free(slot->reply.wire);
    slot->reply.wire = strdup("451 4.3.0 Error: out of memory\r\n");
    slot->reply.code = 451;
    snprintf(slot->reply.enh, sizeof slot->reply.enh, "4.3.0");
  }
  if (!accepted)
    txn_log_slot(s, slot, &slot->reply);
}

void session__txn_rcpt(struct session *s, const char *path, const char *params,
                       const char *domain) {
  struct session_fanout *tx = &s->tx;
  if (!s->proto->admit(s, path, domain))
    return;
  struct session_leg *g = session__txn_leg(s, domain);
  if (!g) {
    struct session_leg **grown = realloc(tx->legs, (tx->nlegs + 1) * sizeof *grown);
    if (grown)
      tx->legs = grown;
    if (!grown || !(g = session__leg_new(s, domain))) {
      session__reply(s, 451, "4.3.0", "<%s>: out of memory", path);
      return;
    }
    tx->legs[tx->nlegs++] = g;
  }
  int idx = slot_add(s, path, params, g);
  if (idx < 0 || session__leg_add(g, (size_t)idx) < 0) {
    if (idx >= 0) {
      struct txn_slot *slot = &tx->slots[idx];
      slot->resolved = true;
      slot->reply.wire = strdup("451 4.3.0 Error: out of memory\r\n");
      slot->reply.code = 451;
    } else {
      session__reply(s, 451, "4.3.0", "<%s>: out of memory", path);
    }
  }
  txn_flush(s);
}

/* ---- DATA ---------------------------------------------------------------------------- */

static bool txn_streaming(const struct session *s) {
  for (size_t i = 0; i < s->tx.nlegs; i++)
    if (s->tx.legs[i]->state == LEG_DATA)
      return true;
  return false;
}

bool session__txn_data_busy(const struct session *s) {
  for (size_t i = 0; i < s->tx.nlegs; i++)
    if (session__leg_busy(s->tx.legs[i]))
      return true;
  return false;
}

/* The leg's only accepted recipient, for its trace header (no other leg's recipients
 * are named to a destination). */
static const char *leg_single_rcpt(const struct session *s,
                                   const struct session_leg *g) {
  if (g->naccepted != 1)
    return NULL;
  for (size_t i = 0; i < s->tx.nslots; i++)
    if (s->tx.slots[i].leg == g && s->tx.slots[i].accepted)
      return s->tx.slots[i].addr;
  return NULL;
}

void session__txn_begin_data(struct session *s) {
  if (s->state == SESSION_CLOSED)
    return;
  smtp_data_init(&s->scan, s->rt->cfg->bare_newline == CONFIG_BARE_NORMALIZE
                               ? SMTP_DATA_NORMALIZE
                               : SMTP_DATA_REFUSE);
  for (size_t i = 0; i < s->tx.nlegs; i++) {
    struct session_leg *g = s->tx.legs[i];
    if (g->state != LEG_DATA)
      continue;
    char hdr[1024];
    session__received_header(s, leg_single_rcpt(s, g), hdr, sizeof hdr);
    session__leg_body(g, hdr, strlen(hdr));
  }
  session__set_state(s, txn_streaming(s) ? SESSION_DATA : SESSION_DATA_DISCARD);
}

void session__txn_data(struct session *s) {
  s->tx.nwait = 0;
  for (size_t i = 0; i < s->tx.nlegs; i++)
    if (session__leg_data(s->tx.legs[i]))
      s->tx.nwait++;
  session__set_state(s, SESSION_DATA_WAIT);
  if (s->tx.nwait == 0)
    s->proto->data_start(s);
}

/* The reply a recipient (addr, NULL: all of them) of leg g gets at the end; fallback
 * (freed by the caller) is filled when the leg has none. */
static const struct leg_reply *
txn_outcome(const struct session_leg *g, const char *addr, struct leg_reply *fallback) {
  const struct leg_reply *r = g ? session__leg_outcome(g) : NULL;
  if (r && r->code && r->wire)
    return r;
  session__leg_reply_text(fallback, 451, "4.3.0",
                          "%s%s%sdelivery state unknown, try again later",
                          addr ? "<" : "", addr ? addr : "", addr ? ">: " : "");
  return fallback;
}

/* Every leg's outcome is known: the replies after the dot, the delivery lines, and
 * the transaction is over. */
static void txn_finish(struct session *s) {
  bool written = false;
  for (size_t i = 0; i < s->tx.nslots; i++) {
    struct txn_slot *slot = &s->tx.slots[i];
    if (!slot->accepted)
      continue;
    struct leg_reply fallback = {0};
    const struct leg_reply *r =
        txn_outcome(slot->leg, s->proto->reply_per_rcpt ? slot->addr : NULL, &fallback);
    if (s->proto->reply_per_rcpt || !written)
      session__write(s, r->wire, strlen(r->wire));
    written = true;
    txn_log_slot(s, slot, r);
    session__leg_reply_free(&fallback);
  }
  if (s->state == SESSION_CLOSED)
    return; /* a write failed: the transaction is gone */
  session__txn_reset(s);
  session__set_state(s, SESSION_IDLE);
}

static void txn_data_end(struct session *s) {
  session__log_queued(s, s->tx.naccepted);
  s->tx.nwait = 0;
  for (size_t i = 0; i < s->tx.nlegs; i++)
    if (session__leg_end(s->tx.legs[i]))
      s->tx.nwait++;
  session__set_state(s, SESSION_DATA_DONE);
  if (s->tx.nwait == 0)
    txn_finish(s);
}

/* Stops passing the message on: every leg still taking it is reset without the final
 * dot, so its MX discards the partial message; its recipients get code/enh/text. */
static void txn_abort_data(struct session *s, int code, const char *enh,
                           const char *text) {
  for (size_t i = 0; i < s->tx.nlegs; i++)
    if (s->tx.legs[i]->state == LEG_DATA)
      session__leg_abort(s->tx.legs[i], code, enh, text);
  session__set_state(s, SESSION_DATA_DISCARD);
}

/* Scans the next chunk of client data into out (cap: SESSION_DATA_OUT) and judges it:
 * *fault is set (code, enhanced code, text) when the message must be refused. The
 * caller consumes the bytes used (the return value) once it has passed out on. */
static size_t txn_data_scan(struct session *s, char *out, size_t *out_len,
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

bool session__txn_data_step(struct session *s) {
  if (s->in.len == 0)
    return false;
  if (s->state == SESSION_DATA && session__txn_data_busy(s))
    return false;
  char out[SESSION_DATA_OUT];
  size_t out_len;
  const struct session_data_fault *fault;
  size_t used = txn_data_scan(s, out, &out_len, &fault);
  if (fault) {
    txn_abort_data(s, fault->code, fault->enh, fault->text);
  } else if (s->state == SESSION_DATA) {
    /* A leg that fails here is closed without the final dot; the others go on. */
    for (size_t i = 0; i < s->tx.nlegs; i++)
      session__leg_body(s->tx.legs[i], out, out_len);
    if (!txn_streaming(s))
      session__set_state(s, SESSION_DATA_DISCARD);
  }
  buf_consume(&s->in, used);
  if (s->scan.done)
    txn_data_end(s);
  return true;
}

/* ---- events from legs ---------------------------------------------------------------- */

void session__txn_leg_settled(struct session *s, struct session_leg *g) {
  (void)g;
  if (s->tx.nwait > 0)
    s->tx.nwait--;
}

void session__txn_kick(struct session *s) {
  if (s->state == SESSION_CLOSED)
    return;
  txn_flush(s);
  if (s->state == SESSION_CLOSED)
    return;
  if (s->state == SESSION_DATA && !txn_streaming(s))
    session__set_state(s, SESSION_DATA_DISCARD);
  if (s->state == SESSION_DATA_WAIT && s->tx.nwait == 0)
    s->proto->data_start(s);
  else if (s->state == SESSION_DATA_DONE && s->tx.nwait == 0)
    txn_finish(s);
  session__process(s);
}

void session__txn_end(struct session *s, bool abort) {
  struct session_fanout *tx = &s->tx;
  for (size_t i = 0; i < tx->nlegs; i++)
    session__leg_release(tx->legs[i], abort);
  for (size_t i = 0; i < tx->nslots; i++) {
    free(tx->slots[i].addr);
    free(tx->slots[i].params);
    session__leg_reply_free(&tx->slots[i].reply);
  }
  free(tx->legs);
  free(tx->slots);
  memset(tx, 0, sizeof *tx);
}
