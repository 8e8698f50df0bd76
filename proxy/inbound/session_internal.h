/* Internals shared by the session's files:
 *   session.c        the MTA's connection: input, timers, life cycle
 *   session_cmd.c    the command table (check and proceed for each verb)
 *   session_txn.c    a transaction: its recipients in command order, one leg per
 *                    destination, message data, the replies after the final dot
 *   session_leg.c    one destination of a transaction against its MX connection
 *   session_proto.c  where SMTP and LMTP differ: the protocol column
 *   session_mx.c     MAIL/RCPT lines, and an MX connection between transactions
 *   session_log.c    Postfix-style log lines and the trace header
 * An SMTP transaction is a transaction with one leg and one reply after DATA; an LMTP
 * one (RFC 2033) has a leg per destination and a reply per recipient. */
#ifndef SP_SESSION_INTERNAL_H
#define SP_SESSION_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "proxy/core/buf.h"
#include "proxy/inbound/listener.h"
#include "proxy/inbound/session.h"
#include "proxy/inbound/session_leg.h"
#include "proxy/net/conn.h"
#include "proxy/outbound/router.h"
#include "proxy/outbound/upstream.h"
#include "proxy/wire/smtp.h"

#define SESSION_STATE_MAP(X)                                                           \
  X(GREETING)     /* connected, no HELO/EHLO yet */                                    \
  X(IDLE)         /* no transaction */                                                 \
  X(MAIL)         /* MAIL accepted, no recipient yet */                                \
  X(RCPT)         /* at least one recipient accepted */                                \
  X(DATA_WAIT)    /* DATA sent to every leg, waiting for their replies */              \
  X(DATA)         /* streaming message data upstream */                                \
  X(DATA_DISCARD) /* reading data to its end without passing it on */                  \
  X(DATA_DONE)    /* final dot sent, waiting for the MX's verdict */                   \
  X(QUIT)         /* last reply queued, closing when written */                        \
  X(CLOSED)

enum session_state {
#define SESSION_STATE_ENUM(name, ...) SESSION_##name,
  SESSION_STATE_MAP(SESSION_STATE_ENUM)
#undef SESSION_STATE_ENUM
};

struct session_txn {
  /* The transaction's lines stand where Postfix's queue id goes: the session id for
   * the first transaction of a connection, with its number appended for later ones, so
   * log tools keep messages apart and a grep for the session id finds them all. */
  char qid[24];
  char from[SMTP_PATH_MAX + 1];
  char mail_params[600]; /* client's MAIL params, "KEY=VALUE ..." as parsed */
  uint64_t started_ms;
  bool smtputf8;
  bool body_8bit; /* BODY=8BITMIME (RFC 6152) */
  bool queued;    /* its data is in: "removed" is logged when it ends */
};

/* One RCPT of a transaction, in command order. Its reply is written to the MTA once
 * every earlier slot's was (pipelined replies stay in order). */
struct txn_slot {
  char *addr;   /* owned; NULL for a reply that is not a recipient's (a refusal) */
  char *params; /* owned: the client's RCPT parameters */
  struct session_leg *leg; /* borrowed from the transaction; NULL when refused here */
  bool resolved, accepted;
  struct leg_reply reply; /* the RCPT reply, until written */
};

/* The transaction's recipients and destinations. */
struct session_fanout {
  struct txn_slot *slots; /* owned */
  size_t nslots, cap_slots;
  size_t flushed; /* slots whose reply was written */
  size_t naccepted;
  struct session_leg **legs; /* owned */
  size_t nlegs;
  size_t nwait; /* legs whose DATA or final reply is awaited */
};

#define SESSION_MAGIC 0x53455353u /* "SESS" */

