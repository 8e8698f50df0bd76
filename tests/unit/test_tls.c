/* TLS contexts, verdicts and the memory-BIO engine, with a client and a server
 * struct tls pumped into each other in memory. The test PKI is generated at start
 * and written as PEM to a mkdtemp() directory that is removed at the end. */
#include <openssl/core_names.h>
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
#include "certs/verify.h"
#include "proxy/error.h"
#include "proxy/tls.h"
#include "tests/unit/test.h"

#define ASSERT_CONTAINS(hay, needle)                                                   \
  do {                                                                                 \
    const char *h_ = (hay), *n_ = (needle);                                            \
    if (!strstr(h_, n_))                                                               \
      TEST_FAIL_("\"%s\" does not contain \"%s\"", h_, n_);                            \
  } while (0)

static char dir[] = "/tmp/test_tls.XXXXXX";
static const char *const files[] = {"ca", "ec", "rsa", "self", "expired", "wrong"};

static const char *path(const char *name, const char *ext) {
  static char buf[8][128];
  static int next;
  char *p = buf[next++ % 8];
  snprintf(p, sizeof buf[0], "%s/%s.%s", dir, name, ext);
  return p;
}

/* ---- test PKI ---------------------------------------------------------------- */

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value) {
  X509V3_CTX v;
  X509V3_set_ctx_nodb(&v);
  X509V3_set_ctx(&v, issuer, cert, NULL, NULL, 0);
  X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &v, nid, value);
  ASSERT(ex != NULL);
  ASSERT_EQ(X509_add_ext(cert, ex, -1), 1);
  X509_EXTENSION_free(ex);
}

struct cert_spec {
  const char *cn, *san; /* san NULL for the CA */
  long from, to;        /* validity, seconds from now */
};

