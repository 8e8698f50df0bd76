/* DANE (RFC 7672), fingerprint pins and PKIX names through certs/verify.h, with
 * in-memory handshakes against the PKI of test_pki.h. The TLSA records are computed
 * here from the generated certificates. */
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

#include "certs/context.h"
#include "certs/tls.h"
#include "certs/verify.h"
#include "policy/dane.h"
#include "tests/unit/test_pki.h"

/* The record for the first certificate in <name>.crt. */
static struct dane_tlsa tlsa(const char *name, uint8_t usage, uint8_t selector,
                             uint8_t mtype) {
  static uint8_t pool[64][8192]; /* the records' data, for the whole run */
  static size_t used;
  ASSERT(used < 64);
  uint8_t *data = pool[used++];
  struct dane_tlsa r = {.usage = usage, .selector = selector, .mtype = mtype};
  r.data = data;
  X509 *x = pki_load(name);
  unsigned char *der = NULL;
  int len = selector == 0 ? i2d_X509(x, &der)
                          : i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
  ASSERT(len > 0 && (size_t)len <= sizeof pool[0]);
  if (mtype == 0) {
    memcpy(data, der, (size_t)len);
    r.len = (uint16_t)len;
  } else {
    unsigned int dlen = 0;
    const EVP_MD *md = mtype == 1 ? EVP_sha256() : EVP_sha512();
    ASSERT_EQ(EVP_Digest(der, (size_t)len, data, &dlen, md, NULL), 1);
    r.len = (uint16_t)dlen;
  }
  OPENSSL_free(der);
  X509_free(x);
  return r;
}

/* What tls_verify_dane_match() should say for r: 16 bytes in hex, then "...". */
static const char *shown(const struct dane_tlsa *r) {
  static char buf[64];
  int n = snprintf(buf, sizeof buf, "%u %u %u ", r->usage, r->selector, r->mtype);
  for (size_t i = 0; i < r->len && i < 16; i++)
    n += snprintf(buf + n, sizeof buf - (size_t)n, "%02x", r->data[i]);
  snprintf(buf + n, sizeof buf - (size_t)n, "%s", r->len > 16 ? "..." : "");
  return buf;
}

/* How the client judges the server: DANE records, else pins, else PKIX names. */
struct auth {
  const struct dane_tlsa *recs;
  size_t nrecs;
  const unsigned char (*pins)[32];
  size_t npins;
  const char *const *names;
  size_t nnames;
};

struct outcome {
  const char *verdict;
  char match[128], failure[256];
};

static void prepare(SSL *ssl, const char *host, const struct auth *a) {
  if (a->nrecs)
    ASSERT_EQ(tls_verify_prepare_dane(ssl, host, a->recs, a->nrecs), 0);
  else if (a->npins)
    ASSERT_EQ(tls_verify_prepare_fingerprints(ssl, host, a->pins, a->npins), 0);
  else
    ASSERT_EQ(tls_verify_prepare(ssl, a->names, a->nnames), 0);
}

static struct outcome judge(SSL *ssl) {
  struct outcome o;
  o.verdict = tls_verdict_name(tls_verify_verdict(ssl));
  tls_verify_dane_match(ssl, o.match, sizeof o.match);
  tls_verify_failure(ssl, o.failure, sizeof o.failure);
  printf("# %s match=\"%s\" failure=\"%s\"\n", o.verdict, o.match, o.failure);
  return o;
}

/* One handshake with server's certificate, host as SNI and reference name. */
static struct outcome connect_to(const char *server, const char *host,
                                 const struct auth *a) {
  SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, NULL), *sctx = server_ctx(server);
  struct pair p;
  pair_new(&p, cctx, sctx, host);
  prepare(tls_ssl(p.c), host, a);
  run_handshake(&p);
  expect_ok(&p);
  struct outcome o = judge(tls_ssl(p.c));
  pair_close(&p);
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
  return o;
}

