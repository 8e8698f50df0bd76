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

/* ---- DANE and pinning (OpenSSL's DANE API; the client SSL_CTX has DANE enabled) ---- */
#include "policy/dane.h"

/* DANE (RFC 7672 §3): base is the TLSA base domain (the MX host name), used as the
 * reference name; records are the usable TLSA records. DANE-EE(3) matches skip name
 * checks (§3.1.1); DANE-TA(2) chains must name base (§3.2.2). The handshake does not
 * fail on a mismatch: tls_verify_verdict() is Verified only when a record matched.
 * Returns 0, or -1 when OpenSSL refuses every record. */
int tls_verify_prepare_dane(SSL *ssl, const char *base, const struct dane_tlsa *records,
                            size_t nrecords);

/* After tls_verify_prepare_dane: name is accepted too by DANE-TA(2) name checks (the
 * MX host name when the TLSA base domain is its CNAME expansion, or the other way
 * round, RFC 7672 §2.2.2 and §3.2.2). Returns 0 or -1. */
int tls_verify_add_dane_name(SSL *ssl, const char *name);

/* Fingerprint pins (Postfix's "fingerprint" level): each SHA-256 digest matches the
 * server certificate or its public key, checked through the DANE API as DANE-EE
 * "3 0 1" and "3 1 1" records; host is the reference name. Returns 0 or -1. */
int tls_verify_prepare_fingerprints(SSL *ssl, const char *host,
                                    const unsigned char (*sha256)[32], size_t n);

/* After the handshake: the TLSA record (or pin) that matched, as "3 1 1 ab12...",
 * or "" when none did. */
void tls_verify_dane_match(SSL *ssl, char *out, size_t cap);

/* After the handshake: why the verdict is not Verified, in Postfix's words where it has
 * them ("certificate verification failed: no matching TLSA record", "certificate
 * name mismatch", "unable to get local issuer certificate"), or "" when Verified. */
void tls_verify_failure(SSL *ssl, char *out, size_t cap);

#endif
