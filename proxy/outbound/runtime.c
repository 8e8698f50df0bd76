#include "proxy/outbound/runtime.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "certs/context.h"
#include "proxy/core/error.h"
#include "proxy/core/obj.h"

#define RUNTIME_MAGIC 0x52554e54u /* "RUNT" */

static SSL_CTX *runtime_client_ctx(const struct config *cfg, char *err, size_t errlen) {
  const struct config_tls *t = &cfg->tls;
  struct tls_client_settings st = {
      .min_protocol = t->min_protocol,
      .groups = t->groups,
      .ciphers = t->ciphers,
      .ciphersuites = t->ciphersuites,
      .ca_file = t->ca_file,
      .ca_path = t->ca_path,
      .min_dh_bits = t->min_dh_bits,
  };
  return tls_context_client_new(&st, err, errlen);
}

int runtime_check_tls(const struct config *cfg, char *err, size_t errlen) {
  SSL_CTX *ctx = runtime_client_ctx(cfg, err, errlen);
  if (!ctx)
    return SP_E_CONFIG;
  SSL_CTX_free(ctx);
  return 0;
}

/* Loops (workers) may build runtimes at the same time on a reload; the resolver
 * library's init count and the first use of OpenSSL's ex_data indexes are process-
 * wide, so building one is serialized. */
static pthread_mutex_t build_lock = PTHREAD_MUTEX_INITIALIZER;

static int runtime_build(uv_loop_t *loop, struct config *cfg, struct runtime **out,
                         char *err, size_t errlen);

int runtime_new(uv_loop_t *loop, struct config *cfg, struct runtime **out, char *err,
                size_t errlen) {
  pthread_mutex_lock(&build_lock);
  int rc = runtime_build(loop, cfg, out, err, errlen);
  pthread_mutex_unlock(&build_lock);
  return rc;
}

static int runtime_build(uv_loop_t *loop, struct config *cfg, struct runtime **out,
                         char *err, size_t errlen) {
  struct tls_trust redis_trust = config_trust(cfg, CONFIG_TRUST_REDIS);
  struct runtime *rt = calloc(1, sizeof *rt);
  if (!rt)
    return SP_E_NOMEM;
  rt->magic = RUNTIME_MAGIC;
  rt->loop = loop;
  rt->refs = 1;
  int rc = SP_E_CONFIG;
  rt->client_ctx = runtime_client_ctx(cfg, err, errlen);
  if (!rt->client_ctx)
    goto fail_ctx;
  struct dns_settings ds = config_dns_settings(cfg);
  if ((rc = dns_new(loop, &ds, &rt->dns)) < 0) {
    snprintf(err, errlen, "DNS resolver: %s", sp_strerror(rc));
    goto fail_dns;
  }
  if (cfg->cache_backend == CONFIG_CACHE_REDIS &&
      (rc = redis_new(loop, &cfg->redis, &redis_trust, &rt->redis, err, errlen)) < 0)
    goto fail_redis;
  if (cfg->sts_enabled &&
      (rc = sts_new(loop, cfg, rt->dns, rt->redis, &rt->sts, err, errlen)) < 0)
    goto fail_sts;
  rt->cfg = config_ref(cfg);
  *out = rt;
  return 0;

  /* Each label undoes what succeeded before the step it is named after, in reverse.
   * Nothing waits for the closes: no callback of theirs refers to rt. */
fail_sts:
  redis_close(rt->redis, NULL, NULL); /* NULL without a shared cache: a no-op */
fail_redis:
  dns_close(rt->dns, NULL, NULL);
fail_dns:
  SSL_CTX_free(rt->client_ctx);
fail_ctx:
  rt->magic = 0;
  free(rt);
  return rc;
}

struct runtime *runtime_ref(struct runtime *rt) {
  assert(rt->refs > 0); /* a runtime being closed is not handed out again */
  rt->refs++;
  return rt;
}

static void on_dns_closed(void *arg) {
  struct runtime *rt;
  CAST_OBJ_NOTNULL(rt, arg, RUNTIME_MAGIC);
  SSL_CTX_free(rt->client_ctx);
  config_unref(rt->cfg);
  rt->magic = 0;
  free(rt);
}

static void on_redis_closed(void *arg) {
  struct runtime *rt;
  CAST_OBJ_NOTNULL(rt, arg, RUNTIME_MAGIC);
  dns_close(rt->dns, on_dns_closed, rt);
}

/* The shared cache next: the policy cache was its last user. */
static void on_sts_closed(void *arg) {
  struct runtime *rt;
  CAST_OBJ_NOTNULL(rt, arg, RUNTIME_MAGIC);
  if (rt->redis)
    redis_close(rt->redis, on_redis_closed, rt);
  else
    on_redis_closed(rt);
}

/* The policy cache goes first: its lookups use the resolver. */
void runtime_unref(struct runtime *rt) {
  if (!rt)
    return;
  assert(rt->refs > 0);
  if (--rt->refs > 0)
    return;
  if (rt->sts)
    sts_close(rt->sts, on_sts_closed, rt);
  else
    on_sts_closed(rt);
}
