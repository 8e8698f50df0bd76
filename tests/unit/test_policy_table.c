/* Unit tests of the local policy table: level names, Postfix value syntax (levels,
 * match=, fingerprints, protocols=), every error, lookup precedence, table files, and
 * the config keys policy.table, policy.table_file, outbound.tls.default_level and
 * dns.trust_ad. */
#include <fcntl.h>
#include <unistd.h>

#include "policy/level.h"
#include "policy/table.h"
#include "proxy/config/config.h"
#include "proxy/core/error.h"
#include "tests/unit/test.h"
#include "tests/unit/test_config_load.h"

#define FP_A                                                                           \
  "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:"  \
  "01:23:45:67:89"
#define FP_B_HEX "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static const uint8_t fp_a[32] = {0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89,
                                 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89,
                                 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89,
                                 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89};
static const uint8_t fp_b[32] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
                                 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};

/* ---- helpers ---- */

#define ASSERT_FP(got, want)                                                           \
  do {                                                                                 \
    if (memcmp((got), (want), 32) != 0)                                                \
      TEST_FAIL_("fingerprint %s differs from %s", #got, #want);                       \
  } while (0)

static struct table_entry parse_ok(const char *value) {
  struct table_entry e;
  char err[256] = "";
  memset(&e, 0, sizeof e);
  if (table_parse_value(value, strlen(value), &e, err, sizeof err) != 0)
    TEST_FAIL_("\"%s\" failed: %s", value, err);
  return e;
}

static void parse_fails(const char *value, const char *want) {
  struct table_entry e;
  char err[256] = "";
  memset(&e, 0, sizeof e);
  if (table_parse_value(value, strlen(value), &e, err, sizeof err) != -1)
    TEST_FAIL_("\"%s\" parsed, expected: %s", value, want);
  ASSERT_STR_EQ(err, want);
}

static void key_is(const char *text, const char *want) {
  char out[TABLE_NAME_MAX + 1], err[256] = "";
  if (table_parse_key(text, strlen(text), out, err, sizeof err) != 0)
    TEST_FAIL_("key \"%s\" failed: %s", text, err);
  ASSERT_STR_EQ(out, want);
}

static void key_fails(const char *text, const char *want) {
  char out[TABLE_NAME_MAX + 1], err[256] = "";
  ASSERT_EQ(table_parse_key(text, strlen(text), out, err, sizeof err), -1);
  ASSERT_STR_EQ(err, want);
}

static void add_ok(struct table *t, const char *key, const char *value) {
  struct table_entry e = parse_ok(value);
  char err[256] = "";
  ASSERT_EQ(table_parse_key(key, strlen(key), e.key, err, sizeof err), 0);
  if (table_add(t, &e, err, sizeof err) != 0)
    TEST_FAIL_("add %s: %s", key, err);
}

static const char *lookup_key(const struct table *t, const char *domain) {
  const struct table_entry *e = table_lookup(t, domain);
  return e ? e->key : "(none)";
}

/* Collects the error lines of table_parse_file. */
struct collected {
  char text[4096];
  size_t len;
};

static void collect(void *arg, unsigned line, const char *reason) {
  struct collected *c = arg;
  int w = snprintf(c->text + c->len, sizeof c->text - c->len, "%u: %s\n", line, reason);
  ASSERT(w > 0 && (size_t)w < sizeof c->text - c->len);
  c->len += (size_t)w;
}

#define load_ok test_load_config
#define expect_errors(yaml, want) test_config_errors(yaml, strlen(yaml), want)

/* Writes text to a fresh temporary file; its path goes to path (64 bytes). */
static void temp_file(char path[64], const char *text, size_t len) {
  int fd;
  snprintf(path, 64, "/tmp/sp-ptable-XXXXXX");
  ASSERT((fd = mkstemp(path)) >= 0);
  ASSERT_EQ(write(fd, text, len), (long long)len);
  ASSERT_EQ(close(fd), 0);
}

static void entries_equal(const struct table_entry *a, const struct table_entry *b) {
  ASSERT_STR_EQ(a->key, b->key);
  ASSERT_EQ(a->level, b->level);
  ASSERT_EQ(a->nmatch, b->nmatch);
  for (size_t i = 0; i < a->nmatch; i++)
    ASSERT_STR_EQ(a->match[i], b->match[i]);
  ASSERT_EQ(a->nfingerprints, b->nfingerprints);
  ASSERT(memcmp(a->fingerprints, b->fingerprints, sizeof a->fingerprints) == 0);
  ASSERT_EQ(a->min_protocol, b->min_protocol);
}

/* ---- levels ---- */

static void test_level_names(void) {
  static const char *const names[] = {"none",      "may",         "encrypt", "dane",
                                      "dane-only", "fingerprint", "verify",  "secure"};
  enum tls_level level;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    ASSERT_STR_EQ(tls_level_name((enum tls_level)i), names[i]);
    level = TLS_LEVEL_NONE;
    ASSERT_EQ(tls_level_parse(names[i], &level), 0);
    ASSERT_EQ(level, i);
  }
  ASSERT_EQ(TLS_LEVEL_SECURE, 7);
  ASSERT_STR_EQ(tls_level_name((enum tls_level)8), "unknown");
  /* Case-insensitive, as Postfix's tls_level_lookup (name_code without
   * NAME_CODE_FLAG_STRICT_CASE): a table written "Encrypt" carries over. */
  ASSERT_EQ(tls_level_parse("MAY", &level), 0);
  ASSERT_EQ(level, TLS_LEVEL_MAY);
  ASSERT_EQ(tls_level_parse("Dane-Only", &level), 0);
  ASSERT_EQ(level, TLS_LEVEL_DANE_ONLY);
  level = TLS_LEVEL_DANE;
  ASSERT_EQ(tls_level_parse("", &level), -1);
  ASSERT_EQ(tls_level_parse("dane_only", &level), -1);
  ASSERT_EQ(tls_level_parse("must", &level), -1);
  ASSERT_EQ(level, TLS_LEVEL_DANE); /* untouched on failure */
}

/* ---- values ---- */