/* issuer NULL: self-signed with key. */
static X509 *make_cert(const struct cert_spec *sp, EVP_PKEY *key, X509 *issuer,
                       EVP_PKEY *issuer_key) {
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
    add_ext(x, iss, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(x, iss, NID_ext_key_usage, "serverAuth");
    add_ext(x, iss, NID_subject_alt_name, sp->san);
  } else {
    add_ext(x, iss, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
  }
  add_ext(x, iss, NID_subject_key_identifier, "hash");
  ASSERT(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
  return x;
}

static void write_pem(const char *name, X509 *cert, EVP_PKEY *key) {
  FILE *f = fopen(path(name, "crt"), "w");
  ASSERT(f != NULL);
  ASSERT_EQ(PEM_write_X509(f, cert), 1);
  ASSERT_EQ(fclose(f), 0);
  if (!key)
    return;
  f = fopen(path(name, "key"), "w");
  ASSERT(f != NULL);
  ASSERT_EQ(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
  ASSERT_EQ(fclose(f), 0);
}

static void make_pki(void) {
  ASSERT(mkdtemp(dir) != NULL);
  const long day = 86400;
  EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *ec_key = EVP_EC_gen("P-256");
  EVP_PKEY *rsa_key = EVP_RSA_gen(2048);
  ASSERT(ca_key && ec_key && rsa_key);
  X509 *ca = make_cert(&(struct cert_spec){"Test CA", NULL, -day, 30 * day}, ca_key,
                       NULL, NULL);
  write_pem("ca", ca, NULL);
  struct {
    const char *file;
    struct cert_spec spec;
    EVP_PKEY *key;
    bool self;
  } leaves[] = {
      {"ec", {"mx.test", "DNS:mx.test", -day, 30 * day}, ec_key, false},
      {"rsa", {"mx.test", "DNS:mx.test", -day, 30 * day}, rsa_key, false},
      {"self", {"mx.test", "DNS:mx.test", -day, 30 * day}, ec_key, true},
      {"expired", {"mx.test", "DNS:mx.test", -2 * day, -day}, ec_key, false},
      {"wrong", {"other.test", "DNS:other.test", -day, 30 * day}, ec_key, false},
  };
  for (size_t i = 0; i < sizeof leaves / sizeof leaves[0]; i++) {
    X509 *x = leaves[i].self ? make_cert(&leaves[i].spec, leaves[i].key, NULL, NULL)
                             : make_cert(&leaves[i].spec, leaves[i].key, ca, ca_key);
    write_pem(leaves[i].file, x, leaves[i].key);
    X509_free(x);
  }
  X509_free(ca);
  EVP_PKEY_free(ca_key);
  EVP_PKEY_free(ec_key);
  EVP_PKEY_free(rsa_key);
}

static void remove_pki(void) {
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    unlink(path(files[i], "crt"));
    unlink(path(files[i], "key"));
  }
  ASSERT_EQ(rmdir(dir), 0);
}

/* ---- contexts and in-memory connections ------------------------------------- */

static SSL_CTX *client_ctx(int min_protocol, const char *ciphers) {
  struct tls_client_settings st = {
      .min_protocol = min_protocol,
      .groups = "X25519:P-256:P-384",
      .ciphers = ciphers,
      .ciphersuites = NULL,
      .ca_file = path("ca", "crt"),
      .min_dh_bits = 2048,
  };
  char err[256];
  SSL_CTX *ctx = tls_context_client_new(&st, err, sizeof err);
  if (!ctx)
    TEST_FAIL_("client context: %s", err);
  return ctx;
}

static SSL_CTX *server_ctx(const char *name) {
  char err[256];
  SSL_CTX *ctx =
      tls_context_server_new(path(name, "crt"), path(name, "key"), err, sizeof err);
  if (!ctx)
    TEST_FAIL_("server context: %s", err);
  return ctx;
}

struct pair {
  struct tls *c, *s;
  int rc_c, rc_s;
};

/* Moves all pending ciphertext of from into to; returns the byte count. */
static size_t xfer(struct tls *from, struct tls *to) {
  char *data;
  ssize_t n = tls_take_output(from, &data);
  ASSERT(n >= 0);
  if (n == 0)
    return 0;
  ASSERT_EQ(tls_feed(to, data, (size_t)n), 0);
  free(data);
  return (size_t)n;
}

static void run_handshake(struct pair *p) {
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

/* name: SNI and the reference name (NULL: none); key: session cache key or NULL. */
static void pair_open(struct pair *p, SSL_CTX *cctx, SSL_CTX *sctx, const char *name,
                      const char *key) {
  ASSERT_EQ(tls_new_client(cctx, name, &p->c), 0);
  ASSERT_EQ(tls_new_server(sctx, &p->s), 0);
  const char *match[] = {name};
  ASSERT_EQ(tls_verify_prepare(tls_ssl(p->c), match, name ? 1 : 0), 0);
  if (key)
    tls_context_resume(tls_ssl(p->c), key);
  run_handshake(p);
}

static void pair_close(struct pair *p) {
  tls_free(p->c);
  tls_free(p->s);
}

static void expect_ok(const struct pair *p) {
  if (p->rc_c != 1 || p->rc_s != 1)
    TEST_FAIL_("handshake: client %d \"%s\", server %d \"%s\"", p->rc_c,
               tls_error(p->c), p->rc_s, tls_error(p->s));
}

/* Reads everything available; asserts no error. */
static size_t drain(struct tls *t, char *buf, size_t cap) {
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

/* ---- tests ------------------------------------------------------------------ */

static void expect_refused(const char *ciphers, const char *needle) {
  struct tls_client_settings st = {.min_protocol = TLS1_2_VERSION, .ciphers = ciphers};
  char err[256];
  SSL_CTX *ctx = tls_context_client_new(&st, err, sizeof err);
  ASSERT(ctx == NULL);
  ASSERT_CONTAINS(err, needle);
}

static void test_client_ctx_refuses_weak_settings(void) {
  expect_refused("AES128-GCM-SHA256",
                 "cipher list admits non-forward-secret suite AES128-GCM-SHA256");
  expect_refused("ALL", "suite ");
  expect_refused("ECDHE+AESGCM:ADH-AES128-GCM-SHA256",
                 "unauthenticated suite ADH-AES128-GCM-SHA256");
  expect_refused("NOSUCHCIPHER", "invalid cipher list");
  struct tls_client_settings st = {.min_protocol = TLS1_1_VERSION};
  char err[256];
  ASSERT(tls_context_client_new(&st, err, sizeof err) == NULL);
  ASSERT_CONTAINS(err, "TLSv1.2");
  st = (struct tls_client_settings){.min_protocol = TLS1_2_VERSION, .groups = "bogus"};
  ASSERT(tls_context_client_new(&st, err, sizeof err) == NULL);
  ASSERT_CONTAINS(err, "bogus");
  st = (struct tls_client_settings){.min_protocol = TLS1_3_VERSION};
  SSL_CTX *ctx = tls_context_client_new(&st, err, sizeof err);
  ASSERT(ctx != NULL);
  ASSERT_EQ(SSL_CTX_get_options(ctx) & SSL_OP_NO_TICKET, 0);
  ASSERT(SSL_CTX_get_options(ctx) & SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_free(ctx);
}

static void test_tls13_default_ecdsa(void) {
  SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, NULL), *sctx = server_ctx("ec");
  struct pair p;
  pair_open(&p, cctx, sctx, "mx.test", NULL);
  expect_ok(&p);
  ASSERT_EQ(SSL_version(tls_ssl(p.c)), TLS1_3_VERSION);
  ASSERT_EQ(tls_verify_verdict(tls_ssl(p.c)), TLS_VERDICT_VERIFIED);
  ASSERT_EQ(tls_verify_check_dh(tls_ssl(p.c), 2048, NULL, 0), 0);
  char sum[512];
  tls_verify_summary(tls_ssl(p.c), sum, sizeof sum);
  printf("# %s\n", sum);
  ASSERT_EQ(strncmp(sum, "TLSv1.3 with cipher TLS_", 24), 0);
  ASSERT_CONTAINS(sum, " bits) key-exchange X25519 server-signature ECDSA (P-256)");
  ASSERT_CONTAINS(sum, " server-digest SHA256");
  pair_close(&p);
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
}

static void test_tls13_rsa_summary(void) {
  SSL_CTX *cctx = client_ctx(TLS1_3_VERSION, NULL), *sctx = server_ctx("rsa");
  struct pair p;
  pair_open(&p, cctx, sctx, "mx.test", NULL);
  expect_ok(&p);
  char sum[512];
  tls_verify_summary(tls_ssl(p.c), sum, sizeof sum);
  printf("# %s\n", sum);
  /* TLS 1.3 signs with RSA-PSS; Postfix logs it that way. */
  ASSERT_CONTAINS(sum, "server-signature RSA-PSS (2048 bits) server-digest SHA256");
  ASSERT_EQ(tls_verify_verdict(tls_ssl(p.c)), TLS_VERDICT_VERIFIED);
  pair_close(&p);
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
}

static void test_tls12_server_gets_ecdhe(void) {
  SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, NULL), *sctx = server_ctx("rsa");
  ASSERT_EQ(SSL_CTX_set_max_proto_version(sctx, TLS1_2_VERSION), 1);
  struct pair p;
  pair_open(&p, cctx, sctx, "mx.test", NULL);
  expect_ok(&p);
  SSL *ssl = tls_ssl(p.c);
  ASSERT_EQ(SSL_version(ssl), TLS1_2_VERSION);
  ASSERT_EQ(SSL_CIPHER_get_kx_nid(SSL_get_current_cipher(ssl)), NID_kx_ecdhe);
  char sum[512];
  tls_verify_summary(ssl, sum, sizeof sum);
  printf("# %s\n", sum);
  ASSERT_EQ(strncmp(sum, "TLSv1.2 with cipher ECDHE-RSA-", 30), 0);
  ASSERT_CONTAINS(sum, "key-exchange X25519 server-signature RSA");
  pair_close(&p);
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
}

static void expect_handshake_fails(SSL_CTX *sctx) {
  SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, NULL);
  struct pair p;
  pair_open(&p, cctx, sctx, "mx.test", NULL);
  ASSERT(p.rc_c < 0);
  ASSERT_EQ(p.rc_c, SP_E_TLS);
  ASSERT_CONTAINS(tls_error(p.c), "handshake failure: ");
  ASSERT(strlen(tls_error(p.c)) > strlen("handshake failure: "));
  printf("# client: %s; server: %s\n", tls_error(p.c), tls_error(p.s));
  pair_close(&p);
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
}

static void test_tls11_server_fails(void) {
  SSL_CTX *sctx = server_ctx("rsa");
  SSL_CTX_set_security_level(sctx, 0);
  ASSERT_EQ(SSL_CTX_set_min_proto_version(sctx, TLS1_VERSION), 1);
  ASSERT_EQ(SSL_CTX_set_max_proto_version(sctx, TLS1_1_VERSION), 1);
  ASSERT_EQ(SSL_CTX_set_cipher_list(sctx, "ALL:@SECLEVEL=0"), 1);
  expect_handshake_fails(sctx);
}

static void test_non_fs_server_fails(void) {
  SSL_CTX *sctx = server_ctx("rsa");
  SSL_CTX_set_security_level(sctx, 0);
  ASSERT_EQ(SSL_CTX_set_max_proto_version(sctx, TLS1_2_VERSION), 1);
  ASSERT_EQ(SSL_CTX_set_cipher_list(sctx, "AES128-GCM-SHA256"), 1);
  expect_handshake_fails(sctx);
}

static enum tls_verdict verdict_for(const char *server, const char *name) {
  SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, NULL), *sctx = server_ctx(server);
  struct pair p;
  pair_open(&p, cctx, sctx, name, NULL);
  expect_ok(&p);
  enum tls_verdict v = tls_verify_verdict(tls_ssl(p.c));
  pair_close(&p);
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
  return v;
}

static void test_verdicts(void) {
  ASSERT_STR_EQ(tls_verdict_name(verdict_for("self", "mx.test")), "Untrusted");
  ASSERT_STR_EQ(tls_verdict_name(verdict_for("wrong", "mx.test")), "Trusted");
  ASSERT_STR_EQ(tls_verdict_name(verdict_for("ec", "mx.test")), "Verified");
  ASSERT_STR_EQ(tls_verdict_name(verdict_for("expired", "mx.test")), "Untrusted");
  ASSERT_STR_EQ(tls_verdict_name(verdict_for("ec", NULL)), "Trusted");
  /* No certificate at all (a handshake that has not happened). */
  SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, NULL);
  SSL *ssl = SSL_new(cctx);
  ASSERT_EQ(tls_verify_verdict(ssl), TLS_VERDICT_ANONYMOUS);
  SSL_free(ssl);
  SSL_CTX_free(cctx);
}

