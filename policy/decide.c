#include "policy/decide.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum tls_level decide_level(const struct decide_domain *d) {
  if (d->entry != NULL)
    return d->entry->level;
  return d->default_level;
}

bool decide_wants_tlsa(const struct decide_domain *d) {
  enum tls_level level = decide_level(d);
  return (level == TLS_LEVEL_DANE || level == TLS_LEVEL_DANE_ONLY) && d->mx_secure;
}

static void skip_host(struct decide_host *h, const char *reason) {
  h->skip = true;
  /* Fail closed should a caller dial it anyway. */
  h->tls_required = true;
  h->auth = DECIDE_AUTH_NONE;
  h->nusable = 0;
  h->nnames = 0;
  snprintf(h->skip_reason, sizeof(h->skip_reason), "%s", reason);
}

/* Appends prefix+name, lower-cased, unless empty, too long (a cut name could match a
 * different certificate), already present, or the list is full. */
static void add_name(struct decide_host *h, const char *prefix, const char *name) {
  char buf[sizeof(h->names[0])];
  if (name == NULL || name[0] == '\0' || h->nnames >= DECIDE_MAX_NAMES)
    return;
  int n = snprintf(buf, sizeof(buf), "%s%s", prefix, name);
  if (n < 0 || (size_t)n >= sizeof(buf))
    return;
  for (char *p = buf; *p != '\0'; p++)
    *p = (char)tolower((unsigned char)*p);
  /* "." alone would stand for "every name". */
  if (strcmp(buf, ".") == 0)
    return;
  for (size_t i = 0; i < h->nnames; i++)
    if (strcmp(h->names[i], buf) == 0)
      return;
  memcpy(h->names[h->nnames++], buf, (size_t)n + 1);
}

/* Postfix's match= keywords for verify/secure; anything else is a literal name. */
static void expand_name(const struct decide_domain *d, struct decide_host *h,
                        const char *m) {
  if (strcasecmp(m, "hostname") == 0)
    add_name(h, "", h->host);
  else if (strcasecmp(m, "nexthop") == 0)
    add_name(h, "", d->domain);
  else if (strcasecmp(m, "dot-nexthop") == 0)
    add_name(h, ".", d->domain);
  else
    add_name(h, "", m);
}

static void decide_pkix(const struct decide_domain *d, struct decide_host *h) {
  h->tls_required = true;
  h->auth = DECIDE_AUTH_PKIX;
  const struct table_entry *e = d->entry;
  if (e != NULL && e->nmatch > 0) {
    size_t n = e->nmatch < TABLE_MAX_MATCH ? e->nmatch : TABLE_MAX_MATCH;
    for (size_t i = 0; i < n; i++)
      expand_name(d, h, e->match[i]);
  } else if (h->level == TLS_LEVEL_VERIFY) {
    expand_name(d, h, "hostname");
  } else {
    expand_name(d, h, "nexthop");
    expand_name(d, h, "dot-nexthop");
  }
  /* No name would let OpenSSL accept any name: refuse rather than weaken. */
  if (h->nnames == 0)
    skip_host(h, "no certificate names to match");
}

/* RFC 7672 as listed in decide.h. Returns true when the TLSA RRset decided the host's
 * TLS (authenticated, or required because the records are unusable, §2.2). */
static bool decide_dane(const struct decide_domain *d, struct decide_host *h) {
  bool only = h->level == TLS_LEVEL_DANE_ONLY;
  const char *why;
  if (!d->mx_secure) {
    why = "MX RRset not DNSSEC-secure (dane-only)";
  } else if (!h->addr_secure) {
    why = "address records not DNSSEC-secure (dane-only)";
  } else if (h->tlsa == DECIDE_TLSA_FAILED) {
    /* §2.1.2: a failed lookup may hide a downgrade attack, at any DANE level. */
    skip_host(h, "TLSA lookup failed");
    return false;
  } else if (h->tlsa == DECIDE_TLSA_FOUND && h->records != NULL && h->nrecords > 0) {
    for (size_t i = 0; i < h->nrecords; i++)
      h->nusable += dane_tlsa_usable(&h->records[i]);
    if (h->nusable > 0) {
      h->tls_required = true;
      h->auth = DECIDE_AUTH_DANE;
      return true;
    }
    if (!only) {
      /* §2.2: secure but unusable records still prove the server offers TLS. */
      h->level = TLS_LEVEL_ENCRYPT;
      h->tls_required = true;
      return true;
    }
    why = "no usable TLSA records (dane-only)";
  } else {
    why = "no TLSA records (dane-only)";
  }
  if (only)
    skip_host(h, why);
  else
    h->level = TLS_LEVEL_MAY;
  return false;
}

