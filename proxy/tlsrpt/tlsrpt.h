/* TLS reporting (RFC 8460): counts every TLS session attempt per policy domain, keeps
 * the counts in the store, and once per tlsrpt.interval sends each domain that
 * publishes _smtp._tls a JSON report (gzip) to its https: and mailto: rua. */
#ifndef SP_TLSRPT_H
#define SP_TLSRPT_H

#include <uv.h>

#include "proxy/config/config.h"
#include "proxy/core/observe.h"

struct tlsrpt;
struct runtime;

/* What the loaded config cannot do here: a tlsrpt.dkim key whose algorithm the linked
 * libopendkim cannot sign with. 0, or SP_E_CONFIG with the reason in err. */
int tlsrpt_check(const struct config *cfg, char *err, size_t errlen);

/* Starts the reporting timer (only when cfg->tlsrpt_enabled), after tlsrpt_check;
 * logs how mailed reports will be signed, or warns that they will not be sent. */
int tlsrpt_start(uv_loop_t *loop, struct runtime *rt, struct tlsrpt **out, char *err,
                 size_t errlen);
void tlsrpt_close(struct tlsrpt *t);

/* Records one result (no-op when reporting is off). observe.h's TLS sink: main
 * registers it at start-up. */
void tlsrpt_record(const struct observe_tls *t);

/* `starttls-proxy tlsrpt send`: builds and sends every pending report now, then
 * returns the exit code. */
int tlsrpt_send_now(const char *config_path);

#endif