static void send_all(struct tls *from, struct tls *to, const char *data, size_t len,
                     char *buf) {
  ASSERT_EQ(tls_write(from, data, len), 0);
  ASSERT(xfer(from, to) > len);
  ASSERT_EQ(drain(to, buf, len + 1), len);
  ASSERT(memcmp(buf, data, len) == 0);
}

static void test_roundtrip_1mib(void) {
  const size_t len = 1 << 20;
  char *data = malloc(len), *buf = malloc(len + 1);
  ASSERT(data && buf);
  for (size_t i = 0; i < len; i++)
    data[i] = (char)(i * 7 + (i >> 11));
  SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, NULL), *sctx = server_ctx("ec");
  struct pair p;
  pair_open(&p, cctx, sctx, "mx.test", NULL);
  expect_ok(&p);
  send_all(p.c, p.s, data, len, buf);
  send_all(p.s, p.c, data, len, buf);
  pair_close(&p);
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
  free(data);
  free(buf);
}

static void resume_with(int server_max) {
  SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, NULL), *sctx = server_ctx("ec");
  ASSERT_EQ(SSL_CTX_set_max_proto_version(sctx, server_max), 1);
  const char *key = "mx.test[192.0.2.1]:25";
  char buf[64];
  for (int round = 0; round < 3; round++) {
    struct pair p;
    pair_open(&p, cctx, sctx, "mx.test", round == 2 ? "other[192.0.2.2]:25" : key);
    expect_ok(&p);
    ASSERT_EQ(SSL_session_reused(tls_ssl(p.c)), round == 1);
    ASSERT_EQ(tls_verify_verdict(tls_ssl(p.c)), TLS_VERDICT_VERIFIED);
    /* TLS 1.3 tickets follow the handshake: reading processes them. */
    ASSERT_EQ(drain(p.c, buf, sizeof buf), 0);
    /* Without a close_notify sent, OpenSSL marks the session not resumable. */
    tls_shutdown(p.c);
    pair_close(&p);
  }
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
}

