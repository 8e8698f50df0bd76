/* TLS contexts, verdicts and the memory-BIO engine, with a client and a server
 * struct tls pumped into each other in memory, with the PKI of test_pki.h. */
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
#include "certs/tls.h"
#include "certs/trust.h"
#include "certs/verify.h"
#include "proxy/core/error.h"
#include "tests/unit/test_pki.h"

/* name: SNI and the reference name (NULL: none); key: session cache key or NULL. */
static void pair_open(struct pair *p, SSL_CTX *cctx, SSL_CTX *sctx, const char *name,
                      const char *key) {
  pair_new(p, cctx, sctx, name);
  const char *match[] = {name};
  ASSERT_EQ(tls_verify_prepare(tls_ssl(p->c), match, name ? 1 : 0), 0);
  if (key)
    tls_context_resume(tls_ssl(p->c), key);
  run_handshake(p);
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

/* Opens n connections to the same peer key at once (each offered its session before
 * any handshake runs), then completes them; returns how many resumed. */
static int resume_burst(SSL_CTX *cctx, SSL_CTX *sctx, const char *key, int n) {
  struct pair p[8];
  char buf[64];
  int resumed = 0;
  for (int i = 0; i < n; i++) {
    pair_new(&p[i], cctx, sctx, "mx.test");
    const char *match[] = {"mx.test"};
    ASSERT_EQ(tls_verify_prepare(tls_ssl(p[i].c), match, 1), 0);
    tls_context_resume(tls_ssl(p[i].c), key);
  }
  for (int i = 0; i < n; i++) {
    run_handshake(&p[i]);
    expect_ok(&p[i]);
    resumed += SSL_session_reused(tls_ssl(p[i].c));
    ASSERT_EQ(tls_verify_verdict(tls_ssl(p[i].c)), TLS_VERDICT_VERIFIED);
    ASSERT_EQ(drain(p[i].c, buf, sizeof buf), 0); /* takes the tickets in */
    tls_shutdown(p[i].c);
    pair_close(&p[i]);
  }
  return resumed;
}

/* TLS 1.3: every ticket a server sends is kept and each is offered once, so after a
 * full handshake that brought four, four connections at once all resume, and a fifth
 * at the same time finds none left. TLS 1.2: one session, offered to all. */
static void test_ticket_stock(void) {
  SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, NULL), *sctx = server_ctx("ec");
  ASSERT_EQ(SSL_CTX_set_num_tickets(sctx, 4), 1);
  const char *key = "mx.test[192.0.2.1]:25|table/verify|0";
  ASSERT_EQ(resume_burst(cctx, sctx, key, 1), 0);
  ASSERT_EQ(resume_burst(cctx, sctx, key, 4), 4);
  ASSERT_EQ(resume_burst(cctx, sctx, "mx.test[192.0.2.1]:25|default/may|0", 1), 0);
  /* Each resumption brought one ticket: four in stock again, so five at once leave
   * one without. */
  ASSERT_EQ(resume_burst(cctx, sctx, key, 5), 4);
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);

  cctx = client_ctx(TLS1_2_VERSION, NULL), sctx = server_ctx("ec");
  ASSERT_EQ(SSL_CTX_set_max_proto_version(sctx, TLS1_2_VERSION), 1);
  ASSERT_EQ(resume_burst(cctx, sctx, key, 1), 0);
  ASSERT_EQ(resume_burst(cctx, sctx, key, 3), 3);
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
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

/* 200 KiB each way in 64 KiB writes and reads, then idle: our ciphertext buffers hold
 * nothing (a memory BIO would keep the largest buffer it ever held). */