static void set_policy(const struct decide_domain *d, struct decide_host *h,
                       bool by_dane) {
  const char *name = tls_level_name(h->level);
  if (name == NULL)
    name = "unknown";
  if (d->entry != NULL)
    snprintf(h->policy, sizeof(h->policy), "table/%s", name);
  else if (by_dane)
    snprintf(h->policy, sizeof(h->policy), "dane");
  else
    snprintf(h->policy, sizeof(h->policy), "default/%s", name);
}

/* MTA-STS after the table and DANE: only where neither decided the host. */
static void decide_sts(const struct decide_domain *d, struct decide_host *h,
                       bool by_dane) {
  const struct sts_policy *sts = d->sts;
  if (!sts || sts->mode == STS_MODE_NONE || d->entry || by_dane || h->skip ||
      h->tlsa == DECIDE_TLSA_FOUND || h->tlsa == DECIDE_TLSA_FAILED)
    return;
  if (sts->mode == STS_MODE_TESTING) {
    snprintf(h->policy, sizeof h->policy, "mta-sts/testing");
    /* §5: failures are reported, never enforced. A level that authenticates the host
     * keeps its own check; at level none no TLS is tried. */
    if (h->auth == DECIDE_AUTH_NONE && h->level != TLS_LEVEL_NONE) {
      h->sts_testing = true;
      h->sts_unlisted = !sts_mx_match(sts, h->host);
      h->nnames = 0;
      add_name(h, "", h->host);
    }
    return;
  }
  snprintf(h->policy, sizeof h->policy, "mta-sts/enforce");
  if (!sts_mx_match(sts, h->host)) {
    skip_host(h, "not listed in the MTA-STS policy");
    return;
  }
  h->level = TLS_LEVEL_VERIFY;
  h->tls_required = true;
  h->auth = DECIDE_AUTH_PKIX;
  h->nnames = 0;
  add_name(h, "", h->host); /* §4.2: valid for the MX host name */
}

/* Every out field, so no path leaves a value from an earlier decision. */
static void clear_out(struct decide_host *h) {
  memset(&h->skip, 0, sizeof(*h) - offsetof(struct decide_host, skip));
}

void decide_host(const struct decide_domain *d, struct decide_host *h) {
  clear_out(h);
  h->level = decide_level(d);
  h->min_protocol = d->entry != NULL ? d->entry->min_protocol : 0;
  bool by_dane = false;
  switch (h->level) {
  case TLS_LEVEL_NONE:
  case TLS_LEVEL_MAY:
    break;
  case TLS_LEVEL_ENCRYPT:
    h->tls_required = true;
    break;
  case TLS_LEVEL_FINGERPRINT:
    h->tls_required = true;
    h->auth = DECIDE_AUTH_FINGERPRINT;
    /* Without pins no certificate could match; say why instead of failing later. */
    if (d->entry == NULL || d->entry->nfingerprints == 0)
      skip_host(h, "no fingerprints to match");
    break;
  case TLS_LEVEL_VERIFY:
  case TLS_LEVEL_SECURE:
    decide_pkix(d, h);
    break;
  case TLS_LEVEL_DANE:
  case TLS_LEVEL_DANE_ONLY:
    by_dane = decide_dane(d, h);
    break;
  default:
    skip_host(h, "unknown TLS level");
    break;
  }
  set_policy(d, h, by_dane);
  decide_sts(d, h, by_dane);
}

void decide_report(struct decide_host *h) {
  clear_out(h);
  h->level = TLS_LEVEL_MAY;
  snprintf(h->policy, sizeof(h->policy), "tlsrpt/may");
}
