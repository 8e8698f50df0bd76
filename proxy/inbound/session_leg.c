/* One destination of a transaction (SMTP or LMTP): routing its domain, MAIL and the
 * RCPTs of its recipients through its own MX connection, its DATA and final dot. */
#include "proxy/inbound/session_leg.h"
#include "proxy/core/obj.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/inbound/session_internal.h"

#define LEG_MAGIC 0x4C454721u /* "LEG!" */
/* RCPTs in flight at once: with MAIL it stays under the upstream's command queue. */
#define LEG_WINDOW 6

static const char *const leg_state_names[] = {
#define LEG_STATE_NAME(name, ...) #name,
    LEG_STATE_MAP(LEG_STATE_NAME)
#undef LEG_STATE_NAME
};

static void leg_set_state(struct session_leg *g, enum leg_state st) {
  if (g->state != st)
    log_msg(LOG_DEBUG, g->s->id, "leg %s: %s -> %s", g->domain,
            leg_state_names[g->state], leg_state_names[st]);
  g->state = st;
}

static struct session_leg *leg_from(void *arg) {
  struct session_leg *g;
  CAST_OBJ_NOTNULL(g, arg, LEG_MAGIC);
  return g;
}

/* ---- replies kept as text ---------------------------------------------------------- */

void session__leg_reply_free(struct leg_reply *lr) {
  free(lr->wire);
  free(lr->rcpt_text);
  memset(lr, 0, sizeof *lr);
}

/* The reply built from our own text; NUL-terminated in wire. */
static void reply_build(char *wire, size_t cap, int code, const char *enh,
                        const char *text) {
  if (smtp_reply_build(wire, cap, code, enh, text) < 0)
    smtp_reply_build(wire, cap, code, enh, "(reply text not representable)");
}

char *session__leg_reply_for(const struct leg_reply *lr, const char *addr) {
  char text[SMTP_REPLY_LINE_MAX], wire[SMTP_REPLY_LINE_MAX + 8];
  if (!lr->rcpt_text || !addr)
    return strdup(lr->wire ? lr->wire : "");
  snprintf(text, sizeof text, "<%s>: %s", addr, lr->rcpt_text);
  reply_build(wire, sizeof wire, lr->code, lr->enh, text);
  return strdup(wire);
}

static void leg_reply_wire(struct leg_reply *lr, int code, const char *enh,
                           const char *wire) {
  session__leg_reply_free(lr);
  lr->code = code;
  snprintf(lr->enh, sizeof lr->enh, "%s", enh ? enh : "");
  lr->wire = strdup(wire);
  if (!lr->wire) /* a reply is owed all the same */
    lr->wire = strdup("");
}

/* RFC 2034: after EHLO every reply of ours carries an enhanced status code, also an
 * MX's reply that has none (an MX without ENHANCEDSTATUSCODES): "X.0.0", X its
 * code's class, goes before each line's text (not for a 3xx, which has none). */
void session__leg_reply_set(struct leg_reply *lr, const struct smtp_reply *r) {
  char wire[SMTP_REPLY_MAX_LINES * (SMTP_REPLY_LINE_MAX + 16)], enh[8] = "";
  int cls = r->code / 100;
  if (!r->enhanced[0] && (cls == 2 || cls == 4 || cls == 5))
    snprintf(enh, sizeof enh, "%d.0.0", cls);
  if (smtp_reply_format_enhanced(r, 0, enh, wire, sizeof wire) < 0)
    snprintf(wire, sizeof wire, "%d %s\r\n", r->code / 100 == 2 ? 250 : r->code,
             "(reply not representable)");
  leg_reply_wire(lr, r->code, enh[0] ? enh : r->enhanced, wire);
}

static void leg_reply_vtext(struct leg_reply *lr, bool names_rcpt, int code,
                            const char *enh, const char *fmt, va_list ap) {
  char text[1024], wire[1200];
  vsnprintf(text, sizeof text, fmt, ap);
  reply_build(wire, sizeof wire, code, enh, text);
  leg_reply_wire(lr, code, enh, wire);
  if (names_rcpt)
    lr->rcpt_text = strdup(text); /* without it, the reply just names nobody */
}

void session__leg_reply_text(struct leg_reply *lr, int code, const char *enh,
                             const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  leg_reply_vtext(lr, false, code, enh, fmt, ap);
  va_end(ap);
}

void session__leg_reply_rcpt_text(struct leg_reply *lr, int code, const char *enh,
                                  const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  leg_reply_vtext(lr, true, code, enh, fmt, ap);
  va_end(ap);
}

/* ---- life cycle ---------------------------------------------------------------------- */

