/* TLS contexts for each side; see context.h for the contract.
 *
 * Ownership: the client session cache (struct sess_cache) belongs to its SSL_CTX and
 * is freed by the ex_data free callback when the SSL_CTX is freed. Each cached
 * SSL_SESSION reference and key string belongs to the cache. The peer key set by
 * tls_context_resume() belongs to the SSL (ex_data, freed with it). The cache is not
 * locked: an SSL_CTX with a cache is used from one loop thread. */
#include "certs/context.h"
#include "certs/trust.h"
#include "proxy/core/obj.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SESS_CACHE_MAX 1024
#define SESS_CACHE_MAGIC 0x53434143u /* "SCAC" */
/* TLS 1.3 tickets kept per peer key. Each is used once, and a server sends one or two
 * per connection, so a stock lets a burst of new connections to one MX all resume
 * (the connection cache opens several at once when a destination's concurrency
 * grows); 32 tickets of about 1 KiB share the peer's certificate. */
#define SESS_PER_PEER 32

/* Forward secrecy only (ECDHE/DHE, authenticated), AEAD only. */
#define DEFAULT_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"

/* The sessions of one peer key, oldest first: one TLS 1.2 session (reusable), or up
 * to SESS_PER_PEER TLS 1.3 tickets (each used once). */
struct sess_entry {
  char *key; /* malloc'd; NULL when the slot is free */
  /* SESS_PER_PEER slots, malloc'd with the key (apart, so that the key scan stays
   * small); one reference each, held by the cache */
  SSL_SESSION **sess;
  size_t n;
  uint64_t used; /* LRU clock value of the last store or lookup */
};

/* Kept as the SSL_CTX's ex_data: OpenSSL hands it back as a void *. */
struct sess_cache {
  uint32_t magic;
  uint64_t clock;
  struct sess_entry e[SESS_CACHE_MAX];
};

static CRYPTO_ONCE index_once = CRYPTO_ONCE_STATIC_INIT;
static int ctx_cache_idx = -1; /* SSL_CTX ex_data: struct sess_cache * */
static int ssl_key_idx = -1;   /* SSL ex_data: char * peer key */

/* Frees the sessions from index i on. */
static void entry_truncate(struct sess_entry *e, size_t i) {
  while (e->n > i)
    SSL_SESSION_free(e->sess[--e->n]);
}

/* Removes session i, keeping the others in order. */
static void entry_remove(struct sess_entry *e, size_t i) {
  SSL_SESSION_free(e->sess[i]);
  memmove(&e->sess[i], &e->sess[i + 1], (e->n - i - 1) * sizeof e->sess[0]);
  e->n--;
}

static void cache_drop(struct sess_entry *e) {
  free(e->key);
  entry_truncate(e, 0);
  free(e->sess);
  e->key = NULL;
  e->sess = NULL;
}

static void sess_cache_free(struct sess_cache *c) {
  if (!c)
    return;
  for (size_t i = 0; i < SESS_CACHE_MAX; i++)
    cache_drop(&c->e[i]);
  c->magic = 0;
  free(c);
}

static void on_free_cache(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                          long argl, void *argp) {
  (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
  struct sess_cache *c = ptr;
  CHECK_OBJ_ORNULL(c, SESS_CACHE_MAGIC); /* NULL: a context without a cache */
  sess_cache_free(c);
}

static void on_free_key(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                        void *argp) {
  (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
  free(ptr);
}

static void init_indexes(void) {
  ctx_cache_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, on_free_cache);
  ssl_key_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, on_free_key);
}

static bool indexes_ready(void) {
  return CRYPTO_THREAD_run_once(&index_once, init_indexes) && ctx_cache_idx >= 0 &&
         ssl_key_idx >= 0;
}

static struct sess_entry *cache_find(struct sess_cache *c, const char *key) {
  for (size_t i = 0; i < SESS_CACHE_MAX; i++)
    if (c->e[i].key && strcmp(c->e[i].key, key) == 0)
      return &c->e[i];
  return NULL;
}

/* A free slot, or the least recently used one (emptied). */
static struct sess_entry *cache_victim(struct sess_cache *c) {
  struct sess_entry *old = &c->e[0];
  for (size_t i = 0; i < SESS_CACHE_MAX; i++) {
    if (!c->e[i].key)
      return &c->e[i];
    if (c->e[i].used < old->used)
      old = &c->e[i];
  }
  cache_drop(old);
  return old;
}