static void test_idle_connection_holds_no_buffers(void) {
  SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, NULL), *sctx = server_ctx("ec");
  struct pair p;
  pair_open(&p, cctx, sctx, "mx.test", NULL);
  expect_ok(&p);
  static char data[64 * 1024], got[64 * 1024];
  ASSERT_EQ(drain(p.c, got, sizeof got), 0); /* the session tickets */
  ASSERT_EQ(drain(p.s, got, sizeof got), 0);
  for (size_t i = 0; i < sizeof data; i++)
    data[i] = (char)('a' + i % 26);
  for (int dir = 0; dir < 2; dir++) {
    struct tls *from = dir ? p.s : p.c, *to = dir ? p.c : p.s;
    size_t total = 0;
    for (int i = 0; i < 3; i++)
      ASSERT_EQ(tls_write(from, data, sizeof data), 0);
    char *out;
    ssize_t n = tls_take_output(from, &out);
    ASSERT(n > 3 * (ssize_t)sizeof data);
    ASSERT_EQ(tls_buffered(from), 0); /* handed over, not copied */
    /* Fed as a socket would deliver it: 64 KiB reads, records split across them. */
    for (ssize_t off = 0; off < n; off += 65536) {
      size_t len = n - off < 65536 ? (size_t)(n - off) : 65536;
      ASSERT_EQ(tls_feed(to, out + off, len), 0);
      ssize_t r;
      while ((r = tls_read(to, got, sizeof got)) > 0) {
        ASSERT_EQ(memcmp(got, data + total % sizeof data, 1), 0);
        total += (size_t)r;
      }
      ASSERT_EQ(r, 0);
    }
    free(out);
    ASSERT_EQ(total, 3 * sizeof data);
    ASSERT_EQ(tls_buffered(to), 0);
  }
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

/* The defaults spelled out for libcurl: the environment over OpenSSL's compiled-in
 * locations, a missing file dropped (libcurl would fail on it). */
static void test_trust_default(void) {
  char *file = getenv("SSL_CERT_FILE") ? strdup(getenv("SSL_CERT_FILE")) : NULL;
  char *dir = getenv("SSL_CERT_DIR") ? strdup(getenv("SSL_CERT_DIR")) : NULL;
  setenv("SSL_CERT_FILE", SP_SOURCE_DIR "/README.md", 1);
  setenv("SSL_CERT_DIR", "/nonexistent/a:/nonexistent/b", 1);
  struct tls_trust t = tls_trust_default();
  ASSERT_STR_EQ(t.file, SP_SOURCE_DIR "/README.md");
  ASSERT_STR_EQ(t.path, "/nonexistent/a:/nonexistent/b");
  setenv("SSL_CERT_FILE", "/nonexistent/ca.pem", 1);
  unsetenv("SSL_CERT_DIR");
  t = tls_trust_default();
  ASSERT(t.file == NULL);
  ASSERT_STR_EQ(t.path, X509_get_default_cert_dir());
  unsetenv("SSL_CERT_FILE");
  t = tls_trust_default();
  if (access(X509_get_default_cert_file(), R_OK) == 0)
    ASSERT_STR_EQ(t.file, X509_get_default_cert_file());
  if (file)
    setenv("SSL_CERT_FILE", file, 1);
  if (dir)
    setenv("SSL_CERT_DIR", dir, 1);
  free(file);
  free(dir);
}

int main(void) {
  pki_make();
  RUN_TEST(test_client_ctx_refuses_weak_settings);
  RUN_TEST(test_trust_default);
  RUN_TEST(test_tls13_default_ecdsa);
  RUN_TEST(test_tls13_rsa_summary);
  RUN_TEST(test_tls12_server_gets_ecdhe);
  RUN_TEST(test_tls11_server_fails);
  RUN_TEST(test_non_fs_server_fails);
  RUN_TEST(test_verdicts);
  RUN_TEST(test_roundtrip_1mib);
  RUN_TEST(test_resumption);
  RUN_TEST(test_ticket_stock);
  RUN_TEST(test_close_notify_is_eof);
  RUN_TEST(test_truncation_is_error);
  RUN_TEST(test_idle_connection_holds_no_buffers);
  RUN_TEST(test_renegotiation_refused);
  RUN_TEST(test_small_dh_group_detected);
  RUN_TEST(test_sni_skipped_for_ip_literal);
  pki_remove();
  return 0;
}
