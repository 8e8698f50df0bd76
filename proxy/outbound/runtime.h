/* What a loaded configuration brings to life: the config itself, the outbound TLS
 * context and the DNS resolver. Sessions hold a reference for their whole life, so a
 * reload (SIGHUP) builds a new runtime for new connections while old sessions finish
 * with the one they started with. The last runtime_unref() closes the resolver and
 * frees the rest once its handles are closed.
 *
 * A runtime belongs to one loop (one thread, see workers.h): its reference count,
 * resolver, policy cache and TLS session cache are that loop's alone. */
#ifndef SP_RUNTIME_H
#define SP_RUNTIME_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/config/config.h"
#include "proxy/mtasts/sts.h"
#include "proxy/net/dns.h"
#include "proxy/net/redis.h"

struct runtime {
  uint32_t magic; /* core/obj.h: checked where a close callback hands it back */
  uv_loop_t *loop;
  struct config *cfg;  /* one reference, released with the runtime */
  SSL_CTX *client_ctx; /* owned */
  struct dns *dns;     /* owned */
  struct redis *redis; /* owned; NULL unless cache.backend is redis */
  struct sts *sts;     /* owned; NULL when mta_sts.enabled is no */
  unsigned refs;
};

/* Builds the TLS context and resolver for cfg (which gains a reference). On failure
 * returns a negative error and writes the reason into err. */
int runtime_new(uv_loop_t *loop, struct config *cfg, struct runtime **out, char *err,
                size_t errlen);
struct runtime *runtime_ref(struct runtime *rt);
void runtime_unref(struct runtime *rt);

/* Checks the TLS settings of cfg without a loop (for --check-config). */
int runtime_check_tls(const struct config *cfg, char *err, size_t errlen);

#endif
