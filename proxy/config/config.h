/* The proxy's configuration: one YAML file, loaded strictly.
 *
 * config_load() parses the file with libyaml into nodes that keep line and column,
 * validates every key in a second pass and reports *every* problem, each as one line
 * "file:line:col: key: reason" (key as a dotted path, e.g. "outbound.tls.min_dh_bits").
 * Unknown keys, wrong types and bad values are errors. A config is immutable once
 * loaded; a reload builds a new one and swaps it (the old one lives on until its last
 * session ends, see config_ref/config_unref). */
#ifndef SP_CONFIG_H
#define SP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "certs/trust.h"
#include "policy/table.h"
#include "proxy/config/dns_settings.h"
#include "proxy/config/redis_settings.h"
#include "proxy/core/log_types.h"

enum config_bare_newline { CONFIG_BARE_REFUSE, CONFIG_BARE_NORMALIZE };
/* dns.trust_ad: whether the AD bit of answers counts as DNSSEC validation. auto:
 * only when every resolver is on loopback (a validating resolver on the same host;
 * the path to a remote one is not authenticated). */
enum config_trust_ad { CONFIG_TRUST_AD_AUTO, CONFIG_TRUST_AD_YES, CONFIG_TRUST_AD_NO };
/* cache.backend: where MTA-STS policies and TLS-RPT counts are shared. sqlite: the
 * state_dir file only; redis: a Redis server shared by a fleet of proxies (the sqlite
 * file stays as this host's own copy of the policies). */
enum config_cache_backend { CONFIG_CACHE_SQLITE, CONFIG_CACHE_REDIS };

/* What a listening socket speaks: SMTP (RFC 5321) or LMTP (RFC 2033). */
enum config_protocol { CONFIG_PROTO_SMTP, CONFIG_PROTO_LMTP };
/* tlsrpt.dkim: the signing algorithm, from the key's type. */
enum config_dkim_alg {
  CONFIG_DKIM_NONE,
  CONFIG_DKIM_RSA_SHA256,
  CONFIG_DKIM_ED25519_SHA256
};

struct config_addr {
  /* family AF_INET or AF_INET6 with the port set; AF_UNIX (sockaddr_un) only for a
   * listen entry given as {path: ...} */
  struct sockaddr_storage sa;
  socklen_t salen;
  char text[112]; /* as written, e.g. "127.0.0.1:10025", "[::1]:53", or the path */
  /* listen entries only (other addresses keep the defaults): */
  enum config_protocol protocol; /* protocol: smtp (default) or lmtp */
  unsigned mode;                 /* AF_UNIX: the socket file's mode, default 0660 */
};

struct config_cidr {
  int family;       /* AF_INET or AF_INET6 */
  uint8_t addr[16]; /* network bytes; 4 used for AF_INET; host bits zeroed */
  unsigned prefix;  /* 0..32 or 0..128 */
};

struct config_tls {
  int min_protocol;       /* TLS1_2_VERSION (default) or TLS1_3_VERSION */
  char groups[256];       /* "X25519:P-256:P-384:X448:P-521" */
  unsigned min_dh_bits;   /* default 2048; 1024..16384 */
  char ciphers[512];      /* TLS 1.2 list (defaults: proxy.yaml.example) */
  char ciphersuites[256]; /* TLS 1.3 suites */
  char ca_file[1024];     /* "" = system default */
  char ca_path[1024];     /* "" = system default */
};

struct config {
  char path[1024];    /* the file it came from */
  char hostname[256]; /* default: gethostname() */

  struct config_addr *listen; /* owned; at least one; default 127.0.0.1:10025 */
  size_t nlisten;

  struct config_cidr *allow; /* owned; default 127.0.0.0/8 and ::1/128 */
  size_t nallow;

  /* workers: event loops (threads), each with its own listening sockets; 0 = "auto"
   * (one per CPU but one, at least one: workers_count); default 1. */
  unsigned workers;

  size_t max_connections;    /* limits.connections, default 1000, >= 1 */
  uint64_t max_message_size; /* limits.message_size, default 52428800; 0 = none */
  size_t max_recipients;     /* limits.recipients, default 1000, >= 1 */

