/* Unit tests of tlsrpt.dkim: the key file read when the config loads (RSA, Ed25519,
 * and every refusal with its line and column), and the all-or-none rule. */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/config/config.h"
#include "proxy/core/error.h"
#include "tests/unit/test.h"
#include "tests/unit/test_config_load.h"

static char dir[] = "/tmp/test_config_dkim.XXXXXX";

static const char *path_of(const char *name) {
  static char buf[4][256];
  static unsigned i;
  char *p = buf[i++ % 4];
  snprintf(p, sizeof buf[0], "%s/%s", dir, name);
  return p;
}

/* Writes key (PKCS#8, or encrypted with a passphrase) to name with mode. */
static void write_key(const char *name, EVP_PKEY *key, mode_t mode, bool encrypted) {
  FILE *f = fopen(path_of(name), "w");
  ASSERT(f != NULL);
  ASSERT(PEM_write_PrivateKey(f, key, encrypted ? EVP_aes_256_cbc() : NULL,
                              encrypted ? (unsigned char *)"secret" : NULL,
                              encrypted ? 6 : 0, NULL, NULL) == 1);
  fclose(f);
  ASSERT_EQ(chmod(path_of(name), mode), 0);
}

static void make_keys(void) {
  ASSERT(mkdtemp(dir) != NULL);
  EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
  EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)768);
  EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  ASSERT(rsa && small && ed && ec);
  write_key("rsa.pem", rsa, 0600, false);
  write_key("rsa-group.pem", rsa, 0640, false);
  write_key("rsa-world.pem", rsa, 0644, false);
  write_key("rsa-enc.pem", rsa, 0600, true);
  write_key("small.pem", small, 0600, false);
  write_key("ed.pem", ed, 0600, false);
  write_key("ec.pem", ec, 0600, false);
  FILE *f = fopen(path_of("junk.pem"), "w");
  ASSERT(f != NULL);
  fputs("not a key\n", f);
  fclose(f);
  ASSERT_EQ(chmod(path_of("junk.pem"), 0600), 0);
  EVP_PKEY_free(rsa);
  EVP_PKEY_free(small);
  EVP_PKEY_free(ed);
  EVP_PKEY_free(ec);
}

