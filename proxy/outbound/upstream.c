#include "proxy/outbound/upstream.h"
#include "proxy/core/obj.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "certs/context.h"
#include "certs/verify.h"
#include "proxy/core/buf.h"
#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/core/observe.h"
#include "proxy/net/conn.h"

#define UP_MAGIC 0x55505354u  /* "UPST": checked at every callback entry */
#define UP_IN_MAX (64 * 1024) /* unparsed reply bytes */
#define UP_MAX_QUEUE 8        /* commands queued or awaiting a reply */
#define UP_BODY_HIGH_WATER (256 * 1024)

#define UP_STATE_MAP(X)                                                                \
  X(CONNECTING)                                                                        \
  X(GREETING)                                                                          \
  X(EHLO) X(HELO) X(STARTTLS) X(HANDSHAKE) X(EHLO_TLS) X(READY) X(FAILED) X(CLOSED)

enum up_state {
#define UP_STATE_ENUM(name) UP_##name,
  UP_STATE_MAP(UP_STATE_ENUM)
#undef UP_STATE_ENUM
};

static const char *const up_state_names[] = {
#define UP_STATE_NAME(name) #name,
    UP_STATE_MAP(UP_STATE_NAME)
#undef UP_STATE_NAME
};

struct upstream {
  uint32_t magic;
  struct runtime *rt; /* referenced */
  const struct upstream_events *ev;
  void *arg; /* NULL once the owner called upstream_close(): no more callbacks */
  char id[32];
  char domain[256];
  struct route *route; /* owned until ready (then freed: NULL) */
  char policy
      [DECIDE_POLICY_MAX]; /* the ready host's policy, kept once the route is gone */
  bool policy_failed;      /* a host failed the TLS policy */
  uint64_t tls_started_ms; /* loop time the handshake began */
  size_t cand;             /* candidate being tried */
  bool plaintext_retry;    /* this attempt skips STARTTLS after a failed handshake */
  enum up_state state;
  struct conn *conn;     /* current attempt; owned, freed in its on_closed */
  uv_timer_t timer;      /* owned */
  unsigned open_handles; /* conns and the timer not yet closed */
  struct buf in;
  struct smtp_reply_parser rp;
  /* A reply whose lines straddle reads, parked between them; NULL otherwise (owned). */
  struct smtp_reply *partial;
  struct smtp_caps caps;
  char relay[UPSTREAM_RELAY_MAX];
  char tls_version[16];
  const char *verdict;
  char reasons[1024];
  /* Commands: queue[head .. head+nsent) await replies, the rest wait to be sent. */
  char *queue[UP_MAX_QUEUE];
  size_t head, nqueued, nsent;
  bool final_pending;    /* the reply after the final dot is awaited */
  unsigned messages;     /* final replies received */
  char lost_reason[256]; /* for up_lost_later */
  bool lost_pending;     /* up_lost_later's timer runs: no other timeout replaces it */
  void *pool;            /* the pool it is parked in, or NULL */
};

static void up_set_state(struct upstream *up, enum up_state st) {
  if (up->state != st)
    log_as(LOG_PROG_SMTP, LOG_DEBUG, up->id, "upstream %s: %s -> %s", up->relay,
           up_state_names[up->state], up_state_names[st]);
  up->state = st;
}

static struct upstream *up_from_conn(struct conn *c) {
  struct upstream *up = c->owner;
  CHECK_OBJ_ORNULL(up, UP_MAGIC); /* NULL: the connection outlived its upstream */
  return up;
}

static void up_maybe_free(struct upstream *up) {
  if (up->open_handles > 0 || up->arg || up->state != UP_CLOSED)
    return;
  for (size_t i = 0; i < up->nqueued; i++)
    free(up->queue[(up->head + i) % UP_MAX_QUEUE]);
  buf_free(&up->in);
  free(up->partial);
  route_free(up->route);
  runtime_unref(up->rt);
  up->magic = 0;
  free(up);
}

static void on_timer_closed(uv_handle_t *h) {
  struct upstream *up;
  CAST_OBJ_NOTNULL(up, h->data, UP_MAGIC);
  up->open_handles--;
  up_maybe_free(up);
}

static void up_arm_timer(struct upstream *up, uint64_t ms);

static int up_write(struct upstream *up, const char *line) {
  char wire[SMTP_COMMAND_LINE_MAX + 3];
  int n = snprintf(wire, sizeof wire, "%s\r\n", line);
  if (n < 0 || (size_t)n >= sizeof wire)
    return SP_E_TOOLONG;
  log_as(LOG_PROG_SMTP, LOG_DEBUG, up->id, "> %s: %s", up->relay, line);
  return conn_write(up->conn, wire, (size_t)n);
}

