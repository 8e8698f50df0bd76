/* One destination of a transaction (a "leg"): its domain, its router query, its MX
 * connection, the recipients sent there and their replies, and its DATA outcome. An
 * SMTP transaction has one leg, an LMTP one a leg per destination. Internal to the
 * session module (session_txn.c drives legs; session_leg.c is the leg's own state
 * machine against upstream.c).
 *
 * Ownership: the session's transaction owns its legs (session__leg_release frees
 * one). A leg owns its router query until it calls back or is cancelled, and its
 * upstream until it is released: then the upstream stays with the session for its
 * next transaction (SMTP, keep_mx) or goes to the connection pool when it is idle
 * between transactions, and is closed otherwise (reset, without the final dot, when a
 * message was being sent).
 *
 * Every result is reported to session_txn.c, never written to the MTA here:
 * session__txn_rcpt_done() once per recipient, session__txn_leg_settled() once the
 * leg's DATA or final-dot outcome is known. */
#ifndef SP_SESSION_LEG_H
#define SP_SESSION_LEG_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/outbound/router.h"
#include "proxy/outbound/upstream.h"
#include "proxy/wire/smtp.h"

struct session;

#define LEG_STATE_MAP(X)                                                               \
  X(ROUTE)     /* resolving the domain, or connecting to its MX */                     \
  X(READY)     /* MAIL and RCPTs flowing */                                            \
  X(DATA_WAIT) /* DATA sent, waiting for 354 */                                        \
  X(DATA)      /* streaming message data */                                            \
  X(DOT_WAIT)  /* final dot sent, waiting for the MX's verdict */                      \
  X(DONE)      /* final outcome known (reply or fault) */                              \
  X(FAILED)    /* no MX connection: every recipient gets the failure */

enum leg_state {
#define LEG_STATE_ENUM(name, ...) LEG_##name,
  LEG_STATE_MAP(LEG_STATE_ENUM)
#undef LEG_STATE_ENUM
};

/* A reply kept as wire text (owned) with what the log needs. */
struct leg_reply {
  int code; /* 0: none yet */
  char enh[16];
  char *wire; /* "NNN ...\r\n" lines, NUL-terminated; owned */
  /* Our own words about one recipient (route refused, SMTPUTF8): each recipient's
   * RCPT reply names it first, "<addr>: text", as smtpd's refusals do. Owned; NULL
   * for the MX's replies, which are relayed as they came. */
  char *rcpt_text;
};

struct session_leg {
  uint32_t magic;
  struct session *s; /* the owner */
  enum leg_state state;
  char domain[256];
  char policy
      [DECIDE_POLICY_MAX]; /* the route's policy, for logs before an upstream exists */
  struct router_query *rq; /* owned until it calls back or router_cancel() */
  struct upstream *up;     /* owned until released */
  bool counted;            /* counted in the loop's mx_legs (count_mx) */
  unsigned skip;           /* replies to RSETs of earlier transactions still owed */
  bool mail_sent, mail_pending, mail_failed;
  bool in_txn; /* the MX has an open MAIL transaction */
  /* Recipients of this leg, as indices into the session's recipient slots, in RCPT
   * order: [0, nanswered) have their reply, [nanswered, nsent) are in flight,
   * [nsent, ntodo) wait to be sent. */
  size_t *todo;
  size_t ntodo, cap_todo, nsent, nanswered;
  size_t naccepted;
  struct leg_reply fail; /* why every (further) recipient fails, when FAILED */
  /* The MX's reply to DATA (its 354 until the data is over), then its final reply:
   * the outcome for accepted recipients. */
  struct leg_reply final;
};

struct session_leg *session__leg_new(struct session *s, const char *domain);
/* Adds recipient slot idx (its reply comes through session__txn_rcpt_done). */
int session__leg_add(struct session_leg *g, size_t idx);
/* Sends DATA when the leg has accepted recipients and a live MX transaction. Returns
 * true when a reply is awaited (session__txn_leg_settled follows). */
bool session__leg_data(struct session_leg *g);
/* Starts the body with the trace header: false when the leg faulted (it is DONE). */
bool session__leg_body(struct session_leg *g, const char *data, size_t len);
bool session__leg_busy(const struct session_leg *g);
/* Sends the final dot; true when the verdict is awaited. */
bool session__leg_end(struct session_leg *g);
/* Fails the leg (the MX connection is reset: no final dot) with code/enh/text. */
void session__leg_abort(struct session_leg *g, int code, const char *enh,
                        const char *text);
/* After the MX refused DATA (SMTP): the MX transaction is still open, so the leg
 * takes recipients and DATA again. */
void session__leg_rearm(struct session_leg *g);
/* The reply the leg's accepted recipients get at the end. */
const struct leg_reply *session__leg_outcome(const struct session_leg *g);
/* Frees the leg; its upstream goes to the pool when idle, else is closed. */
void session__leg_release(struct session_leg *g, bool abort);

void session__leg_reply_set(struct leg_reply *lr, const struct smtp_reply *r);
void session__leg_reply_text(struct leg_reply *lr, int code, const char *enh,
                             const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* session__leg_reply_text, for a refusal of the recipients themselves (rcpt_text). */
void session__leg_reply_rcpt_text(struct leg_reply *lr, int code, const char *enh,
                                  const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The wire text recipient addr gets for lr (rcpt_text named, else lr's own); owned by
 * the caller, NULL without memory. */
char *session__leg_reply_for(const struct leg_reply *lr, const char *addr);
void session__leg_reply_free(struct leg_reply *lr);

#endif
