/* Prometheus metrics and /healthz on an optional loopback HTTP listener
 * (metrics.listen). Counters are process-wide; the listener is owned by the daemon. */
#ifndef SP_METRICS_H
#define SP_METRICS_H

#include <stdbool.h>
#include <uv.h>

#include "config.h"
#include "observe.h"

struct metrics;

/* Starts the listener on cfg->metrics_listen (only when cfg->metrics_enabled). */
int metrics_start(uv_loop_t *loop, const struct config *cfg, struct metrics **out,
                  char *err, size_t errlen);
void metrics_close(struct metrics *m); /* frees after its handles closed */

/* Counter updates (see observe.h). */
void metrics_tls_result(const struct observe_tls *t);
void metrics_delivery(const char *status, const char *verdict, const char *policy,
                      double seconds);
void metrics_mx_connection(bool reused);
void metrics_handshake(double seconds);
void metrics_dns_failure(void);
void metrics_sts_fetch(bool ok);
void metrics_session(bool opened);

#endif