static void on_leg_ready(void *arg);
static void on_leg_failed(void *arg, const char *reasons, bool policy);
static void on_leg_reply(void *arg, const struct smtp_reply *r);
static void on_leg_drain(void *arg);
static void on_leg_lost(void *arg, const char *reason);

static const struct upstream_events leg_up_events = {
    .on_ready = on_leg_ready,
    .on_failed = on_leg_failed,
    .on_reply = on_leg_reply,
    .on_drain = on_leg_drain,
    .on_lost = on_leg_lost,
};

static void leg_count(struct session_leg *g, bool on) {
  struct loop_ctx *ctx = g->s->ctx;
  if (!ctx || g->counted == on || !g->s->proto->count_mx)
    return;
  g->counted = on;
  if (on)
    ctx->mx_legs++;
  else
    ctx->mx_legs--;
}

/* Lets go of the MX connection: to the pool when idle between transactions (no MAIL
 * open there), closed politely otherwise; reset when a message was on its way, so the
 * MX discards it (no final dot was sent). */
static void leg_drop_upstream(struct session_leg *g, bool reset) {
  if (!g->up)
    return;
  session__upstream_release(g->s, g->up, g->in_txn || g->mail_pending, reset);
  g->up = NULL;
  g->in_txn = false;
  leg_count(g, false);
}

/* Every recipient not answered yet gets the failure reply; the leg stays FAILED. */
static void leg_fail_all(struct session_leg *g) {
  leg_set_state(g, LEG_FAILED);
  if (!g->up)
    leg_count(g, false);
  size_t from = g->nanswered;
  g->nanswered = g->nsent = g->ntodo;
  for (size_t i = from; i < g->ntodo; i++)
    session__txn_rcpt_done(g->s, g->todo[i], &g->fail, false);
}

static void on_leg_route(void *arg, struct route *route) {
  struct session_leg *g = leg_from(arg);
  g->rq = NULL;
  if (route)
    snprintf(g->policy, sizeof g->policy, "%s", route->policy);
  if (!route) {
    session__leg_reply_text(&g->fail, 451, "4.3.0", "%s: out of memory", g->domain);
  } else if (route->status != 0) {
    session__leg_reply_rcpt_text(&g->fail, route->reply_code, route->reply_enh, "%s",
                                 route->reply_text);
    route_free(route);
  } else {
    g->up = upstream_open(g->s->rt, route, g->domain, g->s->id, &leg_up_events, g);
    if (g->up) {
      leg_count(g, true);
      return;
    }
    session__leg_reply_text(&g->fail, 451, "4.3.0", "%s: out of memory", g->domain);
  }
  leg_fail_all(g);
  session__txn_kick(g->s);
}

struct session_leg *session__leg_new(struct session *s, const char *domain) {
  struct session_leg *g = calloc(1, sizeof *g);
  if (!g)
    return NULL;
  g->magic = LEG_MAGIC;
  g->s = s;
  snprintf(g->domain, sizeof g->domain, "%s", domain);
  leg_count(g, true); /* a connection slot from now on, routing included */
  /* This session's own connection from its last transaction first (SMTP), then the
   * pool's. */
  g->up = session__mx_take(s, domain, &leg_up_events, g, &g->skip);
  if (!g->up)
    g->up = session__upstream_pooled(s, domain, &leg_up_events, g);
  if (g->up) {
    leg_set_state(g, LEG_READY);
    return g;
  }
  g->rq = router_route(s->rt, domain, on_leg_route, g);
  if (!g->rq) {
    leg_count(g, false);
    free(g);
    return NULL;
  }
  return g;
}

void session__leg_release(struct session_leg *g, bool abort) {
  if (!g)
    return;
  router_cancel(g->rq);
  g->rq = NULL;
  bool reset = abort && (g->in_txn || g->state == LEG_DATA ||
                         g->state == LEG_DOT_WAIT || g->state == LEG_DATA_WAIT);
  /* Nothing in flight: the next transaction's MAIL can follow a RSET at once. */
  bool quiet =
      !g->mail_pending && g->nanswered == g->nsent &&
      (g->state == LEG_READY || g->state == LEG_DONE || g->state == LEG_FAILED);
  if (g->up && !reset && quiet && g->s->proto->keep_mx &&
      g->s->state != SESSION_CLOSED) {
    session__mx_keep(g->s, g->up, g->in_txn, g->skip);
    g->up = NULL;
  }
  leg_drop_upstream(g, reset);
  leg_count(g, false); /* also when still routing */
  session__leg_reply_free(&g->fail);
  session__leg_reply_free(&g->final);
  free(g->todo);
  g->magic = 0;
  free(g);
}

/* ---- MAIL and RCPT ------------------------------------------------------------------- */

static void leg_lost(struct session_leg *g, const char *reason);

