/* The cache section: which backend shares policies and counts, and how to reach
 * Redis. Read from the whole node so cross-key rules get a line and column. */
#include "proxy/config/config_cache.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/config/config_value.h"

#define REDIS_DEFAULT_PORT 6379
#define REDIS_MAX_DB 65535

void config__cache_defaults(struct config *cfg) {
  cfg->cache_backend = CONFIG_CACHE_SQLITE;
  cfg->redis.port = REDIS_DEFAULT_PORT;
  cfg->redis.timeout_ms = 2000;
  snprintf(cfg->redis.key_prefix, sizeof cfg->redis.key_prefix, "%s",
           "starttls-proxy:");
}

/* ---- the url ---------------------------------------------------------------------- */

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Decodes s[0..len) with %XX escapes into out; false when malformed or too long. */
static bool pct_decode(const char *s, size_t len, char *out, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (c == '%') {
      int hi = i + 2 < len ? hexval(s[i + 1]) : -1;
      int lo = i + 2 < len ? hexval(s[i + 2]) : -1;
      if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
        return false;
      c = (char)(hi * 16 + lo);
      i += 2;
    }
    if (n + 1 >= cap)
      return false;
    out[n++] = c;
  }
  out[n] = '\0';
  return true;
}

/* The port of a URL: len bytes at s, read as config__parse_port reads a port. */
static bool parse_port(const char *s, size_t len, uint16_t *port) {
  char text[6];
  if (len == 0 || len >= sizeof text)
    return false;
  memcpy(text, s, len);
  text[len] = '\0';
  return config__parse_port(text, port) == NULL;
}

static bool host_ok(const char *h, bool bracketed) {
  unsigned char a[16];
  if (bracketed)
    return inet_pton(AF_INET6, h, a) == 1;
  if (inet_pton(AF_INET, h, a) == 1)
    return true;
  char buf[64];
  return config__check_dns_name(h, buf, sizeof buf) == NULL;
}

const char *config_redis_url_parse(const char *s, struct redis_settings *r, char *buf,
                                   size_t cap) {
  struct redis_settings v = *r;
  const char *p;
  if (!strncmp(s, "redis://", 8)) {
    v.tls = false;
    p = s + 8;
  } else if (!strncmp(s, "rediss://", 9)) {
    v.tls = true;
    p = s + 9;
  } else {
    return "must start with redis:// or rediss://";
  }
  v.port = REDIS_DEFAULT_PORT;
  v.db = 0;
  v.username[0] = v.password[0] = '\0';
  const char *end = p + strcspn(p, "/?#");
  if (*end == '?' || *end == '#')
    return "query strings and fragments are not supported";
  const char *at = memchr(p, '@', (size_t)(end - p));
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    const char *uend = colon ? colon : at;
    if (!pct_decode(p, (size_t)(uend - p), v.username, sizeof v.username))
      return "bad user name (a %XX escape or too long)";
    if (colon &&
        !pct_decode(colon + 1, (size_t)(at - colon - 1), v.password, sizeof v.password))
      return "bad password (a %XX escape or too long)";
    p = at + 1;
  }
  const char *hend, *hstart = p;
  bool bracketed = *p == '[';
  if (bracketed) {
    hstart = p + 1;
    hend = memchr(hstart, ']', (size_t)(end - hstart));
    if (!hend)
      return "unclosed [ in the host";
    p = hend + 1;
  } else {
    hend = memchr(p, ':', (size_t)(end - p));
    if (!hend)
      hend = end;
    p = hend;
  }
  size_t hlen = (size_t)(hend - hstart);
  if (hlen == 0)
    return "a host is required";
  if (hlen >= sizeof v.host)
    return "host too long";
  memcpy(v.host, hstart, hlen);
  v.host[hlen] = '\0';
  if (!host_ok(v.host, bracketed)) {
    snprintf(buf, cap, "bad host \"%s\"", v.host);
    return buf;
  }
  if (*p == ':') {
    if (!parse_port(p + 1, (size_t)(end - p - 1), &v.port))
      return "port must be 1 to 65535";
  } else if (p != end) {
    return "unexpected text after the host";
  }
  if (*end == '/' && end[1]) {
    uint64_t db;
    if (config__parse_u64(end + 1, &db) != NULL || db > REDIS_MAX_DB)
      return "database must be a number from 0 to 65535";
    v.db = (unsigned)db;
  }
  *r = v;
  return NULL;
}

/* ---- the section ------------------------------------------------------------------ */

struct cctx {
  struct config__errs *errs;
  const char *path;
};

