/* The shared cache's pure parts: the cache section of the config (with the Redis url)
 * and the codec of what is stored in Redis. */
#include <stdlib.h>
#include <string.h>

#include "policy/mtasts.h"
#include "policy/tlsrpt.h"
#include "proxy/config/config.h"
#include "proxy/config/config_cache.h"
#include "proxy/core/error.h"
#include "proxy/wire/cache_codec.h"
#include "tests/unit/test.h"
#include "tests/unit/test_config_load.h"

#define load_ok test_load_config
#define expect_errors(yaml, want) test_config_errors(yaml, strlen(yaml), want)

static void test_defaults(void) {
  struct config *cfg = load_ok("");
  ASSERT_EQ(cfg->cache_backend, CONFIG_CACHE_SQLITE);
  ASSERT_STR_EQ(cfg->redis.key_prefix, "starttls-proxy:");
  ASSERT_EQ(cfg->redis.timeout_ms, 2000);
  config_unref(cfg);
  cfg = load_ok("cache: {backend: sqlite}\n");
  ASSERT_EQ(cfg->cache_backend, CONFIG_CACHE_SQLITE);
  config_unref(cfg);
}

static void test_redis_section(void) {
  struct config *cfg =
      load_ok("cache:\n"
              "  backend: redis\n"
              "  redis:\n"
              "    url: rediss://app:pa%40ss@cache.example.net:6380/4\n"
              "    key_prefix: 'fleet-a:'\n"
              "    timeout: 5\n");
  ASSERT_EQ(cfg->cache_backend, CONFIG_CACHE_REDIS);
  ASSERT_STR_EQ(cfg->redis.host, "cache.example.net");
  ASSERT_EQ(cfg->redis.port, 6380);
  ASSERT(cfg->redis.tls);
  ASSERT_STR_EQ(cfg->redis.username, "app");
  ASSERT_STR_EQ(cfg->redis.password, "pa@ss");
  ASSERT_EQ(cfg->redis.db, 4);
  ASSERT_STR_EQ(cfg->redis.key_prefix, "fleet-a:");
  ASSERT_EQ(cfg->redis.timeout_ms, 5000);
  config_unref(cfg);
  /* password: overrides the url's, whatever the order of the keys. */
  cfg = load_ok("cache:\n  redis:\n    password: s3cret\n    url: redis://:x@10.0.0.1\n"
                "  backend: redis\n");
  ASSERT_STR_EQ(cfg->redis.password, "s3cret");
  ASSERT_STR_EQ(cfg->redis.host, "10.0.0.1");
  ASSERT_EQ(cfg->redis.port, 6379);
  ASSERT(!cfg->redis.tls);
  config_unref(cfg);
}

static void test_section_errors(void) {
  expect_errors("cache: {backend: memcached}\n",
                "t.yaml:1:18: cache.backend: must be sqlite or redis\n");
  expect_errors("cache: {backend: redis}\n",
                "t.yaml:1:18: cache.redis: backend redis needs a redis section with a "
                "url\n");
  expect_errors("cache:\n  redis: {url: 'redis://127.0.0.1'}\n",
                "t.yaml:2:10: cache.redis: only used with backend: redis\n");
  expect_errors("cache:\n  backend: redis\n  redis: {key_prefix: x}\n",
                "t.yaml:3:10: cache.redis.url: required\n");
  expect_errors("cache:\n  backend: redis\n  redis: {url: 'http://x', port: 1}\n",
                "t.yaml:3:16: cache.redis.url: must start with redis:// or rediss://\n"
                "t.yaml:3:28: cache.redis: unknown key \"port\"\n");
  expect_errors("cache:\n  backend: redis\n  backend: sqlite\n  redis: {url: "
                "'redis://h'}\n",
                "t.yaml:3:3: cache: duplicate key \"backend\"\n");
  expect_errors("cache:\n  backend: redis\n  redis: {url: 'redis://h', timeout: 0}\n",
                "t.yaml:3:38: cache.redis.timeout: must be between 1 and 300 "
                "seconds\n");
  expect_errors("cache: [redis]\n",
                "t.yaml:1:8: cache: expected a mapping, not a list\n");
  /* The same wording as every other key (config_walk.c). */
  expect_errors("cache: {backend: ''}\n",
                "t.yaml:1:18: cache.backend: a value is required\n");
  expect_errors("cache: {backend: [redis]}\n",
                "t.yaml:1:18: cache.backend: expected a single value, not a list\n");
  expect_errors("cache:\n  backend: redis\n  redis: *r\n",
                "t.yaml:3:10: cache.redis: aliases are not supported\n");
  /* A key that is not a scalar has no text: unknown, and never compared. */
  expect_errors("cache: {[a]: 1, backend: sqlite}\n",
                "t.yaml:1:9: cache: unknown key \"?\"\n");
}

