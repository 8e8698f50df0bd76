/* Unit tests of the config loader: the shipped example, defaults, every kind of error
 * with its exact line, address and network syntax, client matching, lifetime. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/prov_ssl.h>
#include <sys/un.h>
#include <unistd.h>

#include "proxy/config/config.h"
#include "proxy/core/error.h"
#include "tests/unit/test.h"
#include "tests/unit/test_config_load.h"

/* The load fails with exactly these error lines. */
static struct config *load_ok(const char *yaml) {
  struct config *cfg = test_load_config(yaml);
  ASSERT_EQ(cfg->refs, 1);
  return cfg;
}

#define EXPECT_ERRORS(yaml, want) test_config_errors(yaml, strlen(yaml), want)

static void check_defaults_except_lists(const struct config *cfg) {
  ASSERT_EQ(cfg->max_connections, 1000);
  ASSERT_EQ(cfg->max_message_size, 52428800);
  ASSERT_EQ(cfg->max_recipients, 1000);
  ASSERT_EQ(cfg->timeout_inbound_command, 300000);
  ASSERT_EQ(cfg->timeout_inbound_data, 300000);
  ASSERT_EQ(cfg->timeout_connect, 30000);
  ASSERT_EQ(cfg->timeout_command, 300000);
  ASSERT_EQ(cfg->timeout_data_done, 600000);
  ASSERT_EQ(cfg->bare_newline, CONFIG_BARE_REFUSE);
  ASSERT_EQ(cfg->ndns_servers, 0);
  ASSERT(cfg->dns_servers == NULL);
  ASSERT_EQ(cfg->dns_timeout_ms, 5000);
  ASSERT_EQ(cfg->dns_tries, 2);
  ASSERT_EQ(cfg->dns_cache_size, 10000);
  ASSERT_EQ(cfg->dns_cache_max_ttl, 3600);
  ASSERT_EQ(cfg->dns_cache_negative_ttl, 60);
  ASSERT_EQ(cfg->outbound_port, 25);
  ASSERT_EQ(cfg->tls.min_protocol, TLS1_2_VERSION);
  ASSERT_STR_EQ(cfg->tls.groups, "X25519:P-256:P-384:X448:P-521");
  ASSERT_EQ(cfg->tls.min_dh_bits, 2048);
  ASSERT_STR_EQ(cfg->tls.ciphers,
                "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20");
  ASSERT_STR_EQ(
      cfg->tls.ciphersuites,
      "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256");
  ASSERT_STR_EQ(cfg->tls.ca_file, "");
  ASSERT_STR_EQ(cfg->tls.ca_path, "");
  ASSERT_EQ(cfg->log_format, LOG_FORMAT_POSTFIX);
  ASSERT_EQ(cfg->log_level, LOG_INFO);
}

static void check_default_lists(const struct config *cfg) {
  const struct sockaddr_in *sin = (const struct sockaddr_in *)&cfg->listen[0].sa;
  ASSERT_EQ(cfg->nlisten, 1);
  ASSERT_STR_EQ(cfg->listen[0].text, "127.0.0.1:10025");
  ASSERT_EQ(sin->sin_family, AF_INET);
  ASSERT_EQ(ntohs(sin->sin_port), 10025);
  ASSERT_EQ(ntohl(sin->sin_addr.s_addr), 0x7f000001);
  ASSERT_EQ(cfg->listen[0].salen, sizeof(struct sockaddr_in));
  ASSERT_EQ(cfg->nallow, 2);
  ASSERT_EQ(cfg->allow[0].family, AF_INET);
  ASSERT_EQ(cfg->allow[0].prefix, 8);
  ASSERT_MEM_EQ(cfg->allow[0].addr, 4, "\x7f\0\0\0", 4);
  ASSERT_EQ(cfg->allow[1].family, AF_INET6);
  ASSERT_EQ(cfg->allow[1].prefix, 128);
  ASSERT_MEM_EQ(cfg->allow[1].addr, 16, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16);
}

static void test_example_file(void) {
  struct config *cfg = NULL;
  char *errors = NULL;
  int rc = config_load(SP_SOURCE_DIR "/proxy.yaml.example", &cfg, &errors);
  if (rc != 0)
    TEST_FAIL_("example failed:\n%s", errors ? errors : "");
  ASSERT(errors == NULL);
  ASSERT_STR_EQ(cfg->path, SP_SOURCE_DIR "/proxy.yaml.example");
  check_defaults_except_lists(cfg);
  check_default_lists(cfg);
  ASSERT_STR_EQ(cfg->helo_name, cfg->hostname);
  config_unref(cfg);
}

static void test_defaults(void) {
  static const char *const empty_docs[] = {
      "", "# nothing\n", "---\n", "~\n", "{}\n", "dns:\nlog: ~\noutbound:\n  tls:\n"};
  char host[256] = "";
  ASSERT_EQ(gethostname(host, sizeof host - 1), 0);
  for (size_t i = 0; i < sizeof empty_docs / sizeof empty_docs[0]; i++) {
    struct config *cfg = load_ok(empty_docs[i]);
    check_defaults_except_lists(cfg);
    check_default_lists(cfg);
    ASSERT_STR_EQ(cfg->path, "t.yaml");
    ASSERT_STR_EQ(cfg->hostname, host[0] ? host : "localhost");
    ASSERT_STR_EQ(cfg->helo_name, cfg->hostname);
    config_unref(cfg);
  }
}