static void test_resumption(void) {
  resume_with(TLS1_3_VERSION);
  resume_with(TLS1_2_VERSION);
}

static void test_close_notify_is_eof(void) {
  SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, NULL), *sctx = server_ctx("ec");
  struct pair p;
  pair_open(&p, cctx, sctx, "mx.test", NULL);
  expect_ok(&p);
  ASSERT_EQ(tls_write(p.s, "250 ok\r\n", 8), 0);
  tls_shutdown(p.s);
  xfer(p.s, p.c);
  char buf[64];
  ASSERT_EQ(tls_read(p.c, buf, sizeof buf), 8);
  ASSERT_MEM_EQ(buf, 8, "250 ok\r\n", 8);
  ASSERT_EQ(tls_read(p.c, buf, sizeof buf), SP_E_EOF);
  ASSERT_EQ(tls_read(p.c, buf, sizeof buf), SP_E_EOF);
  pair_close(&p);
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
}

static void test_truncation_is_error(void) {
  SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, NULL), *sctx = server_ctx("ec");
  struct pair p;
  pair_open(&p, cctx, sctx, "mx.test", NULL);
  expect_ok(&p);
  char buf[256], *out;
  ASSERT_EQ(drain(p.c, buf, sizeof buf), 0);
  ASSERT_EQ(tls_write(p.s, "250 ok\r\n", 8), 0);
  ssize_t n = tls_take_output(p.s, &out);
  ASSERT(n > 10);
  ASSERT_EQ(tls_feed(p.c, out, (size_t)n - 5), 0);
  free(out);
  ASSERT_EQ(tls_read(p.c, buf, sizeof buf), 0); /* record incomplete: wait */
  ASSERT_EQ(tls_feed(p.c, NULL, 0), 0);         /* the socket said EOF */
  ASSERT_EQ(tls_read(p.c, buf, sizeof buf), SP_E_TLS);
  printf("# %s\n", tls_error(p.c));
  ASSERT_CONTAINS(tls_error(p.c), "read failure: unexpected eof");
  /* EOF on a record boundary without close_notify is no clean EOF either. */
  ASSERT_EQ(tls_feed(p.s, NULL, 0), 0);
  ASSERT_EQ(tls_read(p.s, buf, sizeof buf), SP_E_TLS);
  pair_close(&p);
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
}

