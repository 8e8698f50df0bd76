/* policy/dane.c and policy/decide.c: TLSA usability and the per-host TLS decision. */
#include "policy/decide.h"
#include "tests/unit/test.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>

#define NO_ENTRY (-1)

/* The data of every rec(): 01 02 03 ... (records point into it, never write it). */
static uint8_t pattern[DANE_DATA_MAX];

static struct dane_tlsa rec(uint8_t usage, uint8_t selector, uint8_t mtype,
                            uint16_t len) {
  struct dane_tlsa r;
  memset(&r, 0, sizeof(r));
  r.usage = usage;
  r.selector = selector;
  r.mtype = mtype;
  r.len = len;
  if (pattern[0] == 0)
    for (size_t i = 0; i < sizeof(pattern); i++)
      pattern[i] = (uint8_t)(i + 1);
  r.data = pattern;
  return r;
}

/* A P-256 key and a certificate for it, DER, made once: what a Full(0) record must
 * hold (selector 1 and 0) to be usable; the pattern bytes of rec() are neither. */
static uint8_t spki_der[512], cert_der[2048];
static uint16_t spki_len, cert_len;

static void make_der(void) {
  if (spki_len)
    return;
  EVP_PKEY *k = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  ASSERT(k != NULL && x != NULL);
  ASSERT_EQ(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
  ASSERT(X509_gmtime_adj(X509_getm_notBefore(x), 0) != NULL);
  ASSERT(X509_gmtime_adj(X509_getm_notAfter(x), 3600) != NULL);
  ASSERT_EQ(X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                       (const unsigned char *)"mx.example.net", -1, -1,
                                       0),
            1);
  ASSERT_EQ(X509_set_issuer_name(x, X509_get_subject_name(x)), 1);
  ASSERT_EQ(X509_set_pubkey(x, k), 1);
  ASSERT(X509_sign(x, k, EVP_sha256()) > 0);
  int n = i2d_PUBKEY(k, NULL), m = i2d_X509(x, NULL);
  ASSERT(n > 0 && (size_t)n <= sizeof spki_der && m > 0 &&
         (size_t)m <= sizeof cert_der);
  unsigned char *p = spki_der, *q = cert_der;
  ASSERT_EQ(i2d_PUBKEY(k, &p), n);
  ASSERT_EQ(i2d_X509(x, &q), m);
  spki_len = (uint16_t)n;
  cert_len = (uint16_t)m;
  X509_free(x);
  EVP_PKEY_free(k);
}

/* A Full(0) record of the certificate (selector 0) or its key (selector 1), its data
 * cut or lengthened by delta bytes. */
static struct dane_tlsa full(uint8_t usage, uint8_t selector, int delta) {
  make_der();
  struct dane_tlsa r = rec(usage, selector, 0, 0);
  r.data = selector == 0 ? cert_der : spki_der;
  r.len = (uint16_t)((selector == 0 ? cert_len : spki_len) + delta);
  return r;
}

static void entry_init(struct table_entry *e, enum tls_level level) {
  memset(e, 0, sizeof(*e));
  snprintf(e->key, sizeof(e->key), "example.com");
  e->level = level;
}

static void entry_match(struct table_entry *e, const char *name) {
  ASSERT(e->nmatch < TABLE_MAX_MATCH);
  snprintf(e->match[e->nmatch++], sizeof(e->match[0]), "%s", name);
}

static void domain_init(struct decide_domain *d, const struct table_entry *e,
                        enum tls_level def, bool mx_secure) {
  memset(d, 0, sizeof(*d));
  d->domain = "example.com";
  d->entry = e;
  d->default_level = def;
  d->mx_secure = mx_secure;
}

/* The out part starts dirty, so a path that forgets a field shows up. */
static void host_init(struct decide_host *h, const char *host, bool addr_secure,
                      enum decide_tlsa tlsa, const struct dane_tlsa *records,
                      size_t n) {
  memset(h, 0xA5, sizeof(*h));
  h->host = host;
  h->addr_secure = addr_secure;
  h->tlsa = tlsa;
  h->records = records;
  h->nrecords = n;
}

static void assert_clean_unused(const struct decide_host *h) {
  if (h->auth != DECIDE_AUTH_DANE)
    ASSERT_EQ(h->nusable, 0);
  if (h->auth != DECIDE_AUTH_PKIX && !h->sts_testing)
    ASSERT_EQ(h->nnames, 0);
  if (!h->sts_testing)
    ASSERT(!h->sts_unlisted);
  if (!h->skip)
    ASSERT_STR_EQ(h->skip_reason, "");
  ASSERT(memchr(h->policy, '\0', sizeof(h->policy)) != NULL);
}

/* ---- dane.c ---- */

static void test_tlsa_parse(void) {
  uint8_t buf[DANE_DATA_MAX + 8];
  struct dane_tlsa r;
  for (size_t i = 0; i < sizeof(buf); i++)
    buf[i] = (uint8_t)i;
  buf[0] = 3, buf[1] = 1, buf[2] = 1;
  for (size_t len = 0; len < 4; len++)
    ASSERT_EQ(dane_tlsa_parse(buf, len, &r), -1);
  ASSERT_EQ(dane_tlsa_parse(NULL, 10, &r), -1);
  ASSERT_EQ(dane_tlsa_parse(buf, 4, &r), 0);
  ASSERT_EQ(r.usage, 3);
  ASSERT_EQ(r.selector, 1);
  ASSERT_EQ(r.mtype, 1);
  ASSERT_EQ(r.len, 1);
  ASSERT_EQ(r.data[0], 3);
  ASSERT_EQ(dane_tlsa_parse(buf, 35, &r), 0);
  ASSERT_EQ(r.len, 32);
  ASSERT_MEM_EQ(r.data, 32, buf + 3, 32);
  ASSERT_EQ(dane_tlsa_parse(buf, DANE_DATA_MAX + 3, &r), 0);
  ASSERT_EQ(r.len, DANE_DATA_MAX);
  ASSERT_MEM_EQ(r.data, DANE_DATA_MAX, buf + 3, DANE_DATA_MAX);
  ASSERT_EQ(dane_tlsa_parse(buf, DANE_DATA_MAX + 4, &r), -1);
}