static void test_all_keys_set(void) {
  struct config *cfg =
      load_ok("hostname: relay.example.net\n"
              "listen: ['[::1]:2525', '0.0.0.0:25']\n"
              "clients: {allow: [10.1.2.3/8]}\n"
              "limits: {connections: 1, message_size: 0, recipients: 7}\n"
              "timeouts:\n"
              "  inbound_command: 1\n"
              "  inbound_data: 2\n"
              "  connect: 3\n"
              "  command: 4\n"
              "  data_done: 86400\n"
              "inbound: {bare_newline: normalize}\n"
              "dns: {servers: ['192.0.2.1', '[2001:db8::1]:5353'], timeout: 1, "
              "tries: 10, cache_size: 0, cache_max_ttl: 86400, cache_negative_ttl: 5}\n"
              "outbound:\n"
              "  port: 65535\n"
              "  helo_name: Mx-1.example.ORG\n"
              "  tls:\n"
              "    min_protocol: TLSv1.3\n"
              "    groups: X25519:ffdhe3072\n"
              "    min_dh_bits: 16384\n"
              "    ciphers: 'ECDHE+AESGCM'\n"
              "    ciphersuites: \"TLS_AES_128_GCM_SHA256\"\n"
              "    ca_file: " SP_SOURCE_DIR "/proxy.yaml.example\n"
              "    ca_path: " SP_SOURCE_DIR "\n"
              "log: {format: json, level: debug}\n");
  ASSERT_STR_EQ(cfg->hostname, "relay.example.net");
  ASSERT_STR_EQ(cfg->helo_name, "Mx-1.example.ORG");
  ASSERT_EQ(cfg->nlisten, 2);
  ASSERT_STR_EQ(cfg->listen[0].text, "[::1]:2525");
  ASSERT_STR_EQ(cfg->listen[1].text, "0.0.0.0:25");
  ASSERT_EQ(cfg->nallow, 1);
  ASSERT_MEM_EQ(cfg->allow[0].addr, 4, "\x0a\0\0\0", 4); /* host bits zeroed */
  ASSERT_EQ(cfg->max_connections, 1);
  ASSERT_EQ(cfg->max_message_size, 0);
  ASSERT_EQ(cfg->max_recipients, 7);
  ASSERT_EQ(cfg->timeout_inbound_command, 1000);
  ASSERT_EQ(cfg->timeout_inbound_data, 2000);
  ASSERT_EQ(cfg->timeout_connect, 3000);
  ASSERT_EQ(cfg->timeout_command, 4000);
  ASSERT_EQ(cfg->timeout_data_done, 86400000);
  ASSERT_EQ(cfg->bare_newline, CONFIG_BARE_NORMALIZE);
  ASSERT_EQ(cfg->ndns_servers, 2);
  ASSERT_EQ(cfg->dns_timeout_ms, 1000);
  ASSERT_EQ(cfg->dns_tries, 10);
  ASSERT_EQ(cfg->dns_cache_size, 0);
  ASSERT_EQ(cfg->dns_cache_max_ttl, 86400);
  ASSERT_EQ(cfg->dns_cache_negative_ttl, 5);
  ASSERT_EQ(cfg->outbound_port, 65535);
  ASSERT_EQ(cfg->tls.min_protocol, TLS1_3_VERSION);
  ASSERT_STR_EQ(cfg->tls.groups, "X25519:ffdhe3072");
  ASSERT_EQ(cfg->tls.min_dh_bits, 16384);
  ASSERT_STR_EQ(cfg->tls.ciphers, "ECDHE+AESGCM");
  ASSERT_STR_EQ(cfg->tls.ciphersuites, "TLS_AES_128_GCM_SHA256");
  ASSERT_STR_EQ(cfg->tls.ca_file, SP_SOURCE_DIR "/proxy.yaml.example");
  ASSERT_STR_EQ(cfg->tls.ca_path, SP_SOURCE_DIR);
  ASSERT_EQ(cfg->log_format, LOG_FORMAT_JSON);
  ASSERT_EQ(cfg->log_level, LOG_DEBUG);
  config_unref(cfg);
}

/* mta_sts.allow_private_addresses and tlsrpt.allow_private_addresses: off unless
 * set, each on its own, and yes/no only. */
static void test_allow_private_addresses(void) {
  struct config *cfg = load_ok("");
  ASSERT_EQ(cfg->sts_allow_private, 0);
  ASSERT_EQ(cfg->tlsrpt_allow_private, 0);
  config_unref(cfg);
  cfg = load_ok("mta_sts: {allow_private_addresses: yes}\n");
  ASSERT_EQ(cfg->sts_allow_private, 1);
  ASSERT_EQ(cfg->tlsrpt_allow_private, 0);
  config_unref(cfg);
  cfg = load_ok("mta_sts: {allow_private_addresses: no}\n"
                "tlsrpt: {allow_private_addresses: yes}\n");
  ASSERT_EQ(cfg->sts_allow_private, 0);
  ASSERT_EQ(cfg->tlsrpt_allow_private, 1);
  config_unref(cfg);
  EXPECT_ERRORS("mta_sts: {allow_private_addresses: true}\n"
                "tlsrpt:\n  allow_private_addresses: 1\n",
                "t.yaml:1:36: mta_sts.allow_private_addresses: must be yes or no\n"
                "t.yaml:3:28: tlsrpt.allow_private_addresses: must be yes or no\n");
}

/* One trust store: a client's own ca_file, else outbound.tls.ca_file/ca_path, else
 * the defaults ({NULL, NULL}). */
