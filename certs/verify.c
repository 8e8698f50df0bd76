/* Judging a finished handshake; see verify.h for the contract.
 *
 * State: what the verify callback saw is a small bit set, with the first chain error
 * code in its upper bits, stored as an integer in the SSL's ex_data and in the
 * session's ex_data (no allocation, nothing to free). The session copy matters for
 * resumption, where no certificate is verified again: OpenSSL copies session ex_data
 * when it duplicates a session for a new ticket. The one allocation is the session's
 * copy of the matched TLSA record as text (for a resumed DANE connection's log line):
 * owned by the session, duplicated and freed by the ex_data callbacks.
 *
 * DANE (and fingerprint pins) use OpenSSL's DANE API. Only DANE-TA(2) and DANE-EE(3)
 * records are ever added, so OpenSSL never consults the PKIX trust store for such a
 * connection: its chain is judged by the TLSA records alone. */
#include "certs/verify.h"

#include <ctype.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  VF_NAMES = 1u << 0,     /* SSL only: reference names were set */
  VF_CHECKED = 1u << 1,   /* the callback ran for this chain */
  VF_CHAIN_ERR = 1u << 2, /* an error other than a name mismatch */
  VF_NAME_ERR = 1u << 3,  /* the leaf did not match any reference name */
  VF_DANE = 1u << 4,      /* DANE or pins: in force (SSL), judged so (session) */
  VF_DANE_OK = 1u << 5,   /* a TLSA record or pin matched */
};
#define VF_ERR_SHIFT 8 /* the first error other than a name mismatch, 0 if none */
#define VF_ERR_MAX 0xffffu

#define MATCH_HEX_MAX 32 /* hex digits of a matched record shown before "..." */

static CRYPTO_ONCE index_once = CRYPTO_ONCE_STATIC_INIT;
static int ssl_flags_idx = -1;
static int sess_flags_idx = -1;
static int sess_match_idx = -1; /* char *, "3 1 1 ab12..." */

static int on_dup_match(CRYPTO_EX_DATA *to, const CRYPTO_EX_DATA *from, void **from_d,
                        int idx, long argl, void *argp) {
  (void)to, (void)from, (void)idx, (void)argl, (void)argp;
  if (*from_d)
    *from_d = strdup(*from_d); /* NULL on failure: only the log line loses it */
  return 1;
}

