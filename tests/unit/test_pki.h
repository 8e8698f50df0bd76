/* A test PKI and in-memory TLS pairs for the TLS unit tests (header-only).
 *
 * pki_make() generates, under a mkdtemp() directory, PEM files named
 * <name>.crt/<name>.key (the CA has no key file):
 *   ca          self-signed CA "Test CA" (P-256)
 *   ec          leaf mx.test, P-256 key K, issued by ca
 *   rsa         leaf mx.test, RSA-2048, issued by ca
 *   self        self-signed mx.test with key K
 *   expired     leaf mx.test with key K, expired yesterday
 *   wrong       leaf other.test with key K, issued by ca
 *   chain       leaf mx.test with key K, the file holding leaf then ca
 *   wrongchain  leaf other.test with key K, the file holding leaf then ca
 * pki_remove() deletes them. The pair helpers pump a client and a server struct tls
 * into each other in memory until neither has anything to send. */
#ifndef SP_TEST_PKI_H
#define SP_TEST_PKI_H

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "certs/context.h"
#include "certs/tls.h"
#include "tests/unit/test.h"

#define ASSERT_CONTAINS(hay, needle)                                                   \
  do {                                                                                 \
    const char *h_ = (hay), *n_ = (needle);                                            \
    if (!strstr(h_, n_))                                                               \
      TEST_FAIL_("\"%s\" does not contain \"%s\"", h_, n_);                            \
  } while (0)

static char pki_dir[] = "/tmp/test_pki.XXXXXX";
static const char *const pki_files[] = {"ca",      "ec",    "rsa",   "self",
                                        "expired", "wrong", "chain", "wrongchain"};

/* A path in the PKI directory; the result stays valid for the next 7 calls. */
static inline const char *pki_path(const char *name, const char *ext) {
  static char buf[8][128];
  static int next;
  char *p = buf[next++ % 8];
  snprintf(p, sizeof buf[0], "%s/%s.%s", pki_dir, name, ext);
  return p;
}

static inline void pki_add_ext(X509 *cert, X509 *issuer, int nid, const char *value) {
  X509V3_CTX v;
  X509V3_set_ctx_nodb(&v);
  X509V3_set_ctx(&v, issuer, cert, NULL, NULL, 0);
  X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &v, nid, value);
  ASSERT(ex != NULL);
  ASSERT_EQ(X509_add_ext(cert, ex, -1), 1);
  X509_EXTENSION_free(ex);
}

struct pki_spec {
  const char *cn, *san; /* san NULL for a CA */
  long from, to;        /* validity, seconds from now */
};

/* issuer NULL: self-signed with key. */
static inline X509 *pki_make_cert(const struct pki_spec *sp, EVP_PKEY *key,
                                  X509 *issuer, EVP_PKEY *issuer_key) {
  static long serial = 1;
  X509 *x = X509_new();
  ASSERT(x != NULL);
  ASSERT_EQ(X509_set_version(x, X509_VERSION_3), 1);
  ASSERT_EQ(ASN1_INTEGER_set(X509_get_serialNumber(x), serial++), 1);
  ASSERT(X509_gmtime_adj(X509_getm_notBefore(x), sp->from) != NULL);
  ASSERT(X509_gmtime_adj(X509_getm_notAfter(x), sp->to) != NULL);
  ASSERT_EQ(X509_set_pubkey(x, key), 1);
  X509_NAME *name = X509_get_subject_name(x);
  ASSERT_EQ(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                       (const unsigned char *)sp->cn, -1, -1, 0),
            1);
  ASSERT_EQ(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name), 1);
  X509 *iss = issuer ? issuer : x;
  if (sp->san) {
    pki_add_ext(x, iss, NID_basic_constraints, "critical,CA:FALSE");
    pki_add_ext(x, iss, NID_ext_key_usage, "serverAuth");
    pki_add_ext(x, iss, NID_subject_alt_name, sp->san);
  } else {
    pki_add_ext(x, iss, NID_basic_constraints, "critical,CA:TRUE");
    pki_add_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
  }
  pki_add_ext(x, iss, NID_subject_key_identifier, "hash");
  ASSERT(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
  return x;
}