#define FILE_A SP_SOURCE_DIR "/proxy.yaml.example"
#define FILE_B SP_SOURCE_DIR "/README.md"
#define DIR_A SP_SOURCE_DIR "/certs"
static void test_trust_order(void) {
  static const enum config_trust_client clients[] = {
      CONFIG_TRUST_MTA_STS, CONFIG_TRUST_TLSRPT, CONFIG_TRUST_REDIS};
  struct config *cfg = load_ok("");
  for (size_t i = 0; i < 3; i++) {
    struct tls_trust t = config_trust(cfg, clients[i]);
    ASSERT(t.file == NULL && t.path == NULL);
  }
  config_unref(cfg);
  cfg = load_ok("outbound: {tls: {ca_file: " FILE_A ", ca_path: " DIR_A "}}\n");
  for (size_t i = 0; i < 3; i++) {
    struct tls_trust t = config_trust(cfg, clients[i]);
    ASSERT_STR_EQ(t.file, FILE_A);
    ASSERT_STR_EQ(t.path, DIR_A);
  }
  config_unref(cfg);
  cfg = load_ok("outbound: {tls: {ca_path: " DIR_A "}}\n"
                "mta_sts: {ca_file: " FILE_B "}\n"
                "cache: {backend: redis, redis: {url: \"rediss://127.0.0.1\", "
                "ca_file: " FILE_A "}}\n");
  struct tls_trust t = config_trust(cfg, CONFIG_TRUST_MTA_STS);
  ASSERT_STR_EQ(t.file, FILE_B);
  ASSERT(t.path == NULL); /* the specific key alone, not with outbound's directory */
  t = config_trust(cfg, CONFIG_TRUST_TLSRPT);
  ASSERT(t.file == NULL);
  ASSERT_STR_EQ(t.path, DIR_A);
  t = config_trust(cfg, CONFIG_TRUST_REDIS);
  ASSERT_STR_EQ(t.file, FILE_A);
  ASSERT(t.path == NULL);
  config_unref(cfg);
}

static void test_unknown_keys(void) {
  EXPECT_ERRORS("outbound:\n  tls:\n    foo: 1\n",
                "t.yaml:3:5: outbound.tls.foo: unknown key\n");
  EXPECT_ERRORS("bogus: x\n", "t.yaml:1:1: bogus: unknown key\n");
  EXPECT_ERRORS("policy: x\n",
                "t.yaml:1:9: policy: expected a mapping, not a scalar\n");
  EXPECT_ERRORS("log:\n  Level: info\n", "t.yaml:2:3: log.Level: unknown key\n");
  /* Bytes that would garble the log line are masked in the path. */
  EXPECT_ERRORS("\"a b\\tc\": 1\n", "t.yaml:1:1: a?b?c: unknown key\n");
  EXPECT_ERRORS("? [a]\n: b\n",
                "t.yaml:1:3: document: keys must be non-empty scalars\n");
  EXPECT_ERRORS("log:\n  \"\": 1\n",
                "t.yaml:2:3: log: keys must be non-empty scalars\n");
}

static void test_wrong_types(void) {
  EXPECT_ERRORS("- a\n", "t.yaml:1:1: document: expected a mapping, not a list\n");
  EXPECT_ERRORS("hello\n", "t.yaml:1:1: document: expected a mapping, not a scalar\n");
  EXPECT_ERRORS("limits: 5\n",
                "t.yaml:1:9: limits: expected a mapping, not a scalar\n");
  EXPECT_ERRORS("outbound:\n  tls: [a]\n",
                "t.yaml:2:8: outbound.tls: expected a mapping, not a list\n");
  EXPECT_ERRORS("listen: 127.0.0.1:25\n",
                "t.yaml:1:9: listen: expected a list, not a scalar\n");
  EXPECT_ERRORS("listen: {a: b}\n",
                "t.yaml:1:9: listen: expected a list, not a mapping\n");
  EXPECT_ERRORS("hostname: [a]\n",
                "t.yaml:1:11: hostname: expected a single value, not a list\n");
  EXPECT_ERRORS("log:\n  level: {a: 1}\n",
                "t.yaml:2:10: log.level: expected a single value, not a mapping\n");
  EXPECT_ERRORS("listen:\n  - [1.2.3.4:25]\n",
                "t.yaml:2:5: listen[0]: expected a single value, not a list\n");
  EXPECT_ERRORS("hostname:\n", "t.yaml:1:10: hostname: a value is required\n");
  EXPECT_ERRORS("log: {level: ~}\n", "t.yaml:1:14: log.level: a value is required\n");
  EXPECT_ERRORS("listen:\n  - null\n", "t.yaml:2:5: listen[0]: a value is required\n");
}

static void test_integers(void) {
  static const struct {
    const char *value, *reason;
  } cases[] = {
      {"-1", "must be a decimal integer"},
      {"+1", "must be a decimal integer"},
      {"0x10", "must be a decimal integer"},
      {"1.5", "must be a decimal integer"},
      {"1e3", "must be a decimal integer"},
      {"1_000", "must be a decimal integer"},
      {"010", "must be a decimal integer without leading zeros"},
      {"18446744073709551616", "number too large"},
      {"\"25\"", "must be a decimal integer, without quotes"},
      {"0", "must be between 1 and 1000000"},
      {"1000001", "must be between 1 and 1000000"},
  };
  char yaml[128], want[256];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    snprintf(yaml, sizeof yaml, "limits:\n  connections: %s\n", cases[i].value);
    snprintf(want, sizeof want, "t.yaml:2:16: limits.connections: %s\n",
             cases[i].reason);
    EXPECT_ERRORS(yaml, want);
  }
  struct config *cfg = load_ok("limits: {message_size: 18446744073709551615}\n");
  ASSERT(cfg->max_message_size == UINT64_MAX);
  config_unref(cfg);
  EXPECT_ERRORS("outbound: {port: 0}\n",
                "t.yaml:1:18: outbound.port: must be between 1 and 65535\n");
  EXPECT_ERRORS("outbound: {port: 65536}\n",
                "t.yaml:1:18: outbound.port: must be between 1 and 65535\n");
  EXPECT_ERRORS(
      "outbound: {tls: {min_dh_bits: 1023}}\n",
      "t.yaml:1:31: outbound.tls.min_dh_bits: must be between 1024 and 16384\n");
  EXPECT_ERRORS("timeouts: {connect: 0}\n",
                "t.yaml:1:21: timeouts.connect: must be between 1 and 86400 seconds\n");
  EXPECT_ERRORS("dns: {timeout: 301, tries: 11}\n",
                "t.yaml:1:16: dns.timeout: must be between 1 and 300 seconds\n"
                "t.yaml:1:28: dns.tries: must be between 1 and 10\n");
  EXPECT_ERRORS("dns: {cache_size: 1000001, cache_max_ttl: 86401}\n",
                "t.yaml:1:19: dns.cache_size: must be between 0 and 1000000\n"
                "t.yaml:1:43: dns.cache_max_ttl: must be between 0 and 86400\n");
}