struct session {
  uint32_t magic;
  struct listener *l;   /* registers and unregisters the session, nothing more */
  struct loop_ctx *ctx; /* the loop's shared pool and counts; NULL when unregistered */
  struct runtime *rt;   /* referenced */
  struct conn conn;
  uv_timer_t timer;
  unsigned open_handles;
  enum session_state state;
  char id[16];
  char client_ip[64];
  char helo[256];
  unsigned ntxn; /* MAIL commands accepted: numbers the transactions' queue ids */
  bool esmtp;
  bool skip_line;      /* discarding the rest of an over-long line */
  uint64_t skip_bytes; /* a refused BDAT chunk's bytes still to discard, unread */
  bool draining;
  bool processing; /* session__process is running (re-entrancy guard) */
  bool peer_eof;   /* the client half-closed: answer what is buffered, then close */
  struct buf in;   /* unprocessed client bytes */
  struct session_txn txn;
  /* The last transaction's MX connection, kept for the next one of this connection
   * (SMTP: keep_mx), owned; rset_owed: RSET replies it still owes. */
  struct upstream *kept;
  unsigned rset_owed;
  struct smtp_data_scanner scan;
  const struct session_proto *proto; /* SMTP, or LMTP (RFC 2033): by listener */
  struct session_fanout tx;
};

/* What differs between SMTP and LMTP (RFC 2033) sessions: the protocol column of the
 * command table (session_cmd.c), chosen by the listener a session was accepted on. */
struct session_proto {
  const char *name;       /* in the greeting, the logs and the trace header */
  unsigned hello_verbs;   /* the greeting verbs it answers, as 1u << SMTP_VERB_x */
  const char *hello_hint; /* added to the 500 for another greeting verb */
  const char *with_utf8;  /* the trace header's protocol for SMTPUTF8, or NULL */
  /* SMTP: the next command waits for a RCPT's reply. LMTP: further RCPTs are read
   * (and routed, connected in parallel) meanwhile. */
  bool serial_rcpts;
  /* SMTP: a destination that accepted no recipient is let go, so the next RCPT may
   * choose the transaction's destination afresh. */
  bool one_destination;
  /* SMTP: the MX connection stays with the session between its transactions (RSET
   * sent when one was open), also with the connection cache off. */
  bool keep_mx;
  /* LMTP: legs count against outbound.max_connections. */
  bool count_mx;
  /* A RCPT that passed the command checks, before it gets a slot: its limits (how
   * many recipients, which destinations). False when refused (the reply is written). */
  bool (*admit)(struct session *s, const char *path, const char *domain);
  /* Every leg answered DATA (or was not asked): the reply to DATA, and the data phase
   * begun with session__txn_begin_data, or the transaction left in RCPT. */
  void (*data_start)(struct session *s);
  /* After the dot: LMTP gives each accepted recipient its own destination's reply,
   * in RCPT order (RFC 2033 §4.2); SMTP gives one, the MX's. */
  bool reply_per_rcpt;
};

/* session_proto.c: one destination per transaction, one reply after DATA. */
extern const struct session_proto session__smtp_proto;
/* session_proto.c: any number of destinations, one reply per recipient. */
extern const struct session_proto session__lmtp_proto;

/* session_cmd.c */
/* Runs one command line (without its line end) through the command table. */
void session__command(struct session *s, const char *line, size_t len);
/* "ESMTP", "SMTP" (after HELO) or "LMTP": smtpd(8)'s proto= in log lines. */
const char *session__proto_name(const struct session *s);
/* Refuses a recipient ourselves: the reply, and smtpd(8)'s reject line with the
 * envelope, which log tools count as a rejection. */