  /* lmtp.*: limits of one LMTP transaction (one message to many destinations). Over
   * a limit the recipient gets 452 4.5.3 and the MTA sends it again later. */
  size_t lmtp_max_recipients;   /* lmtp.max_recipients: RCPT commands, default 100 */
  size_t lmtp_max_destinations; /* lmtp.max_destinations: domains, default 20 */
  /* outbound.max_connections: MX connections open at once for LMTP transactions in
   * one process (idle cached ones not counted), default 500. */
  size_t outbound_max_connections;

  /* timeouts.*, in milliseconds here (seconds in YAML, > 0) */
  uint64_t timeout_inbound_command; /* 300 s */
  uint64_t timeout_inbound_data;    /* 300 s */
  uint64_t timeout_connect;         /* 30 s */
  uint64_t timeout_command;         /* 300 s */
  uint64_t timeout_data_done;       /* 600 s */

  enum config_bare_newline bare_newline; /* inbound.bare_newline, default refuse */

  struct config_addr *dns_servers;   /* owned; ndns_servers == 0: system resolver */
  size_t ndns_servers;               /* port defaults to 53 */
  unsigned dns_timeout_ms;           /* dns.timeout (seconds in YAML), default 5 s */
  unsigned dns_tries;                /* dns.tries, default 2 */
  enum config_trust_ad dns_trust_ad; /* dns.trust_ad, default auto */
  /* The resolver's answer cache: dns.cache_size answers per worker (0: none kept,
   * default 10000), kept for their TTL but at most dns.cache_max_ttl seconds (default
   * 3600); NXDOMAIN/NODATA without an SOA for dns.cache_negative_ttl (default 60). */
  size_t dns_cache_size;
  unsigned dns_cache_max_ttl;
  unsigned dns_cache_negative_ttl;

  uint16_t outbound_port; /* default 25 */
  char helo_name[256];    /* default: hostname */
  struct config_tls tls;  /* outbound.tls */
  /* outbound.tls.default_level, default may: the level of domains that neither the
   * table, DANE nor MTA-STS covers. Never TLS_LEVEL_FINGERPRINT. */
  enum tls_level default_level;

  /* policy.table and policy.table_file merged (a key in both is an error); owned,
   * freed with the config. Entry lines are those of the YAML file or of the table
   * file. */
  struct table policy_table;
  char policy_table_file[1024]; /* "" = none */

  enum log_format log_format; /* default postfix */
  enum log_level log_level;   /* default info */
  enum log_output log_output; /* log.output: stderr (default) or syslog */

  /* state_dir: where persistent state lives (policies.sqlite3); default
   * /var/lib/starttls-proxy; created at start-up when missing. */
  char state_dir[1024];
  /* mta_sts.*: RFC 8461 policies for domains without a table entry. */
  int sts_enabled;               /* yes (default) / no */
  char sts_ca_file[1024];        /* trust anchors for policy fetches; "" = system */
  uint16_t sts_port;             /* HTTPS port of mta-sts.<domain>: 443 (tests) */
  uint64_t sts_fetch_timeout_ms; /* total fetch time, default 10 s */
  /* allow_private_addresses: yes / no (default): whether the policy host may be a
   * loopback, private, link-local... address (policy/netaddr.h). The host is chosen
   * by the destination's DNS, so by default only global addresses are fetched from. */
  int sts_allow_private;
  uint64_t sts_cache_entries; /* domains held in memory (LRU), default 10000 */

  /* outbound.connection_cache_time: seconds an idle MX connection is kept for the next
   * transaction to the same domain (0 = never reuse across inbound connections). */
  unsigned conn_cache_secs;
  /* outbound.connection_cache_size / connection_cache_per_domain: idle MX connections
   * kept at most, in all and per destination domain, per loop (proxy/pool.h). */
  unsigned conn_cache_size;
  unsigned conn_cache_per_domain;

  /* user: after binding, the daemon runs as this user (and its primary group) when
   * started as root; "" = stay as started. */
  char user[64];