static void test_parse_each_level(void) {
  static const struct {
    const char *value;
    enum tls_level level;
  } cases[] = {
      {"none", TLS_LEVEL_NONE},
      {"may", TLS_LEVEL_MAY},
      {"encrypt", TLS_LEVEL_ENCRYPT},
      {"dane", TLS_LEVEL_DANE},
      {"dane-only", TLS_LEVEL_DANE_ONLY},
      {"verify", TLS_LEVEL_VERIFY},
      {"secure", TLS_LEVEL_SECURE},
      {"  secure \t", TLS_LEVEL_SECURE},
      {"fingerprint match=" FP_A, TLS_LEVEL_FINGERPRINT},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct table_entry e = parse_ok(cases[i].value);
    ASSERT_EQ(e.level, cases[i].level);
    ASSERT_EQ(e.nmatch, 0);
    ASSERT_EQ(e.min_protocol, 0);
    ASSERT_EQ(e.nfingerprints, e.level == TLS_LEVEL_FINGERPRINT);
  }
  /* Key and line are the caller's; everything else is reset. */
  struct table_entry e;
  char err[128];
  memset(&e, 0, sizeof e);
  strcpy(e.key, "example.com");
  e.line = 9;
  e.nmatch = 3;
  e.min_protocol = 0x0304;
  ASSERT_EQ(table_parse_value("may", 3, &e, err, sizeof err), 0);
  ASSERT_STR_EQ(e.key, "example.com");
  ASSERT_EQ(e.line, 9);
  ASSERT_EQ(e.nmatch, 0);
  ASSERT_EQ(e.min_protocol, 0);
  /* A Postfix table may spell the level in any case. */
  ASSERT_EQ(table_parse_value("Secure match=NextHop", 20, &e, err, sizeof err), 0);
  ASSERT_EQ(e.level, TLS_LEVEL_SECURE);
  ASSERT_STR_EQ(e.match[0], "nexthop");
  /* len bounds the text: "secure" cut to "sec" is no level. */
  ASSERT_EQ(table_parse_value("secure", 3, &e, err, sizeof err), -1);
  ASSERT_STR_EQ(err, "unknown level \"sec\" (none, may, encrypt, dane, dane-only, "
                     "fingerprint, verify or secure)");
}

static void test_parse_match(void) {
  struct table_entry e = parse_ok("secure match=nexthop:dot-nexthop");
  ASSERT_EQ(e.level, TLS_LEVEL_SECURE);
  ASSERT_EQ(e.nmatch, 2);
  ASSERT_STR_EQ(e.match[0], "nexthop");
  ASSERT_STR_EQ(e.match[1], "dot-nexthop");

  /* Repeated match= accumulate; names are lower-cased, a trailing dot dropped;
   * commas separate attributes as in Postfix; attribute names ignore case. */
  e = parse_ok("verify match=hostname:MX.Example.COM., MATCH=.example.net\tmatch=a");
  ASSERT_EQ(e.level, TLS_LEVEL_VERIFY);
  ASSERT_EQ(e.nmatch, 4);
  ASSERT_STR_EQ(e.match[0], "hostname");
  ASSERT_STR_EQ(e.match[1], "mx.example.com");
  ASSERT_STR_EQ(e.match[2], ".example.net");
  ASSERT_STR_EQ(e.match[3], "a");

  char many[512] = "secure match=a1";
  for (int i = 2; i <= TABLE_MAX_MATCH; i++)
    snprintf(many + strlen(many), sizeof many - strlen(many), ":a%d", i);
  e = parse_ok(many);
  ASSERT_EQ(e.nmatch, TABLE_MAX_MATCH);
  ASSERT_STR_EQ(e.match[15], "a16");
  strcat(many, " match=a17");
  parse_fails(many, "more than 16 match names");

  parse_fails("secure match=a::b", "empty match name");
  parse_fails("secure match=a:", "empty match name");
  parse_fails("verify match=*.example.com",
              "match name \"*.example.com\": write \".example.com\" for its "
              "subdomains");
  parse_fails("verify match=mx_1.example.com",
              "match name \"mx_1.example.com\" is not a domain name: '_' is not "
              "allowed");
  parse_fails("secure match=a..b",
              "match name \"a..b\" is not a domain name: empty label");
  parse_fails("secure match=-a.b",
              "match name \"-a.b\" is not a domain name: label begins or ends with "
              "'-'");
}

static void test_parse_fingerprints(void) {
  /* Postfix: fingerprints separated by '|', bytes by ':'; repeated match= too. */
  struct table_entry e = parse_ok("fingerprint match=" FP_A "|" FP_B_HEX);
  ASSERT_EQ(e.level, TLS_LEVEL_FINGERPRINT);
  ASSERT_EQ(e.nmatch, 0);
  ASSERT_EQ(e.nfingerprints, 2);
  ASSERT_FP(e.fingerprints[0], fp_a);
  ASSERT_FP(e.fingerprints[1], fp_b);

  e = parse_ok("fingerprint match=" FP_B_HEX " match=" FP_A " protocols=>=TLSv1.3");
  ASSERT_EQ(e.nfingerprints, 2);
  ASSERT_FP(e.fingerprints[0], fp_b);
  ASSERT_FP(e.fingerprints[1], fp_a);
  ASSERT_EQ(e.min_protocol, 0x0304);

  /* Lower-case hex with colons. */
  e = parse_ok("fingerprint "
               "match=00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:44:"
               "55:66:77:88:99:aa:bb:cc:dd:ee:ff");
  ASSERT_FP(e.fingerprints[0], fp_b);

  parse_fails("fingerprint", "level fingerprint needs at least one fingerprint");
  parse_fails("fingerprint protocols=>=TLSv1.2",
              "level fingerprint needs at least one fingerprint");
  /* SHA-1 (20 bytes) is not enough. */
  parse_fails("fingerprint match=01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:"
              "45:67",
              "fingerprint must be SHA-256 (32 bytes), not 20: "
              "\"01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67\"");
  parse_fails("fingerprint match=" FP_B_HEX "00",
              "fingerprint must be SHA-256 (32 bytes), not 33: "
              "\"00112233445566778899aabbccddeeff00112233445566778899aabbccdd...\"");
  parse_fails("fingerprint match=AB:CD", "fingerprint must be SHA-256 (32 bytes), not "
                                         "2: \"AB:CD\"");
  parse_fails("fingerprint match=AB:C:DE", "fingerprint \"AB:C:DE\" is not hex bytes "
                                           "(\"AB:CD:...\" or 64 hex digits)");
  parse_fails("fingerprint match=AB:CD:", "fingerprint \"AB:CD:\" is not hex bytes "
                                          "(\"AB:CD:...\" or 64 hex digits)");
  parse_fails("fingerprint match=ABC", "fingerprint \"ABC\" is not hex bytes "
                                       "(\"AB:CD:...\" or 64 hex digits)");
  parse_fails("fingerprint match=XY", "fingerprint \"XY\" is not hex bytes "
                                      "(\"AB:CD:...\" or 64 hex digits)");
  parse_fails("fingerprint match=" FP_A "||" FP_A, "empty fingerprint");
  /* A ':'-separated list of fingerprints is one malformed value, not two pins. */
  parse_fails("fingerprint match=" FP_A ":" FP_A,
              "fingerprint must be SHA-256 (32 bytes), not 64: "
              "\"AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:...\"");
  char many[4096] = "fingerprint match=" FP_A;
  for (int i = 2; i <= TABLE_MAX_MATCH + 1; i++)
    strcat(many, "|" FP_A);
  parse_fails(many, "more than 16 fingerprints");
}