/* Closes the current attempt's connection; its memory goes in on_conn_closed. */
static void up_drop_conn(struct upstream *up, bool graceful) {
  if (!up->conn)
    return;
  conn_close(up->conn, graceful);
  up->conn = NULL;
  up->in.len = 0;
  smtp_reply_parser_init(&up->rp);
  free(up->partial);
  up->partial = NULL;
}

static void up_try_candidate(struct upstream *up);

static const struct decide_host *up_req(const struct upstream *up) {
  return &up->route->hosts[up->route->candidates[up->cand].host].req;
}

/* Tells the reports and metrics how a TLS session attempt to this host went; not the
 * sessions of a TLS report's own delivery (RFC 8460 §5.3: not in the next report). */
static void up_observe(struct upstream *up, enum observe_failure f, long verify_error,
                       const char *detail) {
  if (up->route->report)
    return;
  const struct route_candidate *rc = &up->route->candidates[up->cand];
  const struct route_host *rh = &up->route->hosts[rc->host];
  char ip[64] = "";
  const char *open = strchr(up->relay, '['), *close = strrchr(up->relay, ']');
  if (open && close && close > open)
    snprintf(ip, sizeof ip, "%.*s", (int)(close - open - 1), open + 1);
  char local[64] = "";
  if (up->conn)
    conn_local_ip(up->conn, local, sizeof local);
  struct observe_tls t = {
      .domain = up->domain,
      .mx_host = rh->name,
      .ip = ip,
      .local_ip = local,
      .policy = rh->req.policy,
      .failure = f,
      .verify_error = verify_error,
      .detail = detail,
      .sts = up->route->has_sts ? &up->route->sts : NULL,
      .tlsa = rh->records,
      .ntlsa = rh->nrecords,
      .sts_failure = up->route->sts_failure.kind,
      .sts_detail = up->route->sts_failure.reason,
  };
  observe_tls_result(&t);
}

/* A check of an MTA-STS testing policy failed (RFC 8461 §5): logged and reported,
 * and the session goes on. */
static void up_testing_failed(struct upstream *up, enum observe_failure f,
                              long verify_error, const char *why) {
  log_as(LOG_PROG_SMTP, LOG_INFO, up->id, "%s: %s; delivering anyway (mta-sts/testing)",
         up->relay, why);
  up_observe(up, f, verify_error, why);
}

/* The current candidate failed before the connection was ready for mail. A TLS
 * failure is retried in plaintext only where the policy allows plaintext. */
static void up_attempt_failed(struct upstream *up, const char *why, bool retry_plain) {
  if (up_req(up)->tls_required && retry_plain) {
    retry_plain = false;
    up->policy_failed = true;
  }
  size_t n = strlen(up->reasons);
  snprintf(up->reasons + n, sizeof up->reasons - n, "%s%s: %s", n ? "; " : "",
           up->relay, why);
  log_as(LOG_PROG_SMTP, LOG_INFO, up->id, "%s: %s", up->relay, why);
  up_drop_conn(up, false);
  uv_timer_stop(&up->timer);
  if (retry_plain && !up->plaintext_retry) {
    log_as(LOG_PROG_SMTP, LOG_INFO, up->id, "%s: retrying without TLS (level may)",
           up->relay);
    up->plaintext_retry = true;
  } else {
    up->plaintext_retry = false;
    up->cand++;
  }
  up_try_candidate(up);
}

/* The host refused us with a complete reply (code 0: a decision of ours after one,
 * such as a certificate that failed the policy), so the session is in step: it is
 * ended with QUIT (RFC 5321 §4.1.1.10; Postfix quits a session it gives up on), and
 * after a 421 (the server is closing, §3.8) just closed, in either case without a
 * reset. The next candidate is then tried. */
static void up_refused(struct upstream *up, const char *why, int code) {
  if (up->conn && !up->conn->closing) {
    if (code != 421)
      (void)up_write(up, "QUIT");
    up_drop_conn(up, true);
  }
  up_attempt_failed(up, why, false);
}

/* A fault after the connection was ready: the owner hears of it once. */
static void up_lost(struct upstream *up, const char *why) {
  log_as(LOG_PROG_SMTP, LOG_INFO, up->id, "%s: connection lost: %s", up->relay, why);
  up_drop_conn(up, false);
  uv_timer_stop(&up->timer);
  up_set_state(up, UP_FAILED);
  if (up->arg)
    up->ev->on_lost(up->arg, why);
}

static void up_fail(struct upstream *up, const char *why) {
  if (up->state == UP_READY || !up->route) /* no route: it was ready once */
    up_lost(up, why);
  else
    up_attempt_failed(up, why, false);
}

