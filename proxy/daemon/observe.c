#include "proxy/daemon/observe.h"

#include "proxy/daemon/metrics.h"

/* Set before any worker thread starts and never after: read without a lock. */
static observe_tls_sink *tls_sink;
/* NULL on the main loop's thread: TLS reporting lives there. */
static _Thread_local observe_tls_sink *tls_forward;

void observe_set_tls_sink(observe_tls_sink *fn) {
  tls_sink = fn;
}

void observe_set_tls_forward(observe_tls_sink *fn) {
  tls_forward = fn;
}

void observe_tls_forwarded(const struct observe_tls *t) {
  if (tls_sink)
    tls_sink(t);
}

void observe_tls_result(const struct observe_tls *t) {
  metrics_tls_result(t);
  if (tls_forward)
    tls_forward(t);
  else
    observe_tls_forwarded(t);
}

void observe_delivery(const char *status, const char *verdict, const char *policy,
                      double seconds) {
  metrics_delivery(status, verdict, policy, seconds);
}

void observe_mx_connection(bool reused) {
  metrics_mx_connection(reused);
}
void observe_handshake(double seconds) {
  metrics_handshake(seconds);
}
void observe_dns_failure(void) {
  metrics_dns_failure();
}
void observe_dns_query(void) {
  metrics_dns_query();
}
void observe_dns_cache_hit(bool inflight) {
  metrics_dns_cache_hit(inflight);
}
void observe_sts_fetch(bool ok) {
  metrics_sts_fetch(ok);
}
void observe_session(bool opened) {
  metrics_session(opened);
}
void observe_cache_clients(int dclients, int dup) {
  metrics_cache_clients(dclients, dup);
}
void observe_cache_error(void) {
  metrics_cache_error();
}