static bool is_tls13(const SSL_SESSION *s) {
  return SSL_SESSION_get_protocol_version(s) >= TLS1_3_VERSION;
}

/* Adds sess (taking the reference) as the newest of e. A TLS 1.2 session replaces
 * everything (it is reusable, and the newest is the one to offer); a TLS 1.3 ticket
 * joins the stock, pushing out the oldest ticket when full. */
static void entry_push(struct sess_entry *e, SSL_SESSION *sess) {
  if (!is_tls13(sess) || (e->n > 0 && !is_tls13(e->sess[e->n - 1])))
    entry_truncate(e, 0);
  if (e->n == SESS_PER_PEER)
    entry_remove(e, 0);
  e->sess[e->n++] = sess;
}

/* OpenSSL has taken a reference for us; returning 1 keeps it, 0 gives it back. A
 * TLS 1.3 server may send several tickets: this runs once for each. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess) {
  const char *key = SSL_get_ex_data(ssl, ssl_key_idx);
  struct sess_cache *c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_cache_idx);
  CHECK_OBJ_ORNULL(c, SESS_CACHE_MAGIC);
  if (!key || !c || !SSL_SESSION_is_resumable(sess))
    return 0;
  struct sess_entry *e = cache_find(c, key);
  if (!e) {
    char *copy = strdup(key);
    SSL_SESSION **slots = calloc(SESS_PER_PEER, sizeof *slots);
    if (!copy || !slots) {
      free(copy);
      free(slots);
      return 0;
    }
    e = cache_victim(c);
    e->key = copy;
    e->sess = slots;
  }
  entry_push(e, sess);
  e->used = ++c->clock;
  return 1;
}

static bool session_fresh(const SSL_SESSION *s) {
  long born = SSL_SESSION_get_time(s), life = SSL_SESSION_get_timeout(s);
  return SSL_SESSION_is_resumable(s) && (long)time(NULL) < born + life;
}

/* Offers the newest fresh session of e, dropping expired ones on the way. */
static void entry_offer(struct sess_cache *c, struct sess_entry *e, SSL *ssl) {
  while (e->n > 0 && !session_fresh(e->sess[e->n - 1]))
    entry_remove(e, e->n - 1);
  if (e->n == 0) {
    cache_drop(e);
    return;
  }
  SSL_SESSION *s = e->sess[e->n - 1];
  ERR_clear_error();
  if (SSL_set_session(ssl, s) != 1)
    return;
  e->used = ++c->clock;
  /* RFC 8446 section C.4: a TLS 1.3 ticket is used once, so a passive observer
   * cannot link connections by it (the SSL holds its own reference now). */
  if (is_tls13(s))
    entry_remove(e, e->n - 1);
  if (e->n == 0)
    cache_drop(e);
}