/* mta_sts.cache_entries bounds the MTA-STS memory cache: a positive count, at most a
 * million domains. */
static void test_sts_cache_entries(void) {
  struct config *cfg = load_ok("");
  ASSERT_EQ(cfg->sts_cache_entries, 10000);
  config_unref(cfg);
  cfg = load_ok("mta_sts: {cache_entries: 1}\n");
  ASSERT_EQ(cfg->sts_cache_entries, 1);
  config_unref(cfg);
  cfg = load_ok("mta_sts:\n  cache_entries: 1000000\n");
  ASSERT_EQ(cfg->sts_cache_entries, 1000000);
  config_unref(cfg);
  EXPECT_ERRORS("mta_sts: {cache_entries: 0}\n",
                "t.yaml:1:26: mta_sts.cache_entries: must be between 1 and 1000000\n");
  EXPECT_ERRORS("mta_sts: {cache_entries: 1000001}\n",
                "t.yaml:1:26: mta_sts.cache_entries: must be between 1 and 1000000\n");
  EXPECT_ERRORS("mta_sts: {cache_entries: -5}\n",
                "t.yaml:1:26: mta_sts.cache_entries: must be a decimal integer\n");
  EXPECT_ERRORS("mta_sts: {cache_entries: '100'}\n",
                "t.yaml:1:26: mta_sts.cache_entries: must be a decimal integer, "
                "without quotes\n");
}

static void test_workers(void) {
  struct config *cfg = load_ok("hostname: a.test\n");
  ASSERT_EQ(cfg->workers, 1);
  config_unref(cfg);
  cfg = load_ok("workers: auto\n");
  ASSERT_EQ(cfg->workers, 0);
  config_unref(cfg);
  cfg = load_ok("workers: 4\n");
  ASSERT_EQ(cfg->workers, 4);
  config_unref(cfg);
  static const char *bad[] = {"0", "257", "-1", "Auto", "two", "1.5"};
  char yaml[64];
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    snprintf(yaml, sizeof yaml, "workers: %s\n", bad[i]);
    EXPECT_ERRORS(yaml,
                  "t.yaml:1:10: workers: must be auto or a number from 1 to 256\n");
  }
}

static void test_enums_and_strings(void) {
  EXPECT_ERRORS("inbound: {bare_newline: strip}\n",
                "t.yaml:1:25: inbound.bare_newline: must be refuse or normalize\n");
  EXPECT_ERRORS("log:\n  format: JSON\n  level: verbose\n",
                "t.yaml:2:11: log.format: must be postfix or json\n"
                "t.yaml:3:10: log.level: must be error, warning, info or debug\n");
  EXPECT_ERRORS("outbound:\n  tls:\n    min_protocol: TLSv1.1\n",
                "t.yaml:3:19: outbound.tls.min_protocol: must be TLSv1.2 or TLSv1.3; "
                "TLS 1.2 is the minimum\n");
  EXPECT_ERRORS(
      "outbound: {tls: {groups: 'X25519 P-256'}}\n",
      "t.yaml:1:26: outbound.tls.groups: ' ' is not allowed in a group list\n");
  EXPECT_ERRORS("outbound: {tls: {groups: 'X25519::P-256'}}\n",
                "t.yaml:1:26: outbound.tls.groups: empty group name in the list\n");
  EXPECT_ERRORS("outbound: {tls: {groups: ''}}\n",
                "t.yaml:1:26: outbound.tls.groups: must not be empty\n");
  EXPECT_ERRORS("outbound: {tls: {ciphers: \"\"}}\n",
                "t.yaml:1:27: outbound.tls.ciphers: must not be empty\n");
  EXPECT_ERRORS(
      "outbound: {tls: {ciphersuites: \"a\\tb\"}}\n",
      "t.yaml:1:32: outbound.tls.ciphersuites: control characters are not allowed\n");
  EXPECT_ERRORS(
      "outbound:\n  tls:\n    ca_file: /nonexistent/ca.pem\n"
      "    ca_path: " SP_SOURCE_DIR "/proxy.yaml.example\n",
      "t.yaml:3:14: outbound.tls.ca_file: cannot access: No such file or directory\n"
      "t.yaml:4:14: outbound.tls.ca_path: not a directory\n");
  EXPECT_ERRORS(
      "outbound: {tls: {ca_file: /, ca_path: /nonexistent}}\n",
      "t.yaml:1:27: outbound.tls.ca_file: not a regular file\n"
      "t.yaml:1:39: outbound.tls.ca_path: cannot access: No such file or directory\n");
}

static void test_dns_names(void) {
  char yaml[512], want[512], long_label[70];
  memset(long_label, 'a', 64);
  long_label[64] = '\0';
  EXPECT_ERRORS(
      "hostname: -bad.example\n",
      "t.yaml:1:11: hostname: not a DNS name: label begins or ends with '-'\n");
  EXPECT_ERRORS("hostname: a..b\n",
                "t.yaml:1:11: hostname: not a DNS name: empty label\n");
  EXPECT_ERRORS("hostname: example.com.\n",
                "t.yaml:1:11: hostname: not a DNS name: empty label\n");
  EXPECT_ERRORS(
      "outbound: {helo_name: under_score.example}\n",
      "t.yaml:1:23: outbound.helo_name: not a DNS name: '_' is not allowed\n");
  EXPECT_ERRORS("hostname: \"h\\xe9.example\"\n",
                "t.yaml:1:11: hostname: not a DNS name: byte 0xc3 is not allowed\n");
  snprintf(yaml, sizeof yaml, "hostname: %s.example\n", long_label);
  snprintf(want, sizeof want,
           "t.yaml:1:11: hostname: not a DNS name: label longer than 63 "
           "characters\n");
  EXPECT_ERRORS(yaml, want);
  struct config *cfg = load_ok("hostname: mail\n");
  ASSERT_STR_EQ(cfg->hostname, "mail");
  ASSERT_STR_EQ(cfg->helo_name, "mail"); /* follows hostname */
  config_unref(cfg);
}