/* What the transaction needs of the MX and the proxy cannot make up for, passing the
 * message on as it comes: SMTPUTF8 (no downgrade) and 8BITMIME (RFC 6152 3: 8-bit
 * data to a 7-bit MX is converted or refused). True when the MX lacks it: every
 * recipient of the leg is refused. */
static bool leg_mx_lacks(struct session_leg *g) {
  const struct session *s = g->s;
  const struct {
    bool needed;
    unsigned cap;
    const char *enh, *name;
  } needs[] = {
      {s->txn.smtputf8, SMTP_CAP_SMTPUTF8, "5.6.7", "SMTPUTF8"},
      {s->txn.body_8bit, SMTP_CAP_8BITMIME, "5.6.3", "8BITMIME"},
  };
  unsigned caps = upstream_caps(g->up)->flags;
  for (size_t i = 0; i < sizeof needs / sizeof needs[0]; i++) {
    if (!needs[i].needed || (caps & needs[i].cap))
      continue;
    session__leg_reply_rcpt_text(&g->fail, 550, needs[i].enh, "%s does not support %s",
                                 upstream_relay(g->up), needs[i].name);
    leg_fail_all(g);
    return true;
  }
  return false;
}

/* Sends MAIL once, then RCPTs while the window allows. */
static void leg_pump(struct session_leg *g) {
  struct session *s = g->s;
  char line[SMTP_COMMAND_LINE_MAX];
  if (g->state != LEG_READY || !g->up)
    return;
  if (!g->mail_sent && g->nsent < g->ntodo) {
    if (leg_mx_lacks(g))
      return;
    session__mail_line(s, g->up, line, sizeof line);
    if (upstream_command(g->up, line) < 0) {
      leg_lost(g, "cannot queue MAIL");
      return;
    }
    g->mail_sent = g->mail_pending = true;
  }
  while (g->nsent < g->ntodo && g->nsent - g->nanswered < LEG_WINDOW) {
    const struct txn_slot *slot = &s->tx.slots[g->todo[g->nsent]];
    session__rcpt_line(g->up, slot->addr, slot->params, line, sizeof line);
    if (upstream_command(g->up, line) < 0) {
      leg_lost(g, "cannot queue RCPT");
      return;
    }
    g->nsent++;
  }
}

int session__leg_add(struct session_leg *g, size_t idx) {
  if (g->ntodo == g->cap_todo) {
    size_t cap = g->cap_todo ? g->cap_todo * 2 : 8;
    size_t *grown = realloc(g->todo, cap * sizeof *grown);
    if (!grown)
      return SP_E_NOMEM;
    g->todo = grown;
    g->cap_todo = cap;
  }
  g->todo[g->ntodo++] = idx;
  if (g->state == LEG_FAILED) {
    g->nsent = g->nanswered = g->ntodo;
    session__txn_rcpt_done(g->s, idx, &g->fail, false);
  } else {
    leg_pump(g);
  }
  return 0;
}

static void on_leg_ready(void *arg) {
  struct session_leg *g = leg_from(arg);
  leg_set_state(g, LEG_READY);
  leg_pump(g);
  session__txn_kick(g->s);
}

static void on_leg_failed(void *arg, const char *reasons, bool policy) {
  struct session_leg *g = leg_from(arg);
  char text[SMTP_REPLY_LINE_MAX - 16];
  const char *enh = route_no_mx(text, sizeof text, g->domain, policy, reasons);
  snprintf(g->policy, sizeof g->policy, "%s", upstream_policy(g->up));
  session__leg_reply_text(&g->fail, 451, enh, "%s", text);
  upstream_close(g->up, false);
  g->up = NULL;
  leg_count(g, false);
  leg_fail_all(g);
  session__txn_kick(g->s);
}

static void leg_on_rcpt_reply(struct session_leg *g, const struct smtp_reply *r) {
  size_t idx = g->todo[g->nanswered++];
  bool ok = !g->mail_failed && r->code / 100 == 2;
  struct leg_reply lr = {0};
  if (g->mail_failed)
    lr = g->fail; /* the MX refused our MAIL: that refusal is the answer */
  else
    session__leg_reply_set(&lr, r);
  if (ok)
    g->naccepted++;
  session__txn_rcpt_done(g->s, idx, &lr, ok);
  if (!g->mail_failed)
    session__leg_reply_free(&lr);
}

