/* TLS contexts for each side. No sockets here.
 *
 * The client context enforces, whatever the policy level: TLS 1.2 or newer, forward-
 * secret key exchange only (ECDHE/DHE in TLS 1.2; TLS 1.3), the configured groups,
 * no renegotiation, no compression, SSL_MODE_RELEASE_BUFFERS, and a client session
 * cache keyed by peer (host name + address + port) for resumption. */
#ifndef SP_CERTS_CONTEXT_H
#define SP_CERTS_CONTEXT_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

struct tls_client_settings {
  int min_protocol;         /* TLS1_2_VERSION or TLS1_3_VERSION; lower is refused */
  const char *groups;       /* OpenSSL group list */
  const char *ciphers;      /* TLS 1.2 list */
  const char *ciphersuites; /* TLS 1.3 suites */
  const char *ca_file;      /* NULL or "" = system default paths */
  const char *ca_path;
  unsigned min_dh_bits; /* checked after the handshake: see tls_verify_check_dh */
};

/* Builds the client SSL_CTX. Returns NULL and writes a one-line reason into err when a
 * setting is invalid — in particular when the cipher list admits any suite whose key
 * exchange is not ECDHE or DHE ("cipher list admits non-forward-secret suite
 * AES128-GCM-SHA256"), or a group name is unknown. */
SSL_CTX *tls_context_client_new(const struct tls_client_settings *st, char *err,
                                size_t errlen);

/* Session cache for resumption, owned by the SSL_CTX (freed with it). Before the
 * handshake: tls_context_resume(ssl, key) sets a cached session for that peer key if
 * any; the context's new-session callback stores sessions under the key set by
 * tls_context_resume. key is e.g. "mx1.example.com[192.0.2.1]:25|dane|<hash>": a
 * session is only offered under the exact key it was made under. Per key the cache
 * holds the newest TLS 1.2 session (offered again and again) or a stock of up to 32
 * TLS 1.3 tickets, each offered once, newest first; expired ones are dropped. At
 * most 1024 peer keys are kept (least recently used evicted). */
void tls_context_resume(SSL *ssl, const char *key);

#endif