void session__reject_rcpt(struct session *s, const char *path, int code,
                          const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* session.c */
void session__set_state(struct session *s, enum session_state st);
void session__reply(struct session *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void session__write(struct session *s, const char *wire, size_t len);
void session__process(struct session *s);
void session__txn_reset(struct session *s);
void session__close(struct session *s, bool graceful);

/* Message data moves in chunks of at most DATA_CHUNK client bytes; the scanner's
 * output (dot-unstuffing undone, bare line ends normalized) fits SESSION_DATA_OUT. */
#define DATA_CHUNK (16 * 1024)
#define SESSION_DATA_OUT (2 * DATA_CHUNK + 4)

/* Why a message is refused while its data is read (the reply its recipients get). */
struct session_data_fault {
  int code;
  const char *enh;
  const char *text;
};

/* session_log.c */
/* The delivery log line of one recipient through up (NULL: none), with policy as the
 * fallback when there is no upstream. */
void session__log_delivery(struct session *s, struct upstream *up, const char *policy,
                           const char *to, int code, const char *enh,
                           const char *reply);
/* The transaction's first recipient was accepted: smtpd(8)'s "client=" line, by which
 * log tools count a message received (Postfix opens its queue file then too). */
void session__log_received(struct session *s);
/* The message's data is all in (size bytes, nrcpt recipients): qmgr(8)'s line, which
 * log tools need before the deliveries to count sizes and senders. */
void session__log_queued(struct session *s, size_t nrcpt);
void session__received_header(struct session *s, const char *for_rcpt, char *out,
                              size_t cap);

/* session_mx.c */
/* "MAIL FROM:<x> params" keeping only the parameters up understands. */
void session__mail_line(struct session *s, struct upstream *up, char *out, size_t cap);
/* "RCPT TO:<addr> params", the params (the client's, as parsed) only when up offers
 * DSN. */
void session__rcpt_line(const struct upstream *up, const char *addr, const char *params,
                        char *out, size_t cap);
/* Lets go of up (NULL: nothing): parked in the connection pool when no MAIL
 * transaction is open there (open_txn false), nothing is to be reset and the pool is
 * on; closed otherwise, politely (QUIT) unless reset, which drops the connection so
 * that the MX discards a message whose final dot never came. */
void session__upstream_release(struct session *s, struct upstream *up, bool open_txn,
                               bool reset);
/* An idle connection to domain from an earlier transaction (no DNS, TCP or TLS
 * handshake; its route and policy are seconds old), now owned by arg with events ev;
 * NULL when the pool has none. */
struct upstream *session__upstream_pooled(struct session *s, const char *domain,
                                          const struct upstream_events *ev, void *arg);

/* The kept connection (session->kept, NULL: none) for a leg to domain: handed over
 * (events ev, arg; *rset_owed: replies to skip first) when it goes there, else let
 * go. NULL when none fits. */
struct upstream *session__mx_take(struct session *s, const char *domain,
                                  const struct upstream_events *ev, void *arg,
                                  unsigned *rset_owed);
/* Keeps up (taking it; owed: RSET replies it still owes) for the session's next
 * transaction, RSET first when open_txn; the connection kept before is let go. */
void session__mx_keep(struct session *s, struct upstream *up, bool open_txn,
                      unsigned owed);

/* session_txn.c */
/* RCPT replies are owed: only further RCPTs (LMTP) are read meanwhile. */
bool session__txn_pending(const struct session *s);
/* Queues a reply behind the owed RCPT replies; false when none is owed. */
bool session__txn_queue_reply(struct session *s, const char *wire, size_t len);
/* The RCPT and DATA commands, once the command table's checks passed. */
void session__txn_rcpt(struct session *s, const char *path, const char *params,
                       const char *domain);
void session__txn_data(struct session *s);
/* Moves one chunk of message data; false when it cannot go on now. */
bool session__txn_data_step(struct session *s);
/* Some leg's MX takes no more data now (backpressure). */
bool session__txn_data_busy(const struct session *s);
/* The data phase begins (after the reply to DATA was written): the scanner, the trace
 * header to every leg that takes the message; DATA, or DATA_DISCARD when none does. */
void session__txn_begin_data(struct session *s);
/* The leg of the transaction going to domain, or NULL. */
struct session_leg *session__txn_leg(const struct session *s, const char *domain);
/* Ends the transaction: every leg released (abort: MX transactions reset). */
void session__txn_end(struct session *s, bool abort);
/* From legs. */
void session__txn_rcpt_done(struct session *s, size_t idx, const struct leg_reply *r,
                            bool accepted);
void session__txn_leg_settled(struct session *s, struct session_leg *g);
/* The last call of every leg callback: writes what became due, moves the transaction
 * on and runs the session (which may free the leg). */
void session__txn_kick(struct session *s);

#endif