static void test_protocols(void) {
  static const struct {
    const char *text;
    int min;
  } good[] = {
      {"!SSLv2:!SSLv3:!TLSv1:!TLSv1.1", 0x0303},
      {"!SSLv2:!SSLv3", 0x0303}, /* allows older ones: our floor stays TLS 1.2 */
      {">=TLSv1", 0x0303},
      {">=TLSv1.2", 0x0303},
      {">=TLSv1.3", 0x0304},
      {"!TLSv1.2", 0x0304},
      {"!SSLv2:!SSLv3:!TLSv1:!TLSv1.1:!TLSv1.2", 0x0304},
      {"TLSv1.2:TLSv1.3", 0x0303},
      {"TLSv1.3", 0x0304},
      {"tlsv1.3", 0x0304},
      {"TLSv1:TLSv1.3", 0x0304},
      {">=TLSv1.1:!TLSv1.2", 0x0304},
  };
  static const struct {
    const char *text, *err;
  } bad[] = {
      {"!TLSv1.3", "excluding TLSv1.3 is not supported: there is no maximum protocol"},
      {"TLSv1.2", "excluding TLSv1.3 is not supported: there is no maximum protocol"},
      {"<=TLSv1.3", "an upper bound (<=) is not supported"},
      {"!TLSv1.2:!TLSv1.3", "leaves neither TLSv1.2 nor TLSv1.3"},
      {"SSLv3:TLSv1", "leaves neither TLSv1.2 nor TLSv1.3"},
      {"TLSv9", "unknown protocol \"TLSv9\""},
      {"!TLSv1.2.1", "unknown protocol \"TLSv1.2.1\""},
      {">TLSv1.2", "unknown protocol \">TLSv1.2\""},
      {"!", "unknown protocol \"\""},
      {"", "empty protocol name in \"\""},
      {"!SSLv2::!SSLv3", "empty protocol name in \"!SSLv2::!SSLv3\""},
  };
  char err[256];
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    int min = 0;
    if (table_parse_protocols(good[i].text, strlen(good[i].text), &min, err,
                              sizeof err) != 0)
      TEST_FAIL_("%s: %s", good[i].text, err);
    ASSERT_EQ(min, good[i].min);
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int min = 7;
    ASSERT_EQ(
        table_parse_protocols(bad[i].text, strlen(bad[i].text), &min, err, sizeof err),
        -1);
    ASSERT_STR_EQ(err, bad[i].err);
    ASSERT_EQ(min, 7);
  }
  struct table_entry e = parse_ok("encrypt protocols=!SSLv2:!SSLv3:!TLSv1:!TLSv1.1");
  ASSERT_EQ(e.min_protocol, 0x0303);
  e = parse_ok("dane-only protocols=>=TLSv1.3");
  ASSERT_EQ(e.min_protocol, 0x0304);
  parse_fails("may protocols=!TLSv1.3",
              "protocols: excluding TLSv1.3 is not supported: there is no maximum "
              "protocol");
  parse_fails("may protocols=>=TLSv1.2 protocols=>=TLSv1.3",
              "attribute \"protocols\" given twice");
  parse_fails("none protocols=>=TLSv1.2", "protocols have no effect at level none");
}

