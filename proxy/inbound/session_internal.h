/* Internals shared by the session's files (session.c: the MTA's connection, input,
 * timers and life cycle; session_cmd.c: the command table; session_relay.c: the
 * upstream side of an SMTP transaction and message data; session_lmtp.c: an LMTP
 * transaction fanned out to several destinations, each a leg of session_leg.c;
 * session_mx.c: what both do with an MX connection). */
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
  X(RCPT_ROUTE)   /* first RCPT: resolving and connecting upstream */                  \
  X(RCPT_WAIT)    /* RCPT sent upstream, waiting for its reply */                      \
  X(RCPT)         /* at least one recipient accepted */                                \
  X(DATA_WAIT)    /* DATA sent upstream, waiting for 354 */                            \
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

/* What each reply the upstream owes us is for, oldest first. */
enum session_expect { EXPECT_MAIL, EXPECT_RCPT, EXPECT_DATA, EXPECT_DOT, EXPECT_RSET };
#define SESSION_MAX_EXPECT 8

struct session_txn {
  /* The transaction's lines stand where Postfix's queue id goes: the session id for
   * the first transaction of a connection, with its number appended for later ones, so
   * log tools keep messages apart and a grep for the session id finds them all. */
  char qid[24];
  char from[SMTP_PATH_MAX + 1];
  char mail_params[600];        /* client's MAIL params, "KEY=VALUE ..." as parsed */
  char domain[256];             /* destination: first recipient's domain, lower-case */
  char rcpt[SMTP_PATH_MAX + 1]; /* recipient being asked upstream */
  char rcpt_params[600];
  char **rcpts; /* accepted recipients, owned */
  size_t nrcpts;
  uint64_t started_ms;
  bool smtputf8;
  bool lost;               /* the upstream went away: only 4xx from here on */
  bool queued;             /* its data is in: "removed" is logged when it ends */
  char policy[48];         /* the route's policy, for logs before an upstream exists */
  char mail_fail[1100];    /* upstream's reply to MAIL when it refused, as wire text */
  char discard_reply[600]; /* the reply owed after discarded data, as wire text */
};

/* One RCPT of an LMTP transaction, in command order. Its reply is written to the MTA
 * once every earlier slot's was (pipelined replies stay in order). */
struct lmtp_slot {
  char *addr;   /* owned; NULL for a reply that is not a recipient's (a refusal) */
  char *params; /* owned: the client's RCPT parameters */
  struct session_leg *leg; /* borrowed from the transaction; NULL when refused here */
  bool resolved, accepted;
  struct leg_reply reply; /* the RCPT reply, until written */
};

struct session_lmtp {
  struct lmtp_slot *slots; /* owned */
  size_t nslots, cap_slots;
  size_t flushed; /* slots whose reply was written */
  size_t naccepted;
  struct session_leg **legs; /* owned */
  size_t nlegs;
  size_t nwait; /* legs whose DATA or final reply is awaited */
};

struct session {
  uint32_t magic;
  struct listener *l;
  struct runtime *rt; /* referenced */
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
  struct upstream *up;     /* owned until upstream_close() */
  bool up_in_txn;          /* the upstream has an open MAIL transaction */
  struct router_query *rq; /* owned until it calls back or router_cancel() */
  enum session_expect expect[SESSION_MAX_EXPECT];
  size_t expect_head, nexpect;
  struct smtp_data_scanner scan;
  const struct session_proto *proto; /* SMTP, or LMTP (RFC 2033): by listener */
  struct session_lmtp lm;
};

/* What differs between SMTP and LMTP (RFC 2033) sessions: the protocol column of the
 * command table (session_cmd.c), chosen by the listener a session was accepted on. */
struct session_proto {
  const char *name;       /* in the greeting, the logs and the trace header */
  unsigned hello_verbs;   /* the greeting verbs it answers, as 1u << SMTP_VERB_x */
  const char *hello_hint; /* added to the 500 for another greeting verb */
  const char *with_utf8;  /* the trace header's protocol for SMTPUTF8, or NULL */
  /* A RCPT that passed the checks (domain: its destination, lower-case): asks the
   * destination; its reply comes through session__reply or the relayed one. */
  void (*rcpt)(struct session *s, const char *path, const char *params,
               const char *domain);
  /* DATA with at least one recipient accepted. */
  void (*data)(struct session *s);
  /* Moves one chunk of message data; false when it cannot go on now. */
  bool (*data_step)(struct session *s);
  /* The MX side takes no more data now (backpressure). */
  bool (*data_busy)(const struct session *s);
};

/* session_relay.c: one destination per transaction, one reply after DATA. */
extern const struct session_proto session__smtp_proto;
/* session_lmtp.c: any number of destinations, one reply per recipient. */
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

/* session_relay.c */
size_t session__data_scan(struct session *s, char *out, size_t *out_len,
                          const struct session_data_fault **fault);
void session__rset_upstream(struct session *s);
void session__discard(struct session *s, int code, const char *enh, const char *text);
void session__log_rcpt(struct session *s, const char *to, const struct smtp_reply *r,
                       const char *text);
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

/* session_lmtp.c */
/* RCPT replies are owed: only further RCPTs are read meanwhile. */
bool session__lmtp_pending(const struct session *s);
/* Queues a reply behind the owed RCPT replies; false when none is owed. */
bool session__lmtp_queue_reply(struct session *s, const char *wire, size_t len);
/* Ends the transaction: every leg released (abort: MX transactions reset). */
void session__lmtp_reset(struct session *s, bool abort);
/* From legs. */
void session__lmtp_rcpt_done(struct session *s, size_t idx, const struct leg_reply *r,
                             bool accepted);
void session__lmtp_leg_settled(struct session *s, struct session_leg *g);
/* The last call of every leg callback: writes what became due, moves the transaction
 * on and runs the session (which may free the leg). */
void session__lmtp_kick(struct session *s);

#endif