static struct outcome dane(const char *server, const struct dane_tlsa *recs, size_t n) {
  return connect_to(server, "mx.test", &(struct auth){.recs = recs, .nrecs = n});
}

static void expect_verified(struct outcome o, const struct dane_tlsa *by) {
  ASSERT_STR_EQ(o.verdict, "Verified");
  ASSERT_STR_EQ(o.match, shown(by));
  ASSERT_STR_EQ(o.failure, "");
}

static void expect_no_match(struct outcome o) {
  ASSERT_STR_EQ(o.verdict, "Untrusted");
  ASSERT_STR_EQ(o.match, "");
  ASSERT_STR_EQ(o.failure, "certificate verification failed: no matching DANE TLSA "
                           "records");
}

/* ---- tests ------------------------------------------------------------------ */

/* RFC 7672 section 3.1.1: DANE-EE binds the key alone; name, issuer and validity
 * dates are not checked (OpenSSL skips them too: the expired certificate passes). */
static void test_dane_ee_spki_sha256(void) {
  struct dane_tlsa r = tlsa("ec", 3, 1, 1);
  ASSERT_EQ(r.len, 32);
  expect_verified(dane("ec", &r, 1), &r);
  expect_verified(dane("wrong", &r, 1), &r);   /* names other.test, same key */
  expect_verified(dane("self", &r, 1), &r);    /* self-signed, same key */
  expect_verified(dane("expired", &r, 1), &r); /* expired, same key */
  expect_no_match(dane("rsa", &r, 1));
}

static void test_dane_ee_other_forms(void) {
  struct dane_tlsa cert256 = tlsa("ec", 3, 0, 1), spki512 = tlsa("ec", 3, 1, 2);
  struct dane_tlsa full = tlsa("ec", 3, 0, 0), spki_full = tlsa("ec", 3, 1, 0);
  ASSERT_EQ(spki512.len, 64);
  expect_verified(dane("ec", &cert256, 1), &cert256);
  expect_verified(dane("ec", &spki512, 1), &spki512);
  expect_verified(dane("ec", &full, 1), &full);
  expect_verified(dane("ec", &spki_full, 1), &spki_full);
  /* Selector 0 binds the certificate: the same key in another one does not match. */
  expect_no_match(dane("self", &cert256, 1));
  expect_no_match(dane("self", &full, 1));
  /* DANE-EE binds the server's own certificate: its CA, sent in the chain, is no
   * match for it (RFC 7671 §5.1). */
  struct dane_tlsa ca_as_ee = tlsa("ca", 3, 0, 1), ca_key_as_ee = tlsa("ca", 3, 1, 1);
  expect_no_match(dane("chain", &ca_as_ee, 1));
  expect_no_match(dane("chain", &ca_key_as_ee, 1));
}

static void test_dane_mismatch(void) {
  /* tlsa() data lives in its writable pool: spoil a copy of the record's bytes. */
  struct dane_tlsa r = tlsa("ec", 3, 1, 1);
  ((uint8_t *)r.data)[0] ^= 0xff;
  expect_no_match(dane("ec", &r, 1));
  /* A DANE failure is never Trusted, even when the PKIX chain would verify. */
  struct dane_tlsa ta = tlsa("ca", 2, 0, 1);
  ((uint8_t *)ta.data)[31] ^= 1;
  expect_no_match(dane("chain", &ta, 1));
}

/* RFC 7672 section 3.2.2: the trust anchor must be in the chain the server sends
 * (or be a full certificate or key in the record), and the leaf must name base. */