__attribute__((format(printf, 4, 5))) static void cerr(struct cctx *c,
                                                       const struct config__node *n,
                                                       const char *key, const char *fmt,
                                                       ...) {
  char reason[512], full[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  snprintf(full, sizeof full, "%s%s%s", c->path, key ? "." : "", key ? key : "");
  config__errf(c->errs, n->line, n->col, full, "%s", reason);
}

static const char *scalar(struct cctx *c, const struct config__node *n,
                          const char *key) {
  if (n->alias || n->tagged) {
    cerr(c, n, key, "%s are not supported", n->alias ? "aliases" : "tags");
    return NULL;
  }
  if (n->type != CONFIG__SCALAR || n->null || n->len == 0) {
    cerr(c, n, key, "expected a non-empty single value");
    return NULL;
  }
  for (size_t i = 0; i < n->len; i++)
    if ((unsigned char)n->str[i] < 0x20 || n->str[i] == 0x7f) {
      cerr(c, n, key, "control characters are not allowed");
      return NULL;
    }
  return n->str;
}

static bool is_map(struct cctx *c, const struct config__node *n, const char *key) {
  if (n->alias || n->tagged || n->type != CONFIG__MAP) {
    cerr(c, n, key, "expected a mapping");
    return false;
  }
  return true;
}

static void copy_string(struct cctx *c, const struct config__node *n, const char *key,
                        char *dst, size_t cap) {
  const char *s = scalar(c, n, key);
  if (!s)
    return;
  if (n->len >= cap)
    cerr(c, n, key, "longer than %zu characters", cap - 1);
  else
    memcpy(dst, s, n->len + 1);
}

/* Returns whether each key of map n is one of names[] and appears once. */
static void check_keys(struct cctx *c, const struct config__node *n,
                       const char *const *names, size_t nnames, const char *prefix) {
  for (size_t i = 0; i < n->n / 2; i++) {
    const struct config__node *k = n->items[2 * i];
    bool known = false;
    for (size_t j = 0; k->type == CONFIG__SCALAR && j < nnames; j++)
      known |= !strcmp(k->str, names[j]);
    if (!known)
      cerr(c, k, prefix, "unknown key \"%s\"",
           k->type == CONFIG__SCALAR ? k->str : "?");
    for (size_t j = 0; known && j < i; j++)
      if (!strcmp(n->items[2 * j]->str, k->str))
        cerr(c, k, prefix, "duplicate key \"%s\"", k->str);
  }
}

static const struct config__node *get(const struct config__node *n, const char *key) {
  for (size_t i = 0; i < n->n / 2; i++)
    if (n->items[2 * i]->type == CONFIG__SCALAR && !strcmp(n->items[2 * i]->str, key))
      return n->items[2 * i + 1];
  return NULL;
}

const char *const config__cache_keys[] = {
    "backend",       "redis.url", "redis.password", "redis.key_prefix", "redis.ca_file",
    "redis.timeout", NULL};

static void redis_section(struct cctx *c, const struct config__node *n,
                          struct config *cfg) {
  static const char *const names[] = {"url", "password", "key_prefix", "ca_file",
                                      "timeout"};
  char buf[256];
  const char *s, *reason;
  if (!is_map(c, n, "redis"))
    return;
  check_keys(c, n, names, sizeof names / sizeof *names, "redis");
  const struct config__node *v;
  if ((v = get(n, "url")) && (s = scalar(c, v, "redis.url")) &&
      (reason = config_redis_url_parse(s, &cfg->redis, buf, sizeof buf)))
    cerr(c, v, "redis.url", "%s", reason);
  if (!get(n, "url"))
    cerr(c, n, "redis.url", "required");
  if ((v = get(n, "password")))
    copy_string(c, v, "redis.password", cfg->redis.password,
                sizeof cfg->redis.password);
  if ((v = get(n, "key_prefix")))
    copy_string(c, v, "redis.key_prefix", cfg->redis.key_prefix,
                sizeof cfg->redis.key_prefix);
  if ((v = get(n, "ca_file")) && (s = scalar(c, v, "redis.ca_file"))) {
    if ((reason = config__check_file(s, buf, sizeof buf)))
      cerr(c, v, "redis.ca_file", "%s", reason);
    else
      copy_string(c, v, "redis.ca_file", cfg->redis.ca_file, sizeof cfg->redis.ca_file);
  }
  uint64_t t;
  if ((v = get(n, "timeout")) && (s = scalar(c, v, "redis.timeout"))) {
    if (!v->plain || config__parse_u64(s, &t) != NULL || t < 1 || t > 300)
      cerr(c, v, "redis.timeout", "must be between 1 and 300 seconds");
    else
      cfg->redis.timeout_ms = t * 1000;
  }
}

void config__cache(struct config__errs *errs, const char *key,
                   const struct config__node *n, struct config *cfg) {
  static const char *const names[] = {"backend", "redis"};
  struct cctx c = {.errs = errs, .path = key};
  const struct config__node *b, *r;
  const char *s;
  if (!is_map(&c, n, NULL))
    return;
  check_keys(&c, n, names, 2, NULL);
  if ((b = get(n, "backend")) && (s = scalar(&c, b, "backend"))) {
    if (!strcmp(s, "sqlite"))
      cfg->cache_backend = CONFIG_CACHE_SQLITE;
    else if (!strcmp(s, "redis"))
      cfg->cache_backend = CONFIG_CACHE_REDIS;
    else
      cerr(&c, b, "backend", "must be sqlite or redis");
  }
  r = get(n, "redis");
  if (r)
    redis_section(&c, r, cfg);
  if (cfg->cache_backend == CONFIG_CACHE_REDIS && !r)
    cerr(&c, b ? b : n, "redis", "backend redis needs a redis section with a url");
  if (cfg->cache_backend != CONFIG_CACHE_REDIS && r)
    cerr(&c, r, "redis", "only used with backend: redis");
}