static void test_tlsa_usable_rows(void) {
  static const struct {
    uint8_t usage, selector, mtype;
    uint16_t len;
    bool usable;
  } rows[] = {
      {3, 1, 1, 32, true},  {3, 0, 1, 32, true},    {2, 0, 1, 32, true},
      {2, 1, 2, 64, true},  {3, 1, 0, 1, false},    {2, 0, 0, 900, false},
      {3, 1, 0, 0, false},  {3, 1, 1, 31, false},   {3, 1, 1, 33, false},
      {3, 1, 1, 64, false}, {3, 1, 2, 32, false},   {3, 1, 2, 63, false},
      {3, 1, 2, 65, false}, {3, 1, 3, 32, false},   {3, 1, 255, 32, false},
      {3, 2, 1, 32, false}, {2, 255, 1, 32, false}, {0, 0, 1, 32, false},
      {1, 1, 1, 32, false}, {4, 1, 1, 32, false},   {255, 1, 1, 32, false},
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    struct dane_tlsa r =
        rec(rows[i].usage, rows[i].selector, rows[i].mtype, rows[i].len);
    if (dane_tlsa_usable(&r) != rows[i].usable)
      TEST_FAIL_("row %zu: %u %u %u len %u: want %d", i, rows[i].usage,
                 rows[i].selector, rows[i].mtype, rows[i].len, rows[i].usable);
  }
  ASSERT(!dane_tlsa_usable(NULL));
}

/* Full(0): the whole certificate or key, exactly; anything else is malformed. */
static void test_tlsa_usable_full(void) {
  for (uint8_t u = 2; u <= 3; u++) {
    for (uint8_t s = 0; s <= 1; s++) {
      struct dane_tlsa r = full(u, s, 0);
      ASSERT(dane_tlsa_usable(&r));
      r = full(u, s, -1); /* cut */
      ASSERT(!dane_tlsa_usable(&r));
      r = full(u, s, -(int)r.len + 1); /* one byte */
      ASSERT(!dane_tlsa_usable(&r));
      r = full(u, s, 1); /* a byte after it */
      ASSERT(!dane_tlsa_usable(&r));
      r = full(u, s, 0); /* the other selector's form */
      r.selector = (uint8_t)!s;
      ASSERT(!dane_tlsa_usable(&r));
      r = full(u, s, 0);
      r.data = NULL;
      ASSERT(!dane_tlsa_usable(&r));
    }
    struct dane_tlsa pkix = full(1, 1, 0), sel2 = full(u, 1, 0);
    sel2.selector = 2;
    ASSERT(!dane_tlsa_usable(&pkix));
    ASSERT(!dane_tlsa_usable(&sel2));
  }
}

/* Every usage, selector and matching type against every interesting length. */
static void test_tlsa_usable_all(void) {
  static const uint16_t lens[] = {0, 1, 20, 31, 32, 33, 48, 63, 64, 65, DANE_DATA_MAX};
  size_t nusable = 0;
  for (unsigned u = 0; u <= 4; u++)
    for (unsigned s = 0; s <= 2; s++)
      for (unsigned m = 0; m <= 3; m++)
        for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
          struct dane_tlsa r = rec((uint8_t)u, (uint8_t)s, (uint8_t)m, lens[l]);
          /* The pattern bytes are no certificate or key: Full(0) never usable. */
          bool want = (u == 2 || u == 3) && s <= 1 &&
                      ((m == 1 && lens[l] == 32) || (m == 2 && lens[l] == 64));
          if (dane_tlsa_usable(&r) != want)
            TEST_FAIL_("%u %u %u len %u: want %d", u, s, m, lens[l], want);
          nusable += want;
        }
  /* 2 usages x 2 selectors x (1 + 1). */
  ASSERT_EQ(nusable, 2 * 2 * 2);
}

static void test_tlsa_format(void) {
  char out[256];
  struct dane_tlsa r = rec(3, 1, 1, 32);
  uint8_t data[32];
  memcpy(data, r.data, sizeof(data));
  data[0] = 0xab, data[1] = 0x12, data[31] = 0xff;
  r.data = data;
  dane_tlsa_format(&r, out, sizeof(out));
  ASSERT_STR_EQ(
      out, "3 1 1 ab12030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fff");

  /* Cut to fit, whole bytes only, always terminated. */
  dane_tlsa_format(&r, out, 12);
  ASSERT_STR_EQ(out, "3 1 1 ab12");
  dane_tlsa_format(&r, out, 11);
  ASSERT_STR_EQ(out, "3 1 1 ab12");
  dane_tlsa_format(&r, out, 10);
  ASSERT_STR_EQ(out, "3 1 1 ab");
  dane_tlsa_format(&r, out, 4);
  ASSERT_STR_EQ(out, "3 1");
  dane_tlsa_format(&r, out, 1);
  ASSERT_STR_EQ(out, "");
  out[0] = 'x';
  dane_tlsa_format(&r, out, 0);
  ASSERT_EQ(out[0], 'x');

  struct dane_tlsa big = rec(2, 0, 0, DANE_DATA_MAX);
  dane_tlsa_format(&big, out, sizeof(out));
  ASSERT_EQ(strlen(out), 6 + 248);
  ASSERT_EQ(strncmp(out, "2 0 0 010203", 12), 0);

  struct dane_tlsa empty = rec(3, 1, 0, 0);
  dane_tlsa_format(&empty, out, sizeof(out));
  ASSERT_STR_EQ(out, "3 1 0");
  struct dane_tlsa odd = rec(255, 255, 255, 1);
  dane_tlsa_format(&odd, out, sizeof(out));
  ASSERT_STR_EQ(out, "255 255 255 01");
}

static void test_tlsa_dup(void) {
  /* A full-certificate record of 4 KB next to a digest: the copy owns both. */
  static uint8_t cert[4096];
  memset(cert, 0x5a, sizeof(cert));
  struct dane_tlsa recs[2] = {rec(3, 0, 0, 0), rec(2, 1, 1, 32)};
  recs[0].data = cert;
  recs[0].len = sizeof(cert);
  struct dane_tlsa *copy = dane_tlsa_dup(recs, 2);
  ASSERT(copy != NULL);
  memset(cert, 0, sizeof(cert)); /* the original goes away */
  ASSERT_EQ(copy[0].len, 4096);
  ASSERT(copy[0].data != cert && copy[0].data[4095] == 0x5a);
  ASSERT_EQ(copy[1].usage, 2);
  ASSERT_MEM_EQ(copy[1].data, 32, pattern, 32);
  ASSERT(dane_tlsa_usable(&copy[1]));
  free(copy);
  ASSERT(dane_tlsa_dup(recs, 0) == NULL);
}

/* RDATA shorter than its three fields (RFC 6698 §2.1), kept by the DNS parser as one
 * malformed record: never usable, whatever its other fields say, and it does not
 * spoil the RRset: beside a usable record DANE applies; alone the host is at encrypt
 * (RFC 7672 §2.2), skipped at dane-only. */