static void test_duplicates(void) {
  EXPECT_ERRORS("log:\n  level: info\n  level: debug\n",
                "t.yaml:3:3: log.level: duplicate key (first at line 2)\n");
  EXPECT_ERRORS("log: {}\nlimits: {}\nlog: {level: bad}\n",
                "t.yaml:3:1: log: duplicate key (first at line 1)\n");
}

static void test_syntax_errors(void) {
  EXPECT_ERRORS(
      "a: b: c\n",
      "t.yaml:1:5: syntax error: mapping values are not allowed in this context\n");
  EXPECT_ERRORS(
      "listen: [1.2.3.4:25\n",
      "t.yaml:2:1: syntax error: did not find expected ',' or ']' (while parsing a "
      "flow sequence)\n");
  EXPECT_ERRORS(
      "log:\n\tlevel: info\n",
      "t.yaml:2:1: syntax error: found character that cannot start any token (while "
      "scanning for the next token)\n");
  EXPECT_ERRORS("log: {}\n---\nlog: {}\n",
                "t.yaml:2:1: syntax error: only one YAML document is allowed\n");
  EXPECT_ERRORS("log: {level: \"\x80\"}\n",
                "t.yaml:1:15: syntax error: invalid leading UTF-8 octet\n");
  test_config_errors("log: {}\n\0", 9,
                     "t.yaml:2:1: syntax error: control characters are not allowed\n");
  /* Nesting past the limit is refused before it costs anything. */
  char deep[256] = "listen: ";
  for (size_t i = 0; i < 100; i++)
    strcat(deep, "[");
  EXPECT_ERRORS(deep, "t.yaml:1:40: syntax error: nested deeper than 32 levels\n");
}

static void test_aliases_and_tags(void) {
  EXPECT_ERRORS("dns:\n  tries: &t 3\n  timeout: *t\n",
                "t.yaml:3:12: dns.timeout: aliases are not supported\n");
  EXPECT_ERRORS("base: &b {level: info}\nlog:\n  <<: *b\n",
                "t.yaml:1:1: base: unknown key\n"
                "t.yaml:3:3: log.<<: unknown key\n");
  EXPECT_ERRORS("log: *nowhere\n", "t.yaml:1:6: log: aliases are not supported\n");
  EXPECT_ERRORS("listen:\n  - *a\n",
                "t.yaml:2:5: listen[0]: aliases are not supported\n");
  EXPECT_ERRORS("limits:\n  connections: !!int 5\n",
                "t.yaml:2:16: limits.connections: tags are not supported\n");
  EXPECT_ERRORS("log: !!map {}\n", "t.yaml:1:6: log: tags are not supported\n");
  /* An anchor alone is harmless. */
  config_unref(load_ok("log: &l {level: info}\n"));
}

static void test_many_errors_in_file_order(void) {
  EXPECT_ERRORS(
      "hostname: bad_name\n"
      "listen:\n"
      "  - 127.0.0.1:25\n"
      "  - 127.0.0.1\n"
      "limits:\n"
      "  connections: -5\n"
      "  colour: blue\n"
      "dns:\n"
      "  tries: *x\n"
      "outbound:\n"
      "  tls:\n"
      "    min_protocol: SSLv3\n"
      "    groups: 'a b'\n"
      "log: {level: loud, format: xml}\n",
      "t.yaml:1:11: hostname: not a DNS name: '_' is not allowed\n"
      "t.yaml:4:5: listen[1]: port required: address:port\n"
      "t.yaml:6:16: limits.connections: must be a decimal integer\n"
      "t.yaml:7:3: limits.colour: unknown key\n"
      "t.yaml:9:10: dns.tries: aliases are not supported\n"
      "t.yaml:12:19: outbound.tls.min_protocol: must be TLSv1.2 or TLSv1.3; TLS 1.2 "
      "is the minimum\n"
      "t.yaml:13:13: outbound.tls.groups: ' ' is not allowed in a group list\n"
      "t.yaml:14:14: log.level: must be error, warning, info or debug\n"
      "t.yaml:14:28: log.format: must be postfix or json\n");
}

static void test_too_many_errors(void) {
  char *yaml = malloc(200 * 16), *errors = NULL;
  struct config *cfg = NULL;
  size_t len = 0, lines = 0;
  ASSERT(yaml != NULL);
  for (int i = 0; i < 200; i++)
    len += (size_t)sprintf(yaml + len, "k%d: 1\n", i);
  ASSERT_EQ(config_load_buffer("t.yaml", yaml, len, &cfg, &errors), SP_E_CONFIG);
  for (const char *p = errors; *p; p++)
    lines += *p == '\n';
  ASSERT_EQ(lines, 101);
  ASSERT(strstr(errors, "t.yaml:101:1: too many errors, giving up\n") != NULL);
  free(errors);
  free(yaml);
}

static void test_lists_empty(void) {
  EXPECT_ERRORS("clients:\n  allow: []\n",
                "t.yaml:2:10: clients.allow: at least one network required\n");
  EXPECT_ERRORS("clients:\n  allow:\n",
                "t.yaml:2:9: clients.allow: at least one network required\n");
  EXPECT_ERRORS("listen: []\n", "t.yaml:1:9: listen: at least one address required\n");
  struct config *cfg = load_ok("dns: {servers: []}\n");
  ASSERT_EQ(cfg->ndns_servers, 0); /* the system resolver */
  config_unref(cfg);
}

