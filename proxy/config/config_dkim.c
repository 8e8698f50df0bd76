/* tlsrpt.dkim: the key that signs mailed TLS reports (RFC 8460 §3). The key file is
 * read while the config loads, so --check-config, the start and a SIGHUP reload all
 * refuse a key the signer could not use, with the key's line and column. */
#include "proxy/config/config_dkim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "proxy/config/config_walk.h"

#define DKIM_KEY_FILE_MAX (64 * 1024) /* a PEM private key is a few KiB at most */
#define DKIM_RSA_MIN_BITS 1024        /* RFC 8301 §3.2: verifiers reject smaller */

const char *config_dkim_alg_name(enum config_dkim_alg alg) {
  switch (alg) {
  case CONFIG_DKIM_RSA_SHA256:
    return "rsa-sha256";
  case CONFIG_DKIM_ED25519_SHA256:
    return "ed25519-sha256";
  case CONFIG_DKIM_NONE:
  default:
    return "none";
  }
}

void config__dkim_free(struct config *cfg) {
  if (cfg->tlsrpt_dkim_key) {
    OPENSSL_cleanse(cfg->tlsrpt_dkim_key, strlen(cfg->tlsrpt_dkim_key));
    free(cfg->tlsrpt_dkim_key);
    cfg->tlsrpt_dkim_key = NULL;
  }
}

/* The file's bytes (malloc'd, NUL-terminated) or the reason in buf. */
static const char *read_key_file(const char *path, char **out, size_t *outlen,
                                 char *buf, size_t cap) {
  struct stat st;
  char *data = NULL;
  ssize_t n = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    /* A reload reads the file again after privileges were dropped: name the reader. */
    snprintf(buf, cap, "cannot read %s: %s (reading as uid %u, gid %u)", path,
             strerror(errno), (unsigned)geteuid(), (unsigned)getegid());
    return buf;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(buf, cap, "%s: not a regular file", path);
  } else if (st.st_mode & (S_IRWXO | S_IWGRP)) {
    /* A private key others can read signs mail as the domain for anyone on the host;
     * OpenDKIM refuses such files too (RequireSafeKeys). */
    snprintf(buf, cap,
             "%s: mode %04o lets other users read or change the private key; use "
             "chmod 0600 (or 0640 with the proxy's group)",
             path, (unsigned)(st.st_mode & 07777));
  } else if (st.st_size > DKIM_KEY_FILE_MAX) {
    snprintf(buf, cap, "%s: larger than %d bytes, not a private key", path,
             DKIM_KEY_FILE_MAX);
  } else if (!(data = malloc((size_t)st.st_size + 1))) {
    snprintf(buf, cap, "out of memory");
  } else if ((n = read(fd, data, (size_t)st.st_size)) != st.st_size) {
    snprintf(buf, cap, "cannot read %s: %s", path,
             n < 0 ? strerror(errno) : "short read");
  } else {
    data[n] = '\0';
    *out = data;
    *outlen = (size_t)n;
    close(fd);
    return NULL;
  }
  if (data) {
    OPENSSL_cleanse(data, (size_t)st.st_size);
    free(data);
  }
  close(fd);
  return buf;
}

/* An encrypted key would need a passphrase at every start and reload. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
  (void)buf, (void)size, (void)rwflag, (void)u;
  return -1;
}

/* The key's algorithm and size, or the reason it cannot sign DKIM. */
static const char *key_kind(EVP_PKEY *pk, enum config_dkim_alg *alg, unsigned *bits,
                            char *buf, size_t cap) {
  int id = EVP_PKEY_get_base_id(pk);
  *bits = (unsigned)EVP_PKEY_get_bits(pk);
  if (id == EVP_PKEY_RSA && *bits >= DKIM_RSA_MIN_BITS) {
    *alg = CONFIG_DKIM_RSA_SHA256;
    return NULL;
  }
  if (id == EVP_PKEY_RSA) {
    snprintf(buf, cap,
             "an RSA key of %u bits: RFC 8301 requires at least %d (2048 "
             "recommended)",
             *bits, DKIM_RSA_MIN_BITS);
    return buf;
  }
  if (id == EVP_PKEY_ED25519) {
    *alg = CONFIG_DKIM_ED25519_SHA256;
    return NULL;
  }
  const char *name = EVP_PKEY_get0_type_name(pk);
  snprintf(buf, cap,
           "a key of type %s: DKIM signs with RSA (rsa-sha256) or Ed25519 "
           "(ed25519-sha256, RFC 8463)",
           name ? name : "unknown");
  return buf;
}