/* Records what the reply means for the leg; kicking the session is the caller's. */
static void leg_on_reply(struct session_leg *g, const struct smtp_reply *r) {
  struct session *s = g->s;
  if (g->skip > 0) { /* the RSET that ended the previous transaction */
    g->skip--;
    if (r->code / 100 != 2)
      leg_lost(g, "RSET refused");
    return;
  }
  if (g->mail_pending) {
    g->mail_pending = false;
    g->in_txn = r->code / 100 == 2;
    if (!g->in_txn) {
      g->mail_failed = true;
      session__leg_reply_set(&g->fail, r);
    }
    return;
  }
  switch (g->state) {
  case LEG_READY:
    if (g->nanswered >= g->nsent)
      return; /* nothing asked: not ours */
    leg_on_rcpt_reply(g, r);
    if (g->mail_failed && g->nanswered == g->nsent)
      leg_fail_all(g);
    else
      leg_pump(g);
    return;
  case LEG_DATA_WAIT:
    /* Kept either way: SMTP relays the MX's own 354, or its refusal. */
    session__leg_reply_set(&g->final, r);
    leg_set_state(g, r->code == 354 ? LEG_DATA : LEG_DONE);
    session__txn_leg_settled(s, g);
    return;
  case LEG_DOT_WAIT:
    session__leg_reply_set(&g->final, r);
    g->in_txn = false;
    leg_set_state(g, LEG_DONE);
    session__txn_leg_settled(s, g);
    return;
  default:
    return;
  }
}

static void on_leg_reply(void *arg, const struct smtp_reply *r) {
  struct session_leg *g = leg_from(arg);
  leg_on_reply(g, r);
  session__txn_kick(g->s);
}

static void on_leg_drain(void *arg) {
  struct session_leg *g = leg_from(arg);
  if (g->state == LEG_DATA)
    session__txn_kick(g->s);
}

/* The MX connection failed after it was ready: every recipient not yet answered gets
 * a 4xx; after DATA began, the leg's outcome is that 4xx (no final dot was sent, or
 * its verdict never came). */
static void leg_lost(struct session_leg *g, const char *reason) {
  char relay[UPSTREAM_RELAY_MAX];
  snprintf(relay, sizeof relay, "%s", g->up ? upstream_relay(g->up) : "the MX");
  enum leg_state st = g->state;
  if (g->up)
    snprintf(g->policy, sizeof g->policy, "%s", upstream_policy(g->up));
  session__leg_reply_text(&g->fail, 451, "4.4.2", "connection to %s lost%s: %.400s",
                          relay, st == LEG_DATA ? " during DATA" : "", reason);
  upstream_close(g->up, false);
  g->up = NULL;
  g->in_txn = g->mail_pending = false;
  leg_count(g, false);
  if (st == LEG_READY || st == LEG_ROUTE) {
    leg_fail_all(g);
    return;
  }
  if (st == LEG_DONE || st == LEG_FAILED)
    return;
  session__leg_reply_free(&g->final);
  leg_set_state(g, LEG_FAILED);
  if (st == LEG_DATA_WAIT || st == LEG_DOT_WAIT)
    session__txn_leg_settled(g->s, g);
}

static void on_leg_lost(void *arg, const char *reason) {
  struct session_leg *g = leg_from(arg);
  leg_lost(g, reason);
  session__txn_kick(g->s); /* reading may have paused for this MX */
}

/* ---- DATA -------------------------------------------------------------------------- */

bool session__leg_data(struct session_leg *g) {
  if (g->naccepted == 0 || g->state != LEG_READY || !g->in_txn)
    return false;
  if (upstream_command(g->up, "DATA") < 0) {
    leg_lost(g, "cannot queue DATA");
    return false;
  }
  leg_set_state(g, LEG_DATA_WAIT);
  return true;
}

bool session__leg_body(struct session_leg *g, const char *data, size_t len) {
  if (g->state != LEG_DATA)
    return false;
  if (upstream_body(g->up, data, len) < 0) {
    leg_lost(g, "write failed during DATA");
    return false;
  }
  return true;
}

bool session__leg_busy(const struct session_leg *g) {
  return g->state == LEG_DATA && g->up && upstream_body_busy(g->up);
}

bool session__leg_end(struct session_leg *g) {
  if (g->state != LEG_DATA)
    return false;
  if (upstream_body_end(g->up) < 0) {
    leg_lost(g, "cannot send end of data");
    return false;
  }
  leg_set_state(g, LEG_DOT_WAIT);
  return true;
}

void session__leg_abort(struct session_leg *g, int code, const char *enh,
                        const char *text) {
  session__leg_reply_text(&g->fail, code, enh, "%s", text);
  session__leg_reply_free(&g->final);
  leg_drop_upstream(g, true);
  leg_set_state(g, LEG_FAILED);
}

void session__leg_rearm(struct session_leg *g) {
  if (g->state != LEG_DONE || !g->in_txn)
    return;
  session__leg_reply_free(&g->final);
  leg_set_state(g, LEG_READY);
}

const struct leg_reply *session__leg_outcome(const struct session_leg *g) {
  return g->final.code ? &g->final : &g->fail;
}