static void test_value_errors(void) {
  parse_fails("", "missing level");
  parse_fails(" \t, ", "missing level");
  parse_fails("bogus", "unknown level \"bogus\" (none, may, encrypt, dane, dane-only, "
                       "fingerprint, verify or secure)");
  parse_fails("MUST", "unknown level \"MUST\" (none, may, encrypt, dane, dane-only, "
                      "fingerprint, verify or secure)");
  parse_fails("match=a secure", "unknown level \"match=a\" (none, may, encrypt, dane, "
                                "dane-only, fingerprint, verify or secure)");
  static const char *const unsupported[] = {
      "ciphers", "exclude", "tafile", "connection_reuse", "servername", "enable_rpk"};
  for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
    char value[128], want[160];
    snprintf(value, sizeof value, "encrypt %s=x", unsupported[i]);
    snprintf(want, sizeof want, "unsupported attribute \"%s\": not implemented here",
             unsupported[i]);
    parse_fails(value, want);
  }
  parse_fails("encrypt CIPHERS=high",
              "unsupported attribute \"ciphers\": not implemented here");
  parse_fails("encrypt foo=bar", "unknown attribute \"foo\"");
  parse_fails("encrypt foo", "expected attribute=value, found \"foo\"");
  parse_fails("encrypt =x", "expected attribute=value, found \"=x\"");
  parse_fails("secure match=", "attribute \"match\" has an empty value");
  parse_fails("secure protocols=", "attribute \"protocols\" has an empty value");
  static const char *const no_match[] = {"none", "may", "encrypt", "dane", "dane-only"};
  for (size_t i = 0; i < sizeof no_match / sizeof no_match[0]; i++) {
    char value[64], want[128];
    snprintf(value, sizeof value, "%s match=nexthop", no_match[i]);
    snprintf(want, sizeof want, "attribute \"match\" is not allowed at level %s",
             no_match[i]);
    parse_fails(value, want);
  }
  parse_fails("secure\x01", "control character 0x01 in the value");
  struct table_entry e;
  char err[128];
  memset(&e, 0, sizeof e);
  ASSERT_EQ(table_parse_value("may\0x", 5, &e, err, sizeof err), -1);
  ASSERT_STR_EQ(err, "control character 0x00 in the value");
  parse_fails("encrypt w\xc3\xa9=1", "unknown attribute \"w??\"");
  parse_fails("encrypt \"quoted\"=1", "unknown attribute \"?quoted?\"");

  /* The building blocks check the level/attribute fit on their own. */
  memset(&e, 0, sizeof e);
  e.level = TLS_LEVEL_ENCRYPT;
  ASSERT_EQ(table_add_match(&e, "a.example", 9, err, sizeof err), 0);
  ASSERT_EQ(table_check_entry(&e, err, sizeof err), -1);
  ASSERT_STR_EQ(err, "match names are only for levels verify and secure");
  e.nmatch = 0;
  ASSERT_EQ(table_add_fingerprint(&e, FP_B_HEX, 64, err, sizeof err), 0);
  ASSERT_EQ(table_check_entry(&e, err, sizeof err), -1);
  ASSERT_STR_EQ(err, "fingerprints are only for level fingerprint");
  e.level = TLS_LEVEL_FINGERPRINT;
  ASSERT_EQ(table_check_entry(&e, err, sizeof err), 0);
}

/* ---- keys ---- */