static struct dane_tlsa short_rec(const char *rdata, uint16_t len) {
  struct dane_tlsa r;
  memset(&r, 0, sizeof(r));
  r.malformed = true;
  r.data = (const uint8_t *)rdata;
  r.len = len;
  return r;
}

static void test_tlsa_malformed(void) {
  struct dane_tlsa two = short_rec("\x03\x01", 2), none = short_rec(NULL, 0);
  ASSERT(!dane_tlsa_usable(&two));
  ASSERT(!dane_tlsa_usable(&none));
  struct dane_tlsa looks_fine = rec(3, 1, 1, 32);
  looks_fine.malformed = true; /* the flag decides, not the fields */
  ASSERT(!dane_tlsa_usable(&looks_fine));
  /* No usage, selector or matching type to print: the RFC 3597 generic form. */
  char out[64];
  dane_tlsa_format(&two, out, sizeof(out));
  ASSERT_STR_EQ(out, "\\# 2 0301");
  dane_tlsa_format(&none, out, sizeof(out));
  ASSERT_STR_EQ(out, "\\# 0");

  struct dane_tlsa both[2] = {two, rec(3, 1, 1, 32)};
  struct dane_tlsa *copy = dane_tlsa_dup(both, 2);
  ASSERT(copy != NULL);
  ASSERT(copy[0].malformed && !copy[1].malformed);
  ASSERT_MEM_EQ(copy[0].data, 2, "\x03\x01", 2);

  struct decide_domain d;
  struct decide_host h;
  domain_init(&d, NULL, TLS_LEVEL_DANE, true);
  host_init(&h, "mx.example.net", true, DECIDE_TLSA_FOUND, copy, 2);
  decide_host(&d, &h);
  ASSERT(!h.skip);
  ASSERT_EQ(h.auth, DECIDE_AUTH_DANE);
  ASSERT_EQ(h.nusable, 1);
  ASSERT(h.tls_required);
  ASSERT_STR_EQ(h.policy, "dane");
  free(copy);

  struct dane_tlsa alone[2] = {two, none};
  host_init(&h, "mx.example.net", true, DECIDE_TLSA_FOUND, alone, 2);
  decide_host(&d, &h);
  ASSERT(!h.skip);
  ASSERT(h.auth != DECIDE_AUTH_DANE);
  ASSERT_EQ(h.level, TLS_LEVEL_ENCRYPT);
  ASSERT(h.tls_required);
  ASSERT_STR_EQ(h.policy, "dane");
  assert_clean_unused(&h);

  domain_init(&d, NULL, TLS_LEVEL_DANE_ONLY, true);
  host_init(&h, "mx.example.net", true, DECIDE_TLSA_FOUND, alone, 1);
  decide_host(&d, &h);
  ASSERT(h.skip);
  ASSERT(strstr(h.skip_reason, "no usable TLSA records") != NULL);
}

/* ---- decide.c: levels ---- */

static void test_decide_level(void) {
  struct table_entry e;
  struct decide_domain d;
  entry_init(&e, TLS_LEVEL_SECURE);
  domain_init(&d, &e, TLS_LEVEL_MAY, false);
  ASSERT_EQ(decide_level(&d), TLS_LEVEL_SECURE);
  d.entry = NULL;
  ASSERT_EQ(decide_level(&d), TLS_LEVEL_MAY);

  static const struct {
    int entry;
    enum tls_level def;
    bool mx_secure, wants;
  } rows[] = {
      {NO_ENTRY, TLS_LEVEL_DANE, true, true},
      {NO_ENTRY, TLS_LEVEL_DANE_ONLY, true, true},
      {NO_ENTRY, TLS_LEVEL_DANE, false, false},
      {NO_ENTRY, TLS_LEVEL_DANE_ONLY, false, false},
      {NO_ENTRY, TLS_LEVEL_MAY, true, false},
      {NO_ENTRY, TLS_LEVEL_SECURE, true, false},
      {TLS_LEVEL_DANE, TLS_LEVEL_MAY, true, true},
      {TLS_LEVEL_DANE_ONLY, TLS_LEVEL_MAY, true, true},
      {TLS_LEVEL_DANE, TLS_LEVEL_MAY, false, false},
      {TLS_LEVEL_ENCRYPT, TLS_LEVEL_DANE, true, false}, /* the entry wins */
      {TLS_LEVEL_VERIFY, TLS_LEVEL_DANE_ONLY, true, false},
      {TLS_LEVEL_NONE, TLS_LEVEL_DANE, true, false},
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    if (rows[i].entry != NO_ENTRY)
      entry_init(&e, (enum tls_level)rows[i].entry);
    domain_init(&d, rows[i].entry != NO_ENTRY ? &e : NULL, rows[i].def,
                rows[i].mx_secure);
    if (decide_wants_tlsa(&d) != rows[i].wants)
      TEST_FAIL_("row %zu: wants_tlsa != %d", i, rows[i].wants);
  }
}

struct level_row {
  int entry; /* a level, or NO_ENTRY */
  enum tls_level def;
  bool skip;
  enum tls_level level;
  bool tls_required;
  enum decide_auth auth;
  const char *policy;
};

