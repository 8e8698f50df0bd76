/* Judging a finished handshake; see verify.h for the contract.
 *
 * State: what the verify callback saw is a small bit set stored as an integer in the
 * SSL's ex_data and in the session's ex_data (no allocation, nothing to free). The
 * session copy matters for resumption, where no certificate is verified again:
 * OpenSSL copies session ex_data when it duplicates a session for a new ticket. */
#include "certs/verify.h"

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum {
  VF_NAMES = 1u << 0,     /* SSL only: reference names were set */
  VF_CHECKED = 1u << 1,   /* the callback ran for this chain */
  VF_CHAIN_ERR = 1u << 2, /* an error other than a name mismatch */
  VF_NAME_ERR = 1u << 3,  /* the leaf did not match any reference name */
};

static CRYPTO_ONCE index_once = CRYPTO_ONCE_STATIC_INIT;
static int ssl_flags_idx = -1;
static int sess_flags_idx = -1;

static void init_indexes(void) {
  ssl_flags_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  sess_flags_idx = SSL_SESSION_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static bool indexes_ready(void) {
  return CRYPTO_THREAD_run_once(&index_once, init_indexes) && ssl_flags_idx >= 0 &&
         sess_flags_idx >= 0;
}

static unsigned get_flags(void *p) {
  return (unsigned)(uintptr_t)p;
}
static void *as_ptr(unsigned f) {
  return (void *)(uintptr_t)f;
}

const char *tls_verdict_name(enum tls_verdict v) {
  switch (v) {
  case TLS_VERDICT_ANONYMOUS:
    return "Anonymous";
  case TLS_VERDICT_UNTRUSTED:
    return "Untrusted";
  case TLS_VERDICT_TRUSTED:
    return "Trusted";
  case TLS_VERDICT_VERIFIED:
    return "Verified";
  }
  return "Unknown";
}

/* Never fails the handshake: the policy judges the verdict afterwards (an
 * opportunistic "encrypt" policy must still get TLS with an untrusted peer). */
static int on_verify(int ok, X509_STORE_CTX *xs) {
  SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
  if (!ssl)
    return 1;
  unsigned f = get_flags(SSL_get_ex_data(ssl, ssl_flags_idx)) | VF_CHECKED;
  if (!ok) {
    int e = X509_STORE_CTX_get_error(xs);
    f |= e == X509_V_ERR_HOSTNAME_MISMATCH ? VF_NAME_ERR : VF_CHAIN_ERR;
  }
  SSL_set_ex_data(ssl, ssl_flags_idx, as_ptr(f));
  SSL_SESSION *sess = SSL_get_session(ssl);
  if (sess)
    SSL_SESSION_set_ex_data(sess, sess_flags_idx, as_ptr(f & ~(unsigned)VF_NAMES));
  return 1;
}

int tls_verify_prepare(SSL *ssl, const char *const *match, size_t nmatch) {
  if (!indexes_ready())
    return -1;
  unsigned f = 0;
  ERR_clear_error();
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  for (size_t i = 0; i < nmatch; i++) {
    ERR_clear_error();
    int ok = i == 0 ? SSL_set1_host(ssl, match[i]) : SSL_add1_host(ssl, match[i]);
    if (ok != 1)
      return -1;
    f |= VF_NAMES;
  }
  ERR_clear_error();
  if (!SSL_set_ex_data(ssl, ssl_flags_idx, as_ptr(f)))
    return -1;
  SSL_set_verify(ssl, SSL_VERIFY_PEER, on_verify);
  return 0;
}

enum tls_verdict tls_verify_verdict(SSL *ssl) {
  if (!SSL_get0_peer_certificate(ssl))
    return TLS_VERDICT_ANONYMOUS;
  unsigned names = 0, f = 0;
  if (indexes_ready()) {
    names = get_flags(SSL_get_ex_data(ssl, ssl_flags_idx)) & VF_NAMES;
    SSL_SESSION *sess = SSL_get_session(ssl);
    if (SSL_session_reused(ssl) && sess)
      f = get_flags(SSL_SESSION_get_ex_data(sess, sess_flags_idx));
    else
      f = get_flags(SSL_get_ex_data(ssl, ssl_flags_idx));
  }
  long result = SSL_get_verify_result(ssl);
  if (f & VF_CHAIN_ERR)
    return TLS_VERDICT_UNTRUSTED;
  if (result == X509_V_OK && !(f & VF_NAME_ERR))
    return names ? TLS_VERDICT_VERIFIED : TLS_VERDICT_TRUSTED;
  /* Only name mismatches were seen: the chain itself is good. */
  if ((f & VF_CHECKED) && (f & VF_NAME_ERR))
    return TLS_VERDICT_TRUSTED;
  return TLS_VERDICT_UNTRUSTED;
}

int tls_verify_check_dh(SSL *ssl, unsigned min_dh_bits, char *err, size_t errlen) {
  EVP_PKEY *k = NULL;
  int rc = 0;
  if (!SSL_get_peer_tmp_key(ssl, &k) || !k)
    return 0;
  if (EVP_PKEY_is_a(k, "DH") || EVP_PKEY_is_a(k, "DHX")) {
    int bits = EVP_PKEY_get_bits(k);
    if (bits < 0 || (unsigned)bits < min_dh_bits) {
      if (err && errlen)
        snprintf(err, errlen, "server DH group %d bits < minimum %u", bits,
                 min_dh_bits);
      rc = -1;
    }
  }
  EVP_PKEY_free(k);
  ERR_clear_error();
  return rc;
}

/* An EC key's curve by its NIST name ("P-256") when it has one. */
static void ec_curve_name(const EVP_PKEY *k, char *out, size_t cap) {
  char group[64];
  out[0] = '\0';
  if (!EVP_PKEY_get_group_name(k, group, sizeof group, NULL))
    return;
  const char *nist = EC_curve_nid2nist(OBJ_txt2nid(group));
  snprintf(out, cap, "%s", nist ? nist : group);
}

/* Postfix's words: "X25519", "ECDHE (P-256)", "DHE (2048 bits)". */
static void append_kex(SSL *ssl, char *out, size_t cap) {
  EVP_PKEY *k = NULL;
  if (!SSL_get_peer_tmp_key(ssl, &k) || !k)
    return;
  size_t n = strlen(out);
  char curve[64];
  if (EVP_PKEY_is_a(k, "EC")) {
    ec_curve_name(k, curve, sizeof curve);
    snprintf(out + n, cap - n, " key-exchange ECDHE%s%s%s", *curve ? " (" : "", curve,
             *curve ? ")" : "");
  } else if (EVP_PKEY_is_a(k, "DH") || EVP_PKEY_is_a(k, "DHX")) {
    snprintf(out + n, cap - n, " key-exchange DHE (%d bits)", EVP_PKEY_get_bits(k));
  } else if (EVP_PKEY_get0_type_name(k)) {
    snprintf(out + n, cap - n, " key-exchange %s", EVP_PKEY_get0_type_name(k));
  }
  EVP_PKEY_free(k);
}

/* "ECDSA (P-256)", "RSA-PSS (2048 bits)", "ED25519", then " server-digest SHA256".
 * RSA is "RSA-PSS" when the peer signed with PSS (always in TLS 1.3, as Postfix
 * says), plain "RSA" for PKCS#1 v1.5 signatures in TLS 1.2. */
static void append_sig(SSL *ssl, char *out, size_t cap) {
  X509 *cert = SSL_get0_peer_certificate(ssl);
  EVP_PKEY *k = cert ? X509_get0_pubkey(cert) : NULL;
  if (!k)
    return;
  size_t n = strlen(out);
  int type = NID_undef, dgst = NID_undef;
  if (!SSL_get_peer_signature_type_nid(ssl, &type))
    type = SSL_version(ssl) >= TLS1_3_VERSION ? EVP_PKEY_RSA_PSS : EVP_PKEY_RSA;
  char curve[64];
  if (EVP_PKEY_is_a(k, "EC")) {
    ec_curve_name(k, curve, sizeof curve);
    snprintf(out + n, cap - n, " server-signature ECDSA%s%s%s", *curve ? " (" : "",
             curve, *curve ? ")" : "");
  } else if (EVP_PKEY_is_a(k, "RSA") || EVP_PKEY_is_a(k, "RSA-PSS")) {
    const char *name =
        type == EVP_PKEY_RSA_PSS || EVP_PKEY_is_a(k, "RSA-PSS") ? "RSA-PSS" : "RSA";
    snprintf(out + n, cap - n, " server-signature %s (%d bits)", name,
             EVP_PKEY_get_bits(k));
  } else if (EVP_PKEY_get0_type_name(k)) {
    snprintf(out + n, cap - n, " server-signature %s", EVP_PKEY_get0_type_name(k));
  } else {
    return;
  }
  /* Ed25519/Ed448 sign without a separate digest: NID_undef, omitted. */
  n = strlen(out);
  if (SSL_get_peer_signature_nid(ssl, &dgst) && dgst != NID_undef && OBJ_nid2sn(dgst))
    snprintf(out + n, cap - n, " server-digest %s", OBJ_nid2sn(dgst));
}

void tls_verify_summary(SSL *ssl, char *out, size_t cap) {
  if (!out || !cap)
    return;
  out[0] = '\0';
  const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
  if (!c)
    return;
  int alg_bits = 0;
  int use_bits = SSL_CIPHER_get_bits(c, &alg_bits);
  snprintf(out, cap, "%s with cipher %s (%d/%d bits)", SSL_get_version(ssl),
           SSL_CIPHER_get_name(c), use_bits, alg_bits);
  append_kex(ssl, out, cap);
  append_sig(ssl, out, cap);
  ERR_clear_error();
}
