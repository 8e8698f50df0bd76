/* TLS security levels, with the meaning of Postfix's smtp_tls_security_level and
 * smtp_tls_policy_maps, so admins can carry their tables over. Pure. */
#ifndef SP_POLICY_LEVEL_H
#define SP_POLICY_LEVEL_H

enum tls_level {
  TLS_LEVEL_NONE,        /* no TLS */
  TLS_LEVEL_MAY,         /* opportunistic: TLS when offered, plaintext otherwise */
  TLS_LEVEL_ENCRYPT,     /* TLS required, server not authenticated */
  TLS_LEVEL_DANE,        /* DANE when the zone is signed and publishes TLSA, else may */
  TLS_LEVEL_DANE_ONLY,   /* DANE required */
  TLS_LEVEL_FINGERPRINT, /* certificate or public key SHA-256 pinned */
  TLS_LEVEL_VERIFY,      /* PKIX chain + name (default match: the MX host name) */
  TLS_LEVEL_SECURE,      /* PKIX chain + name (default match: nexthop:dot-nexthop) */
};

/* "none", "may", ... Static strings. */
const char *tls_level_name(enum tls_level level);
/* Parses a level name, in any case as Postfix does ("Encrypt"). Returns 0 or -1. */
int tls_level_parse(const char *name, enum tls_level *out);

#endif
