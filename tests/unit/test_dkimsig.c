/* Unit tests of the DKIM signer: the field it puts on top (tags, signed fields,
 * CRLF line ends), the message below it unchanged, and refusals. The signature
 * itself is checked by an independent verifier (dkimpy) in the integration tests. */
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>

#include "proxy/core/error.h"
#include "proxy/tlsrpt/dkimsig.h"
#include "tests/unit/test.h"

static const char MSG[] = "From: <tlsrpt@example.com>\r\n"
                          "To: <rua@example.net>\r\n"
                          "Subject: Report Domain: example.net\r\n"
                          " Submitter: Example\r\n"
                          "TLS-Report-Domain: example.net\r\n"
                          "MIME-Version: 1.0\r\n"
                          "\r\n"
                          "body\r\n";

/* A fresh key of type as PKCS#8 PEM; the caller frees it. */
static char *make_pem(const char *type) {
  EVP_PKEY *k = !strcmp(type, "RSA")
                    ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                    : EVP_PKEY_Q_keygen(NULL, NULL, type);
  BIO *b = BIO_new(BIO_s_mem());
  char *data;
  ASSERT(k && b);
  ASSERT(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1);
  long n = BIO_get_mem_data(b, &data);
  char *pem = strndup(data, (size_t)n);
  BIO_free(b);
  EVP_PKEY_free(k);
  return pem;
}

/* The signature field unfolded (CRLF + WSP removed), with no line end. */
static char *unfolded_field(const char *out, size_t len) {
  char *u = malloc(len + 1);
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    if (out[i] == '\r' && i + 2 < len && out[i + 1] == '\n' &&
        (out[i + 2] == ' ' || out[i + 2] == '\t')) {
      i += 1; /* unfolding keeps the white space (RFC 5322 section 2.2.3) */
      continue;
    }
    if (out[i] == '\r')
      break; /* the end of the field */
    u[n++] = out[i];
  }
  u[n] = '\0';
  return u;
}

static void check_signed(const char *type, enum config_dkim_alg alg,
                         const char *alg_tag) {
  char *pem = make_pem(type), *out = NULL, err[256] = "";
  size_t outlen = 0;
  struct dkimsig_key k = {
      .domain = "example.com", .selector = "sel", .pem = pem, .alg = alg};
  ASSERT(dkimsig_supported(alg));
  int rc = dkimsig_sign(&k, MSG, strlen(MSG), &out, &outlen, err, sizeof err);
  if (rc != 0)
    TEST_FAIL_("dkimsig_sign: %d %s", rc, err);
  /* Every line ends with CRLF; the message follows the field unchanged. */
  for (size_t i = 0; i < outlen; i++)
    ASSERT(out[i] != '\n' || (i > 0 && out[i - 1] == '\r'));
  ASSERT(outlen > strlen(MSG));
  ASSERT_MEM_EQ(out + outlen - strlen(MSG), strlen(MSG), MSG, strlen(MSG));
  ASSERT(!strncmp(out + outlen - strlen(MSG) - 2, "\r\n", 2));
  char *f = unfolded_field(out, outlen);
  /* Fields present are signed, and every field once more (over-signed): a field
   * added on the way breaks the signature. */
  char compact[4096];
  size_t n = 0;
  for (const char *c = f; *c && n + 1 < sizeof compact; c++)
    if (*c != ' ' && *c != '\t')
      compact[n++] = *c;
  compact[n] = '\0';
  ASSERT(!strncmp(compact, "DKIM-Signature:v=1;", 19));
  ASSERT(strstr(compact, alg_tag) != NULL);
  ASSERT(strstr(compact, ";c=relaxed/relaxed;") != NULL);
  ASSERT(strstr(compact, ";d=example.com;") != NULL);
  ASSERT(strstr(compact, ";s=sel;") != NULL);
  if (!strstr(compact, ";h=From:To:Subject:TLS-Report-Domain:MIME-Version:from:to:"
                       "subject:date:message-id:mime-version:content-type:"
                       "tls-report-domain:tls-report-submitter:auto-submitted;"))
    TEST_FAIL_("signed fields: %s", f);
  free(f);
  free(out);
  free(pem);
}

static void test_rsa_sha256(void) {
  check_signed("RSA", CONFIG_DKIM_RSA_SHA256, ";a=rsa-sha256;");
}

static void test_ed25519_sha256(void) {
  check_signed("ED25519", CONFIG_DKIM_ED25519_SHA256, ";a=ed25519-sha256;");
}

static void test_refusals(void) {
  char *pem = make_pem("RSA"), *out = (char *)&out, err[256] = "";
  size_t outlen = 0;
  struct dkimsig_key k = {.domain = "example.com",
                          .selector = "sel",
                          .pem = pem,
                          .alg = CONFIG_DKIM_RSA_SHA256};
  const char *no_eoh = "From: <a@example.com>\r\nSubject: x\r\n";
  ASSERT_EQ(dkimsig_sign(&k, no_eoh, strlen(no_eoh), &out, &outlen, err, sizeof err),
            SP_E_DKIM);
  ASSERT(out == NULL);
  ASSERT_STR_EQ(err, "the message has no end of header");
  k.pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
  ASSERT_EQ(dkimsig_sign(&k, MSG, strlen(MSG), &out, &outlen, err, sizeof err),
            SP_E_DKIM);
  ASSERT(out == NULL);
  ASSERT(strlen(err) > 0);
  ASSERT(!dkimsig_supported(CONFIG_DKIM_NONE));
  free(pem);
}

int main(void) {
  RUN_TEST(test_rsa_sha256);
  RUN_TEST(test_ed25519_sha256);
  RUN_TEST(test_refusals);
  return 0;
}