static void test_listen_addresses(void) {
  struct config *cfg = load_ok("listen:\n  - 192.0.2.7:1\n  - '[2001:db8::5]:65535'\n");
  const struct sockaddr_in *sin = (const struct sockaddr_in *)&cfg->listen[0].sa;
  const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&cfg->listen[1].sa;
  struct in6_addr want6;
  ASSERT_EQ(cfg->nlisten, 2);
  ASSERT_EQ(sin->sin_family, AF_INET);
  ASSERT_EQ(ntohs(sin->sin_port), 1);
  ASSERT_EQ(ntohl(sin->sin_addr.s_addr), 0xc0000207);
  ASSERT_EQ(sin6->sin6_family, AF_INET6);
  ASSERT_EQ(ntohs(sin6->sin6_port), 65535);
  ASSERT_EQ(inet_pton(AF_INET6, "2001:db8::5", &want6), 1);
  ASSERT_MEM_EQ(&sin6->sin6_addr, 16, &want6, 16);
  ASSERT_EQ(cfg->listen[1].salen, sizeof(struct sockaddr_in6));
  ASSERT_STR_EQ(cfg->listen[1].text, "[2001:db8::5]:65535");
  config_unref(cfg);

  EXPECT_ERRORS(
      "listen:\n"
      "  - 127.0.0.1\n"
      "  - 127.0.0.1:0\n"
      "  - 127.0.0.1:65536\n"
      "  - 127.0.0.1:025\n"
      "  - '127.0.0.1:'\n"
      "  - 127.0.0.1:x\n"
      "  - ::1:25\n"
      "  - '[::1]'\n"
      "  - '[::1'\n"
      "  - '[::1]25'\n"
      "  - '[1.2.3.4]:25'\n"
      "  - 1.2.3:25\n"
      "  - 127.000.0.1:25\n"
      "  - localhost:25\n"
      "  - '[::1]:25555555555555555555555555555555555555555555555555555555555'\n",
      "t.yaml:2:5: listen[0]: port required: address:port\n"
      "t.yaml:3:5: listen[1]: port must be a number from 1 to 65535\n"
      "t.yaml:4:5: listen[2]: port must be a number from 1 to 65535\n"
      "t.yaml:5:5: listen[3]: port must be a number from 1 to 65535\n"
      "t.yaml:6:5: listen[4]: port must be a number from 1 to 65535\n"
      "t.yaml:7:5: listen[5]: port must be a number from 1 to 65535\n"
      "t.yaml:8:5: listen[6]: an IPv6 address with a port is written [address]:port\n"
      "t.yaml:9:5: listen[7]: port required: [address]:port\n"
      "t.yaml:10:5: listen[8]: missing ']' after an IPv6 address\n"
      "t.yaml:11:5: listen[9]: expected ':port' after ']'\n"
      "t.yaml:12:5: listen[10]: not an IPv6 address\n"
      "t.yaml:13:5: listen[11]: not an IPv4 address (IPv6 is written [address]:port)\n"
      "t.yaml:14:5: listen[12]: not an IPv4 address (IPv6 is written [address]:port)\n"
      "t.yaml:15:5: listen[13]: not an IPv4 address (IPv6 is written [address]:port)\n"
      "t.yaml:16:5: listen[14]: address too long\n");
}

/* The MX connection cache's bounds: defaults, set values, 0 (= keep none) and the
 * upper limit. */
static void test_connection_cache_bounds(void) {
  struct config *cfg = load_ok("");
  ASSERT_EQ(cfg->conn_cache_secs, 10);
  ASSERT_EQ(cfg->conn_cache_size, 1024);
  ASSERT_EQ(cfg->conn_cache_per_domain, 256);
  config_unref(cfg);
  cfg = load_ok("outbound:\n"
                "  connection_cache_time: 30\n"
                "  connection_cache_size: 100\n"
                "  connection_cache_per_domain: 0\n");
  ASSERT_EQ(cfg->conn_cache_secs, 30);
  ASSERT_EQ(cfg->conn_cache_size, 100);
  ASSERT_EQ(cfg->conn_cache_per_domain, 0);
  config_unref(cfg);
  EXPECT_ERRORS("outbound: {connection_cache_size: 1000001}\n",
                "t.yaml:1:35: outbound.connection_cache_size: must be between 0 and "
                "1000000\n");
}

static void test_listen_entries(void) {
  struct config *cfg = load_ok("listen:\n"
                               "  - 127.0.0.1:25\n"
                               "  - {address: '[::1]:24', protocol: lmtp}\n"
                               "  - path: /run/sp/lmtp.sock\n"
                               "    mode: 0600\n"
                               "    protocol: lmtp\n"
                               "  - {path: /run/sp/smtp.sock, protocol: smtp}\n"
                               "lmtp: {max_recipients: 7, max_destinations: 3}\n"
                               "outbound: {max_connections: 9}\n");
  ASSERT_EQ(cfg->nlisten, 4);
  ASSERT_EQ(cfg->listen[0].protocol, CONFIG_PROTO_SMTP);
  ASSERT_EQ(cfg->listen[1].protocol, CONFIG_PROTO_LMTP);
  ASSERT_EQ(cfg->listen[1].sa.ss_family, AF_INET6);
  ASSERT_STR_EQ(cfg->listen[1].text, "[::1]:24");
  const struct sockaddr_un *sun = (const struct sockaddr_un *)&cfg->listen[2].sa;
  ASSERT_EQ(sun->sun_family, AF_UNIX);
  ASSERT_STR_EQ(sun->sun_path, "/run/sp/lmtp.sock");
  ASSERT_STR_EQ(cfg->listen[2].text, "/run/sp/lmtp.sock");
  ASSERT_EQ(cfg->listen[2].mode, 0600);
  ASSERT_EQ(cfg->listen[2].protocol, CONFIG_PROTO_LMTP);
  ASSERT_EQ(cfg->listen[3].mode, 0660);
  ASSERT_EQ(cfg->listen[3].protocol, CONFIG_PROTO_SMTP);
  ASSERT_EQ(cfg->lmtp_max_recipients, 7);
  ASSERT_EQ(cfg->lmtp_max_destinations, 3);
  ASSERT_EQ(cfg->outbound_max_connections, 9);
  config_unref(cfg);

  cfg = load_ok("");
  ASSERT_EQ(cfg->lmtp_max_recipients, 100);
  ASSERT_EQ(cfg->lmtp_max_destinations, 20);
  ASSERT_EQ(cfg->outbound_max_connections, 500);
  config_unref(cfg);

  EXPECT_ERRORS("listen:\n"
                "  - {protocol: lmtp}\n"
                "  - {address: 127.0.0.1:24, protocol: esmtp}\n"
                "  - {address: 127.0.0.1:24, mode: '0600'}\n"
                "  - {path: relative.sock}\n"
                "  - {path: /x.sock, mode: '0800'}\n"
                "  - {path: /x.sock, mode: '1777'}\n"
                "  - {path: /x.sock, address: 127.0.0.1:24}\n"
                "  - {address: 127.0.0.1, color: red}\n"
                "  - {path: [a]}\n"
                "lmtp: {max_recipients: 0, max_destinations: 1001}\n",
                "t.yaml:2:5: listen[0]: address or path required\n"
                "t.yaml:3:39: listen[1].protocol: must be smtp or lmtp\n"
                "t.yaml:4:35: listen[2].mode: only for a unix socket (path)\n"
                "t.yaml:5:12: listen[3].path: a unix socket path must be absolute\n"
                "t.yaml:6:27: listen[4].mode: must be an octal file mode such as "
                "\"0660\"\n"
                "t.yaml:7:27: listen[5].mode: must be at most 0777\n"
                "t.yaml:8:21: listen[6].address: give either address or path, once\n"
                "t.yaml:9:15: listen[7].address: port required: address:port\n"
                "t.yaml:9:26: listen[7].color: unknown key\n"
                "t.yaml:10:5: listen[8]: address or path required\n"
                "t.yaml:10:12: listen[8].path: expected a single value, not a list\n"
                "t.yaml:11:24: lmtp.max_recipients: must be between 1 and 100000\n"
                "t.yaml:11:45: lmtp.max_destinations: must be between 1 and 1000\n");
}