static void test_renegotiation_refused(void) {
  SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, NULL), *sctx = server_ctx("ec");
  ASSERT_EQ(SSL_CTX_set_max_proto_version(sctx, TLS1_2_VERSION), 1);
  struct pair p;
  pair_open(&p, cctx, sctx, "mx.test", NULL);
  expect_ok(&p);
  SSL *s = tls_ssl(p.s);
  SSL_clear_options(s, SSL_OP_NO_RENEGOTIATION);
  ASSERT_EQ(SSL_renegotiate(s), 1);
  ERR_clear_error();
  (void)SSL_do_handshake(s); /* writes the HelloRequest */
  ERR_clear_error();
  xfer(p.s, p.c);
  char buf[64];
  ASSERT_EQ(tls_read(p.c, buf, sizeof buf), SP_E_TLS);
  ASSERT_CONTAINS(tls_error(p.c), "renegotiation");
  pair_close(&p);
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
}

static EVP_PKEY *dh1024(void) {
  /* RFC 5114 section 2.1: the 1024-bit MODP group, a named group in OpenSSL 3. */
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "dh_1024_160", 0),
      OSSL_PARAM_construct_end(),
  };
  EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "DH", NULL);
  EVP_PKEY *k = NULL;
  ASSERT(pc != NULL);
  ASSERT_EQ(EVP_PKEY_fromdata_init(pc), 1);
  ASSERT_EQ(EVP_PKEY_fromdata(pc, &k, EVP_PKEY_KEY_PARAMETERS, params), 1);
  EVP_PKEY_CTX_free(pc);
  ASSERT_EQ(EVP_PKEY_get_bits(k), 1024);
  return k;
}

