/* Which trust anchors a TLS client uses, in one place for every client the proxy runs:
 * MX connections (outbound.tls), MTA-STS policy fetches, TLS-RPT https: POSTs and
 * rediss:. No sockets here.
 *
 * The order, first match wins: the client's own key (mta_sts.ca_file, tlsrpt.ca_file,
 * cache.redis.ca_file) > outbound.tls.ca_file / ca_path (config_trust picks these) >
 * $SSL_CERT_FILE / $SSL_CERT_DIR > the system store (OpenSSL's compiled-in locations;
 * on Debian /usr/lib/ssl/cert.pem and /usr/lib/ssl/certs, links to /etc/ssl/certs). */
#ifndef SP_CERTS_TRUST_H
#define SP_CERTS_TRUST_H

#include <openssl/types.h>

/* A CA bundle (PEM) and/or a hashed CA directory; NULL = not set. Both NULL means
 * "the defaults" (tls_trust_default). The strings are borrowed: they live as long as
 * what they were picked from. */
struct tls_trust {
  const char *file;
  const char *path;
};

/* The defaults spelled out: what SSL_CTX_set_default_verify_paths loads, i.e.
 * $SSL_CERT_FILE (else OpenSSL's default file) and $SSL_CERT_DIR (else its default
 * directory), the file only when it exists. Clients that do not use OpenSSL's default
 * paths (libcurl: its own compiled-in CURLOPT_CAINFO, which ignores $SSL_CERT_FILE)
 * are given these, so every client trusts the same anchors. The strings point into
 * the environment or OpenSSL's constants: valid until the environment changes. */
struct tls_trust tls_trust_default(void);

/* Loads t into ctx (the defaults when t is NULL or has neither set). 1 on success, 0
 * with OpenSSL's error queue set otherwise. */
int tls_trust_load(SSL_CTX *ctx, const struct tls_trust *t);

#endif