/* A write failed inside upstream_command(): the owner hears of the loss from the
 * loop, never from inside its own call (it is still using the upstream). */
static void up_on_lost_later(uv_timer_t *t) {
  struct upstream *up;
  CAST_OBJ_NOTNULL(up, t->data, UP_MAGIC);
  up_lost(up, up->lost_reason);
}

static void up_lost_later(struct upstream *up, const char *why) {
  snprintf(up->lost_reason, sizeof up->lost_reason, "%s", why);
  up->lost_pending = true;
  uv_timer_start(&up->timer, up_on_lost_later, 0, 0);
}

static void up_send_queued(struct upstream *up) {
  bool pipelining = up->caps.flags & SMTP_CAP_PIPELINING;
  while (up->nsent < up->nqueued && (pipelining || up->nsent == 0)) {
    const char *line = up->queue[(up->head + up->nsent) % UP_MAX_QUEUE];
    up->nsent++;
    if (up_write(up, line) < 0) {
      up_lost_later(up, conn_error(up->conn));
      return;
    }
  }
  if (up->nsent > 0)
    up_arm_timer(up, up->final_pending ? up->rt->cfg->timeout_data_done
                                       : up->rt->cfg->timeout_command);
}

/* The one way to READY. Every caller has either a TLS session that passed the host's
 * policy (EHLO_TLS: the handshake and its verdict were judged in up_on_handshake) or
 * a host whose policy allows plaintext; this re-checks the first case so that no
 * future path can hand a plaintext or unjudged connection to a level requiring TLS. */
static void up_ready(struct upstream *up) {
  if (up_req(up)->tls_required && (up->state != UP_EHLO_TLS || !up->conn->tls)) {
    up->policy_failed = true;
    up_attempt_failed(up, "TLS is required, but was not offered by host", false);
    return;
  }
  /* The candidates, TLSA records and MTA-STS policy were only needed to get here:
   * a connection parked in the pool should not carry them (about 17 KiB). */
  snprintf(up->policy, sizeof up->policy, "%s", up_req(up)->policy);
  route_free(up->route);
  up->route = NULL;
  up_set_state(up, UP_READY);
  uv_timer_stop(&up->timer);
  if (up->arg)
    up->ev->on_ready(up->arg);
}

/* Sets up how the certificate will be judged: DANE records, pinned fingerprints,
 * PKIX names, or nothing (level may/encrypt: the verdict is only logged, and with
 * MTA-STS testing reported). */
static int up_prepare_auth(SSL *ssl, const struct route_host *rh, int floor) {
  const struct decide_host *req = &rh->req;
  /* A table entry may raise the floor, never lower it. */
  if (req->min_protocol > floor && !SSL_set_min_proto_version(ssl, req->min_protocol))
    return -1;
  switch (req->auth) {
  case DECIDE_AUTH_DANE: {
    struct dane_tlsa *usable = calloc(req->nusable ? req->nusable : 1, sizeof *usable);
    if (!usable)
      return -1;
    size_t n = 0;
    for (size_t i = 0; i < rh->nrecords && n < req->nusable; i++)
      if (dane_tlsa_usable(&rh->records[i]))
        usable[n++] = rh->records[i];
    /* The TLSA base domain is the reference name; the other name is accepted too. */
    const char *base = rh->tlsa_at_cname ? rh->cname : rh->name;
    int rc = tls_verify_prepare_dane(ssl, base, usable, n);
    free(usable);
    if (rc == 0 && rh->cname[0])
      rc = tls_verify_add_dane_name(ssl, base == rh->name ? rh->cname : rh->name);
    return rc;
  }
  case DECIDE_AUTH_FINGERPRINT:
    return tls_verify_prepare_fingerprints(ssl, rh->name, rh->fingerprints,
                                           rh->nfingerprints);
  case DECIDE_AUTH_PKIX:
  default: {
    /* Without PKIX the chain is judged (Trusted/Untrusted) but no name is required,
     * as in Postfix at levels may and encrypt; MTA-STS testing names the host only
     * to report a mismatch. */
    const char *names[DECIDE_MAX_NAMES];
    for (size_t i = 0; i < req->nnames; i++)
      names[i] = req->names[i];
    return tls_verify_prepare(ssl, names, req->nnames);
  }
  }
}

/* FNV-1a over bytes, for the session cache key. */
static uint64_t fnv1a(uint64_t h, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++)
    h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

/* A resumed session keeps the verdict of the handshake that created it, so the key
 * names everything that verdict depended on: the peer, the policy, and its TLSA
 * records, pins or names (as Postfix keys its session cache). */