static const char *url(const char *s, struct redis_settings *r) {
  static char buf[256];
  memset(r, 0, sizeof *r);
  return config_redis_url_parse(s, r, buf, sizeof buf);
}

static void test_urls(void) {
  struct redis_settings r;
  ASSERT(url("redis://127.0.0.1", &r) == NULL);
  ASSERT_STR_EQ(r.host, "127.0.0.1");
  ASSERT_EQ(r.port, 6379);
  ASSERT_EQ(r.db, 0);
  ASSERT(url("redis://[::1]:7000/15", &r) == NULL);
  ASSERT_STR_EQ(r.host, "::1");
  ASSERT_EQ(r.port, 7000);
  ASSERT_EQ(r.db, 15);
  ASSERT(url("rediss://:p%3Aw@localhost/", &r) == NULL);
  ASSERT_STR_EQ(r.password, "p:w");
  ASSERT_STR_EQ(r.username, "");
  ASSERT(r.tls);
  ASSERT(url("redis://user@h", &r) == NULL);
  ASSERT_STR_EQ(r.username, "user");
  ASSERT_STR_EQ(r.password, "");
  const char *bad[] = {
      "redis:/h",         "redis://",       "redis://:p@",     "redis://h:0",
      "redis://h:65536",  "redis://h:07",   "redis://h:x",     "redis://h/x",
      "redis://h/65536",  "redis://h/1/2",  "redis://h?db=1",  "redis://[::1",
      "redis://[nope]:1", "redis://h x",    "redis://:%zz@h",  "redis://:%00@h",
      "redis://:%4@h",    "redis://-bad-/", "redis://h:6379x", "unix:///tmp/sock"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (url(bad[i], &r) == NULL)
      TEST_FAIL_("accepted %s", bad[i]);
}

static void test_policy_decode(void) {
  struct store_policy p;
  const char *v[4] = {"abc1", "100", "200", "version: STSv1\r\n"};
  size_t len[4] = {4, 3, 3, 16};
  ASSERT_EQ(cache_codec_policy_decode("example.test", v, len, &p), 1);
  ASSERT_STR_EQ(p.domain, "example.test");
  ASSERT_STR_EQ(p.id, "abc1");
  ASSERT_EQ(p.fetched_at, 100);
  ASSERT_EQ(p.expires_at, 200);
  ASSERT_STR_EQ(p.text, "version: STSv1\r\n");
  free(p.text);
  const char *none[4] = {NULL, NULL, NULL, NULL};
  ASSERT_EQ(cache_codec_policy_decode("example.test", none, len, &p), 0);
  /* Each field wrong in turn. */
  const char *bad[][4] = {{NULL, "100", "200", "x"},
                          {"ab-1", "100", "200", "x"},
                          {"abc", "1e3", "200", "x"},
                          {"abc", "100", "99", "x"},
                          {"abc", "-5", "200", "x"},
                          {"abc", "100", "200", NULL},
                          {"012345678901234567890123456789012", "1", "2", "x"},
                          {"abc", "99999999999999999999", "2", "x"}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    size_t l[4];
    for (int k = 0; k < 4; k++)
      l[k] = bad[i][k] ? strlen(bad[i][k]) : 0;
    ASSERT_EQ(cache_codec_policy_decode("example.test", bad[i], l, &p), SP_E_PROTOCOL);
  }
  const char *nul[4] = {"abc", "1", "2", "a\0b"};
  size_t nlen[4] = {3, 1, 1, 3};
  ASSERT_EQ(cache_codec_policy_decode("example.test", nul, nlen, &p), SP_E_PROTOCOL);
}

static void test_row_roundtrip(void) {
  struct store_tlsrpt_row r = {.period_start = 10, .period_end = 20, .count = 3};
  strcpy(r.domain, "example.test");
  strcpy(r.policy_type, "sts");
  r.policy_strings = "version: STSv1\nmode: enforce";
  r.mx_hosts = "mx1.example.test\nmx2.example.test";
  strcpy(r.result_type, "certificate-host-mismatch");
  strcpy(r.mx, "mx1.example.test");
  strcpy(r.ip, "192.0.2.1");
  strcpy(r.reason, "hostname mismatch");
  size_t len;
  char *enc = cache_codec_row_encode(&r, &len);
  ASSERT(enc != NULL);
  ASSERT_STR_EQ(enc,
                "12:example.test,3:sts,28:version: STSv1\nmode: enforce,"
                "33:mx1.example.test\nmx2.example.test,25:certificate-host-mismatch,"
                "16:mx1.example.test,9:192.0.2.1,17:hostname mismatch,");
  struct store_tlsrpt_row d = {.period_start = 7, .period_end = 8, .count = 9};
  ASSERT_EQ(cache_codec_row_decode(enc, len, &d), 0);
  ASSERT_EQ(d.period_start, 7);
  ASSERT_EQ(d.count, 9);
  ASSERT_STR_EQ(d.domain, r.domain);
  ASSERT_STR_EQ(d.policy_strings, r.policy_strings);
  ASSERT_STR_EQ(d.mx_hosts, r.mx_hosts);
  ASSERT_STR_EQ(d.result_type, r.result_type);
  ASSERT_STR_EQ(d.reason, r.reason);
  free(d.policy_strings);
  free(d.mx_hosts);
  /* Every prefix of a good encoding is refused, and so is anything after it. */
  for (size_t i = 0; i < len; i++)
    ASSERT_EQ(cache_codec_row_decode(enc, i, &d), SP_E_PROTOCOL);
  char *more = malloc(len + 2);
  memcpy(more, enc, len);
  more[len] = 'x';
  ASSERT_EQ(cache_codec_row_decode(more, len + 1, &d), SP_E_PROTOCOL);
  free(more);
  free(enc);
  /* A sending IP is a ninth field; an empty ninth field is not a row. */
  strcpy(r.sending_ip, "198.51.100.25");
  enc = cache_codec_row_encode(&r, &len);
  ASSERT(enc != NULL);
  ASSERT_STR_EQ(enc + len - 17, "13:198.51.100.25,");
  ASSERT(strstr(enc, "17:hostname mismatch,13:198.51.100.25,") != NULL);
  ASSERT_EQ(cache_codec_row_decode(enc, len, &d), 0);
  ASSERT_STR_EQ(d.sending_ip, "198.51.100.25");
  ASSERT_STR_EQ(d.ip, "192.0.2.1");
  free(d.policy_strings);
  free(d.mx_hosts);
  free(enc);
  const char *bad[] = {
      "1:a,0:,0:,0:,0:,0:,0:,0:,0:,",                /* an empty ninth field */
      "1:a,0:,0:,0:,0:,0:,0:,0:,1:\x01,",            /* a control character in it */
      "1:a,0:,0:,0:,0:,0:,0:,0:,1:x,0:,",            /* ten fields */
      "0:,0:,0:,0:,0:,0:,0:,0:,",                    /* empty domain */
      "01:a,0:,0:,0:,0:,0:,0:,0:,",                  /* leading zero */
      "1:a,0:,0:,0:,0:,0:,0:,0:;",                   /* wrong terminator */
      "1:\x01,0:,0:,0:,0:,0:,0:,0:,",                /* control character */
      "1:a,17:0123456789abcdefg,0:,0:,0:,0:,0:,0:,", /* policy_type too long */
      "1:a,0:,0:,0:,0:,0:,0:,",                      /* seven fields */
      "1:a,0:,1:\t,0:,0:,0:,0:,0:,",                 /* a tab in a list */
      "99999999999:a,",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (cache_codec_row_decode(bad[i], strlen(bad[i]), &d) != SP_E_PROTOCOL)
      TEST_FAIL_("accepted %s", bad[i]);
}

/* What the proxies before patterns had no count limit wrote is read as it was: the
 * policy entry (its file as fetched) and a TLS-RPT row key. */
static void test_old_format(void) {
  static const char policy[] = "version: STSv1\r\nmode: enforce\r\n"
                               "mx: mx1.example.test\r\nmx: *.example.net\r\n"
                               "max_age: 86400\r\n";
  const char *v[4] = {"abc1", "1764028800", "1764115200", policy};
  size_t len[4] = {4, 10, 10, sizeof policy - 1};
  struct store_policy sp;
  ASSERT_EQ(cache_codec_policy_decode("example.test", v, len, &sp), 1);
  struct sts_policy p;
  char err[128];
  ASSERT_EQ(sts_policy_parse(sp.text, strlen(sp.text), &p, err, sizeof err), 0);
  ASSERT_EQ(p.nmx, 2);
  ASSERT(sts_mx_match(&p, "mx1.example.test") && sts_mx_match(&p, "a.example.net"));
  sts_policy_free(&p);
  store_policy_free(&sp);
  static const char row[] =
      "12:example.test,3:sts,64:version: STSv1\nmode: enforce\nmx: mx1.example.test\n"
      "max_age: 86400,16:mx1.example.test,25:certificate-host-mismatch,"
      "16:mx1.example.test,9:192.0.2.1,17:hostname mismatch,";
  struct store_tlsrpt_row d = {0};
  ASSERT_EQ(cache_codec_row_decode(row, sizeof row - 1, &d), 0);
  ASSERT_STR_EQ(d.policy_strings,
                "version: STSv1\nmode: enforce\nmx: mx1.example.test\nmax_age: 86400");
  ASSERT_STR_EQ(d.mx_hosts, "mx1.example.test");
  ASSERT_STR_EQ(d.sending_ip, "");
  free(d.policy_strings);
  free(d.mx_hosts);
}

/* A TLS-RPT row for policy p (its strings and mx hosts, mx the failing host) encodes
 * and decodes back to the same; returns the policy strings (malloc'd). */
static char *row_roundtrip(const struct sts_policy *p, const char *mx) {
  struct store_tlsrpt_row r = {.period_start = 10, .period_end = 20, .count = 1};
  strcpy(r.domain, "example.test");
  strcpy(r.policy_type, "sts");
  strcpy(r.result_type, "validation-failure");
  strcpy(r.mx, mx);
  r.policy_strings = tlsrpt_sts_strings(p);
  r.mx_hosts = tlsrpt_sts_mx_hosts(p);
  ASSERT(r.policy_strings && r.mx_hosts);
  size_t elen;
  char *enc = cache_codec_row_encode(&r, &elen);
  ASSERT(enc != NULL);
  struct store_tlsrpt_row d = {0};
  ASSERT_EQ(cache_codec_row_decode(enc, elen, &d), 0);
  ASSERT_STR_EQ(d.policy_strings, r.policy_strings);
  ASSERT_STR_EQ(d.mx_hosts, r.mx_hosts);
  ASSERT_STR_EQ(d.mx, mx);
  free(d.policy_strings);
  free(d.mx_hosts);
  free(enc);
  free(r.mx_hosts);
  return r.policy_strings;
}

/* A policy of 100 mx lines through the shared cache: the entry decodes and parses to
 * the same patterns, and a TLS-RPT row naming them all encodes and decodes back. */
static void test_many_mx(void) {
  static char text[8192];
  size_t n = (size_t)snprintf(text, sizeof text, "version: STSv1\nmode: enforce\n");
  for (int i = 0; i < 100; i++)
    n += (size_t)snprintf(text + n, sizeof text - n, "mx: mx%d.example.test\n", i);
  n += (size_t)snprintf(text + n, sizeof text - n, "max_age: 86400\n");
  const char *v[4] = {"many", "100", "200", text};
  size_t len[4] = {4, 3, 3, n};
  struct store_policy sp;
  ASSERT_EQ(cache_codec_policy_decode("example.test", v, len, &sp), 1);
  struct sts_policy p;
  char err[128];
  ASSERT_EQ(sts_policy_parse(sp.text, strlen(sp.text), &p, err, sizeof err), 0);
  store_policy_free(&sp);
  ASSERT_EQ(p.nmx, 100);
  ASSERT(sts_mx_match(&p, "mx0.example.test") && sts_mx_match(&p, "mx99.example.test"));
  ASSERT(!sts_mx_match(&p, "mx100.example.test"));
  char *strings = row_roundtrip(&p, "mx99.example.test");
  ASSERT(
      !strncmp(strings, "version: STSv1\nmode: enforce\nmx: mx0.example.test\n", 50));
  ASSERT(strstr(strings, "\nmx: mx99.example.test\nmax_age: 86400") != NULL);
  char *hosts = tlsrpt_sts_mx_hosts(&p);
  ASSERT(!strncmp(hosts, "mx0.example.test\nmx1.example.test\n", 34));
  free(hosts);
  free(strings);
  sts_policy_free(&p);
}

/* The longest policy strings a policy file within the size limit can give (one
 * character names on "mx:" lines, each rewritten "mx: ") still fit a row field. */
static void test_largest_policy_row(void) {
  static char text[STS_POLICY_MAX_BYTES + 1];
  size_t n = (size_t)snprintf(text, sizeof text, "version: STSv1\nmode: enforce\n");
  while (n + 5 <= STS_POLICY_MAX_BYTES - 16)
    n += (size_t)snprintf(text + n, sizeof text - n, "mx:a\n");
  n += (size_t)snprintf(text + n, sizeof text - n, "max_age: 1\n");
  struct sts_policy p;
  char err[128];
  ASSERT_EQ(sts_policy_parse(text, n, &p, err, sizeof err), 0);
  char *strings = row_roundtrip(&p, "a");
  ASSERT(strlen(strings) > STS_POLICY_MAX_BYTES);
  ASSERT(strlen(strings) <= CACHE_CODEC_FIELD_MAX);
  free(strings);
  sts_policy_free(&p);
}

static void test_periods(void) {
  int64_t a, b;
  ASSERT_EQ(cache_codec_period_decode("86400:172800", 12, &a, &b), 0);
  ASSERT_EQ(a, 86400);
  ASSERT_EQ(b, 172800);
  const char *bad[] = {"",    ":",    "1:",    ":2",  "2:1",
                       "1:1", "-1:2", "1:2:3", "a:b", "01:2"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    ASSERT_EQ(cache_codec_period_decode(bad[i], strlen(bad[i]), &a, &b), SP_E_PROTOCOL);
  int64_t v;
  ASSERT_EQ(cache_codec_int("-12", 3, &v), 0);
  ASSERT_EQ(v, -12);
  ASSERT_EQ(cache_codec_int("9223372036854775807", 19, &v), 0);
  ASSERT_EQ(cache_codec_int("9223372036854775808", 19, &v), SP_E_PROTOCOL);
  ASSERT_EQ(cache_codec_int("-", 1, &v), SP_E_PROTOCOL);
  ASSERT_EQ(cache_codec_int("+1", 2, &v), SP_E_PROTOCOL);
}

int main(void) {
  RUN_TEST(test_defaults);
  RUN_TEST(test_redis_section);
  RUN_TEST(test_section_errors);
  RUN_TEST(test_urls);
  RUN_TEST(test_policy_decode);
  RUN_TEST(test_row_roundtrip);
  RUN_TEST(test_old_format);
  RUN_TEST(test_many_mx);
  RUN_TEST(test_largest_policy_row);
  RUN_TEST(test_periods);
  return 0;
}