static void remove_keys(void) {
  const char *names[] = {"rsa.pem",   "rsa-group.pem", "rsa-world.pem", "rsa-enc.pem",
                         "small.pem", "ed.pem",        "ec.pem",        "junk.pem"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    unlink(path_of(names[i]));
  rmdir(dir);
}

/* The config text with tlsrpt.dkim naming key file `name` (on line 6, column 15). */
static const char *yaml_with(const char *name) {
  static char buf[512];
  snprintf(buf, sizeof buf,
           "tlsrpt:\n  enabled: yes\n  dkim:\n    domain: example.com\n"
           "    selector: sel-2026\n    key_file: %s\n",
           path_of(name));
  return buf;
}

/* The one error the config with key file `name` gives, after "t.yaml:6:15: ...". */
static void expect_key_error(const char *name, const char *reason) {
  char want[1024];
  snprintf(want, sizeof want, "t.yaml:6:15: tlsrpt.dkim.key_file: %s\n", reason);
  const char *yaml = yaml_with(name);
  test_config_errors(yaml, strlen(yaml), want);
}

static void test_no_key_by_default(void) {
  struct config *cfg = test_load_config("tlsrpt: {enabled: yes}\n");
  ASSERT(cfg->tlsrpt_dkim_key == NULL);
  ASSERT_EQ(cfg->tlsrpt_dkim_alg, CONFIG_DKIM_NONE);
  ASSERT_STR_EQ(cfg->tlsrpt_dkim_domain, "");
  config_unref(cfg);
  cfg = test_load_config("tlsrpt:\n  dkim:\n"); /* an empty section: no key either */
  ASSERT(cfg->tlsrpt_dkim_key == NULL);
  config_unref(cfg);
}

static void test_rsa_key(void) {
  struct config *cfg = test_load_config(yaml_with("rsa.pem"));
  ASSERT_STR_EQ(cfg->tlsrpt_dkim_domain, "example.com");
  ASSERT_STR_EQ(cfg->tlsrpt_dkim_selector, "sel-2026");
  ASSERT_STR_EQ(cfg->tlsrpt_dkim_key_file, path_of("rsa.pem"));
  ASSERT_EQ(cfg->tlsrpt_dkim_alg, CONFIG_DKIM_RSA_SHA256);
  ASSERT_EQ(cfg->tlsrpt_dkim_bits, 2048);
  ASSERT(cfg->tlsrpt_dkim_key != NULL);
  ASSERT(!strncmp(cfg->tlsrpt_dkim_key, "-----BEGIN PRIVATE KEY-----\n", 28));
  ASSERT_STR_EQ(config_dkim_alg_name(cfg->tlsrpt_dkim_alg), "rsa-sha256");
  config_unref(cfg);
  cfg = test_load_config(yaml_with("rsa-group.pem")); /* 0640: the proxy's group */
  ASSERT_EQ(cfg->tlsrpt_dkim_alg, CONFIG_DKIM_RSA_SHA256);
  config_unref(cfg);
}

static void test_ed25519_key(void) {
  struct config *cfg = test_load_config(yaml_with("ed.pem"));
  ASSERT_EQ(cfg->tlsrpt_dkim_alg, CONFIG_DKIM_ED25519_SHA256);
  ASSERT_EQ(cfg->tlsrpt_dkim_bits, 256); /* OpenSSL's size of an Ed25519 key */
  ASSERT_STR_EQ(config_dkim_alg_name(cfg->tlsrpt_dkim_alg), "ed25519-sha256");
  config_unref(cfg);
}

static void test_refused_keys(void) {
  char reason[512];
  expect_key_error("ec.pem", "a key of type EC: DKIM signs with RSA (rsa-sha256) or "
                             "Ed25519 (ed25519-sha256, RFC 8463)");
  expect_key_error("small.pem",
                   "an RSA key of 768 bits: RFC 8301 requires at least 1024 (2048 "
                   "recommended)");
  snprintf(reason, sizeof reason,
           "%s: mode 0644 lets other users read or change the private key; use chmod "
           "0600 (or 0640 with the proxy's group)",
           path_of("rsa-world.pem"));
  expect_key_error("rsa-world.pem", reason);
  snprintf(reason, sizeof reason,
           "%s: an encrypted key: the proxy cannot ask for a passphrase (write it "
           "unencrypted with openssl pkey, mode 0600)",
           path_of("rsa-enc.pem"));
  expect_key_error("rsa-enc.pem", reason);
  snprintf(reason, sizeof reason, "%s: not a PEM private key (RSA or Ed25519)",
           path_of("junk.pem"));
  expect_key_error("junk.pem", reason);
  snprintf(reason, sizeof reason,
           "cannot read %s: No such file or directory (reading as uid %u, gid %u)",
           path_of("missing.pem"), (unsigned)geteuid(), (unsigned)getegid());
  expect_key_error("missing.pem", reason);
  char yaml_dir[512];
  snprintf(yaml_dir, sizeof yaml_dir,
           "tlsrpt:\n  dkim:\n    domain: example.com\n    selector: s\n"
           "    key_file: %s\n",
           dir);
  snprintf(reason, sizeof reason,
           "t.yaml:5:15: tlsrpt.dkim.key_file: %s: not a "
           "regular file\n",
           dir);
  test_config_errors(yaml_dir, strlen(yaml_dir), reason);
  const char *yaml = "tlsrpt:\n  dkim:\n    domain: example.com\n    selector: s\n"
                     "    key_file: [a]\n";
  test_config_errors(yaml, strlen(yaml),
                     "t.yaml:5:15: tlsrpt.dkim.key_file: expected a single value, "
                     "not a list\n");
}

static void test_all_or_none(void) {
  const char *yaml = "tlsrpt:\n  enabled: yes\n  dkim:\n    domain: example.com\n";
  test_config_errors(yaml, strlen(yaml),
                     "t.yaml:4:5: tlsrpt.dkim: domain, selector and key_file go "
                     "together (missing: selector, key_file)\n");
  yaml = "tlsrpt:\n  dkim: {selector: s, bogus: 1}\n";
  test_config_errors(yaml, strlen(yaml),
                     "t.yaml:2:9: tlsrpt.dkim: domain, selector and key_file go "
                     "together (missing: domain, key_file)\n"
                     "t.yaml:2:23: tlsrpt.dkim.bogus: unknown key\n");
  yaml = "tlsrpt:\n  dkim:\n    domain: -bad\n    selector: s_1\n"
         "    key_file: /nonexistent\n";
  char want[512];
  snprintf(want, sizeof want,
           "t.yaml:3:13: tlsrpt.dkim.domain: not a DNS name: label begins or ends with "
           "'-'\n"
           "t.yaml:4:15: tlsrpt.dkim.selector: not a DNS name: '_' is not allowed\n"
           "t.yaml:5:15: tlsrpt.dkim.key_file: cannot read /nonexistent: No such file "
           "or directory (reading as uid %u, gid %u)\n",
           (unsigned)geteuid(), (unsigned)getegid());
  test_config_errors(yaml, strlen(yaml), want);
}

int main(void) {
  make_keys();
  RUN_TEST(test_no_key_by_default);
  RUN_TEST(test_rsa_key);
  RUN_TEST(test_ed25519_key);
  RUN_TEST(test_refused_keys);
  RUN_TEST(test_all_or_none);
  remove_keys();
  return 0;
}