static void up_session_key(const struct route_host *rh, const char *relay, char *out,
                           size_t cap) {
  const struct decide_host *req = &rh->req;
  uint64_t h = 0xcbf29ce484222325ull;
  h = fnv1a(h, &req->auth, sizeof req->auth);
  h = fnv1a(h, &req->min_protocol, sizeof req->min_protocol);
  for (size_t i = 0; req->auth == DECIDE_AUTH_DANE && i < rh->nrecords; i++) {
    const struct dane_tlsa *r = &rh->records[i];
    if (!dane_tlsa_usable(r))
      continue;
    uint8_t head[3] = {r->usage, r->selector, r->mtype};
    h = fnv1a(fnv1a(h, head, sizeof head), r->data, r->len);
  }
  if (req->auth == DECIDE_AUTH_FINGERPRINT)
    h = fnv1a(h, rh->fingerprints, rh->nfingerprints * sizeof *rh->fingerprints);
  for (size_t i = 0; i < req->nnames; i++) /* PKIX, or MTA-STS testing */
    h = fnv1a(h, req->names[i], strlen(req->names[i]) + 1);
  snprintf(out, cap, "%s|%s|%016llx", relay, req->policy, (unsigned long long)h);
}

static void up_start_tls(struct upstream *up) {
  const struct route_host *rh = &up->route->hosts[up->route->candidates[up->cand].host];
  struct tls *t;
  /* RFC 7672 §8.1: with DANE, SNI names the TLSA base domain. */
  const char *sni =
      up_req(up)->auth == DECIDE_AUTH_DANE && rh->tlsa_at_cname ? rh->cname : rh->name;
  if (tls_new_client(up->rt->client_ctx, sni, &t) < 0) {
    up_attempt_failed(up, "TLS setup failed", true);
    return;
  }
  SSL *ssl = tls_ssl(t);
  char key[400];
  up_session_key(rh, up->relay, key, sizeof key);
  tls_context_resume(ssl, key);
  if (up_prepare_auth(ssl, rh, up->rt->cfg->tls.min_protocol) < 0) {
    tls_free(t);
    up->policy_failed = true;
    up_attempt_failed(up, "TLS setup failed: no usable TLSA record or pin", false);
    return;
  }
  up_set_state(up, UP_HANDSHAKE);
  up->tls_started_ms = uv_now(up->rt->loop);
  if (conn_start_tls(up->conn, t) < 0)
    up_attempt_failed(up, conn_error(up->conn), true);
}

static void up_send_hello(struct upstream *up, const char *verb, enum up_state st) {
  char line[300];
  snprintf(line, sizeof line, "%s %s", verb, up->rt->cfg->helo_name);
  up_set_state(up, st);
  if (up_write(up, line) < 0)
    up_attempt_failed(up, conn_error(up->conn), false);
  else
    up_arm_timer(up, up->rt->cfg->timeout_command);
}

static void up_on_handshake(struct conn *c, int err) {
  struct upstream *up = up_from_conn(c);
  if (!up || c != up->conn)
    return;
  char why[512];
  if (err < 0) {
    snprintf(why, sizeof why, "TLS handshake failed: %s", conn_error(c));
    up_observe(up, OBSERVE_HANDSHAKE, 0, why);
    up_attempt_failed(up, why, true);
    return;
  }
  SSL *ssl = tls_ssl(c->tls);
  char reason[256];
  if (tls_verify_check_dh(ssl, up->rt->cfg->tls.min_dh_bits, reason, sizeof reason) <
      0) {
    snprintf(why, sizeof why, "TLS handshake failed: %s", reason);
    up_observe(up, OBSERVE_HANDSHAKE, 0, why);
    up_attempt_failed(up, why, true);
    return;
  }
  enum tls_verdict verdict = tls_verify_verdict(ssl);
  up->verdict = tls_verdict_name(verdict);
  snprintf(up->tls_version, sizeof up->tls_version, "%s", SSL_get_version(ssl));
  char summary[512];
  tls_verify_summary(ssl, summary, sizeof summary);
  log_as(LOG_PROG_SMTP, LOG_INFO, up->id, "%s TLS connection established to %s: %s%s",
         up->verdict, up->relay, summary, SSL_session_reused(ssl) ? " (resumed)" : "");
  const struct decide_host *req = up_req(up);
  char match[128];
  tls_verify_dane_match(ssl, match, sizeof match);
  if (match[0] && req->auth == DECIDE_AUTH_FINGERPRINT)
    log_as(LOG_PROG_SMTP, LOG_INFO, up->id,
           "%s: matched pinned %s SHA-256 fingerprint %s", up->relay,
           match[2] == '0' ? "certificate" : "public key", match + 6);
  else if (match[0])
    log_as(LOG_PROG_SMTP, LOG_INFO, up->id, "%s: matched TLSA record %s", up->relay,
           match);
  if (req->auth != DECIDE_AUTH_NONE && verdict != TLS_VERDICT_VERIFIED) {
    tls_verify_failure(ssl, reason, sizeof reason);
    snprintf(why, sizeof why, "Server certificate not verified (%s): %s", req->policy,
             reason);
    up->policy_failed = true;
    up_observe(up, OBSERVE_CERTIFICATE, SSL_get_verify_result(ssl), why);
    up_refused(up, why, 0);
    return;
  }
  observe_handshake((double)(uv_now(up->rt->loop) - up->tls_started_ms) / 1000.0);
  if (req->sts_testing && req->sts_unlisted) {
    up_testing_failed(up, OBSERVE_MX_NOT_LISTED, 0, "not listed in the MTA-STS policy");
  } else if (req->sts_testing && verdict != TLS_VERDICT_VERIFIED) {
    tls_verify_failure(ssl, reason, sizeof reason);
    snprintf(why, sizeof why, "Server certificate not verified (%s): %s", req->policy,
             reason);
    up_testing_failed(up, OBSERVE_CERTIFICATE, SSL_get_verify_result(ssl), why);
  } else {
    up_observe(up, OBSERVE_OK, 0, NULL);
  }
  up_send_hello(up, "EHLO", UP_EHLO_TLS);
}