/* Levels without DANE; facts about DNSSEC and TLSA change nothing for them. */
static void test_levels_without_dane(void) {
  static const struct level_row rows[] = {
      {TLS_LEVEL_NONE, TLS_LEVEL_MAY, false, TLS_LEVEL_NONE, false, DECIDE_AUTH_NONE,
       "table/none"},
      {TLS_LEVEL_MAY, TLS_LEVEL_SECURE, false, TLS_LEVEL_MAY, false, DECIDE_AUTH_NONE,
       "table/may"},
      {TLS_LEVEL_ENCRYPT, TLS_LEVEL_MAY, false, TLS_LEVEL_ENCRYPT, true,
       DECIDE_AUTH_NONE, "table/encrypt"},
      {TLS_LEVEL_FINGERPRINT, TLS_LEVEL_MAY, false, TLS_LEVEL_FINGERPRINT, true,
       DECIDE_AUTH_FINGERPRINT, "table/fingerprint"},
      {TLS_LEVEL_VERIFY, TLS_LEVEL_MAY, false, TLS_LEVEL_VERIFY, true, DECIDE_AUTH_PKIX,
       "table/verify"},
      {TLS_LEVEL_SECURE, TLS_LEVEL_MAY, false, TLS_LEVEL_SECURE, true, DECIDE_AUTH_PKIX,
       "table/secure"},
      {NO_ENTRY, TLS_LEVEL_NONE, false, TLS_LEVEL_NONE, false, DECIDE_AUTH_NONE,
       "default/none"},
      {NO_ENTRY, TLS_LEVEL_MAY, false, TLS_LEVEL_MAY, false, DECIDE_AUTH_NONE,
       "default/may"},
      {NO_ENTRY, TLS_LEVEL_ENCRYPT, false, TLS_LEVEL_ENCRYPT, true, DECIDE_AUTH_NONE,
       "default/encrypt"},
      {NO_ENTRY, TLS_LEVEL_VERIFY, false, TLS_LEVEL_VERIFY, true, DECIDE_AUTH_PKIX,
       "default/verify"},
      {NO_ENTRY, TLS_LEVEL_SECURE, false, TLS_LEVEL_SECURE, true, DECIDE_AUTH_PKIX,
       "default/secure"},
      /* A default fingerprint level has no pins: fail closed. */
      {NO_ENTRY, TLS_LEVEL_FINGERPRINT, true, TLS_LEVEL_FINGERPRINT, true,
       DECIDE_AUTH_NONE, "default/fingerprint"},
  };
  struct dane_tlsa good = rec(3, 1, 1, 32);
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    for (int facts = 0; facts < 2; facts++) {
      struct table_entry e;
      struct decide_domain d;
      struct decide_host h;
      if (rows[i].entry != NO_ENTRY) {
        entry_init(&e, (enum tls_level)rows[i].entry);
        e.nfingerprints = 1;
      }
      domain_init(&d, rows[i].entry != NO_ENTRY ? &e : NULL, rows[i].def, facts);
      host_init(&h, "mx.example.net", facts,
                facts ? DECIDE_TLSA_FOUND : DECIDE_TLSA_NONE, &good, 1);
      decide_host(&d, &h);
      if (h.skip != rows[i].skip || h.level != rows[i].level ||
          h.tls_required != rows[i].tls_required || h.auth != rows[i].auth ||
          strcmp(h.policy, rows[i].policy) != 0)
        TEST_FAIL_("row %zu facts %d: skip %d level %d tls %d auth %d policy %s", i,
                   facts, h.skip, h.level, h.tls_required, h.auth, h.policy);
      ASSERT_EQ(h.min_protocol, 0);
      assert_clean_unused(&h);
    }
  }
}

static void test_fingerprint_without_pins(void) {
  struct table_entry e;
  struct decide_domain d;
  struct decide_host h;
  entry_init(&e, TLS_LEVEL_FINGERPRINT);
  domain_init(&d, &e, TLS_LEVEL_MAY, true);
  host_init(&h, "mx.example.net", true, DECIDE_TLSA_NOT_ASKED, NULL, 0);
  decide_host(&d, &h);
  ASSERT(h.skip);
  ASSERT_STR_EQ(h.skip_reason, "no fingerprints to match");
  ASSERT_STR_EQ(h.policy, "table/fingerprint");
}

/* ---- decide.c: DANE ---- */

enum recs { R_NONE, R_USABLE, R_UNUSABLE, R_MIXED };

struct dane_row {
  enum tls_level lvl; /* dane or dane-only */
  bool mx_secure, addr_secure;
  enum decide_tlsa tlsa;
  enum recs recs;
  bool skip;
  const char *reason;
  enum tls_level level;
  bool tls_required;
  enum decide_auth auth;
  size_t nusable;
  const char *policy_table, *policy_default; /* with an entry, without */
};

#define D TLS_LEVEL_DANE
#define DO TLS_LEVEL_DANE_ONLY
#define SEC true
#define INS false

/* clang-format off */
static const struct dane_row dane_rows[] = {
  /* MX RRset not secure: TLSA never asked */
  {D, INS, SEC, DECIDE_TLSA_NOT_ASKED, R_NONE, false, "", TLS_LEVEL_MAY, false,
   DECIDE_AUTH_NONE, 0, "table/may", "default/may"},
  {D, INS, INS, DECIDE_TLSA_NOT_ASKED, R_NONE, false, "", TLS_LEVEL_MAY, false,
   DECIDE_AUTH_NONE, 0, "table/may", "default/may"},
  {DO, INS, SEC, DECIDE_TLSA_NOT_ASKED, R_NONE, true,
   "MX RRset not DNSSEC-secure (dane-only)", DO, true, DECIDE_AUTH_NONE, 0,
   "table/dane-only", "default/dane-only"},
  /* even a (misrouted) TLSA answer does not count without a secure MX */
  {D, INS, SEC, DECIDE_TLSA_FOUND, R_USABLE, false, "", TLS_LEVEL_MAY, false,
   DECIDE_AUTH_NONE, 0, "table/may", "default/may"},
  {DO, INS, SEC, DECIDE_TLSA_FOUND, R_USABLE, true,
   "MX RRset not DNSSEC-secure (dane-only)", DO, true, DECIDE_AUTH_NONE, 0,
   "table/dane-only", "default/dane-only"},
  /* address records not secure */
  {D, SEC, INS, DECIDE_TLSA_NOT_ASKED, R_NONE, false, "", TLS_LEVEL_MAY, false,
   DECIDE_AUTH_NONE, 0, "table/may", "default/may"},
  {D, SEC, INS, DECIDE_TLSA_FOUND, R_USABLE, false, "", TLS_LEVEL_MAY, false,
   DECIDE_AUTH_NONE, 0, "table/may", "default/may"},
  {DO, SEC, INS, DECIDE_TLSA_NOT_ASKED, R_NONE, true,
   "address records not DNSSEC-secure (dane-only)", DO, true, DECIDE_AUTH_NONE, 0,
   "table/dane-only", "default/dane-only"},
  {DO, SEC, INS, DECIDE_TLSA_FAILED, R_NONE, true,
   "address records not DNSSEC-secure (dane-only)", DO, true, DECIDE_AUTH_NONE, 0,
   "table/dane-only", "default/dane-only"},
  /* TLSA lookup failed: skipped at both levels */
  {D, SEC, SEC, DECIDE_TLSA_FAILED, R_NONE, true, "TLSA lookup failed", D, true,
   DECIDE_AUTH_NONE, 0, "table/dane", "default/dane"},
  {DO, SEC, SEC, DECIDE_TLSA_FAILED, R_NONE, true, "TLSA lookup failed", DO, true,
   DECIDE_AUTH_NONE, 0, "table/dane-only", "default/dane-only"},
  /* usable records */
  {D, SEC, SEC, DECIDE_TLSA_FOUND, R_USABLE, false, "", D, true, DECIDE_AUTH_DANE, 2,
   "table/dane", "dane"},
  {DO, SEC, SEC, DECIDE_TLSA_FOUND, R_USABLE, false, "", DO, true, DECIDE_AUTH_DANE, 2,
   "table/dane-only", "dane"},
  {D, SEC, SEC, DECIDE_TLSA_FOUND, R_MIXED, false, "", D, true, DECIDE_AUTH_DANE, 2,
   "table/dane", "dane"},
  {DO, SEC, SEC, DECIDE_TLSA_FOUND, R_MIXED, false, "", DO, true, DECIDE_AUTH_DANE, 2,
   "table/dane-only", "dane"},
  /* secure but unusable: encrypt for dane, skip for dane-only */
  {D, SEC, SEC, DECIDE_TLSA_FOUND, R_UNUSABLE, false, "", TLS_LEVEL_ENCRYPT, true,
   DECIDE_AUTH_NONE, 0, "table/encrypt", "dane"},
  {DO, SEC, SEC, DECIDE_TLSA_FOUND, R_UNUSABLE, true,
   "no usable TLSA records (dane-only)", DO, true, DECIDE_AUTH_NONE, 0,
   "table/dane-only", "default/dane-only"},
  /* no TLSA records (FOUND with none is treated the same) */
  {D, SEC, SEC, DECIDE_TLSA_NONE, R_NONE, false, "", TLS_LEVEL_MAY, false,
   DECIDE_AUTH_NONE, 0, "table/may", "default/may"},
  {D, SEC, SEC, DECIDE_TLSA_FOUND, R_NONE, false, "", TLS_LEVEL_MAY, false,
   DECIDE_AUTH_NONE, 0, "table/may", "default/may"},
  {D, SEC, SEC, DECIDE_TLSA_NOT_ASKED, R_NONE, false, "", TLS_LEVEL_MAY, false,
   DECIDE_AUTH_NONE, 0, "table/may", "default/may"},
  {DO, SEC, SEC, DECIDE_TLSA_NONE, R_NONE, true, "no TLSA records (dane-only)", DO, true,
   DECIDE_AUTH_NONE, 0, "table/dane-only", "default/dane-only"},
  {DO, SEC, SEC, DECIDE_TLSA_FOUND, R_NONE, true, "no TLSA records (dane-only)", DO,
   true, DECIDE_AUTH_NONE, 0, "table/dane-only", "default/dane-only"},
  {DO, SEC, SEC, DECIDE_TLSA_NOT_ASKED, R_NONE, true, "no TLSA records (dane-only)", DO,
   true, DECIDE_AUTH_NONE, 0, "table/dane-only", "default/dane-only"},
};
/* clang-format on */

