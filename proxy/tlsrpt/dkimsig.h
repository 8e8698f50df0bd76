/* DKIM signatures (RFC 6376) for the messages the proxy writes itself: TLS reports by
 * mail, which RFC 8460 §3 says MUST be signed. The signing is libopendkim's; this
 * module only feeds it a finished message and puts the DKIM-Signature field on top.
 *
 * relaxed/relaxed canonicalization; rsa-sha256, or ed25519-sha256 (RFC 8463) where
 * the library supports it. The signed header fields are those of an RFC 8460 §5.3
 * report (From, To, Subject, Date, Message-ID, MIME-Version, Content-Type,
 * TLS-Report-Domain, TLS-Report-Submitter, Auto-Submitted), each also over-signed
 * (RFC 6376 §8.15), so that a field added on the way breaks the signature. No state
 * is kept between calls: every call is independent and thread-safe. */
#ifndef SP_DKIMSIG_H
#define SP_DKIMSIG_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/config/config.h"

struct dkimsig_key {
  const char *domain;   /* d= */
  const char *selector; /* s= */
  const char *pem;      /* the private key, PEM (read by config_dkim.c) */
  enum config_dkim_alg alg;
};

/* Whether the linked libopendkim can sign with alg (ed25519-sha256 needs a library
 * built against OpenSSL 1.1.1 or newer). */
bool dkimsig_supported(enum config_dkim_alg alg);

/* Signs msg[0..len): header fields with CRLF line ends, an empty line, the body, as
 * it will be submitted (not dot-stuffed). Returns 0 with *out (malloc'd, the caller
 * frees) = the DKIM-Signature field followed by msg, and *outlen; or SP_E_NOMEM /
 * SP_E_DKIM with the reason in err. */
int dkimsig_sign(const struct dkimsig_key *k, const char *msg, size_t len, char **out,
                 size_t *outlen, char *err, size_t errlen);

#endif