/* After the first EHLO: STARTTLS when offered and the level wants TLS. */
static void up_after_ehlo(struct upstream *up) {
  const struct decide_host *req = up_req(up);
  bool offered = up->caps.flags & SMTP_CAP_STARTTLS;
  if (req->level != TLS_LEVEL_NONE && offered && !up->plaintext_retry) {
    up_set_state(up, UP_STARTTLS);
    if (up_write(up, "STARTTLS") < 0)
      up_attempt_failed(up, conn_error(up->conn), false);
  } else if (req->tls_required) {
    up->policy_failed = true;
    up_observe(up, OBSERVE_NO_STARTTLS, 0,
               "TLS is required, but was not offered by host");
    up_refused(up, "TLS is required, but was not offered by host", 0);
  } else {
    if (req->sts_testing && !offered)
      up_testing_failed(up, OBSERVE_NO_STARTTLS, 0, "STARTTLS was not offered by host");
    up_ready(up);
  }
}

/* Replies before the connection is ready: greeting, EHLO/HELO, STARTTLS. */
static void up_on_setup_reply(struct upstream *up, const struct smtp_reply *r) {
  char why[SMTP_REPLY_LINE_MAX + 64];
  snprintf(why, sizeof why, "%s reply: %d %s", up_state_names[up->state], r->code,
           r->nlines ? r->lines[0] : "");
  int cls = r->code / 100;
  switch (up->state) {
  case UP_GREETING:
    if (cls == 2)
      up_send_hello(up, "EHLO", UP_EHLO);
    else
      up_refused(up, why, r->code);
    break;
  case UP_EHLO:
    if (cls == 5) {
      up_send_hello(up, "HELO", UP_HELO);
    } else if (cls != 2) {
      up_refused(up, why, r->code);
    } else {
      smtp_ehlo_caps(r, &up->caps);
      up_after_ehlo(up);
    }
    break;
  case UP_HELO:
    /* A HELO session has no extensions, so no STARTTLS: where TLS is required this
     * host fails exactly as one that does not offer it (an attacker who refuses our
     * EHLO must not get plaintext). */
    memset(&up->caps, 0, sizeof up->caps);
    if (cls == 2)
      up_after_ehlo(up);
    else
      up_refused(up, why, r->code);
    break;
  case UP_STARTTLS:
    if (cls == 2) {
      up_start_tls(up);
    } else if (up_req(up)->tls_required) {
      up->policy_failed = true;
      up_observe(up, OBSERVE_NO_STARTTLS, 0, why);
      up_refused(up, why, r->code);
    } else if (r->code == 421) {
      /* The server is closing the connection (RFC 5321 §3.8): no plaintext session
       * is left to go on with, so this host fails and the next one is tried. */
      up_refused(up, why, r->code);
    } else {
      /* At level may a refused STARTTLS means plaintext, as in Postfix. */
      log_as(LOG_PROG_SMTP, LOG_INFO, up->id,
             "%s: STARTTLS refused (%s), continuing without TLS", up->relay, why);
      if (up_req(up)->sts_testing)
        up_testing_failed(up, OBSERVE_NO_STARTTLS, 0, why);
      up_ready(up);
    }
    break;
  case UP_EHLO_TLS:
    if (cls == 2) {
      smtp_ehlo_caps(r, &up->caps);
      up_ready(up);
    } else {
      up_refused(up, why, r->code);
    }
    break;
  default:
    break;
  }
}