void tls_context_resume(SSL *ssl, const char *key) {
  if (!ssl || !key || !indexes_ready())
    return;
  char *copy = strdup(key);
  if (!copy)
    return;
  char *previous = SSL_get_ex_data(ssl, ssl_key_idx);
  ERR_clear_error();
  if (!SSL_set_ex_data(ssl, ssl_key_idx, copy)) {
    free(copy);
    return;
  }
  free(previous);
  struct sess_cache *c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_cache_idx);
  CHECK_OBJ_ORNULL(c, SESS_CACHE_MAGIC);
  struct sess_entry *e = c ? cache_find(c, key) : NULL;
  if (e)
    entry_offer(c, e, ssl);
}

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen,
                                                          const char *fmt, ...) {
  if (!err || !errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* The first suite in the effective list that lacks forward secrecy or server
 * authentication, or NULL. TLS 1.3 suites report NID_kx_any: their key exchange is
 * always (EC)DHE in our use (no external PSKs). */
static const SSL_CIPHER *first_weak_suite(SSL_CTX *ctx, const char **why) {
  STACK_OF(SSL_CIPHER) *list = SSL_CTX_get_ciphers(ctx);
  for (int i = 0; list && i < sk_SSL_CIPHER_num(list); i++) {
    const SSL_CIPHER *c = sk_SSL_CIPHER_value(list, i);
    int kx = SSL_CIPHER_get_kx_nid(c);
    if (kx == NID_kx_any)
      continue;
    if (kx != NID_kx_ecdhe && kx != NID_kx_dhe) {
      *why = "non-forward-secret";
      return c;
    }
    if (SSL_CIPHER_get_auth_nid(c) == NID_auth_null) {
      *why = "unauthenticated";
      return c;
    }
  }
  return NULL;
}

static bool set_suites(SSL_CTX *ctx, const char *ciphers, const char *suites, char *err,
                       size_t errlen) {
  if (!ciphers || !*ciphers)
    ciphers = DEFAULT_CIPHERS;
  ERR_clear_error();
  if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
    set_err(err, errlen, "invalid cipher list \"%s\"", ciphers);
    return false;
  }
  ERR_clear_error();
  if (suites && SSL_CTX_set_ciphersuites(ctx, suites) != 1) {
    set_err(err, errlen, "invalid TLS 1.3 ciphersuites \"%s\"", suites);
    return false;
  }
  const char *why = NULL;
  const SSL_CIPHER *weak = first_weak_suite(ctx, &why);
  if (weak) {
    set_err(err, errlen, "cipher list admits %s suite %s", why,
            SSL_CIPHER_get_name(weak));
    return false;
  }
  return true;
}

static bool set_trust(SSL_CTX *ctx, const char *file, const char *path, char *err,
                      size_t errlen) {
  struct tls_trust t = {file && *file ? file : NULL, path && *path ? path : NULL};
  ERR_clear_error();
  if (tls_trust_load(ctx, &t) == 1)
    return true;
  if (!t.file && !t.path)
    set_err(err, errlen, "%s", "cannot load the default trust store");
  else
    set_err(err, errlen, "cannot load trust anchors from %s", t.file ? t.file : t.path);
  return false;
}

static bool attach_cache(SSL_CTX *ctx, char *err, size_t errlen) {
  struct sess_cache *c = calloc(1, sizeof *c);
  if (!c || !indexes_ready() || !SSL_CTX_set_ex_data(ctx, ctx_cache_idx, c)) {
    free(c);
    set_err(err, errlen, "%s", "out of memory for the session cache");
    return false;
  }
  c->magic = SESS_CACHE_MAGIC;
  /* Only our cache stores sessions, keyed by peer rather than by OpenSSL's
   * session id, so a session is only offered to the peer that issued it. */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
                                          SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, on_new_session);
  return true;
}

static bool set_protocols(SSL_CTX *ctx, int min_protocol, char *err, size_t errlen) {
  if (min_protocol != TLS1_2_VERSION && min_protocol != TLS1_3_VERSION) {
    set_err(err, errlen, "%s", "minimum protocol must be TLSv1.2 or TLSv1.3");
    return false;
  }
  ERR_clear_error();
  if (SSL_CTX_set_min_proto_version(ctx, min_protocol) != 1) {
    set_err(err, errlen, "%s", "cannot set the minimum protocol version");
    return false;
  }
  /* Renegotiation is refused (its history of attacks, and it would let the peer
   * change the certificate we judged); compression is refused (CRIME). Session
   * tickets stay enabled: they are how we resume. */
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  return true;
}

/* A fresh context for method, err cleared; NULL with the reason in err. */
static SSL_CTX *context_new(const SSL_METHOD *method, const char *side, char *err,
                            size_t errlen) {
  if (err && errlen)
    err[0] = '\0';
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(method);
  if (!ctx)
    set_err(err, errlen, "cannot create the TLS %s context", side);
  return ctx;
}

SSL_CTX *tls_context_client_new(const struct tls_client_settings *st, char *err,
                                size_t errlen) {
  SSL_CTX *ctx = context_new(TLS_client_method(), "client", err, errlen);
  if (!ctx)
    return NULL;
  if (!set_protocols(ctx, st->min_protocol, err, errlen))
    goto fail;
  ERR_clear_error();
  if (st->groups && *st->groups && SSL_CTX_set1_groups_list(ctx, st->groups) != 1) {
    set_err(err, errlen, "invalid or unknown group in \"%s\"", st->groups);
    goto fail;
  }
  if (!set_suites(ctx, st->ciphers, st->ciphersuites, err, errlen) ||
      !set_trust(ctx, st->ca_file, st->ca_path, err, errlen) ||
      !attach_cache(ctx, err, errlen))
    goto fail;
  /* Lets each SSL turn DANE on (tls_verify_prepare_dane), with OpenSSL's default
   * matching types: 1 SHA2-256 and 2 SHA2-512 (RFC 6698 section 2.1.3). */
  ERR_clear_error();
  if (SSL_CTX_dane_enable(ctx) <= 0) {
    set_err(err, errlen, "%s", "cannot enable DANE on the TLS client context");
    goto fail;
  }
  ERR_clear_error();
  return ctx;
fail:
  SSL_CTX_free(ctx);
  ERR_clear_error();
  return NULL;
}