static void test_dane_ta(void) {
  struct dane_tlsa ca_cert = tlsa("ca", 2, 0, 1), ca_spki = tlsa("ca", 2, 1, 1);
  struct dane_tlsa ca_full = tlsa("ca", 2, 0, 0), ca_key = tlsa("ca", 2, 1, 0);
  expect_verified(dane("chain", &ca_cert, 1), &ca_cert);
  expect_verified(dane("chain", &ca_spki, 1), &ca_spki);
  /* Leaf only: a digest cannot stand for the missing CA, a full record can. */
  expect_no_match(dane("ec", &ca_cert, 1));
  expect_no_match(dane("ec", &ca_spki, 1));
  expect_verified(dane("ec", &ca_full, 1), &ca_full);
  expect_verified(dane("ec", &ca_key, 1), &ca_key);
  /* The leaf's own key as DANE-TA is no trust anchor for it. */
  struct dane_tlsa leaf_as_ta = tlsa("ec", 2, 1, 1);
  expect_no_match(dane("chain", &leaf_as_ta, 1));
}

static void test_dane_ta_name_mismatch(void) {
  struct dane_tlsa ta = tlsa("ca", 2, 0, 1);
  struct outcome o = dane("wrongchain", &ta, 1);
  ASSERT_STR_EQ(o.verdict, "Untrusted");
  ASSERT_STR_EQ(o.match, "");
  ASSERT_STR_EQ(o.failure, "certificate name mismatch");
  /* Another reference name added by the caller is accepted as well. */
  SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, NULL), *sctx = server_ctx("wrongchain");
  struct pair p;
  pair_new(&p, cctx, sctx, "mx.test");
  ASSERT_EQ(tls_verify_prepare_dane(tls_ssl(p.c), "mx.test", &ta, 1), 0);
  ASSERT_EQ(SSL_add1_host(tls_ssl(p.c), "other.test"), 1);
  run_handshake(&p);
  expect_ok(&p);
  expect_verified(judge(tls_ssl(p.c)), &ta);
  pair_close(&p);
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
}

static void test_dane_mixed_records(void) {
  struct dane_tlsa recs[5] = {tlsa("ec", 1, 1, 1), tlsa("ec", 3, 1, 9),
                              tlsa("rsa", 3, 1, 1), tlsa("ec", 3, 1, 1),
                              tlsa("rsa", 2, 0, 1)};
  recs[1].len = 32; /* unknown matching type 9: OpenSSL refuses it */
  struct outcome o = dane("ec", recs, 5);
  expect_verified(o, &recs[3]);
  o = dane("rsa", recs, 5);
  expect_verified(o, &recs[2]);
  /* PKIX-EE(1) is unusable in SMTP and left out: it matches nothing. */
  o = dane("ec", recs, 3);
  expect_no_match(o);
}

/* RFC 7671 section 9 (digest algorithm agility), as OpenSSL does it with its default
 * matching types (SHA2-256 ordinal 1, SHA2-512 ordinal 2) and as Postfix configures
 * it: of the digests published for one usage and selector, only the strongest
 * counts. Full(0) records and other usage/selector pairs are judged on their own. */
static void test_dane_digest_agility(void) {
  struct dane_tlsa weak_ok[2] = {tlsa("ec", 3, 1, 1), tlsa("rsa", 3, 1, 2)};
  expect_no_match(dane("ec", weak_ok, 2));
  struct dane_tlsa strong_ok[2] = {tlsa("rsa", 3, 1, 1), tlsa("ec", 3, 1, 2)};
  expect_verified(dane("ec", strong_ok, 2), &strong_ok[1]);
  struct dane_tlsa other_selector[2] = {tlsa("ec", 3, 0, 1), tlsa("rsa", 3, 1, 2)};
  expect_verified(dane("ec", other_selector, 2), &other_selector[0]);
  struct dane_tlsa full[2] = {tlsa("ec", 3, 1, 0), tlsa("rsa", 3, 1, 2)};
  expect_verified(dane("ec", full, 2), &full[0]);
  struct dane_tlsa ta[2] = {tlsa("ca", 2, 0, 1), tlsa("rsa", 2, 0, 2)};
  expect_no_match(dane("chain", ta, 2));
}