static void check_dane_row(size_t i, const struct dane_row *row, bool with_entry) {
  static const struct dane_tlsa none[1];
  struct dane_tlsa usable[2] = {rec(3, 1, 1, 32), rec(2, 0, 2, 64)};
  struct dane_tlsa unusable[4] = {rec(1, 1, 1, 32), rec(3, 1, 1, 31), rec(3, 2, 1, 32),
                                  rec(3, 0, 0, 300)};
  struct dane_tlsa mixed[4] = {rec(0, 0, 1, 32), rec(3, 1, 1, 32), rec(3, 1, 2, 32),
                               full(2, 1, 0)};
  const struct dane_tlsa *recs[] = {none, usable, unusable, mixed};
  const size_t nrecs[] = {0, 2, 4, 4};
  struct table_entry e;
  struct decide_domain d;
  struct decide_host h;
  entry_init(&e, row->lvl);
  e.min_protocol = 0x0304;
  domain_init(&d, with_entry ? &e : NULL, with_entry ? TLS_LEVEL_SECURE : row->lvl,
              row->mx_secure);
  host_init(&h, "mx.example.net", row->addr_secure, row->tlsa, recs[row->recs],
            nrecs[row->recs]);
  decide_host(&d, &h);
  const char *policy = with_entry ? row->policy_table : row->policy_default;
  if (h.skip != row->skip || strcmp(h.skip_reason, row->reason) != 0 ||
      h.level != row->level || h.tls_required != row->tls_required ||
      h.auth != row->auth || h.nusable != row->nusable || strcmp(h.policy, policy) != 0)
    TEST_FAIL_("dane row %zu entry %d: skip %d \"%s\" level %d tls %d auth %d nusable "
               "%zu policy %s",
               i, with_entry, h.skip, h.skip_reason, h.level, h.tls_required, h.auth,
               h.nusable, h.policy);
  ASSERT_EQ(h.min_protocol, with_entry ? 0x0304 : 0);
  assert_clean_unused(&h);
}

static void test_dane_matrix(void) {
  for (size_t i = 0; i < sizeof(dane_rows) / sizeof(dane_rows[0]); i++) {
    check_dane_row(i, &dane_rows[i], true);
    check_dane_row(i, &dane_rows[i], false);
  }
}

/* Every combination of the DNSSEC facts and TLSA outcomes, checked against the rules of
 * decide.h written once more as plain conditions. */
static void test_dane_exhaustive(void) {
  struct dane_tlsa usable = rec(3, 1, 1, 32), unusable = rec(0, 1, 1, 32);
  for (int only = 0; only < 2; only++)
    for (int mx = 0; mx < 2; mx++)
      for (int addr = 0; addr < 2; addr++)
        for (int t = DECIDE_TLSA_NOT_ASKED; t <= DECIDE_TLSA_FOUND; t++)
          for (int u = 0; u < 2; u++) {
            struct decide_domain d;
            struct decide_host h;
            domain_init(&d, NULL, only ? DO : D, mx);
            host_init(&h, "mx.example.net", addr, (enum decide_tlsa)t,
                      u ? &usable : &unusable, 1);
            decide_host(&d, &h);
            bool secure = mx && addr;
            bool found = t == DECIDE_TLSA_FOUND;
            bool skip = (secure && t == DECIDE_TLSA_FAILED) ||
                        (only && (!secure || !found || !u));
            bool auth = secure && found && u;
            bool encrypt = secure && found && !u && !only;
            if (h.skip != skip || (h.auth == DECIDE_AUTH_DANE) != auth ||
                (h.level == TLS_LEVEL_ENCRYPT) != encrypt ||
                (!skip && !auth && !encrypt && h.level != TLS_LEVEL_MAY))
              TEST_FAIL_("only %d mx %d addr %d tlsa %d usable %d: skip %d auth %d "
                         "level %d",
                         only, mx, addr, t, u, h.skip, h.auth, h.level);
            ASSERT_EQ(h.tls_required, skip || auth || encrypt);
            ASSERT_STR_EQ(h.policy, auth || encrypt ? "dane"
                                    : skip
                                        ? (only ? "default/dane-only" : "default/dane")
                                        : "default/may");
          }
}

