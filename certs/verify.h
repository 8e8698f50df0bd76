/* Judging a finished handshake: the verdict in Postfix's words and the log summary. */
#ifndef SP_CERTS_VERIFY_H
#define SP_CERTS_VERIFY_H

#include <openssl/ssl.h>
#include <stddef.h>

enum tls_verdict {
  TLS_VERDICT_ANONYMOUS, /* no certificate */
  TLS_VERDICT_UNTRUSTED, /* certificate whose chain did not verify */
  TLS_VERDICT_TRUSTED,   /* chain verified to a trust anchor, name not matched */
  TLS_VERDICT_VERIFIED,  /* chain verified and the name matched (or DANE matched) */
};

const char *tls_verdict_name(enum tls_verdict v); /* "Anonymous", "Untrusted", ... */

/* Prepares ssl (client) so that the chain is verified against the context's trust
 * anchors without failing the handshake (the policy decides afterwards), and the names
 * in match[0..nmatch) are checked with OpenSSL's host name API. Returns 0, or -1
 * (out of memory, or a name OpenSSL refuses). */
int tls_verify_prepare(SSL *ssl, const char *const *match, size_t nmatch);

/* After the handshake. */
enum tls_verdict tls_verify_verdict(SSL *ssl);

/* After the handshake: 0, or -1 when the peer's ephemeral key is finite-field DH
 * smaller than min_dh_bits (writes the reason; the caller maps it to SP_E_TLS, as
 * certs/ does not include proxy/error.h). */
int tls_verify_check_dh(SSL *ssl, unsigned min_dh_bits, char *err, size_t errlen);

/* Postfix's wording, e.g.
 * "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519
 *  server-signature ECDSA (P-256) server-digest SHA256"
 * (key-exchange/server-signature/server-digest parts omitted when unknown). */
void tls_verify_summary(SSL *ssl, char *out, size_t cap);

#endif