static void test_dane_refused_records(void) {
  SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, NULL);
  struct dane_tlsa bad[3] = {tlsa("ec", 1, 1, 1), tlsa("ec", 3, 1, 9),
                             tlsa("ec", 3, 1, 1)};
  bad[2].len = 31; /* wrong SHA2-256 length */
  SSL *ssl = SSL_new(cctx);
  ASSERT(ssl != NULL);
  ASSERT_EQ(tls_verify_prepare_dane(ssl, "mx.test", bad, 3), -1);
  ASSERT_EQ(tls_verify_prepare_dane(ssl, "mx.test", bad, 0), -1);
  SSL_free(ssl);
  ssl = SSL_new(cctx);
  ASSERT_EQ(tls_verify_prepare_dane(ssl, NULL, bad, 3), -1);
  ASSERT_EQ(tls_verify_prepare_fingerprints(ssl, "mx.test", NULL, 0), -1);
  SSL_free(ssl);
  SSL_CTX_free(cctx);
  /* A context without DANE enabled refuses it on its connections. */
  SSL_CTX *plain = SSL_CTX_new(TLS_client_method());
  ssl = SSL_new(plain);
  struct dane_tlsa good = tlsa("ec", 3, 1, 1);
  ASSERT_EQ(tls_verify_prepare_dane(ssl, "mx.test", &good, 1), -1);
  SSL_free(ssl);
  SSL_CTX_free(plain);
}

/* Rounds: DANE (full), DANE (resumed: same verdict and record), PKIX (resumed from a
 * DANE session: Untrusted, as no PKIX judgement was ever made). */
static void resume_with(int server_max) {
  SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, NULL), *sctx = server_ctx("wrong");
  ASSERT_EQ(SSL_CTX_set_max_proto_version(sctx, server_max), 1);
  struct dane_tlsa r = tlsa("wrong", 3, 1, 1);
  const char *names[] = {"mx.test"};
  char buf[64];
  for (int round = 0; round < 3; round++) {
    struct pair p;
    pair_new(&p, cctx, sctx, "mx.test");
    SSL *ssl = tls_ssl(p.c);
    tls_context_resume(ssl, "mx.test[192.0.2.1]:25");
    prepare(ssl, "mx.test",
            round < 2 ? &(struct auth){.recs = &r, .nrecs = 1}
                      : &(struct auth){.names = names, .nnames = 1});
    run_handshake(&p);
    expect_ok(&p);
    ASSERT_EQ(SSL_session_reused(ssl), round > 0);
    struct outcome o = judge(ssl);
    if (round < 2) {
      expect_verified(o, &r);
    } else {
      ASSERT_STR_EQ(o.verdict, "Untrusted");
      ASSERT_STR_EQ(o.failure, "resumed session was not judged by the same method");
    }
    /* TLS 1.3 tickets follow the handshake: reading processes them. */
    ASSERT_EQ(drain(p.c, buf, sizeof buf), 0);
    tls_shutdown(p.c);
    pair_close(&p);
  }
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
}

static void test_dane_resumption(void) {
  resume_with(TLS1_3_VERSION);
  resume_with(TLS1_2_VERSION);
}

static void sha256_of(const char *name, int selector, unsigned char out[32]) {
  struct dane_tlsa r = tlsa(name, 3, (uint8_t)selector, 1);
  memcpy(out, r.data, 32);
}

static struct outcome pinned(const char *server, const char *host,
                             const unsigned char (*pins)[32], size_t n) {
  return connect_to(server, host, &(struct auth){.pins = pins, .npins = n});
}