static void on_free_match(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                          long argl, void *argp) {
  (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
  free(ptr);
}

static void init_indexes(void) {
  ssl_flags_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  sess_flags_idx = SSL_SESSION_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  sess_match_idx =
      SSL_SESSION_get_ex_new_index(0, NULL, NULL, on_dup_match, on_free_match);
}

static bool indexes_ready(void) {
  return CRYPTO_THREAD_run_once(&index_once, init_indexes) && ssl_flags_idx >= 0 &&
         sess_flags_idx >= 0 && sess_match_idx >= 0;
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

/* "3 1 1 " and the data in hex, cut after MATCH_HEX_MAX digits (and to cap). */
static void format_tlsa(uint8_t usage, uint8_t selector, uint8_t mtype,
                        const unsigned char *data, size_t dlen, char *out, size_t cap) {
  char hex[MATCH_HEX_MAX + 4];
  size_t n = 0;
  for (size_t i = 0; i < dlen && n + 2 <= MATCH_HEX_MAX; i++)
    n += (size_t)snprintf(hex + n, sizeof hex - n, "%02x", data[i]);
  snprintf(out, cap, "%u %u %u %s%s", usage, selector, mtype, hex,
           dlen * 2 > n ? "..." : "");
}

/* Keeps the matched record with the session, for a resumed connection's log line. */
static void remember_match(SSL *ssl, SSL_SESSION *sess) {
  uint8_t usage, selector, mtype;
  const unsigned char *data;
  size_t dlen;
  char buf[64];
  if (!sess || SSL_get0_dane_tlsa(ssl, &usage, &selector, &mtype, &data, &dlen) < 0)
    return;
  format_tlsa(usage, selector, mtype, data, dlen, buf, sizeof buf);
  char *copy = strdup(buf), *old = SSL_SESSION_get_ex_data(sess, sess_match_idx);
  if (copy && SSL_SESSION_set_ex_data(sess, sess_match_idx, copy)) {
    free(old);
    return;
  }
  free(copy);
}

/* Never fails the handshake: the policy judges the verdict afterwards (an
 * opportunistic "encrypt" policy must still get TLS with an untrusted peer).
 * The DANE match is read here, while verification runs, so that the session
 * (and each ticket duplicated from it) carries it. */
static int on_verify(int ok, X509_STORE_CTX *xs) {
  SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
  if (!ssl)
    return 1;
  SSL_SESSION *sess = SSL_get_session(ssl);
  unsigned f = get_flags(SSL_get_ex_data(ssl, ssl_flags_idx)) | VF_CHECKED;
  if (!ok) {
    int e = X509_STORE_CTX_get_error(xs);
    if (e == X509_V_ERR_HOSTNAME_MISMATCH) {
      f |= VF_NAME_ERR;
    } else {
      if (!(f & VF_CHAIN_ERR) && e > 0 && (unsigned)e <= VF_ERR_MAX)
        f |= (unsigned)e << VF_ERR_SHIFT;
      f |= VF_CHAIN_ERR;
    }
  } else if ((f & VF_DANE) && !(f & VF_DANE_OK) &&
             SSL_get0_dane_authority(ssl, NULL, NULL) >= 0) {
    f |= VF_DANE_OK;
    remember_match(ssl, sess);
  }
  SSL_set_ex_data(ssl, ssl_flags_idx, as_ptr(f));
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

/* The SSL's own flags into *ssl_f; returns what the verify callback saw, on this
 * connection or, when resumed, on the one that created the session. */
static unsigned seen_flags(SSL *ssl, unsigned *ssl_f) {
  *ssl_f = 0;
  if (!indexes_ready())
    return 0;
  *ssl_f = get_flags(SSL_get_ex_data(ssl, ssl_flags_idx));
  SSL_SESSION *sess = SSL_get_session(ssl);
  if (SSL_session_reused(ssl))
    return sess ? get_flags(SSL_SESSION_get_ex_data(sess, sess_flags_idx)) : 0;
  return *ssl_f;
}

/* RFC 7672 section 3: with DANE, a record matched and nothing failed, or nothing.
 * A DANE failure is never Trusted: the chain was judged by the TLSA records alone,
 * not by the PKIX trust store. */
static enum tls_verdict dane_verdict(SSL *ssl, unsigned f) {
  if ((f & (VF_CHAIN_ERR | VF_NAME_ERR)) || SSL_get_verify_result(ssl) != X509_V_OK)
    return TLS_VERDICT_UNTRUSTED;
  bool matched = SSL_session_reused(ssl)
                     ? (f & VF_DANE_OK) != 0
                     : SSL_get0_dane_authority(ssl, NULL, NULL) >= 0;
  return matched ? TLS_VERDICT_VERIFIED : TLS_VERDICT_UNTRUSTED;
}

enum tls_verdict tls_verify_verdict(SSL *ssl) {
  if (!SSL_get0_peer_certificate(ssl))
    return TLS_VERDICT_ANONYMOUS;
  unsigned ssl_f, f = seen_flags(ssl, &ssl_f);
  /* A resumed session keeps its verdict only under the same kind of judgement:
   * a DANE-EE match says nothing about PKIX trust, nor a PKIX chain about TLSA. */
  if ((ssl_f & VF_DANE) != (f & VF_DANE))
    return TLS_VERDICT_UNTRUSTED;
  if (ssl_f & VF_DANE)
    return dane_verdict(ssl, f);
  long result = SSL_get_verify_result(ssl);
  if (f & VF_CHAIN_ERR)
    return TLS_VERDICT_UNTRUSTED;
  if (result == X509_V_OK && !(f & VF_NAME_ERR))
    return (ssl_f & VF_NAMES) ? TLS_VERDICT_VERIFIED : TLS_VERDICT_TRUSTED;
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

/* ---- DANE and pinning -------------------------------------------------------- */

/* DANE on ssl with base as the reference name (for DANE-TA) and names checked as in
 * tls_verify_prepare. SNI stays as the caller set it: SSL_dane_enable would default
 * it to base, and tls.c leaves it out for IP literals (RFC 6066 section 3). */
static int dane_begin(SSL *ssl, const char *base) {
  if (!base || !*base || !indexes_ready())
    return -1;
  bool had_sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) != NULL;
  ERR_clear_error();
  if (SSL_dane_enable(ssl, base) <= 0)
    goto fail;
  ERR_clear_error();
  if (!had_sni && SSL_set_tlsext_host_name(ssl, NULL) != 1)
    goto fail;
  /* RFC 7672 section 3.1.1: a DANE-EE(3) match authenticates the key alone, with
   * no name or validity check; DANE-TA(2) chains must still name base (3.2.2). */
  SSL_dane_set_flags(ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  unsigned f = get_flags(SSL_get_ex_data(ssl, ssl_flags_idx)) | VF_NAMES | VF_DANE;
  ERR_clear_error();
  if (!SSL_set_ex_data(ssl, ssl_flags_idx, as_ptr(f)))
    goto fail;
  SSL_set_verify(ssl, SSL_VERIFY_PEER, on_verify);
  return 0;
fail:
  ERR_clear_error();
  return -1;
}

int tls_verify_prepare_dane(SSL *ssl, const char *base, const struct dane_tlsa *records,
                            size_t nrecords) {
  if (dane_begin(ssl, base) < 0)
    return -1;
  size_t added = 0;
  for (size_t i = 0; i < nrecords; i++) {
    const struct dane_tlsa *r = &records[i];
    /* RFC 7672 section 3.1.3: PKIX-TA(0) and PKIX-EE(1) are unusable in SMTP; left
     * out, they also keep the PKIX trust store out of a DANE judgement. */
    if (r->malformed || (r->usage != DANE_TA && r->usage != DANE_EE) ||
        (r->len && !r->data))
      continue;
    ERR_clear_error();
    if (SSL_dane_tlsa_add(ssl, r->usage, r->selector, r->mtype, r->data, r->len) > 0)
      added++;
  }
  ERR_clear_error();
  return added > 0 ? 0 : -1;
}

int tls_verify_add_dane_name(SSL *ssl, const char *name) {
  if (!name || !*name || !(get_flags(SSL_get_ex_data(ssl, ssl_flags_idx)) & VF_DANE))
    return -1;
  ERR_clear_error();
  int ok = SSL_add1_host(ssl, name);
  ERR_clear_error();
  return ok == 1 ? 0 : -1;
}

int tls_verify_prepare_fingerprints(SSL *ssl, const char *host,
                                    const unsigned char (*sha256)[32], size_t n) {
  if (n == 0 || dane_begin(ssl, host) < 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    for (uint8_t selector = 0; selector <= 1; selector++) {
      ERR_clear_error();
      if (SSL_dane_tlsa_add(ssl, DANE_EE, selector, 1, sha256[i], 32) <= 0) {
        ERR_clear_error();
        return -1;
      }
    }
  }
  return 0;
}

void tls_verify_dane_match(SSL *ssl, char *out, size_t cap) {
  if (!out || !cap)
    return;
  out[0] = '\0';
  if (tls_verify_verdict(ssl) != TLS_VERDICT_VERIFIED)
    return;
  uint8_t usage, selector, mtype;
  const unsigned char *data;
  size_t dlen;
  if (SSL_session_reused(ssl)) {
    SSL_SESSION *sess = SSL_get_session(ssl);
    const char *kept = sess ? SSL_SESSION_get_ex_data(sess, sess_match_idx) : NULL;
    snprintf(out, cap, "%s", kept ? kept : "");
  } else if (SSL_get0_dane_tlsa(ssl, &usage, &selector, &mtype, &data, &dlen) >= 0) {
    format_tlsa(usage, selector, mtype, data, dlen, out, cap);
  }
}

/* OpenSSL's reason text, first letter in lower case to read inside a sentence. */
static void chain_failure(long code, char *out, size_t cap) {
  char reason[128];
  snprintf(reason, sizeof reason, "%s", X509_verify_cert_error_string(code));
  if (isupper((unsigned char)reason[0]) && islower((unsigned char)reason[1]))
    reason[0] = (char)tolower((unsigned char)reason[0]);
  snprintf(out, cap, "certificate verification failed: %s", reason);
}

void tls_verify_failure(SSL *ssl, char *out, size_t cap) {
  if (!out || !cap)
    return;
  out[0] = '\0';
  enum tls_verdict v = tls_verify_verdict(ssl);
  if (v == TLS_VERDICT_VERIFIED)
    return;
  if (v == TLS_VERDICT_ANONYMOUS) {
    snprintf(out, cap, "no server certificate");
    return;
  }
  unsigned ssl_f, f = seen_flags(ssl, &ssl_f);
  unsigned first = (f >> VF_ERR_SHIFT) & VF_ERR_MAX;
  long result = SSL_get_verify_result(ssl);
  if (first != 0)
    chain_failure((long)first, out, cap);
  else if (f & VF_NAME_ERR)
    snprintf(out, cap, "certificate name mismatch");
  else if ((ssl_f & VF_DANE) != (f & VF_DANE))
    snprintf(out, cap, "resumed session was not judged by the same method");
  else if (result != X509_V_OK)
    chain_failure(result, out, cap);
  else if (ssl_f & VF_DANE)
    chain_failure(X509_V_ERR_DANE_NO_MATCH, out, cap);
  else
    snprintf(out, cap, "no reference name to match");
}
