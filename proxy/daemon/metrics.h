/* Prometheus metrics and /healthz on an optional loopback HTTP listener
 * (metrics.listen). Counters are process-wide; the listener is owned by the daemon. */
#ifndef SP_METRICS_H
#define SP_METRICS_H

#include <stdbool.h>
#include <uv.h>

#include "proxy/config/config.h"
#include "proxy/core/observe.h"

struct metrics;

/* Starts the listener on listen (metrics.listen), or does nothing when listen is NULL
 * (metrics off). */
int metrics_start(uv_loop_t *loop, const struct config_addr *listen,
                  struct metrics **out, char *err, size_t errlen);
void metrics_close(struct metrics *m); /* frees after its handles closed */

/* ---- the request parser (pure: outside input, fuzzed) ---------------------------- */

#define METRICS_REQUEST_MAX 4096 /* request line and headers; more is refused (400) */

enum metrics_target {
  METRICS_TARGET_METRICS,    /* GET /metrics (a query string is ignored) */
  METRICS_TARGET_HEALTHZ,    /* GET /healthz */
  METRICS_TARGET_NOT_FOUND,  /* GET of any other path: 404 */
  METRICS_TARGET_BAD_METHOD, /* a well-formed request with another method: 405 */
};

/* Parses the head of an HTTP/1.0 or 1.1 request in buf[0..len) (a body is never read).
 * Returns 0 when the head is not complete yet (len < METRICS_REQUEST_MAX), the length
 * of the head (through the blank line) with *target set, or -1 when the request is
 * malformed or too large (the caller answers 400 and closes). */
int metrics_parse_request(const char *buf, size_t len, enum metrics_target *target);

/* The Prometheus text exposition of every counter, malloc'd (*len bytes, NUL-terminated
 * too), or NULL when out of memory. */
char *metrics_render(size_t *len);

/* Counter updates (see observe.h). */
/* The counters below, as observe's consumer: main.c registers them at start-up. */
extern const struct observe_counters metrics_counters;

void metrics_tls_result(const struct observe_tls *t);
void metrics_delivery(const char *status, const char *verdict, const char *policy,
                      double seconds);
void metrics_mx_connection(bool reused);
void metrics_handshake(double seconds);
void metrics_dns_failure(void);
void metrics_dns_query(void);
void metrics_dns_cache_hit(bool inflight);
void metrics_sts_fetch(bool ok);
void metrics_session(bool opened);
/* Shared cache (Redis) clients: dclients when one is created (+1) or closed (-1), dup
 * when one comes up (+1) or goes down (-1). Any thread. */
void metrics_cache_clients(int dclients, int dup);
/* A cache operation failed (Redis down, timeout, error reply). Any thread. */
void metrics_cache_error(void);

#endif