static void test_fingerprints(void) {
  unsigned char pins[3][32];
  sha256_of("rsa", 0, pins[0]);
  sha256_of("ec", 0, pins[1]); /* the certificate */
  sha256_of("ec", 1, pins[2]); /* its public key */
  struct dane_tlsa cert = tlsa("ec", 3, 0, 1), key = tlsa("ec", 3, 1, 1);
  struct dane_tlsa rsa_cert = tlsa("rsa", 3, 0, 1);
  expect_verified(pinned("ec", "mx.test", (const unsigned char(*)[32])pins + 1, 1),
                  &cert);
  expect_verified(pinned("self", "mx.test", (const unsigned char(*)[32])pins + 2, 1),
                  &key);
  expect_verified(pinned("rsa", "mx.test", (const unsigned char(*)[32])pins, 3),
                  &rsa_cert);
  /* The self-signed certificate is not pinned, only its key is. */
  struct outcome o = pinned("self", "mx.test", (const unsigned char(*)[32])pins, 2);
  ASSERT_STR_EQ(o.verdict, "Untrusted");
  ASSERT_CONTAINS(o.failure, "no matching DANE TLSA records");
  ASSERT_STR_EQ(o.match, "");
}

/* SNI stays as tls.c set it: present for a name, absent for an IP literal. */
static void test_pins_keep_sni(void) {
  unsigned char pin[1][32];
  sha256_of("ec", 1, pin[0]);
  SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, NULL), *sctx = server_ctx("ec");
  const char *hosts[] = {"192.0.2.7", "mx.test"};
  for (int i = 0; i < 2; i++) {
    struct pair p;
    pair_new(&p, cctx, sctx, hosts[i]);
    ASSERT_EQ(tls_verify_prepare_fingerprints(tls_ssl(p.c), hosts[i],
                                              (const unsigned char(*)[32])pin, 1),
              0);
    run_handshake(&p);
    expect_ok(&p);
    const char *sni = SSL_get_servername(tls_ssl(p.s), TLSEXT_NAMETYPE_host_name);
    if (i == 0)
      ASSERT(sni == NULL);
    else
      ASSERT_STR_EQ(sni, "mx.test");
    ASSERT_STR_EQ(judge(tls_ssl(p.c)).verdict, "Verified");
    pair_close(&p);
  }
  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
}

static struct outcome pkix(const char *server, const char *name) {
  const char *names[] = {name};
  return connect_to(server, "mx.test", &(struct auth){.names = names, .nnames = 1});
}

static void test_pkix_names(void) {
  struct outcome o = pkix("ec", "mx.test");
  ASSERT_STR_EQ(o.verdict, "Verified");
  ASSERT_STR_EQ(o.failure, "");
  ASSERT_STR_EQ(o.match, "");
  /* A leading dot matches any subdomain (OpenSSL's X509_check_host). */
  o = pkix("ec", ".test");
  ASSERT_STR_EQ(o.verdict, "Verified");
  o = pkix("ec", "other.test");
  ASSERT_STR_EQ(o.verdict, "Trusted");
  ASSERT_STR_EQ(o.failure, "certificate name mismatch");
  o = pkix("self", "mx.test");
  ASSERT_STR_EQ(o.verdict, "Untrusted");
  ASSERT_STR_EQ(o.failure, "certificate verification failed: self-signed certificate");
  o = pkix("expired", "mx.test");
  ASSERT_STR_EQ(o.verdict, "Untrusted");
  ASSERT_STR_EQ(o.failure, "certificate verification failed: certificate has expired");
  o = connect_to("ec", "mx.test", &(struct auth){0});
  ASSERT_STR_EQ(o.verdict, "Trusted");
  ASSERT_STR_EQ(o.failure, "no reference name to match");
}

int main(void) {
  pki_make();
  RUN_TEST(test_dane_ee_spki_sha256);
  RUN_TEST(test_dane_ee_other_forms);
  RUN_TEST(test_dane_mismatch);
  RUN_TEST(test_dane_ta);
  RUN_TEST(test_dane_ta_name_mismatch);
  RUN_TEST(test_dane_mixed_records);
  RUN_TEST(test_dane_digest_agility);
  RUN_TEST(test_dane_refused_records);
  RUN_TEST(test_dane_resumption);
  RUN_TEST(test_fingerprints);
  RUN_TEST(test_pins_keep_sni);
  RUN_TEST(test_pkix_names);
  pki_remove();
  return 0;
}
