/* Internals shared by the session's files (session.c: connection and commands;
 * session_relay.c: the upstream side of a transaction and message data). */
#ifndef SP_SESSION_INTERNAL_H
#define SP_SESSION_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "conn.h"
#include "listener.h"
#include "router.h"
#include "session.h"
#include "smtp.h"
#include "upstream.h"

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
  char policy[48];         /* the route's policy, for logs before an upstream exists */
  char mail_fail[1100];    /* upstream's reply to MAIL when it refused, as wire text */
  char discard_reply[600]; /* the reply owed after discarded data, as wire text */
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
  bool esmtp;
  bool skip_line; /* discarding the rest of an over-long line */
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
};

/* session.c */
void session__set_state(struct session *s, enum session_state st);
void session__reply(struct session *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void session__write(struct session *s, const char *wire, size_t len);
void session__process(struct session *s);
void session__txn_reset(struct session *s);
void session__close(struct session *s, bool graceful);

/* session_relay.c */
void session__rcpt(struct session *s);
void session__data(struct session *s);
void session__rset_upstream(struct session *s);
bool session__data_step(struct session *s);
void session__discard(struct session *s, int code, const char *enh, const char *text);
void session__log_rcpt(struct session *s, const char *to, const struct smtp_reply *r,
                       const char *text);

#endif