/* <name>.crt holds cert, then extra when not NULL; <name>.key holds key if any. */
static inline void pki_write(const char *name, X509 *cert, X509 *extra, EVP_PKEY *key) {
  FILE *f = fopen(pki_path(name, "crt"), "w");
  ASSERT(f != NULL);
  ASSERT_EQ(PEM_write_X509(f, cert), 1);
  if (extra)
    ASSERT_EQ(PEM_write_X509(f, extra), 1);
  ASSERT_EQ(fclose(f), 0);
  if (!key)
    return;
  f = fopen(pki_path(name, "key"), "w");
  ASSERT(f != NULL);
  ASSERT_EQ(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
  ASSERT_EQ(fclose(f), 0);
}

static inline void pki_make(void) {
  ASSERT(mkdtemp(pki_dir) != NULL);
  const long day = 86400;
  EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *ec_key = EVP_EC_gen("P-256");
  EVP_PKEY *rsa_key = EVP_RSA_gen(2048);
  ASSERT(ca_key && ec_key && rsa_key);
  X509 *ca = pki_make_cert(&(struct pki_spec){"Test CA", NULL, -day, 30 * day}, ca_key,
                           NULL, NULL);
  pki_write("ca", ca, NULL, NULL);
  const struct pki_spec mx = {"mx.test", "DNS:mx.test", -day, 30 * day};
  const struct pki_spec other = {"other.test", "DNS:other.test", -day, 30 * day};
  const struct {
    const char *file;
    struct pki_spec spec;
    EVP_PKEY *key;
    bool self, chain;
  } leaves[] = {
      {"ec", mx, ec_key, false, false},
      {"rsa", mx, rsa_key, false, false},
      {"self", mx, ec_key, true, false},
      {"expired", {"mx.test", "DNS:mx.test", -2 * day, -day}, ec_key, false, false},
      {"wrong", other, ec_key, false, false},
      {"chain", mx, ec_key, false, true},
      {"wrongchain", other, ec_key, false, true},
  };
  for (size_t i = 0; i < sizeof leaves / sizeof leaves[0]; i++) {
    X509 *x = leaves[i].self
                  ? pki_make_cert(&leaves[i].spec, leaves[i].key, NULL, NULL)
                  : pki_make_cert(&leaves[i].spec, leaves[i].key, ca, ca_key);
    pki_write(leaves[i].file, x, leaves[i].chain ? ca : NULL, leaves[i].key);
    X509_free(x);
  }
  X509_free(ca);
  EVP_PKEY_free(ca_key);
  EVP_PKEY_free(ec_key);
  EVP_PKEY_free(rsa_key);
}

static inline void pki_remove(void) {
  for (size_t i = 0; i < sizeof pki_files / sizeof pki_files[0]; i++) {
    unlink(pki_path(pki_files[i], "crt"));
    unlink(pki_path(pki_files[i], "key"));
  }
  ASSERT_EQ(rmdir(pki_dir), 0);
}

/* The first certificate of <name>.crt; the caller frees it. */
static inline X509 *pki_load(const char *name) {
  FILE *f = fopen(pki_path(name, "crt"), "r");
  ASSERT(f != NULL);
  X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
  ASSERT(x != NULL);
  ASSERT_EQ(fclose(f), 0);
  return x;
}

/* ---- contexts and in-memory connections ------------------------------------- */

/* A client context trusting only the test CA. */
static inline SSL_CTX *client_ctx(int min_protocol, const char *ciphers) {
  struct tls_client_settings st = {
      .min_protocol = min_protocol,
      .groups = "X25519:P-256:P-384",
      .ciphers = ciphers,
      .ciphersuites = NULL,
      .ca_file = pki_path("ca", "crt"),
      .min_dh_bits = 2048,
  };
  char err[256];
  SSL_CTX *ctx = tls_context_client_new(&st, err, sizeof err);
  if (!ctx)
    TEST_FAIL_("client context: %s", err);
  return ctx;
}

/* The test's own TLS server (the proxy has no server side of its own): TLS 1.2+, the
 * certificate chain and key of name, OpenSSL's defaults otherwise. */
static inline SSL_CTX *server_ctx(const char *name) {
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_use_certificate_chain_file(ctx, pki_path(name, "crt")) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, pki_path(name, "key"), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1)
    TEST_FAIL_("server context for %s: %s", name,
               ERR_reason_error_string(ERR_get_error()));
  SSL_CTX_set_dh_auto(ctx, 1);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  return ctx;
}

struct pair {
  struct tls *c, *s;
  int rc_c, rc_s;
};

/* Moves all pending ciphertext of from into to; returns the byte count. */
static inline size_t xfer(struct tls *from, struct tls *to) {
  char *data;
  ssize_t n = tls_take_output(from, &data);
  ASSERT(n >= 0);
  if (n == 0)
    return 0;
  ASSERT_EQ(tls_feed(to, data, (size_t)n), 0);
  free(data);
  return (size_t)n;
}

static inline void run_handshake(struct pair *p) {
  p->rc_c = p->rc_s = 0;
  for (int i = 0; i < 50; i++) {
    if (p->rc_c == 0)
      p->rc_c = tls_handshake(p->c);
    size_t moved = xfer(p->c, p->s);
    if (p->rc_s == 0)
      p->rc_s = tls_handshake(p->s);
    moved += xfer(p->s, p->c);
    if (moved == 0)
      return;
  }
  TEST_FAIL_("handshake did not settle");
}

/* Both ends created, nothing sent yet; sni as tls_new_client takes it. */
static inline void pair_new(struct pair *p, SSL_CTX *cctx, SSL_CTX *sctx,
                            const char *sni) {
  ASSERT_EQ(tls_new_client(cctx, sni, &p->c), 0);
  ASSERT_EQ(tls_new_server(sctx, &p->s), 0);
}

static inline void pair_close(struct pair *p) {
  tls_free(p->c);
  tls_free(p->s);
}

static inline void expect_ok(const struct pair *p) {
  if (p->rc_c != 1 || p->rc_s != 1)
    TEST_FAIL_("handshake: client %d \"%s\", server %d \"%s\"", p->rc_c,
               tls_error(p->c), p->rc_s, tls_error(p->s));
}

/* Reads everything available; asserts no error. */
static inline size_t drain(struct tls *t, char *buf, size_t cap) {
  size_t got = 0;
  for (;;) {
    ssize_t n = tls_read(t, buf + got, cap - got > 65536 ? 65536 : cap - got);
    if (n < 0)
      TEST_FAIL_("tls_read: %zd %s", n, tls_error(t));
    if (n == 0)
      return got;
    got += (size_t)n;
  }
}

#endif