/* Every usable record counts, however many: none is left out of the DANE check. */
static void test_dane_many_usable(void) {
  struct dane_tlsa r[40];
  for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++)
    r[i] = i == 0 ? rec(1, 1, 1, 32) : rec(3, 1, 1, 32);
  struct decide_domain d;
  struct decide_host h;
  domain_init(&d, NULL, TLS_LEVEL_DANE_ONLY, true);
  host_init(&h, "mx.example.net", true, DECIDE_TLSA_FOUND, r, sizeof(r) / sizeof(r[0]));
  decide_host(&d, &h);
  ASSERT(!h.skip);
  ASSERT_EQ(h.auth, DECIDE_AUTH_DANE);
  ASSERT_EQ(h.nusable, 39);

  /* Usable records past the unusable ones still count. */
  struct dane_tlsa late[30];
  for (size_t i = 0; i < sizeof(late) / sizeof(late[0]); i++)
    late[i] = rec(0, 0, 0, 10);
  late[29] = rec(2, 0, 1, 32);
  host_init(&h, "mx.example.net", true, DECIDE_TLSA_FOUND, late,
            sizeof(late) / sizeof(late[0]));
  decide_host(&d, &h);
  ASSERT_EQ(h.auth, DECIDE_AUTH_DANE);
  ASSERT_EQ(h.nusable, 1);
}

/* RFC 7672 §2.2.1 and RFC 8461 §2 at level dane with an MTA-STS enforce policy that
 * lists the host: where DNSSEC leaves the host without DANE (MX RRset or addresses
 * insecure, no TLSA records or an insecure TLSA answer) MTA-STS applies; where the
 * TLSA RRset decided (usable or not) or its lookup failed, it does not. */
static void test_dane_then_sts(void) {
  static const struct {
    bool mx, addr;
    enum decide_tlsa tlsa;
    bool usable;
    const char *policy;
    bool skip;
  } rows[] = {
      {false, true, DECIDE_TLSA_NOT_ASKED, false, "mta-sts/enforce", false},
      {true, false, DECIDE_TLSA_NOT_ASKED, false, "mta-sts/enforce", false},
      {true, true, DECIDE_TLSA_NONE, false, "mta-sts/enforce", false},
      {true, true, DECIDE_TLSA_FOUND, true, "dane", false},
      {true, true, DECIDE_TLSA_FOUND, false, "dane", false},
      {true, true, DECIDE_TLSA_FAILED, false, "default/dane", true},
  };
  struct sts_policy sts;
  memset(&sts, 0, sizeof sts);
  sts.mode = STS_MODE_ENFORCE;
  static char one_mx[] = "mx.example.net"; /* the patterns' block, NUL included */
  sts.nmx = 1;
  sts.mx = one_mx;
  sts.mx_len = sizeof one_mx;
  struct dane_tlsa usable = rec(3, 1, 1, 32), unusable = rec(1, 1, 1, 32);
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    struct decide_domain d;
    struct decide_host h;
    domain_init(&d, NULL, TLS_LEVEL_DANE, rows[i].mx);
    d.sts = &sts;
    host_init(&h, "mx.example.net", rows[i].addr, rows[i].tlsa,
              rows[i].usable ? &usable : &unusable, 1);
    decide_host(&d, &h);
    if (strcmp(h.policy, rows[i].policy) != 0 || h.skip != rows[i].skip)
      TEST_FAIL_("row %zu: policy %s skip %d", i, h.policy, h.skip);
    ASSERT(h.tls_required);
    if (strcmp(rows[i].policy, "mta-sts/enforce") == 0) {
      ASSERT_EQ(h.level, TLS_LEVEL_VERIFY);
      ASSERT_EQ(h.auth, DECIDE_AUTH_PKIX);
      ASSERT_EQ(h.nnames, 1);
      ASSERT_STR_EQ(h.names[0], "mx.example.net");
    }
  }
}

/* ---- decide.c: names for verify/secure ---- */

struct names_row {
  int entry; /* level, or NO_ENTRY (then the default level is in def) */
  enum tls_level def;
  const char *match[TABLE_MAX_MATCH + 1]; /* NULL-terminated */
  const char *want[DECIDE_MAX_NAMES + 1];
};

static const struct names_row names_rows[] = {
    {NO_ENTRY, TLS_LEVEL_VERIFY, {NULL}, {"mx.example.net", NULL}},
    {NO_ENTRY, TLS_LEVEL_SECURE, {NULL}, {"example.com", ".example.com", NULL}},
    {TLS_LEVEL_VERIFY, TLS_LEVEL_MAY, {NULL}, {"mx.example.net", NULL}},
    {TLS_LEVEL_SECURE, TLS_LEVEL_MAY, {NULL}, {"example.com", ".example.com", NULL}},
    {TLS_LEVEL_SECURE, TLS_LEVEL_MAY, {"hostname", NULL}, {"mx.example.net", NULL}},
    {TLS_LEVEL_VERIFY, TLS_LEVEL_MAY, {"nexthop", NULL}, {"example.com", NULL}},
    {TLS_LEVEL_VERIFY, TLS_LEVEL_MAY, {"dot-nexthop", NULL}, {".example.com", NULL}},
    {TLS_LEVEL_SECURE,
     TLS_LEVEL_MAY,
     {"HostName", "NEXTHOP", "Dot-Nexthop", NULL},
     {"mx.example.net", "example.com", ".example.com", NULL}},
    {TLS_LEVEL_SECURE,
     TLS_LEVEL_MAY,
     {"MX1.Example.ORG", ".Sub.Example.org", "mail", NULL},
     {"mx1.example.org", ".sub.example.org", "mail", NULL}},
    /* de-duplicated, first occurrence keeps its place */
    {TLS_LEVEL_SECURE,
     TLS_LEVEL_MAY,
     {"nexthop", "example.com", "EXAMPLE.COM", "hostname", "mx.example.net",
      "dot-nexthop", ".example.com", "nexthop", NULL},
     {"example.com", "mx.example.net", ".example.com", NULL}},
    /* "." alone and empty names are dropped */
    {TLS_LEVEL_VERIFY,
     TLS_LEVEL_MAY,
     {".", "", "hostname", NULL},
     {"mx.example.net", NULL}},
};