  /* tlsrpt.*: TLS reporting (RFC 8460) to destinations that publish _smtp._tls. */
  int tlsrpt_enabled;            /* yes / no (default) */
  char tlsrpt_organization[128]; /* organization-name in reports; default hostname */
  char tlsrpt_contact[256];      /* contact-info in reports; default postmaster@host */
  uint64_t tlsrpt_interval_ms;   /* report period, default 86400 s */
  char tlsrpt_ca_file[1024];     /* trust anchors for https: report endpoints */
  /* allow_private_addresses: yes / no (default): as sts_allow_private, for https:
   * report endpoints (named by the destination's _smtp._tls record). */
  int tlsrpt_allow_private;
  /* tlsrpt.dkim: the key that signs mailed reports (RFC 8460 §3: they MUST be
   * DKIM-signed). All three keys or none; without them tlsrpt_dkim_key is NULL and
   * reports to mailto: rua are not sent. The key file is read when the config loads
   * (start and every reload), so a bad or unreadable key is a config error. */
  char tlsrpt_dkim_domain[254];   /* d= */
  char tlsrpt_dkim_selector[254]; /* s= */
  char tlsrpt_dkim_key_file[1024];
  char *tlsrpt_dkim_key; /* owned: the private key as PKCS#8 PEM, wiped when freed */
  enum config_dkim_alg tlsrpt_dkim_alg;
  unsigned tlsrpt_dkim_bits; /* the key's size, for the log */

  enum config_cache_backend cache_backend; /* cache.backend, default sqlite */
  struct redis_settings redis;             /* cache.redis (backend redis) */

  /* metrics.listen: loopback HTTP listener for /metrics and /healthz; unset = off. */
  struct config_addr metrics_listen;
  int metrics_enabled; /* metrics.listen was given */

  unsigned refs; /* config_ref/config_unref */
};

/* Loads and validates FILE. On success returns 0 and *out (refs == 1). On failure
 * returns SP_E_CONFIG (or SP_E_NOMEM) and, when errors != NULL, *errors is a malloc'd
 * text with one "file:line:col: key: reason\n" line per problem, in file order. The
 * caller frees *errors. A file that cannot be opened is one error line "file: reason".
 */
int config_load(const char *file, struct config **out, char **errors);

/* Same, from a buffer; name is used in error lines. For tests and the fuzzer. */
int config_load_buffer(const char *name, const char *yaml, size_t len,
                       struct config **out, char **errors);

/* Whether addr (AF_INET/AF_INET6 sockaddr; v4-mapped v6 counts as v4) is in
 * clients.allow. */
bool config_client_allowed(const struct config *cfg, const struct sockaddr *addr);

/* The TLS clients besides MX connections, each with its own ca_file key. */
enum config_trust_client {
  CONFIG_TRUST_MTA_STS, /* mta_sts.ca_file: policy fetches */
  CONFIG_TRUST_TLSRPT,  /* tlsrpt.ca_file: https: report POSTs */
  CONFIG_TRUST_REDIS,   /* cache.redis.ca_file: rediss: */
};

/* The trust anchors client c uses (one trust store, see certs/trust.h): its own
 * ca_file when set; else outbound.tls.ca_file and ca_path when either is set; else
 * {NULL, NULL}, the defaults ($SSL_CERT_FILE / $SSL_CERT_DIR, else the system store).
 * The strings point into cfg. Pure. */
struct tls_trust config_trust(const struct config *cfg, enum config_trust_client c);

/* "rsa-sha256", "ed25519-sha256" (the a= tag), or "none". */
const char *config_dkim_alg_name(enum config_dkim_alg alg);

struct config *config_ref(struct config *cfg);
/* Calls fn once with every key the configuration accepts, dotted ("outbound.tls.
 * ca_file"), in schema order: the list the documentation must cover. */
/* The resolver's settings (dns.*) as dns_new() takes them. */
struct dns_settings config_dns_settings(const struct config *cfg);

void config_keys(void (*fn)(const char *key, void *arg), void *arg);

void config_unref(struct config *cfg); /* frees on the last reference; NULL is fine */

#endif
