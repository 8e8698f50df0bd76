/* The SMTP client side: one connection to one MX host, one explicit state machine.
 *
 * upstream_open() tries the route's candidates in order — connect, greeting, EHLO,
 * STARTTLS when offered, EHLO again — until one is ready (on_ready) or all failed
 * (on_failed, with each host and why). At level `may` a TLS handshake failure is
 * retried once in plaintext on the same address, as Postfix does.
 *
 * Once ready, the owner queues commands with upstream_command(); each gets exactly one
 * on_reply, in order. They are pipelined when the MX offers PIPELINING. Message data
 * goes through upstream_body() and ends with upstream_body_end(), whose reply is the
 * final one. A fault after ready calls on_lost once; then nothing more.
 *
 * Ownership: the session owns the upstream until it calls upstream_close(); after that
 * the upstream frees itself once its socket is closed, and calls nothing back. */
#ifndef SP_UPSTREAM_H
#define SP_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/outbound/router.h"
#include "proxy/outbound/runtime.h"
#include "proxy/wire/smtp.h"

struct upstream;
struct log_delivery;

/* "host[ip]:port" of an MX connection: a 255-byte name, an IPv6 address, a port. */
#define UPSTREAM_RELAY_MAX 320

struct upstream_events {
  void (*on_ready)(void *arg);
  /* reasons: "host[ip]:port: why; ..." for every candidate tried or skipped;
   * policy: some host failed or was left out because of the TLS policy (the MTA gets
   * 4.7.5 rather than 4.4.1). */
  void (*on_failed)(void *arg, const char *reasons, bool policy);
  void (*on_reply)(void *arg, const struct smtp_reply *reply);
  /* The body write queue drained: upstream_body_busy() is false again (may be
   * NULL). */
  void (*on_drain)(void *arg);
  void (*on_lost)(void *arg, const char *reason);
};

/* id is the session's log id (copied). The upstream takes route (route_free). */
struct upstream *upstream_open(struct runtime *rt, struct route *route,
                               const char *domain, const char *id,
                               const struct upstream_events *ev, void *arg);

/* Queues a command line (without CRLF). Returns 0 or an error (not ready, too many
 * queued). */
int upstream_command(struct upstream *up, const char *line);
int upstream_body(struct upstream *up, const char *data, size_t len);
bool upstream_body_busy(const struct upstream *up);
/* Sends the terminating ".\r\n"; the reply comes with the data_done timeout. */
int upstream_body_end(struct upstream *up);

/* graceful: say QUIT first; otherwise reset the connection, so an unfinished message
 * is discarded by the MX (no final dot was sent). */
void upstream_close(struct upstream *up, bool graceful);

/* Logs one recipient's outcome (core/log.h's delivery line): d's id, from, to, delay
 * and reply as the caller set them; relay, tls, verdict and policy from up (NULL:
 * none, and policy when not empty); dsn from enh (else the code's class); status
 * (sent, deferred, bounced) from code. d->dsn points into this call only. */
void upstream_log_delivery(const struct upstream *up, const char *policy, int code,
                           const char *enh, struct log_delivery *d);

/* Hands the upstream to another owner: the connection pool when parked between
 * transactions, or a session taking it from there. Callbacks go to ev/arg from now
 * on; pool is the pool it is parked in (NULL when not parked); id, when not NULL,
 * is the new owner's log id. */
void upstream_set_owner(struct upstream *up, const struct upstream_events *ev,
                        void *arg, void *pool, const char *id);
void *upstream_pool(const struct upstream *up);
/* arg, checked to be a live upstream (core/obj.h): for an owner whose callback
 * argument is the upstream itself (the pool). */
struct upstream *upstream_of(void *arg);
const struct runtime *upstream_runtime(const struct upstream *up);
/* Transactions finished on this connection (final replies received). */
unsigned upstream_messages(const struct upstream *up);
/* Ready for a new transaction: connected, greeted, nothing queued or awaited. */
bool upstream_idle(const struct upstream *up);
/* Routed for a TLS report's delivery (router_route_report): judged at tlsrpt/may, so
 * it must never serve another transaction. */
bool upstream_for_report(const struct upstream *up);

const char *upstream_domain(const struct upstream *up);
const struct smtp_caps *upstream_caps(const struct upstream *up);
const char *upstream_relay(const struct upstream *up);   /* "host[ip]:port" */
const char *upstream_tls(const struct upstream *up);     /* "TLSv1.3" or "none" */
const char *upstream_verdict(const struct upstream *up); /* "Untrusted"... or NULL */
const char *upstream_policy(const struct upstream *up);  /* "dane", "default/may" */
/* The TLS session of a ready connection: NULL in plaintext and before on_ready. Valid
 * until upstream_close(); for `check`, which shows the certificate and the cipher. */
SSL *upstream_ssl(const struct upstream *up);

#endif