static void check_names(size_t i, const struct names_row *row) {
  struct table_entry e;
  struct decide_domain d;
  struct decide_host h;
  entry_init(&e, row->entry == NO_ENTRY ? TLS_LEVEL_NONE : (enum tls_level)row->entry);
  for (size_t k = 0; row->match[k] != NULL; k++)
    entry_match(&e, row->match[k]);
  domain_init(&d, row->entry == NO_ENTRY ? NULL : &e, row->def, false);
  host_init(&h, "mx.example.net", false, DECIDE_TLSA_NOT_ASKED, NULL, 0);
  decide_host(&d, &h);
  ASSERT(!h.skip);
  ASSERT_EQ(h.auth, DECIDE_AUTH_PKIX);
  ASSERT(h.tls_required);
  size_t n = 0;
  while (row->want[n] != NULL)
    n++;
  if (h.nnames != n)
    TEST_FAIL_("names row %zu: %zu names, want %zu", i, h.nnames, n);
  for (size_t k = 0; k < n; k++)
    ASSERT_STR_EQ(h.names[k], row->want[k]);
}

static void test_names(void) {
  for (size_t i = 0; i < sizeof(names_rows) / sizeof(names_rows[0]); i++)
    check_names(i, &names_rows[i]);
}

static void test_names_limit(void) {
  struct table_entry e;
  struct decide_domain d;
  struct decide_host h;
  entry_init(&e, TLS_LEVEL_VERIFY);
  for (size_t i = 0; i < TABLE_MAX_MATCH; i++) {
    char name[32];
    snprintf(name, sizeof(name), "MX%zu.example.org", i);
    entry_match(&e, name);
  }
  domain_init(&d, &e, TLS_LEVEL_MAY, false);
  host_init(&h, "mx.example.net", false, DECIDE_TLSA_NOT_ASKED, NULL, 0);
  decide_host(&d, &h);
  ASSERT_EQ(h.nnames, DECIDE_MAX_NAMES);
  ASSERT_STR_EQ(h.names[0], "mx0.example.org");
  ASSERT_STR_EQ(h.names[DECIDE_MAX_NAMES - 1], "mx15.example.org");

  /* An nmatch beyond the array is not trusted. */
  e.nmatch = TABLE_MAX_MATCH + 5;
  host_init(&h, "mx.example.net", false, DECIDE_TLSA_NOT_ASKED, NULL, 0);
  decide_host(&d, &h);
  ASSERT_EQ(h.nnames, DECIDE_MAX_NAMES);

  /* A name that fits the table (255) but not with the dot prepended is dropped, never
   * cut; a 255-byte literal fits. */
  char longdom[TABLE_NAME_MAX + 1];
  memset(longdom, 'a', TABLE_NAME_MAX);
  longdom[TABLE_NAME_MAX] = '\0';
  entry_init(&e, TLS_LEVEL_SECURE);
  entry_match(&e, "dot-nexthop");
  entry_match(&e, longdom);
  domain_init(&d, &e, TLS_LEVEL_MAY, false);
  d.domain = longdom;
  host_init(&h, "mx.example.net", false, DECIDE_TLSA_NOT_ASKED, NULL, 0);
  decide_host(&d, &h);
  ASSERT_EQ(h.nnames, 1);
  ASSERT_STR_EQ(h.names[0], longdom);
}

static void test_names_none_left(void) {
  struct table_entry e;
  struct decide_domain d;
  struct decide_host h;
  /* verify with no host name to check: never accept any name */
  domain_init(&d, NULL, TLS_LEVEL_VERIFY, false);
  host_init(&h, NULL, false, DECIDE_TLSA_NOT_ASKED, NULL, 0);
  decide_host(&d, &h);
  ASSERT(h.skip);
  ASSERT_STR_EQ(h.skip_reason, "no certificate names to match");
  ASSERT_EQ(h.nnames, 0);
  ASSERT_STR_EQ(h.policy, "default/verify");

  entry_init(&e, TLS_LEVEL_SECURE);
  entry_match(&e, "");
  domain_init(&d, &e, TLS_LEVEL_MAY, false);
  host_init(&h, "mx.example.net", false, DECIDE_TLSA_NOT_ASKED, NULL, 0);
  decide_host(&d, &h);
  ASSERT(h.skip);
  ASSERT_STR_EQ(h.policy, "table/secure");
}

/* ---- every out field, min_protocol ---- */

static void test_min_protocol(void) {
  static const enum tls_level levels[] = {
      TLS_LEVEL_NONE,      TLS_LEVEL_MAY,         TLS_LEVEL_ENCRYPT, TLS_LEVEL_DANE,
      TLS_LEVEL_DANE_ONLY, TLS_LEVEL_FINGERPRINT, TLS_LEVEL_VERIFY,  TLS_LEVEL_SECURE,
  };
  struct dane_tlsa good = rec(3, 1, 1, 32);
  for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
    struct table_entry e;
    struct decide_domain d;
    struct decide_host h;
    entry_init(&e, levels[i]);
    e.nfingerprints = 1;
    e.min_protocol = i % 2 ? 0x0303 : 0x0304;
    domain_init(&d, &e, TLS_LEVEL_MAY, true);
    host_init(&h, "mx.example.net", true, DECIDE_TLSA_FOUND, &good, 1);
    decide_host(&d, &h);
    ASSERT_EQ(h.min_protocol, e.min_protocol);
    ASSERT(!h.skip);
    assert_clean_unused(&h);
    domain_init(&d, NULL, levels[i], true);
    host_init(&h, "mx.example.net", true, DECIDE_TLSA_FOUND, &good, 1);
    decide_host(&d, &h);
    ASSERT_EQ(h.min_protocol, 0);
  }
}

/* MTA-STS (RFC 8461) for host under a policy of mode listing "*.example.net", the
 * default level def and no table entry. */
static void sts_decide(enum sts_mode mode, enum tls_level def, const char *host,
                       struct decide_host *h) {
  static struct sts_policy p;
  memset(&p, 0, sizeof(p));
  p.mode = mode;
  static char wild[] = "*.example.net";
  p.nmx = 1;
  p.mx = wild;
  p.mx_len = sizeof wild;
  struct decide_domain d;
  domain_init(&d, NULL, def, false);
  d.sts = &p;
  host_init(h, host, false, DECIDE_TLSA_NOT_ASKED, NULL, 0);
  decide_host(&d, h);
  assert_clean_unused(h);
}

/* enforce: a listed host must be verified for its name, whatever the default level;
 * an unlisted one is skipped. */
static void test_sts_enforce(void) {
  struct decide_host h;
  sts_decide(STS_MODE_ENFORCE, TLS_LEVEL_NONE, "mx.example.net", &h);
  ASSERT(!h.skip && h.tls_required && !h.sts_testing);
  ASSERT(h.level == TLS_LEVEL_VERIFY && h.auth == DECIDE_AUTH_PKIX);
  ASSERT(h.nnames == 1 && strcmp(h.names[0], "mx.example.net") == 0);
  ASSERT_STR_EQ(h.policy, "mta-sts/enforce");
  sts_decide(STS_MODE_ENFORCE, TLS_LEVEL_MAY, "a.mx.example.net", &h);
  ASSERT(h.skip && h.tls_required);
  ASSERT_STR_EQ(h.skip_reason, "not listed in the MTA-STS policy");
}