static void test_keys(void) {
  key_is("example.com", "example.com");
  key_is("Example.COM.", "example.com");
  key_is(".Example.com", ".example.com");
  key_is(".example.com.", ".example.com");
  key_is("localhost", "localhost");
  key_is("xn--bcher-kva.example", "xn--bcher-kva.example");
  const char *nexthop = "next-hop keys [host]:port are not supported: the proxy "
                        "looks up recipient domains";
  key_fails("[mx.example.com]:25", nexthop);
  key_fails("[mx.example.com]", nexthop);
  key_fails("example.com:587", nexthop);
  key_fails("[192.0.2.1]:25", nexthop);
  key_fails("", "empty key");
  key_fails(".", "key \".\" is not a domain name: empty name");
  key_fails("..", "key \"..\" is not a domain name: empty label");
  key_fails("a..b", "key \"a..b\" is not a domain name: empty label");
  key_fails("example.com..", "key \"example.com..\" is not a domain name: empty label");
  key_fails("-a.example", "key \"-a.example\" is not a domain name: label begins or "
                          "ends with '-'");
  key_fails("a_b.example", "key \"a_b.example\" is not a domain name: '_' is not "
                           "allowed");
  key_fails("b\xc3\xbc"
            "cher.example",
            "key \"b??cher.example\" is not a domain name: byte 0xc3 is not allowed "
            "(write IDNs as xn--)");
  key_fails("*.example.com", "key \"*.example.com\": write \".example.com\" for its "
                             "subdomains");
  key_fails("a b", "key \"a?b\" is not a domain name: control character 0x20 is not "
                   "allowed");
  char label[80];
  memset(label, 'a', 64);
  strcpy(label + 64, ".com");
  key_fails(label,
            "key \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" "
            "is not a domain name: label longer than 63 characters");
  char name[300] = "";
  for (int i = 0; i < 4; i++)
    strcat(name, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.");
  name[253] = '\0'; /* 253 characters, the longest name */
  ASSERT(name[252] != '.');
  key_is(name, name);
  char dotted[300];
  snprintf(dotted, sizeof dotted, ".%s.", name); /* suffix form, trailing dot */
  char want[300];
  snprintf(want, sizeof want, ".%s", name);
  key_is(dotted, want);
  strcat(name, "a");
  key_fails(name,
            "key \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" "
            "is not a domain name: longer than 253 characters");
}

/* ---- lookup ---- */

static void test_lookup_precedence(void) {
  struct table t;
  table_init(&t);
  ASSERT(table_lookup(&t, "example.com") == NULL);
  add_ok(&t, ".example.com", "encrypt");
  add_ok(&t, "example.com", "secure");
  add_ok(&t, ".mail.example.com", "verify");
  add_ok(&t, "a.mail.example.com", "may");
  add_ok(&t, ".net", "dane-only");
  ASSERT_EQ(t.n, 5);

  ASSERT_STR_EQ(lookup_key(&t, "example.com"), "example.com"); /* exact only */
  ASSERT_STR_EQ(lookup_key(&t, "x.example.com"), ".example.com");
  ASSERT_STR_EQ(lookup_key(&t, "y.x.example.com"), ".example.com");
  ASSERT_STR_EQ(lookup_key(&t, "mail.example.com"), ".example.com");
  ASSERT_STR_EQ(lookup_key(&t, "b.mail.example.com"), ".mail.example.com");
  ASSERT_STR_EQ(lookup_key(&t, "c.b.mail.example.com"), ".mail.example.com");
  ASSERT_STR_EQ(lookup_key(&t, "a.mail.example.com"), "a.mail.example.com");
  ASSERT_STR_EQ(lookup_key(&t, "b.a.mail.example.com"), ".mail.example.com");
  ASSERT_STR_EQ(lookup_key(&t, "example.net"), ".net");
  ASSERT_STR_EQ(lookup_key(&t, "net"), "(none)"); /* .net is for subdomains only */
  ASSERT_STR_EQ(lookup_key(&t, "example.org"), "(none)");
  ASSERT_STR_EQ(lookup_key(&t, "com"), "(none)");
  ASSERT_STR_EQ(lookup_key(&t, "notexample.com"), "(none)");
  ASSERT_STR_EQ(lookup_key(&t, "X.Example.COM."), ".example.com"); /* tolerated */
  ASSERT_STR_EQ(lookup_key(&t, "example.com."), "example.com");
  ASSERT_STR_EQ(lookup_key(&t, ".example.com"), "(none)");
  ASSERT_STR_EQ(lookup_key(&t, ""), "(none)");
  ASSERT_STR_EQ(lookup_key(&t, "."), "(none)");
  ASSERT_EQ(table_lookup(&t, "example.com")->level, TLS_LEVEL_SECURE);
  ASSERT_EQ(table_lookup(&t, "www.example.com")->level, TLS_LEVEL_ENCRYPT);

  /* Duplicates: by normalized key; the message names the first line if known. */
  struct table_entry e = parse_ok("may");
  char err[256];
  strcpy(e.key, "example.com");
  ASSERT_EQ(table_add(&t, &e, err, sizeof err), -1);
  ASSERT_STR_EQ(err, "duplicate key \"example.com\"");
  e.key[0] = '\0';
  ASSERT_EQ(table_add(&t, &e, err, sizeof err), -1);
  ASSERT_STR_EQ(err, "empty or unterminated key");
  ASSERT_EQ(t.n, 5);
  table_free(&t);
  ASSERT_EQ(t.n, 0);
  ASSERT(t.entries == NULL && t.index == NULL);
  table_free(&t); /* twice is fine */
}

static void test_lookup_many(void) {
  struct table t;
  struct table_entry e = parse_ok("encrypt");
  char err[128];
  table_init(&t);
  for (int i = 0; i < TABLE_MAX_ENTRIES; i++) {
    snprintf(e.key, sizeof e.key, "%sd%d.example", i % 2 ? "." : "", i);
    e.line = (unsigned)i + 1;
    if (table_add(&t, &e, err, sizeof err) != 0)
      TEST_FAIL_("add %d: %s", i, err);
  }
  ASSERT_EQ(t.n, TABLE_MAX_ENTRIES);
  strcpy(e.key, "one-more.example");
  ASSERT_EQ(table_add(&t, &e, err, sizeof err), -1);
  ASSERT_STR_EQ(err, "more than 10000 entries");
  strcpy(e.key, ".d9999.example");
  ASSERT_EQ(table_add(&t, &e, err, sizeof err), -1);
  ASSERT_STR_EQ(err, "duplicate key \".d9999.example\" (first at line 10000)");
  for (int i = 0; i < TABLE_MAX_ENTRIES; i++) {
    char domain[64];
    const struct table_entry *found;
    snprintf(domain, sizeof domain, "%sd%d.example", i % 2 ? "x." : "", i);
    found = table_lookup(&t, domain);
    ASSERT(found != NULL);
    ASSERT_EQ(found->line, i + 1);
  }
  ASSERT(table_lookup(&t, "d1.example") == NULL); /* suffix entry only */
  table_free(&t);
}

/* ---- table files ---- */

static void test_file(void) {
  static const char text[] = "# TLS policy, Postfix syntax\n"
                             "\n"
                             "example.com   secure match=nexthop:dot-nexthop\r\n"
                             "   # an indented comment\n"
                             "\t\n"
                             ".example.com  verify\n"
                             "    match=hostname\n"
                             "  # comments may sit inside an entry\n"
                             "\tmatch=.example.net, protocols=>=TLSv1.3\n"
                             "pinned.example fingerprint\n"
                             " match=" FP_A "|" FP_B_HEX "\n"
                             "Plain.Example.  may";
  struct table t;
  struct collected c = {.len = 0};
  table_init(&t);
  ASSERT_EQ(table_parse_file(&t, text, strlen(text), collect, &c), 0);
  ASSERT_STR_EQ(c.text, "");
  ASSERT_EQ(t.n, 4);
  const struct table_entry *e = table_lookup(&t, "example.com");
  ASSERT_EQ(e->level, TLS_LEVEL_SECURE);
  ASSERT_EQ(e->line, 3);
  ASSERT_EQ(e->nmatch, 2);
  ASSERT_STR_EQ(e->match[1], "dot-nexthop");
  e = table_lookup(&t, "mx.example.com");
  ASSERT_STR_EQ(e->key, ".example.com");
  ASSERT_EQ(e->level, TLS_LEVEL_VERIFY);
  ASSERT_EQ(e->line, 6);
  ASSERT_EQ(e->nmatch, 2);
  ASSERT_STR_EQ(e->match[0], "hostname");
  ASSERT_STR_EQ(e->match[1], ".example.net");
  ASSERT_EQ(e->min_protocol, 0x0304);
  e = table_lookup(&t, "pinned.example");
  ASSERT_EQ(e->level, TLS_LEVEL_FINGERPRINT);
  ASSERT_EQ(e->line, 10);
  ASSERT_EQ(e->nfingerprints, 2);
  ASSERT_FP(e->fingerprints[1], fp_b);
  e = table_lookup(&t, "plain.example");
  ASSERT_EQ(e->level, TLS_LEVEL_MAY);
  ASSERT_EQ(e->line, 12);
  table_free(&t);

  /* An empty file, a file of comments. */
  table_init(&t);
  ASSERT_EQ(table_parse_file(&t, "", 0, collect, &c), 0);
  ASSERT_EQ(table_parse_file(&t, "#\n \n\n# x\n", 9, NULL, NULL), 0);
  ASSERT_EQ(t.n, 0);
  table_free(&t);
}

static void test_file_errors(void) {
  static const char text[] =
      "  match=orphan\n"                /* 1: continuation with nothing before */
      "a.example encrypt\n"             /* 2 */
      "b.example bogus\n"               /* 3 */
      "A.Example. may\n"                /* 4: duplicate of 2 */
      "c.example\n"                     /* 5: no level */
      "[mx.example]:25 encrypt\n"       /* 6 */
      "d.example secure ciphers=high\n" /* 7 */
      "e.example fingerprint\n"         /* 8 */
      "  match=AB:CD\n"                 /* 9 */
      "f.example secure\n"              /* 10: good after the errors */
      "g_x.example may\n"               /* 11 */
      "h.example may match=x\n";        /* 12 */
  struct table t;
  struct collected c = {.len = 0};
  table_init(&t);
  ASSERT_EQ(table_parse_file(&t, text, strlen(text), collect, &c), 9);
  ASSERT_STR_EQ(
      c.text,
      "1: continuation line (starting with a blank) without an entry before it\n"
      "3: unknown level \"bogus\" (none, may, encrypt, dane, dane-only, fingerprint, "
      "verify or secure)\n"
      "4: duplicate key \"a.example\" (first at line 2)\n"
      "5: key \"c.example\" has no policy (a level is required)\n"
      "6: next-hop keys [host]:port are not supported: the proxy looks up recipient "
      "domains\n"
      "7: unsupported attribute \"ciphers\": not implemented here\n"
      "8: fingerprint must be SHA-256 (32 bytes), not 2: \"AB:CD\"\n"
      "11: key \"g_x.example\" is not a domain name: '_' is not allowed\n"
      "12: attribute \"match\" is not allowed at level may\n");
  ASSERT_EQ(t.n, 2); /* a.example and f.example */
  ASSERT_EQ(table_lookup(&t, "f.example")->line, 10);
  table_free(&t);

  /* An entry over 64 KiB with its continuations; the next entry is read. */
  size_t len = 70000;
  char *big = malloc(len + 64);
  ASSERT(big != NULL);
  memcpy(big, "big.example may\n", 16);
  memset(big + 16, ' ', len - 16);
  big[len - 2] = 'x';
  big[len - 1] = '\n';
  memcpy(big + len, "after.example may\n", 18);
  c.len = 0;
  c.text[0] = '\0';
  table_init(&t);
  ASSERT_EQ(table_parse_file(&t, big, len + 18, collect, &c), 1);
  ASSERT_STR_EQ(c.text, "1: entry longer than 65536 bytes\n");
  ASSERT_EQ(t.n, 1);
  ASSERT_EQ(table_lookup(&t, "after.example")->line, 3);
  table_free(&t);
  free(big);
}

/* ---- config: policy.table, policy.table_file, default_level, trust_ad ---- */

static void test_yaml_table(void) {
  struct config *cfg =
      load_ok("policy:\n"
              "  table:\n"
              "    example.com: secure match=nexthop:dot-nexthop protocols=>=TLSv1.3\n"
              "    .Example.com:\n"
              "      level: verify\n"
              "      match: [hostname, .Example.NET.]\n"
              "      protocols: \">=TLSv1.2\"\n"
              "    pinned.example:\n"
              "      fingerprints: [\"" FP_A "\", " FP_B_HEX "]\n"
              "      level: fingerprint\n"
              "    plain.example: may\n"
              "    none.example: {level: none}\n");
  const struct table *t = &cfg->policy_table;
  ASSERT_EQ(t->n, 5);
  ASSERT_STR_EQ(cfg->policy_table_file, "");
  const struct table_entry *e = table_lookup(t, "example.com");
  ASSERT_EQ(e->level, TLS_LEVEL_SECURE);
  ASSERT_EQ(e->nmatch, 2);
  ASSERT_STR_EQ(e->match[0], "nexthop");
  ASSERT_STR_EQ(e->match[1], "dot-nexthop");
  ASSERT_EQ(e->min_protocol, 0x0304);
  ASSERT_EQ(e->line, 3);
  e = table_lookup(t, "mx.example.com");
  ASSERT_STR_EQ(e->key, ".example.com");
  ASSERT_EQ(e->level, TLS_LEVEL_VERIFY);
  ASSERT_EQ(e->nmatch, 2);
  ASSERT_STR_EQ(e->match[0], "hostname");
  ASSERT_STR_EQ(e->match[1], ".example.net");
  ASSERT_EQ(e->min_protocol, 0x0303);
  ASSERT_EQ(e->line, 4);
  e = table_lookup(t, "pinned.example");
  ASSERT_EQ(e->level, TLS_LEVEL_FINGERPRINT);
  ASSERT_EQ(e->nfingerprints, 2);
  ASSERT_FP(e->fingerprints[0], fp_a);
  ASSERT_FP(e->fingerprints[1], fp_b);
  ASSERT_EQ(table_lookup(t, "plain.example")->level, TLS_LEVEL_MAY);
  ASSERT_EQ(table_lookup(t, "none.example")->level, TLS_LEVEL_NONE);
  config_unref(cfg);

  /* Null and empty tables. */
  cfg = load_ok("policy:\n  table:\n");
  ASSERT_EQ(cfg->policy_table.n, 0);
  config_unref(cfg);
  cfg = load_ok("policy: {table: {}}\n");
  ASSERT_EQ(cfg->policy_table.n, 0);
  config_unref(cfg);
}

static void test_yaml_table_errors(void) {
  expect_errors(
      "policy:\n"
      "  table:\n"
      "    example.com: secure\n"
      "    Example.COM.: may\n"
      "    b.example: bogus\n"
      "    \"[mx.example]:25\": encrypt\n"
      "    c.example: encrypt ciphers=high\n"
      "    d.example:\n"
      "    e.example: [may]\n"
      "    f.example:\n"
      "      level: may\n"
      "      match: [x]\n"
      "    g.example:\n"
      "      lvl: may\n"
      "    h.example:\n"
      "      level: fingerprint\n"
      "      fingerprints: [\"AB:CD\"]\n"
      "    i.example: {level: secure, protocols: \"!TLSv1.3\"}\n"
      "    j.example: {level: fingerprint}\n"
      "    k.example: {level: verify, match: []}\n"
      "    l.example: {level: verify, level: secure}\n"
      "    m.example: {level: secured}\n"
      "    n_x.example: may\n"
      "    o.example: {level: may, fingerprints: [" FP_B_HEX "]}\n"
      "    p.example: {level: secure, match: [a, {b: c}], protocols: [x]}\n"
      "    q.example: encrypt match=a\n",
      "t.yaml:4:5: policy.table.Example.COM.: duplicate key (first at line 3)\n"
      "t.yaml:5:16: policy.table.b.example: unknown level \"bogus\" (none, may, "
      "encrypt, dane, dane-only, fingerprint, verify or secure)\n"
      "t.yaml:6:5: policy.table.[mx.example]:25: next-hop keys [host]:port are not "
      "supported: the proxy looks up recipient domains\n"
      "t.yaml:7:16: policy.table.c.example: unsupported attribute \"ciphers\": not "
      "implemented here\n"
      "t.yaml:8:15: policy.table.d.example: a policy is required\n"
      "t.yaml:9:16: policy.table.e.example: expected a policy string or a mapping, "
      "not a list\n"
      "t.yaml:12:14: policy.table.f.example.match: only for levels verify and "
      "secure, not may\n"
      "t.yaml:14:7: policy.table.g.example.lvl: unknown key\n"
      "t.yaml:14:7: policy.table.g.example: level is required\n"
      "t.yaml:17:22: policy.table.h.example.fingerprints[0]: fingerprint must be "
      "SHA-256 (32 bytes), not 2: \"AB:CD\"\n"
      "t.yaml:18:43: policy.table.i.example.protocols: excluding TLSv1.3 is not "
      "supported: there is no maximum protocol\n"
      "t.yaml:19:16: policy.table.j.example: level fingerprint needs at least one "
      "fingerprint\n"
      "t.yaml:20:39: policy.table.k.example.match: must not be empty\n"
      "t.yaml:21:32: policy.table.l.example.level: duplicate key (first at line 21)\n"
      "t.yaml:22:24: policy.table.m.example.level: must be none, may, encrypt, dane, "
      "dane-only, fingerprint, verify or secure\n"
      "t.yaml:23:5: policy.table.n_x.example: key \"n_x.example\" is not a domain "
      "name: '_' is not allowed\n"
      "t.yaml:24:43: policy.table.o.example.fingerprints: only for level "
      "fingerprint, not may\n"
      "t.yaml:25:43: policy.table.p.example.match[1]: expected a single value, not a "
      "mapping\n"
      "t.yaml:25:63: policy.table.p.example.protocols: expected a single value, not a "
      "list\n"
      "t.yaml:26:16: policy.table.q.example: attribute \"match\" is not allowed at "
      "level encrypt\n");
  expect_errors("policy:\n  table: [a]\n",
                "t.yaml:2:10: policy.table: expected a mapping of domains to "
                "policies, not a list\n");
  expect_errors("policy:\n  table: {a.example: &x may, b.example: *x}\n",
                "t.yaml:2:41: policy.table.b.example: aliases are not supported\n");
  expect_errors("policy:\n  table: !!map {a.example: may}\n",
                "t.yaml:2:10: policy.table: tags are not supported\n");
  expect_errors("policy:\n  bogus: 1\n", "t.yaml:2:3: policy.bogus: unknown key\n");
}

/* A table file and its YAML twin give the same entries, in the same order. */
static void test_table_file_twin(void) {
  static const char file_text[] =
      "# twin of the YAML below\n"
      "example.com secure match=nexthop:dot-nexthop protocols=>=TLSv1.3\n"
      ".example.com verify match=hostname\n"
      "  match=.example.net protocols=!SSLv2:!SSLv3:!TLSv1:!TLSv1.1\n"
      "pinned.example fingerprint match=" FP_A "|" FP_B_HEX "\n"
      "plain.example may\n"
      "dane.example dane-only protocols=!TLSv1.2\n";
  static const char yaml[] =
      "policy:\n"
      "  table:\n"
      "    example.com:\n"
      "      level: secure\n"
      "      match: [nexthop, dot-nexthop]\n"
      "      protocols: \">=TLSv1.3\"\n"
      "    .example.com: verify match=hostname:.example.net protocols=>=TLSv1.2\n"
      "    pinned.example:\n"
      "      level: fingerprint\n"
      "      fingerprints:\n"
      "        - \"" FP_A "\"\n"
      "        - " FP_B_HEX "\n"
      "    plain.example: {level: may}\n"
      "    dane.example: dane-only protocols=TLSv1.3\n";
  char path[64], text[256];
  temp_file(path, file_text, strlen(file_text));
  snprintf(text, sizeof text, "policy:\n  table_file: %s\n", path);
  struct config *from_file = load_ok(text), *from_yaml = load_ok(yaml);
  ASSERT_STR_EQ(from_file->policy_table_file, path);
  ASSERT_EQ(from_file->policy_table.n, 5);
  ASSERT_EQ(from_yaml->policy_table.n, 5);
  for (size_t i = 0; i < 5; i++)
    entries_equal(&from_file->policy_table.entries[i],
                  &from_yaml->policy_table.entries[i]);
  ASSERT_EQ(from_file->policy_table.entries[1].line, 3);
  ASSERT_EQ(from_yaml->policy_table.entries[1].line, 7);
  const char *domains[] = {"example.com",   "a.example.com", "pinned.example",
                           "plain.example", "dane.example",  "x.dane.example"};
  for (size_t i = 0; i < sizeof domains / sizeof domains[0]; i++) {
    const struct table_entry *a = table_lookup(&from_file->policy_table, domains[i]),
                             *b = table_lookup(&from_yaml->policy_table, domains[i]);
    ASSERT((a == NULL) == (b == NULL));
    if (a)
      entries_equal(a, b);
  }
  config_unref(from_file);
  config_unref(from_yaml);

  /* Both together, no overlap: merged. */
  snprintf(text, sizeof text,
           "policy:\n  table:\n    other.example: encrypt\n  table_file: %s\n", path);
  struct config *both = load_ok(text);
  ASSERT_EQ(both->policy_table.n, 6);
  ASSERT_EQ(table_lookup(&both->policy_table, "other.example")->level,
            TLS_LEVEL_ENCRYPT);
  ASSERT_EQ(table_lookup(&both->policy_table, "pinned.example")->level,
            TLS_LEVEL_FINGERPRINT);
  config_unref(both);
  unlink(path);
}

static void test_table_file_errors(void) {
  static const char file_text[] = "example.com secure\n"
                                  "b.example bogus\n"
                                  "\tmatch=x\n"
                                  "[mx.example]:25 may\n"
                                  "other.example encrypt\n";
  char path[64], yaml[512], want[1024];
  temp_file(path, file_text, strlen(file_text));

  /* Errors in the file, and a key also in policy.table (read first). */
  snprintf(yaml, sizeof yaml,
           "policy:\n"
           "  table:\n"
           "    Other.Example: may\n"
           "  table_file: %s\n",
           path);
  snprintf(want, sizeof want,
           "t.yaml:4:15: policy.table_file: %s:2: unknown level \"bogus\" (none, may, "
           "encrypt, dane, dane-only, fingerprint, verify or secure)\n"
           "t.yaml:4:15: policy.table_file: %s:4: next-hop keys [host]:port are not "
           "supported: the proxy looks up recipient domains\n"
           "t.yaml:4:15: policy.table_file: %s:5: duplicate key \"other.example\" "
           "(also in policy.table at line 3)\n",
           path, path, path);
  expect_errors(yaml, want);

  /* The file read first: the duplicate is reported on policy.table. */
  snprintf(yaml, sizeof yaml,
           "policy:\n"
           "  table_file: %s\n"
           "  table:\n"
           "    example.com: may\n",
           path);
  snprintf(want, sizeof want,
           "t.yaml:2:15: policy.table_file: %s:2: unknown level \"bogus\" (none, may, "
           "encrypt, dane, dane-only, fingerprint, verify or secure)\n"
           "t.yaml:2:15: policy.table_file: %s:4: next-hop keys [host]:port are not "
           "supported: the proxy looks up recipient domains\n"
           "t.yaml:4:5: policy.table.example.com: duplicate key (also in %s:1)\n",
           path, path, path);
  expect_errors(yaml, want);
  unlink(path);

  expect_errors("policy:\n  table_file: /nonexistent/tls_policy\n",
                "t.yaml:2:15: policy.table_file: cannot read /nonexistent/tls_policy: "
                "No such file or directory\n");
  expect_errors("policy:\n  table_file: /tmp\n",
                "t.yaml:2:15: policy.table_file: /tmp: not a regular file\n");
  expect_errors("policy:\n  table_file:\n",
                "t.yaml:2:14: policy.table_file: a value is required\n");
  expect_errors(
      "policy:\n  table_file: [a]\n",
      "t.yaml:2:15: policy.table_file: expected a single value, not a list\n");

  /* 16 MiB is the limit. */
  int fd;
  snprintf(path, sizeof path, "/tmp/sp-ptable-XXXXXX");
  ASSERT((fd = mkstemp(path)) >= 0);
  ASSERT_EQ(ftruncate(fd, 16 * 1024 * 1024 + 1), 0);
  ASSERT_EQ(close(fd), 0);
  snprintf(yaml, sizeof yaml, "policy:\n  table_file: %s\n", path);
  snprintf(want, sizeof want,
           "t.yaml:2:15: policy.table_file: %s: larger than 16777216 bytes\n", path);
  expect_errors(yaml, want);
  unlink(path);
}

static void test_default_level_and_trust_ad(void) {
  struct config *cfg = load_ok("");
  ASSERT_EQ(cfg->default_level, TLS_LEVEL_MAY);
  ASSERT_EQ(cfg->dns_trust_ad, CONFIG_TRUST_AD_AUTO);
  ASSERT_EQ(cfg->policy_table.n, 0);
  config_unref(cfg);
  static const struct {
    const char *yaml;
    enum tls_level level;
    enum config_trust_ad trust;
  } cases[] = {
      {"outbound: {tls: {default_level: dane}}\n", TLS_LEVEL_DANE,
       CONFIG_TRUST_AD_AUTO},
      {"outbound: {tls: {default_level: dane-only}}\ndns: {trust_ad: \"yes\"}\n",
       TLS_LEVEL_DANE_ONLY, CONFIG_TRUST_AD_YES},
      {"outbound: {tls: {default_level: none}}\ndns: {trust_ad: yes}\n", TLS_LEVEL_NONE,
       CONFIG_TRUST_AD_YES},
      {"outbound: {tls: {default_level: secure}}\ndns: {trust_ad: no}\n",
       TLS_LEVEL_SECURE, CONFIG_TRUST_AD_NO},
      {"dns: {trust_ad: auto}\n", TLS_LEVEL_MAY, CONFIG_TRUST_AD_AUTO},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cfg = load_ok(cases[i].yaml);
    ASSERT_EQ(cfg->default_level, cases[i].level);
    ASSERT_EQ(cfg->dns_trust_ad, cases[i].trust);
    config_unref(cfg);
  }
  expect_errors("outbound:\n  tls:\n    default_level: sometimes\n",
                "t.yaml:3:20: outbound.tls.default_level: must be none, may, encrypt, "
                "dane, dane-only, verify or secure\n");
  expect_errors("outbound:\n  tls:\n    default_level: fingerprint\n",
                "t.yaml:3:20: outbound.tls.default_level: fingerprint needs "
                "per-domain fingerprints: set it in policy.table\n");
  expect_errors("dns:\n  trust_ad: maybe\n",
                "t.yaml:2:13: dns.trust_ad: must be auto, yes or no\n");
  expect_errors("dns:\n  trust_ad: true\n",
                "t.yaml:2:13: dns.trust_ad: must be auto, yes or no\n");
}

static void test_example_file(void) {
  struct config *cfg = NULL;
  char *errors = NULL;
  if (config_load(SP_SOURCE_DIR "/proxy.yaml.example", &cfg, &errors) != 0)
    TEST_FAIL_("example failed:\n%s", errors ? errors : "");
  ASSERT_EQ(cfg->default_level, TLS_LEVEL_DANE);
  ASSERT_EQ(cfg->dns_trust_ad, CONFIG_TRUST_AD_AUTO);
  ASSERT_EQ(cfg->policy_table.n, 0);
  config_unref(cfg);
}

int main(void) {
  RUN_TEST(test_level_names);
  RUN_TEST(test_parse_each_level);
  RUN_TEST(test_parse_match);
  RUN_TEST(test_parse_fingerprints);
  RUN_TEST(test_protocols);
  RUN_TEST(test_value_errors);
  RUN_TEST(test_keys);
  RUN_TEST(test_lookup_precedence);
  RUN_TEST(test_lookup_many);
  RUN_TEST(test_file);
  RUN_TEST(test_file_errors);
  RUN_TEST(test_yaml_table);
  RUN_TEST(test_yaml_table_errors);
  RUN_TEST(test_table_file_twin);
  RUN_TEST(test_table_file_errors);
  RUN_TEST(test_default_level_and_trust_ad);
  RUN_TEST(test_example_file);
  return 0;
}