static void test_dns_servers(void) {
  struct config *cfg = load_ok("dns:\n"
                               "  servers:\n"
                               "    - 192.0.2.1\n"
                               "    - 192.0.2.2:5353\n"
                               "    - 2001:db8::1\n"
                               "    - '[2001:db8::2]'\n"
                               "    - '[2001:db8::3]:54'\n");
  static const unsigned ports[] = {53, 5353, 53, 53, 54};
  static const int families[] = {AF_INET, AF_INET, AF_INET6, AF_INET6, AF_INET6};
  ASSERT_EQ(cfg->ndns_servers, 5);
  for (size_t i = 0; i < 5; i++) {
    const struct config_addr *a = &cfg->dns_servers[i];
    ASSERT_EQ(a->sa.ss_family, families[i]);
    if (families[i] == AF_INET)
      ASSERT_EQ(ntohs(((const struct sockaddr_in *)&a->sa)->sin_port), ports[i]);
    else
      ASSERT_EQ(ntohs(((const struct sockaddr_in6 *)&a->sa)->sin6_port), ports[i]);
  }
  ASSERT_STR_EQ(cfg->dns_servers[2].text, "2001:db8::1");
  config_unref(cfg);
  EXPECT_ERRORS("dns:\n  servers:\n    - 192.0.2.1:0\n    - '[::1]:65536'\n    - ns1\n",
                "t.yaml:3:7: dns.servers[0]: port must be a number from 1 to 65535\n"
                "t.yaml:4:7: dns.servers[1]: port must be a number from 1 to 65535\n"
                "t.yaml:5:7: dns.servers[2]: not an IPv4 address (IPv6 is written "
                "[address]:port)\n");
}