/* A reply to a command the owner queued. */
static void up_on_command_reply(struct upstream *up, const struct smtp_reply *r) {
  if (up->nsent == 0) {
    up_lost(up, "unexpected reply from server");
    return;
  }
  free(up->queue[up->head]);
  up->queue[up->head] = NULL;
  up->head = (up->head + 1) % UP_MAX_QUEUE;
  up->nqueued--;
  up->nsent--;
  if (up->nsent == 0) {
    uv_timer_stop(&up->timer);
    up->messages += up->final_pending;
    up->final_pending = false;
  }
  if (up->arg)
    up->ev->on_reply(up->arg, r);
  if (up->state != UP_READY || !up->conn)
    return;
  if (r->code == 421) {
    /* RFC 5321 §3.8: the server is closing the channel, whatever it does next.
     * Nothing more is sent, and the connection is never used again. */
    char why[SMTP_REPLY_LINE_MAX + 16];
    snprintf(why, sizeof why, "421 %s", r->nlines ? r->lines[0] : "");
    up_drop_conn(up, true);
    up_lost(up, why);
    return;
  }
  up_send_queued(up);
}

/* Replies are assembled in one buffer per thread: a complete reply is handled before
 * the read callback returns, and the rare reply split across reads is parked in a
 * buffer of its own until its last line comes, so idle connections hold none. */
static _Thread_local struct smtp_reply up_reply;

static void up_park_partial(struct upstream *up) {
  if (!smtp_reply_parser_busy(&up->rp))
    return;
  up->partial = malloc(sizeof *up->partial);
  if (!up->partial) {
    up_fail(up, "out of memory");
    return;
  }
  memcpy(up->partial, &up_reply, sizeof up_reply);
}

static void up_on_data(struct conn *c, const char *data, size_t len) {
  struct upstream *up = up_from_conn(c);
  if (!up || c != up->conn)
    return;
  if (buf_append(&up->in, data, len) < 0) {
    up_fail(up, "reply too long");
    return;
  }
  if (up->partial) {
    memcpy(&up_reply, up->partial, sizeof up_reply);
    free(up->partial);
    up->partial = NULL;
  }
  size_t line_len, used;
  int rc;
  while (c == up->conn &&
         (rc = smtp_find_line(up->in.data, up->in.len, SMTP_REPLY_LINE_MAX + 4,
                              &line_len, &used)) != 0) {
    if (rc < 0) {
      up_fail(up, "reply line too long");
      return;
    }
    rc = smtp_reply_feed_line(&up->rp, up->in.data, line_len, &up_reply);
    if (log_enabled(LOG_DEBUG))
      log_as(LOG_PROG_SMTP, LOG_DEBUG, up->id, "< %s: %.*s", up->relay, (int)line_len,
             up->in.data);
    buf_consume(&up->in, used);
    if (rc < 0) {
      up_fail(up, "malformed reply");
      return;
    }
    if (rc == 0)
      continue;
    if (up->state == UP_READY)
      up_on_command_reply(up, &up_reply);
    else
      up_on_setup_reply(up, &up_reply);
    if (up->state == UP_HANDSHAKE && c == up->conn && up->in.len > 0) {
      /* Bytes after the server's STARTTLS reply were sent in plaintext before TLS
       * began: never read them as protocol (CVE-2011-0411 class). */
      log_as(LOG_PROG_SMTP, LOG_WARNING, up->id,
             "%s: discarded %zu bytes sent in plaintext after STARTTLS reply",
             up->relay, up->in.len);
      up->in.len = 0;
    }
  }
  if (c == up->conn)
    up_park_partial(up);
  buf_shrink_if_empty(&up->in);
}

static void up_on_error(struct conn *c, int err) {
  struct upstream *up = up_from_conn(c);
  if (!up || c != up->conn)
    return;
  char why[300];
  snprintf(why, sizeof why, "%s",
           err == SP_E_EOF ? "connection closed by server" : conn_error(c));
  if (up->state == UP_HANDSHAKE) {
    up_observe(up, OBSERVE_HANDSHAKE, 0, why);
    up_attempt_failed(up, why, true);
  } else {
    up_fail(up, why);
  }
}

static void up_on_drain(struct conn *c) {
  struct upstream *up = up_from_conn(c);
  if (up && c == up->conn && up->state == UP_READY && up->arg && up->ev->on_drain)
    up->ev->on_drain(up->arg);
}

static void up_on_connect(struct conn *c, int status) {
  struct upstream *up = up_from_conn(c);
  if (!up || c != up->conn)
    return;
  if (status < 0) {
    char why[300];
    snprintf(why, sizeof why, "connect failed: %s", conn_error(c));
    up_attempt_failed(up, why, false);
    return;
  }
  up_set_state(up, UP_GREETING);
  conn_read_start(c);
  up_arm_timer(up, up->rt->cfg->timeout_command);
}

