#include "proxy/core/observe.h"

/* Set before any worker thread starts and never after: read without a lock. */
static observe_tls_sink *tls_sink;
static const struct observe_counters *counters;
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

void observe_set_counters(const struct observe_counters *c) {
  counters = c;
}

/* Calls the registered counter f, if any, with the arguments that follow. */
#define COUNT(f, ...)                                                                  \
  do {                                                                                 \
    if (counters && counters->f)                                                       \
      counters->f(__VA_ARGS__);                                                        \
  } while (0)

void observe_tls_result(const struct observe_tls *t) {
  COUNT(tls_result, t);
  if (tls_forward)
    tls_forward(t);
  else
    observe_tls_forwarded(t);
}

void observe_delivery(const char *status, const char *verdict, const char *policy,
                      double seconds) {
  COUNT(delivery, status, verdict, policy, seconds);
}

void observe_mx_connection(bool reused) {
  COUNT(mx_connection, reused);
}
void observe_handshake(double seconds) {
  COUNT(handshake, seconds);
}
void observe_dns_failure(void) {
  if (counters && counters->dns_failure)
    counters->dns_failure();
}
void observe_dns_query(void) {
  if (counters && counters->dns_query)
    counters->dns_query();
}
void observe_dns_cache_hit(bool inflight) {
  COUNT(dns_cache_hit, inflight);
}
void observe_sts_fetch(bool ok) {
  COUNT(sts_fetch, ok);
}
void observe_session(bool opened) {
  COUNT(session, opened);
}
void observe_cache_clients(int dclients, int dup) {
  COUNT(cache_clients, dclients, dup);
}
void observe_cache_error(void) {
  if (counters && counters->cache_error)
    counters->cache_error();
}