/* testing (§5): judged as enforce would judge it, nothing required; none: nothing. */
static void test_sts_testing(void) {
  struct decide_host h;
  sts_decide(STS_MODE_TESTING, TLS_LEVEL_MAY, "mx.example.org", &h);
  ASSERT(!h.skip && !h.tls_required && h.auth == DECIDE_AUTH_NONE);
  ASSERT(h.sts_testing && h.sts_unlisted && h.level == TLS_LEVEL_MAY);
  ASSERT(h.nnames == 1 && strcmp(h.names[0], "mx.example.org") == 0);
  ASSERT_STR_EQ(h.policy, "mta-sts/testing");
  sts_decide(STS_MODE_TESTING, TLS_LEVEL_ENCRYPT, "mx.example.net", &h);
  ASSERT(h.sts_testing && !h.sts_unlisted && h.tls_required);
  /* no TLS is tried at level none; a level that authenticates keeps its check */
  sts_decide(STS_MODE_TESTING, TLS_LEVEL_NONE, "mx.example.net", &h);
  ASSERT(!h.sts_testing && h.nnames == 0);
  sts_decide(STS_MODE_TESTING, TLS_LEVEL_SECURE, "mx.example.org", &h);
  ASSERT(!h.sts_testing && h.auth == DECIDE_AUTH_PKIX && h.nnames == 2);
  sts_decide(STS_MODE_NONE, TLS_LEVEL_MAY, "mx.example.org", &h);
  ASSERT(!h.sts_testing && !h.tls_required && h.nnames == 0);
  ASSERT_STR_EQ(h.policy, "default/may");
  /* a table entry decides alone */
  struct table_entry e;
  struct decide_domain d;
  struct sts_policy p = {.mode = STS_MODE_TESTING};
  entry_init(&e, TLS_LEVEL_MAY);
  domain_init(&d, &e, TLS_LEVEL_MAY, false);
  d.sts = &p;
  host_init(&h, "mx.example.org", false, DECIDE_TLSA_NOT_ASKED, NULL, 0);
  decide_host(&d, &h);
  ASSERT(!h.sts_testing);
  ASSERT_STR_EQ(h.policy, "table/may");
}

/* Inputs are left alone; outputs of an earlier decision do not leak into the next. */
static void test_reuse(void) {
  struct dane_tlsa good = rec(3, 1, 1, 32);
  struct decide_domain d;
  struct decide_host h;
  domain_init(&d, NULL, TLS_LEVEL_SECURE, true);
  host_init(&h, "mx.example.net", true, DECIDE_TLSA_FOUND, &good, 1);
  decide_host(&d, &h);
  ASSERT_EQ(h.nnames, 2);
  d.default_level = TLS_LEVEL_DANE_ONLY;
  h.tlsa = DECIDE_TLSA_FAILED;
  decide_host(&d, &h);
  ASSERT(h.skip);
  ASSERT_EQ(h.nnames, 0);
  d.default_level = TLS_LEVEL_DANE;
  h.tlsa = DECIDE_TLSA_FOUND;
  decide_host(&d, &h);
  ASSERT(!h.skip);
  ASSERT_STR_EQ(h.skip_reason, "");
  ASSERT_EQ(h.nusable, 1);
  ASSERT_STR_EQ(h.host, "mx.example.net");
  ASSERT(h.addr_secure);
  ASSERT(h.records == &good);
  ASSERT_EQ(h.nrecords, 1);
}

/* RFC 8460 §5.3: a report's delivery gets level may from any decision (DANE, a pinned
 * table entry with min_protocol, an MTA-STS skip, a failed TLSA lookup), its inputs
 * left alone. */
static void test_report(void) {
  struct dane_tlsa good = rec(3, 1, 1, 32);
  struct table_entry e;
  struct decide_domain d;
  struct decide_host h;
  entry_init(&e, TLS_LEVEL_FINGERPRINT);
  e.nfingerprints = 1;
  e.min_protocol = 0x0304;
  const struct table_entry *entries[] = {NULL, &e};
  for (int i = 0; i < 4; i++) {
    domain_init(&d, entries[i % 2], TLS_LEVEL_DANE_ONLY, true);
    host_init(&h, "mx.example.net", true,
              i < 2 ? DECIDE_TLSA_FOUND : DECIDE_TLSA_FAILED, &good, 1);
    decide_host(&d, &h);
    decide_report(&h);
    ASSERT(!h.skip && !h.tls_required && !h.sts_testing);
    ASSERT(h.level == TLS_LEVEL_MAY && h.auth == DECIDE_AUTH_NONE);
    ASSERT_EQ(h.min_protocol, 0);
    ASSERT_STR_EQ(h.policy, "tlsrpt/may");
    assert_clean_unused(&h);
    ASSERT(h.records == &good && h.nrecords == 1 && h.addr_secure);
  }
  sts_decide(STS_MODE_ENFORCE, TLS_LEVEL_MAY, "a.mx.example.net", &h);
  ASSERT(h.skip);
  decide_report(&h);
  ASSERT(!h.skip && !h.tls_required && h.nnames == 0);
  assert_clean_unused(&h);
  ASSERT_STR_EQ(h.host, "a.mx.example.net");
}

int main(void) {
  RUN_TEST(test_tlsa_parse);
  RUN_TEST(test_tlsa_usable_rows);
  RUN_TEST(test_tlsa_usable_all);
  RUN_TEST(test_tlsa_usable_full);
  RUN_TEST(test_tlsa_format);
  RUN_TEST(test_tlsa_dup);
  RUN_TEST(test_tlsa_malformed);
  RUN_TEST(test_decide_level);
  RUN_TEST(test_levels_without_dane);
  RUN_TEST(test_fingerprint_without_pins);
  RUN_TEST(test_dane_matrix);
  RUN_TEST(test_dane_exhaustive);
  RUN_TEST(test_dane_many_usable);
  RUN_TEST(test_dane_then_sts);
  RUN_TEST(test_names);
  RUN_TEST(test_names_limit);
  RUN_TEST(test_names_none_left);
  RUN_TEST(test_min_protocol);
  RUN_TEST(test_sts_enforce);
  RUN_TEST(test_sts_testing);
  RUN_TEST(test_reuse);
  RUN_TEST(test_report);
  return 0;
}