static void up_on_conn_closed(struct conn *c) {
  struct upstream *up;
  CAST_OBJ_NOTNULL(up, c->owner, UP_MAGIC);
  free(c);
  up->open_handles--;
  up_maybe_free(up);
}

static const struct conn_events up_conn_events = {
    .on_data = up_on_data,
    .on_error = up_on_error,
    .on_drain = up_on_drain,
    .on_handshake = up_on_handshake,
    .on_connect = up_on_connect,
    .on_closed = up_on_conn_closed,
};

static void up_on_timer(uv_timer_t *t) {
  struct upstream *up;
  CAST_OBJ_NOTNULL(up, t->data, UP_MAGIC);
  char why[128];
  snprintf(why, sizeof why, "timeout in state %s", up_state_names[up->state]);
  if (up->state == UP_CONNECTING)
    snprintf(why, sizeof why, "connect timeout");
  if (up->state == UP_HANDSHAKE)
    up_attempt_failed(up, "TLS handshake timeout", true);
  else
    up_fail(up, why);
}

static void up_arm_timer(struct upstream *up, uint64_t ms) {
  if (!up->lost_pending)
    uv_timer_start(&up->timer, up_on_timer, ms, 0);
}

static void up_format_relay(struct upstream *up, const struct route_candidate *rc) {
  char ip[64] = "";
  uint16_t port;
  if (rc->addr.ss_family == AF_INET6) {
    uv_ip6_name((const struct sockaddr_in6 *)&rc->addr, ip, sizeof ip);
    port = ntohs(((const struct sockaddr_in6 *)&rc->addr)->sin6_port);
  } else {
    uv_ip4_name((const struct sockaddr_in *)&rc->addr, ip, sizeof ip);
    port = ntohs(((const struct sockaddr_in *)&rc->addr)->sin_port);
  }
  snprintf(up->relay, sizeof up->relay, "%s[%s]:%u", up->route->hosts[rc->host].name,
           ip, port);
}

static void up_try_candidate(struct upstream *up) {
  while (up->cand < up->route->ncandidates) {
    const struct route_candidate *rc = &up->route->candidates[up->cand];
    up_format_relay(up, rc);
    up->tls_version[0] = '\0';
    up->verdict = NULL;
    memset(&up->caps, 0, sizeof up->caps);
    struct conn *c = malloc(sizeof *c);
    if (!c || conn_init(up->rt->loop, c, &up_conn_events, up) < 0) {
      free(c);
      break;
    }
    up->open_handles++;
    up->conn = c;
    up_set_state(up, UP_CONNECTING);
    if (conn_connect(c, (const struct sockaddr *)&rc->addr) == 0) {
      observe_mx_connection(false);
      up_arm_timer(up, up->rt->cfg->timeout_connect);
      return;
    }
    char why[300];
    snprintf(why, sizeof why, "connect failed: %s", conn_error(c));
    up_attempt_failed(up, why, false);
    return;
  }
  up_set_state(up, UP_FAILED);
  size_t n = strlen(up->reasons);
  if (up->route->skipped[0])
    snprintf(up->reasons + n, sizeof up->reasons - n, "%s%s", n ? "; " : "",
             up->route->skipped);
  if (up->arg)
    up->ev->on_failed(up->arg, up->reasons,
                      up->policy_failed || up->route->policy_skipped);
}

/* Starts the first attempt from the loop, so on_failed never runs inside
 * upstream_open(). */
static void up_on_start(uv_timer_t *t) {
  struct upstream *up;
  CAST_OBJ_NOTNULL(up, t->data, UP_MAGIC);
  up_try_candidate(up);
}

struct upstream *upstream_open(struct runtime *rt, struct route *route,
                               const char *domain, const char *id,
                               const struct upstream_events *ev, void *arg) {
  struct upstream *up = calloc(1, sizeof *up);
  if (!up) {
    route_free(route);
    return NULL;
  }
  up->magic = UP_MAGIC;
  up->rt = runtime_ref(rt);
  up->ev = ev;
  up->arg = arg;
  snprintf(up->id, sizeof up->id, "%s", id);
  snprintf(up->domain, sizeof up->domain, "%s", domain);
  up->route = route;
  up->state = UP_CONNECTING;
  buf_init(&up->in, UP_IN_MAX);
  smtp_reply_parser_init(&up->rp);
  uv_timer_init(rt->loop, &up->timer);
  up->timer.data = up;
  up->open_handles = 1;
  uv_timer_start(&up->timer, up_on_start, 0, 0);
  return up;
}

