#include "proxy/inbound/session.h"
#include "proxy/core/obj.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/core/observe.h"
#include "proxy/inbound/session_internal.h"

#define SESSION_IN_HIGH (64 * 1024)   /* stop reading above this much unprocessed */
#define SESSION_IN_MAX (192 * 1024)   /* high water plus one read of slack */
#define SESSION_OUT_HIGH (256 * 1024) /* the MTA does not read our replies */

static const char *const session_state_names[] = {
#define SESSION_STATE_NAME(name, ...) #name,
    SESSION_STATE_MAP(SESSION_STATE_NAME)
#undef SESSION_STATE_NAME
};

void session__set_state(struct session *s, enum session_state st) {
  if (s->state != st)
    log_msg(LOG_DEBUG, s->id, "session: %s -> %s", session_state_names[s->state],
            session_state_names[st]);
  s->state = st;
}

static struct session *session_from_conn(struct conn *c) {
  struct session *s;
  CAST_OBJ_NOTNULL(s, c->owner, SESSION_MAGIC);
  return s;
}

void session__write(struct session *s, const char *wire, size_t len) {
  if (s->state == SESSION_CLOSED)
    return;
  if (conn_write(&s->conn, wire, len) < 0)
    session__close(s, false);
}

void session__reply(struct session *s, int code, const char *enh, const char *fmt,
                    ...) {
  char text[1024], wire[1200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  int n = smtp_reply_build(wire, sizeof wire, code, enh, text);
  if (n < 0)
    n = smtp_reply_build(wire, sizeof wire, code, enh, "(reply text too long)");
  /* Behind RCPT replies still owed, in command order. */
  if (n > 0 && !session__txn_queue_reply(s, wire, (size_t)n))
    session__write(s, wire, (size_t)n);
}

static void session_maybe_free(struct session *s) {
  if (s->open_handles > 0)
    return;
  observe_session(false);
  session__txn_reset(s);
  buf_free(&s->in);
  listener_session_gone(s->l, s);
  runtime_unref(s->rt);
  s->magic = 0;
  free(s);
}

static void on_handle_closed(struct session *s) {
  s->open_handles--;
  session_maybe_free(s);
}

static void on_timer_closed(uv_handle_t *h) {
  struct session *s;
  CAST_OBJ_NOTNULL(s, h->data, SESSION_MAGIC);
  on_handle_closed(s);
}

void session__close(struct session *s, bool graceful) {
  if (s->state == SESSION_CLOSED)
    return;
  session__set_state(s, SESSION_CLOSED);
  session__txn_end(s, true); /* open MX transactions are reset: no final dot */
  /* The connection kept between transactions goes to the pool for the next
   * transaction to that domain. */
  session__upstream_release(s, s->kept, false, false);
  s->kept = NULL;
  uv_timer_stop(&s->timer);
  uv_close((uv_handle_t *)&s->timer, on_timer_closed);
  conn_close(&s->conn, graceful);
}

void session__txn_reset(struct session *s) {
  if (s->txn.queued)
    log_as(LOG_PROG_QMGR, LOG_INFO, s->txn.qid, "removed");
  session__txn_end(s, false);
  memset(&s->txn, 0, sizeof s->txn);
}

/* ---- timers and flow control ---------------------------------------------------- */

static bool session_waiting_upstream(const struct session *s) {
  if (session__txn_pending(s))
    return true;
  switch (s->state) {
  case SESSION_DATA_WAIT:
  case SESSION_DATA_DONE:
    return true;
  default:
    return false;
  }
}

static void on_timeout(uv_timer_t *t) {
  struct session *s;
  CAST_OBJ_NOTNULL(s, t->data, SESSION_MAGIC);
  log_as(LOG_PROG_SMTPD, LOG_INFO, s->id, "timeout after %s from %s[%s]",
         session_state_names[s->state], s->helo[0] ? s->helo : "unknown", s->client_ip);
  session__reply(s, 421, "4.4.2", "%s Error: timeout exceeded", s->rt->cfg->hostname);
  session__close(s, true);
}

/* The MTA's clock runs only while we wait for the MTA, and only progress (a whole
 * command, or message data moving) restarts it: bytes trickled into an unfinished
 * line do not (slowloris; Postfix's smtpd_per_record_deadline). */
static void session_arm_timer(struct session *s, bool progressed) {
  if (s->state == SESSION_CLOSED || s->state == SESSION_QUIT)
    return;
  if (session_waiting_upstream(s)) {
    uv_timer_stop(&s->timer);
    return;
  }
  if (!progressed && uv_is_active((uv_handle_t *)&s->timer))
    return;
  const struct config *cfg = s->rt->cfg;
  bool data = s->state == SESSION_DATA || s->state == SESSION_DATA_DISCARD;
  uv_timer_start(&s->timer, on_timeout,
                 data ? cfg->timeout_inbound_data : cfg->timeout_inbound_command, 0);
}

static void session_update_reading(struct session *s) {
  if (s->state == SESSION_CLOSED)
    return;
  bool want = !s->peer_eof && s->state != SESSION_QUIT && s->in.len < SESSION_IN_HIGH &&
              s->conn.write_pending < SESSION_OUT_HIGH;
  if (want)
    conn_read_start(&s->conn);
  else
    conn_read_stop(&s->conn);
}

/* ---- input ------------------------------------------------------------------------
 */

static bool session_blocked(const struct session *s) {
  bool waiting = session_waiting_upstream(s) && !session__txn_pending(s);
  return s->state == SESSION_CLOSED || s->state == SESSION_QUIT || waiting ||
         s->conn.write_pending >= SESSION_OUT_HIGH;
}

/* While RCPT replies are owed, SMTP reads nothing more (serial_rcpts); LMTP takes
 * further RCPTs only (they are routed and connected in parallel). Any other command
 * waits, so its reply comes in order and DATA sees every recipient's outcome. */
static bool session_rcpt_stalled(struct session *s, const char *line, size_t len) {
  if (!session__txn_pending(s))
    return false;
  if (s->proto->serial_rcpts)
    return true;
  struct smtp_command cmd;
  return smtp_parse_command(line, len, &cmd) < 0 || cmd.verb != SMTP_VERB_RCPT ||
         s->tx.nslots >= s->rt->cfg->lmtp_max_recipients;
}

/* Reads one command line from the buffer. Returns false when more input is needed. */
static bool session_command_step(struct session *s) {
  if (s->skip_bytes > 0) {
    size_t n = s->in.len < s->skip_bytes ? s->in.len : (size_t)s->skip_bytes;
    buf_consume(&s->in, n);
    s->skip_bytes -= n;
    return n > 0;
  }
  if (s->skip_line) {
    const char *lf = memchr(s->in.data, '\n', s->in.len);
    if (!lf) {
      s->in.len = 0;
      return false;
    }
    buf_consume(&s->in, (size_t)(lf - s->in.data) + 1);
    s->skip_line = false;
    return true;
  }
  size_t line_len, used;
  int rc =
      smtp_find_line(s->in.data, s->in.len, SMTP_COMMAND_LINE_MAX, &line_len, &used);
  if (rc == 0)
    return false;
  if (rc < 0) {
    if (session__txn_pending(s))
      return false;
    session__reply(s, 500, "5.5.2", "Error: line too long");
    s->skip_line = true;
    return true;
  }
  if (session_rcpt_stalled(s, s->in.data, line_len))
    return false;
  session__command(s, s->in.data, line_len);
  buf_consume(&s->in, used);
  return true;
}

/* Between transactions a draining session says goodbye. */
static bool session_drain_now(struct session *s) {
  if (!s->draining || s->tx.naccepted > 0 || session__txn_pending(s) ||
      (s->state != SESSION_GREETING && s->state != SESSION_IDLE &&
       s->state != SESSION_MAIL))
    return false;
  session__reply(s, 421, "4.3.2", "%s Service shutting down, try again later",
                 s->rt->cfg->hostname);
  session__close(s, true);
  return true;
}

void session__process(struct session *s) {
  /* Handlers may call back in here (a reply produced synchronously); the running loop
   * goes on with the new state, and the line being handled is consumed only after its
   * handler returned. */
  if (s->processing)
    return;
  s->processing = true;
  enum session_state entered = s->state;
  bool any = false;
  while (!session_blocked(s) && !session_drain_now(s)) {
    bool progressed;
    if (s->state == SESSION_DATA || s->state == SESSION_DATA_DISCARD)
      progressed = session__txn_data_step(s);
    else
      progressed = s->in.len > 0 && session_command_step(s);
    if (!progressed)
      break;
    any = true;
  }
  s->processing = false;
  /* The client half-closed and all it sent that can be answered is: done. An
   * unfinished message (still in DATA) is dropped here, and the MX connection reset
   * without the final dot. */
  bool data_waits = s->state == SESSION_DATA && session__txn_data_busy(s);
  if (s->peer_eof && !session_blocked(s) && !data_waits && !session__txn_pending(s)) {
    log_as(LOG_PROG_SMTPD, LOG_INFO, s->id, "client %s[%s] closed its side in state %s",
           s->helo[0] ? s->helo : "unknown", s->client_ip,
           session_state_names[s->state]);
    session__close(s, true);
    return;
  }
  buf_shrink_if_empty(&s->in);
  session_arm_timer(s, any || s->state != entered);
  session_update_reading(s);
}

static void session_on_data(struct conn *c, const char *data, size_t len) {
  struct session *s = session_from_conn(c);
  if (buf_append(&s->in, data, len) < 0) {
    log_as(LOG_PROG_SMTPD, LOG_WARNING, s->id, "input buffer overflow from unknown[%s]",
           s->client_ip);
    session__close(s, false);
    return;
  }
  session__process(s);
}

static void session_on_error(struct conn *c, int err) {
  struct session *s = session_from_conn(c);
  /* A half-close after pipelined commands (Exim sends ".", QUIT, then shuts down its
   * side): the replies we owe still go out; the session ends once nothing is left. */
  if (err == SP_E_EOF && !s->peer_eof &&
      (s->in.len > 0 || session_waiting_upstream(s))) {
    s->peer_eof = true;
    conn_read_stop(&s->conn);
    log_msg(LOG_DEBUG, s->id, "client half-closed in state %s: answering what it sent",
            session_state_names[s->state]);
    session__process(s);
    return;
  }
  log_as(LOG_PROG_SMTPD, LOG_INFO, s->id, "%s from %s[%s] in state %s: %s",
         err == SP_E_EOF ? "lost connection" : "connection error",
         s->helo[0] ? s->helo : "unknown", s->client_ip, session_state_names[s->state],
         conn_error(c));
  session__close(s, false);
}

static void session_on_drain(struct conn *c) {
  struct session *s = session_from_conn(c);
  session__process(s);
}

static void session_on_closed(struct conn *c) {
  struct session *s = session_from_conn(c);
  if (c->close_timed_out)
    log_as(LOG_PROG_SMTPD, LOG_INFO, s->id,
           "close timeout: unknown[%s] did not read our last replies within %g s: "
           "connection reset",
           s->client_ip, (double)c->linger_ms / 1000);
  log_as(LOG_PROG_SMTPD, LOG_INFO, s->id, "disconnect from unknown[%s]", s->client_ip);
  on_handle_closed(s);
}

static void session_on_handshake(struct conn *c, int err) {
  (void)c;
  (void)err;
}

static void session_on_connect(struct conn *c, int status) {
  (void)c;
  (void)status;
}

static const struct conn_events session_conn_events = {
    .on_data = session_on_data,
    .on_error = session_on_error,
    .on_drain = session_on_drain,
    .on_handshake = session_on_handshake,
    .on_connect = session_on_connect,
    .on_closed = session_on_closed,
};

/* ---- life cycle ------------------------------------------------------------------ */

static void session_make_id(struct session *s) {
  /* Atomic: every worker's loop (workers.c) makes ids. */
  static _Atomic uint32_t counter;
  static _Atomic uint32_t seed;
  if (!seed) {
    uint32_t r;
    if (getrandom(&r, sizeof r, 0) != sizeof r)
      r = (uint32_t)uv_hrtime();
    seed = r;
  }
  uint64_t v = ((uint64_t)(seed ^ (uint32_t)(uv_hrtime() >> 10)) << 20) ^ ++counter;
  snprintf(s->id, sizeof s->id, "%010llX", (unsigned long long)(v & 0xFFFFFFFFFFull));
}

/* Refuses a client at connect: the reply, then closing, and smtpd(8)'s reject line,
 * which log tools count as a rejection (a warning line they would not). */
static void session_reject_connect(struct session *s, int code, const char *enh,
                                   const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void session_reject_connect(struct session *s, int code, const char *enh,
                                   const char *fmt, ...) {
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  log_as(LOG_PROG_SMTPD, LOG_INFO, s->id,
         "reject: CONNECT from unknown[%s]: %d %s %s; proto=SMTP", s->client_ip, code,
         enh, text);
  session__reply(s, code, enh, "%s", text);
  session__close(s, true);
}

int session_start(struct listener *l, uv_stream_t *server, struct runtime *rt,
                  bool unix_socket, bool lmtp, bool over_limit) {
  struct session *s = calloc(1, sizeof *s);
  if (!s)
    return SP_E_NOMEM;
  s->magic = SESSION_MAGIC;
  s->l = l;
  s->rt = runtime_ref(rt);
  s->proto = lmtp ? &session__lmtp_proto : &session__smtp_proto;
  session_make_id(s);
  buf_init(&s->in, SESSION_IN_MAX);
  int init = unix_socket
                 ? conn_init_pipe(server->loop, &s->conn, &session_conn_events, s)
                 : conn_init(server->loop, &s->conn, &session_conn_events, s);
  if (init < 0) {
    runtime_unref(rt);
    free(s);
    return SP_E_IO;
  }
  /* The MTA gets as long to read our last replies as to send a command. */
  conn_set_close_deadline(&s->conn, rt->cfg->timeout_inbound_command);
  uv_timer_init(server->loop, &s->timer);
  s->timer.data = s;
  s->open_handles = 2;
  observe_session(true);
  s->ctx = &l->ctx;
  if (listener_session_add(l, s) < 0) {
    s->l = NULL;
    s->ctx = NULL;
  }
  int rc = conn_accept(server, &s->conn);
  conn_peer_ip(&s->conn, s->client_ip, sizeof s->client_ip);
  struct sockaddr_storage peer;
  int plen = sizeof peer;
  /* A unix socket's clients are whoever its file mode lets in. */
  bool allowed =
      rc == 0 &&
      (unix_socket ||
       (uv_tcp_getpeername(&s->conn.tcp, (struct sockaddr *)&peer, &plen) == 0 &&
        config_client_allowed(rt->cfg, (struct sockaddr *)&peer)));
  const char *host = rt->cfg->hostname;
  if (rc < 0 || !s->l) {
    session__close(s, false);
  } else if (!allowed) {
    session_reject_connect(s, 554, "5.7.1",
                           "%s: client not allowed to relay through this proxy",
                           s->client_ip);
  } else if (over_limit) {
    session_reject_connect(s, 421, "4.7.0",
                           "%s Error: too many connections, try again later", host);
  } else {
    log_as(LOG_PROG_SMTPD, LOG_INFO, s->id, "connect from unknown[%s]", s->client_ip);
    session__reply(s, 220, "", "%s %s starttls-proxy", host, s->proto->name);
    session__process(s);
  }
  return 0;
}

void session_drain(struct session *s) {
  s->draining = true;
  if (!session_blocked(s))
    session__process(s);
}

void session_abort(struct session *s) {
  if (s->state == SESSION_CLOSED)
    return;
  session__txn_end(s, true); /* MX transactions reset; no RCPT reply owed now */
  session__reply(s, 421, "4.3.2", "%s Service shutting down, transaction aborted",
                 s->rt->cfg->hostname);
  session__close(s, true);
}