static void test_small_dh_group_detected(void) {
  SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, "DHE+AESGCM"), *sctx = server_ctx("rsa");
  SSL_CTX_set_security_level(sctx, 0);
  ASSERT_EQ(SSL_CTX_set_max_proto_version(sctx, TLS1_2_VERSION), 1);
  ASSERT_EQ(SSL_CTX_set_cipher_list(sctx, "DHE-RSA-AES128-GCM-SHA256"), 1);
  ASSERT_EQ(SSL_CTX_set_dh_auto(sctx, 0), 1);
  ASSERT_EQ(SSL_CTX_set0_tmp_dh_pkey(sctx, dh1024()), 1);
  struct pair p;
  ASSERT_EQ(tls_new_client(cctx, "mx.test", &p.c), 0);
  ASSERT_EQ(tls_new_server(sctx, &p.s), 0);
  /* Let the client's own security level through, so that our check is reached. */
  SSL_set_security_level(tls_ssl(p.c), 0);
  run_handshake(&p);
  expect_ok(&p);
  char err[128], sum[512];
  ASSERT_EQ(tls_verify_check_dh(tls_ssl(p.c), 2048, err, sizeof err), -1);
  ASSERT_STR_EQ(err, "server DH group 1024 bits < minimum 2048");
  ASSERT_EQ(tls_verify_check_dh(tls_ssl(p.c), 1024, err, sizeof err), 0);
  tls_verify_summary(tls_ssl(p.c), sum, sizeof sum);
  printf("# %s\n", sum);
  ASSERT_CONTAINS(sum, "key-exchange DHE (1024 bits)");
  pair_close(&p);
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
}

static void test_sni_skipped_for_ip_literal(void) {
  SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, NULL), *sctx = server_ctx("ec");
  struct pair p;
  pair_open(&p, cctx, sctx, "192.0.2.7", NULL);
  expect_ok(&p);
  ASSERT(SSL_get_servername(tls_ssl(p.s), TLSEXT_NAMETYPE_host_name) == NULL);
  pair_close(&p);
  pair_open(&p, cctx, sctx, "mx.test", NULL);
  ASSERT_STR_EQ(SSL_get_servername(tls_ssl(p.s), TLSEXT_NAMETYPE_host_name), "mx.test");
  pair_close(&p);
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
}

int main(void) {
  make_pki();
  RUN_TEST(test_client_ctx_refuses_weak_settings);
  RUN_TEST(test_tls13_default_ecdsa);
  RUN_TEST(test_tls13_rsa_summary);
  RUN_TEST(test_tls12_server_gets_ecdhe);
  RUN_TEST(test_tls11_server_fails);
  RUN_TEST(test_non_fs_server_fails);
  RUN_TEST(test_verdicts);
  RUN_TEST(test_roundtrip_1mib);
  RUN_TEST(test_resumption);
  RUN_TEST(test_close_notify_is_eof);
  RUN_TEST(test_truncation_is_error);
  RUN_TEST(test_renegotiation_refused);
  RUN_TEST(test_small_dh_group_detected);
  RUN_TEST(test_sni_skipped_for_ip_literal);
  remove_pki();
  return 0;
}