int upstream_command(struct upstream *up, const char *line) {
  if (up->state != UP_READY || up->nqueued == UP_MAX_QUEUE)
    return SP_E_INVAL;
  char *copy = strdup(line);
  if (!copy)
    return SP_E_NOMEM;
  up->queue[(up->head + up->nqueued) % UP_MAX_QUEUE] = copy;
  up->nqueued++;
  up_send_queued(up);
  return 0;
}

int upstream_body(struct upstream *up, const char *data, size_t len) {
  if (up->state != UP_READY || !up->conn)
    return SP_E_INVAL;
  if (len == 0)
    return 0;
  int rc = conn_write(up->conn, data, len);
  if (rc < 0)
    return rc;
  up_arm_timer(up, up->rt->cfg->timeout_command);
  return 0;
}

bool upstream_body_busy(const struct upstream *up) {
  return up->conn && up->conn->write_pending > UP_BODY_HIGH_WATER;
}

int upstream_body_end(struct upstream *up) {
  if (up->state != UP_READY || up->nqueued == UP_MAX_QUEUE)
    return SP_E_INVAL;
  char *copy = strdup(".");
  if (!copy)
    return SP_E_NOMEM;
  up->queue[(up->head + up->nqueued) % UP_MAX_QUEUE] = copy;
  up->nqueued++;
  up->final_pending = true;
  up_send_queued(up);
  return 0;
}

void upstream_close(struct upstream *up, bool graceful) {
  if (!up)
    return;
  up->arg = NULL;
  if (up->conn) {
    bool polite = graceful && up->state == UP_READY && up->nsent == 0;
    if (polite)
      up_write(up, "QUIT");
    up_drop_conn(up, polite);
  }
  up_set_state(up, UP_CLOSED);
  uv_timer_stop(&up->timer);
  uv_close((uv_handle_t *)&up->timer, on_timer_closed);
}

const char *upstream_domain(const struct upstream *up) {
  return up->domain;
}
const struct smtp_caps *upstream_caps(const struct upstream *up) {
  return &up->caps;
}
const char *upstream_relay(const struct upstream *up) {
  return up->relay;
}
const char *upstream_tls(const struct upstream *up) {
  return up->tls_version[0] ? up->tls_version : "none";
}
const char *upstream_verdict(const struct upstream *up) {
  return up->verdict;
}
const char *upstream_policy(const struct upstream *up) {
  const struct route *r = up->route;
  if (!r)
    return up->policy;
  if (r->ncandidates == 0)
    return "none";
  size_t c = up->cand < r->ncandidates ? up->cand : r->ncandidates - 1;
  return r->hosts[r->candidates[c].host].req.policy; /* the host tried last */
}
SSL *upstream_ssl(const struct upstream *up) {
  if (up->state != UP_READY || !up->conn || !up->conn->tls)
    return NULL;
  return tls_ssl(up->conn->tls);
}

void upstream_log_delivery(const struct upstream *up, const char *policy, int code,
                           const char *enh, struct log_delivery *d) {
  char dsn[16];
  if (enh && enh[0])
    snprintf(dsn, sizeof dsn, "%s", enh);
  else
    snprintf(dsn, sizeof dsn, "%d.0.0", code / 100);
  d->relay = up ? upstream_relay(up) : "none";
  d->tls = up ? upstream_tls(up) : "none";
  d->verdict = up ? upstream_verdict(up) : NULL;
  d->policy = up ? upstream_policy(up) : policy && policy[0] ? policy : NULL;
  d->dsn = dsn;
  d->status = code / 100 == 2 ? "sent" : code / 100 == 5 ? "bounced" : "deferred";
  log_delivery(d);
  d->dsn = NULL;
}

void upstream_set_owner(struct upstream *up, const struct upstream_events *ev,
                        void *arg, void *pool, const char *id) {
  up->ev = ev;
  up->arg = arg;
  up->pool = pool;
  if (id)
    snprintf(up->id, sizeof up->id, "%s", id);
}

struct upstream *upstream_of(void *arg) {
  struct upstream *up;
  CAST_OBJ_NOTNULL(up, arg, UP_MAGIC);
  return up;
}

void *upstream_pool(const struct upstream *up) {
  return up->pool;
}
unsigned upstream_messages(const struct upstream *up) {
  return up->messages;
}
bool upstream_for_report(const struct upstream *up) {
  return up->route && up->route->report;
}
bool upstream_idle(const struct upstream *up) {
  return up->state == UP_READY && up->conn && up->nqueued == 0 && !up->final_pending;
}
const struct runtime *upstream_runtime(const struct upstream *up) {
  return up->rt;
}