/* The key as PKCS#8 PEM (malloc'd) with its algorithm, or the reason. */
static const char *parse_key(const char *path, const char *pem, size_t len,
                             struct config *cfg, char *buf, size_t cap) {
  const char *reason = NULL;
  char *data = NULL;
  long outlen;
  BIO *in = BIO_new_mem_buf(pem, (int)len), *out = BIO_new(BIO_s_secmem());
  EVP_PKEY *pk = NULL;
  ERR_clear_error();
  if (!in || !out) {
    reason = "out of memory";
    goto out;
  }
  if (strstr(pem, "ENCRYPTED")) {
    snprintf(buf, cap,
             "%s: an encrypted key: the proxy cannot ask for a passphrase (write it "
             "unencrypted with openssl pkey, mode 0600)",
             path);
    reason = buf;
    goto out;
  }
  if (!(pk = PEM_read_bio_PrivateKey(in, NULL, no_passphrase, NULL))) {
    snprintf(buf, cap, "%s: not a PEM private key (RSA or Ed25519)", path);
    reason = buf;
    goto out;
  }
  if ((reason = key_kind(pk, &cfg->tlsrpt_dkim_alg, &cfg->tlsrpt_dkim_bits, buf, cap)))
    goto out;
  /* Written again as PKCS#8: one form for the signer, whatever the file held. */
  if (!PEM_write_bio_PrivateKey(out, pk, NULL, NULL, 0, NULL, NULL) ||
      (outlen = BIO_get_mem_data(out, &data)) <= 0 ||
      !(cfg->tlsrpt_dkim_key = malloc((size_t)outlen + 1))) {
    reason = "out of memory";
    goto out;
  }
  memcpy(cfg->tlsrpt_dkim_key, data, (size_t)outlen);
  cfg->tlsrpt_dkim_key[outlen] = '\0';
out:
  EVP_PKEY_free(pk);
  BIO_free(in);
  BIO_free(out); /* a secure-memory BIO: cleared when freed */
  ERR_clear_error();
  if (reason)
    cfg->tlsrpt_dkim_alg = CONFIG_DKIM_NONE;
  return reason;
}

void config__dkim_key_file(struct config__errs *errs, const char *key,
                           const struct config__node *n, struct config *cfg) {
  char buf[1400], *pem = NULL;
  size_t len = 0;
  const char *reason = NULL;
  struct config__walk w;
  config__walk_init(&w, errs, key);
  if (!config__walk_nonempty(&w, n)) /* NUL and control characters refused too */
    return;
  if (n->len >= sizeof cfg->tlsrpt_dkim_key_file)
    reason = "path too long";
  if (!reason) {
    memcpy(cfg->tlsrpt_dkim_key_file, n->str, n->len + 1);
    reason = read_key_file(n->str, &pem, &len, buf, sizeof buf);
  }
  if (!reason)
    reason = parse_key(n->str, pem, len, cfg, buf, sizeof buf);
  if (pem) {
    OPENSSL_cleanse(pem, len);
    free(pem);
  }
  if (reason)
    config__walk_err(&w, n, "%s", reason);
}

void config__dkim_section(struct config__errs *errs, const char *key,
                          const struct config__node *n, struct config *cfg) {
  static const char *const required[] = {"domain", "selector", "key_file"};
  char missing[64] = "";
  (void)cfg;
  if (n->type != CONFIG__MAP)
    return; /* empty (null): no key; other types were reported by the walk */
  for (size_t r = 0; r < sizeof required / sizeof *required; r++) {
    bool found = false;
    for (size_t i = 0; i + 1 < n->n && !found; i += 2)
      found =
          n->items[i]->type == CONFIG__SCALAR && !strcmp(n->items[i]->str, required[r]);
    if (!found)
      snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s",
               missing[0] ? ", " : "", required[r]);
  }
  if (missing[0])
    config__errf(errs, n->line, n->col, key,
                 "domain, selector and key_file go together (missing: %s)", missing);
}
