#include "certs/trust.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <sys/stat.h>

/* OpenSSL silently skips a default file that is missing; libcurl fails the transfer
 * on a CAINFO it cannot read, so only an existing one is passed on. A directory is
 * passed as it is: it may be a colon-separated list, and missing ones are skipped by
 * both. */
static const char *existing_file(const char *p) {
  struct stat st;
  return p && *p && stat(p, &st) == 0 && S_ISREG(st.st_mode) ? p : NULL;
}

struct tls_trust tls_trust_default(void) {
  const char *file = getenv(X509_get_default_cert_file_env());
  const char *dir = getenv(X509_get_default_cert_dir_env());
  struct tls_trust t = {
      existing_file(file ? file : X509_get_default_cert_file()),
      !dir   ? X509_get_default_cert_dir()
      : *dir ? dir
             : NULL,
  };
  return t;
}

int tls_trust_load(SSL_CTX *ctx, const struct tls_trust *t) {
  if (!t || (!t->file && !t->path))
    return SSL_CTX_set_default_verify_paths(ctx);
  return SSL_CTX_load_verify_locations(ctx, t->file, t->path);
}