static void test_cidr_syntax(void) {
  struct config *cfg = load_ok("clients:\n"
                               "  allow:\n"
                               "    - 192.0.2.77/24\n"
                               "    - 2001:db8:ffff::1/33\n"
                               "    - ::ffff:10.9.8.7/104\n"
                               "    - 0.0.0.0/0\n"
                               "    - 203.0.113.9\n");
  ASSERT_EQ(cfg->nallow, 5);
  ASSERT_MEM_EQ(cfg->allow[0].addr, 4, "\xc0\x00\x02\x00", 4);
  ASSERT_EQ(cfg->allow[0].prefix, 24);
  ASSERT_EQ(cfg->allow[1].family, AF_INET6);
  ASSERT_MEM_EQ(cfg->allow[1].addr, 16, "\x20\x01\x0d\xb8\x80\0\0\0\0\0\0\0\0\0\0\0",
                16);
  ASSERT_EQ(cfg->allow[2].family, AF_INET); /* v4-mapped becomes v4 */
  ASSERT_EQ(cfg->allow[2].prefix, 8);
  ASSERT_MEM_EQ(cfg->allow[2].addr, 16, "\x0a\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
  ASSERT_EQ(cfg->allow[3].prefix, 0);
  ASSERT_EQ(cfg->allow[4].prefix, 32);
  config_unref(cfg);
  EXPECT_ERRORS(
      "clients:\n"
      "  allow:\n"
      "    - 10.0.0.0/33\n"
      "    - ::/129\n"
      "    - 10.0.0.0/\n"
      "    - 10.0.0.0/08\n"
      "    - 10.0.0.0/-1\n"
      "    - 10.0.0.0/8/8\n"
      "    - example.net/8\n"
      "    - 10.0.0/8\n",
      "t.yaml:3:7: clients.allow[0]: prefix length must be a number from 0 to 32\n"
      "t.yaml:4:7: clients.allow[1]: prefix length must be a number from 0 to 128\n"
      "t.yaml:5:7: clients.allow[2]: prefix length must be a number from 0 to 32\n"
      "t.yaml:6:7: clients.allow[3]: prefix length must be a number from 0 to 32\n"
      "t.yaml:7:7: clients.allow[4]: prefix length must be a number from 0 to 32\n"
      "t.yaml:8:7: clients.allow[5]: prefix length must be a number from 0 to 32\n"
      "t.yaml:9:7: clients.allow[6]: not an IP address\n"
      "t.yaml:10:7: clients.allow[7]: not an IP address\n");
}

static bool allowed(const struct config *cfg, const char *ip) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  if (strchr(ip, ':')) {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    sin6->sin6_family = AF_INET6;
    ASSERT_EQ(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
  } else {
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    sin->sin_family = AF_INET;
    ASSERT_EQ(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
  }
  return config_client_allowed(cfg, (const struct sockaddr *)&ss);
}

static void test_client_allowed(void) {
  struct config *cfg = load_ok("");
  ASSERT(allowed(cfg, "127.0.0.1"));
  ASSERT(allowed(cfg, "127.255.255.254"));
  ASSERT(allowed(cfg, "::ffff:127.0.0.1"));
  ASSERT(allowed(cfg, "::1"));
  ASSERT(!allowed(cfg, "128.0.0.1"));
  ASSERT(!allowed(cfg, "::2"));
  ASSERT(!allowed(cfg, "::ffff:10.0.0.1"));
  ASSERT(!allowed(cfg, "::127.0.0.1")); /* v4-compatible is not v4-mapped */
  config_unref(cfg);

  cfg = load_ok("clients:\n  allow:\n    - 10.0.0.0/9\n    - 192.0.2.1/32\n"
                "    - 2001:db8::/33\n    - ::ffff:172.16.0.0/108\n");
  ASSERT(allowed(cfg, "10.0.0.0"));
  ASSERT(allowed(cfg, "10.127.255.255"));
  ASSERT(!allowed(cfg, "10.128.0.0"));
  ASSERT(allowed(cfg, "192.0.2.1"));
  ASSERT(!allowed(cfg, "192.0.2.2"));
  ASSERT(!allowed(cfg, "192.0.2.0"));
  ASSERT(allowed(cfg, "::ffff:192.0.2.1"));
  ASSERT(allowed(cfg, "2001:db8:7fff:ffff::1"));
  ASSERT(!allowed(cfg, "2001:db8:8000::"));
  ASSERT(allowed(cfg, "172.31.255.255"));
  ASSERT(!allowed(cfg, "172.32.0.0"));
  ASSERT(!allowed(cfg, "127.0.0.1"));
  config_unref(cfg);

  cfg = load_ok("clients: {allow: [0.0.0.0/0]}\n");
  ASSERT(allowed(cfg, "0.0.0.0"));
  ASSERT(allowed(cfg, "255.255.255.255"));
  ASSERT(allowed(cfg, "::ffff:8.8.8.8"));
  ASSERT(!allowed(cfg, "2001:db8::1"));
  config_unref(cfg);

  cfg = load_ok("clients:\n  allow:\n    - ::/0\n");
  ASSERT(allowed(cfg, "2001:db8::1"));
  ASSERT(allowed(cfg, "::"));
  ASSERT(!allowed(cfg, "8.8.8.8"));
  ASSERT(!allowed(cfg, "::ffff:8.8.8.8")); /* compared as v4 */
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof sun);
  sun.sun_family = AF_UNIX;
  ASSERT(!config_client_allowed(cfg, (const struct sockaddr *)&sun));
  ASSERT(!config_client_allowed(cfg, NULL));
  config_unref(cfg);
}

static void test_ref_unref(void) {
  struct config *cfg = load_ok("");
  ASSERT(config_ref(cfg) == cfg);
  ASSERT_EQ(cfg->refs, 2);
  config_unref(cfg);
  ASSERT_EQ(cfg->refs, 1);
  config_unref(cfg); /* freed: ASan reports a leak otherwise */
  config_unref(NULL);
}

static void test_load_file_errors(void) {
  struct config *cfg = (struct config *)&cfg;
  char *errors = NULL;
  ASSERT_EQ(config_load("/nonexistent/proxy.yaml", &cfg, &errors), SP_E_CONFIG);
  ASSERT(cfg == NULL);
  ASSERT_STR_EQ(errors, "/nonexistent/proxy.yaml: No such file or directory\n");
  free(errors);
  ASSERT_EQ(config_load(SP_SOURCE_DIR, &cfg, &errors), SP_E_CONFIG);
  ASSERT_STR_EQ(errors, SP_SOURCE_DIR ": Is a directory\n");
  free(errors);
  /* errors may be NULL when the caller only wants the verdict. */
  ASSERT_EQ(config_load_buffer("t", "x: 1", 4, &cfg, NULL), SP_E_CONFIG);
  ASSERT(cfg == NULL);
  char *big = calloc(1, 1024 * 1024 + 1);
  ASSERT(big != NULL);
  memset(big, ' ', 1024 * 1024 + 1);
  test_config_errors(big, 1024 * 1024 + 1, "t.yaml: larger than 1048576 bytes\n");
  free(big);
}

int main(void) {
  RUN_TEST(test_example_file);
  RUN_TEST(test_defaults);
  RUN_TEST(test_all_keys_set);
  RUN_TEST(test_allow_private_addresses);
  RUN_TEST(test_trust_order);
  RUN_TEST(test_unknown_keys);
  RUN_TEST(test_wrong_types);
  RUN_TEST(test_integers);
  RUN_TEST(test_sts_cache_entries);
  RUN_TEST(test_workers);
  RUN_TEST(test_enums_and_strings);
  RUN_TEST(test_dns_names);
  RUN_TEST(test_duplicates);
  RUN_TEST(test_syntax_errors);
  RUN_TEST(test_aliases_and_tags);
  RUN_TEST(test_many_errors_in_file_order);
  RUN_TEST(test_too_many_errors);
  RUN_TEST(test_lists_empty);
  RUN_TEST(test_listen_addresses);
  RUN_TEST(test_listen_entries);
  RUN_TEST(test_connection_cache_bounds);
  RUN_TEST(test_dns_servers);
  RUN_TEST(test_cidr_syntax);
  RUN_TEST(test_client_allowed);
  RUN_TEST(test_ref_unref);
  RUN_TEST(test_load_file_errors);
  return 0;
}
