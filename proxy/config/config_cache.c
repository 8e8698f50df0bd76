/* The cache section: which backend shares policies and counts, and how to reach
 * Redis. Read from the whole node so cross-key rules get a line and column. */
#include "proxy/config/config_cache.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/config/config_value.h"
#include "proxy/config/config_walk.h"

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

/* A key of a mapping in the section: read() takes its value, the walk at its path. */
struct cache_key {
  const char *name;
  void (*read)(struct config__walk *w, const struct config__node *v,
               struct config *cfg);
};

static bool is_map(struct config__walk *w, const struct config__node *n) {
  if (!config__walk_usable(w, n))
    return false;
  if (n->type != CONFIG__MAP) {
    config__walk_err(w, n, "expected a mapping, not %s", config__node_kind(n));
    return false;
  }
  return true;
}

/* The value of the first key named key in map n, or NULL. */
static const struct config__node *get(const struct config__node *n, const char *key) {
  for (size_t i = 0; i < n->n / 2; i++)
    if (n->items[2 * i]->type == CONFIG__SCALAR && !strcmp(n->items[2 * i]->str, key))
      return n->items[2 * i + 1];
  return NULL;
}

/* Reports, at the map's path, each key of map n that is not in keys[] or comes
 * again. */
static void check_keys(struct config__walk *w, const struct config__node *n,
                       const struct cache_key *keys, size_t nkeys) {
  for (size_t i = 0; i < n->n / 2; i++) {
    const struct config__node *k = n->items[2 * i];
    const char *name = k->type == CONFIG__SCALAR ? k->str : NULL;
    bool known = false;
    if (!config__walk_usable(w, k))
      continue;
    for (size_t j = 0; name && j < nkeys; j++)
      known |= !strcmp(name, keys[j].name);
    if (!known)
      config__walk_err(w, k, "unknown key \"%s\"", name ? name : "?");
    else if (get(n, name) != n->items[2 * i + 1])
      config__walk_err(w, k, "duplicate key \"%s\"", name);
  }
}

/* Reads the keys of map n in the order of keys[], not of the file. */
static void read_keys(struct config__walk *w, const struct config__node *n,
                      const struct cache_key *keys, size_t nkeys, struct config *cfg) {
  check_keys(w, n, keys, nkeys);
  for (size_t i = 0; i < nkeys; i++) {
    const struct config__node *v = get(n, keys[i].name);
    size_t mark = config__walk_push(w, keys[i].name, strlen(keys[i].name));
    if (v)
      keys[i].read(w, v, cfg);
    config__walk_pop(w, mark);
  }
}

static void copy_string(struct config__walk *w, const struct config__node *n, char *dst,
                        size_t cap) {
  const char *s = config__walk_nonempty(w, n);
  if (s && n->len >= cap)
    config__walk_err(w, n, "longer than %zu characters", cap - 1);
  else if (s)
    memcpy(dst, s, n->len + 1);
}

static void read_url(struct config__walk *w, const struct config__node *v,
                     struct config *cfg) {
  char buf[256];
  const char *s = config__walk_nonempty(w, v), *reason;
  if (s && (reason = config_redis_url_parse(s, &cfg->redis, buf, sizeof buf)))
    config__walk_err(w, v, "%s", reason);
}

static void read_password(struct config__walk *w, const struct config__node *v,
                          struct config *cfg) {
  copy_string(w, v, cfg->redis.password, sizeof cfg->redis.password);
}

static void read_key_prefix(struct config__walk *w, const struct config__node *v,
                            struct config *cfg) {
  copy_string(w, v, cfg->redis.key_prefix, sizeof cfg->redis.key_prefix);
}

static void read_ca_file(struct config__walk *w, const struct config__node *v,
                         struct config *cfg) {
  char buf[256];
  const char *s = config__walk_nonempty(w, v), *reason;
  if (s && (reason = config__check_file(s, buf, sizeof buf)))
    config__walk_err(w, v, "%s", reason);
  else if (s)
    copy_string(w, v, cfg->redis.ca_file, sizeof cfg->redis.ca_file);
}

static void read_timeout(struct config__walk *w, const struct config__node *v,
                         struct config *cfg) {
  const char *s = config__walk_nonempty(w, v);
  uint64_t t;
  if (!s)
    return;
  if (!v->plain || config__parse_u64(s, &t) != NULL || t < 1 || t > 300)
    config__walk_err(w, v, "must be between 1 and 300 seconds");
  else
    cfg->redis.timeout_ms = t * 1000;
}

/* url first: password overrides the url's, whatever the order in the file. */
static const struct cache_key redis_keys[] = {{"url", read_url},
                                              {"password", read_password},
                                              {"key_prefix", read_key_prefix},
                                              {"ca_file", read_ca_file},
                                              {"timeout", read_timeout}};

static void read_redis(struct config__walk *w, const struct config__node *n,
                       struct config *cfg) {
  if (!is_map(w, n))
    return;
  read_keys(w, n, redis_keys, sizeof redis_keys / sizeof *redis_keys, cfg);
  if (!get(n, "url")) {
    size_t mark = config__walk_push(w, "url", 3);
    config__walk_err(w, n, "required");
    config__walk_pop(w, mark);
  }
}

static void read_backend(struct config__walk *w, const struct config__node *v,
                         struct config *cfg) {
  const char *s = config__walk_nonempty(w, v);
  if (s && !strcmp(s, "sqlite"))
    cfg->cache_backend = CONFIG_CACHE_SQLITE;
  else if (s && !strcmp(s, "redis"))
    cfg->cache_backend = CONFIG_CACHE_REDIS;
  else if (s)
    config__walk_err(w, v, "must be sqlite or redis");
}

static const struct cache_key section_keys[] = {{"backend", read_backend},
                                                {"redis", read_redis}};

const char *const config__cache_keys[] = {
    "backend",       "redis.url", "redis.password", "redis.key_prefix", "redis.ca_file",
    "redis.timeout", NULL};

void config__cache(struct config__errs *errs, const char *key,
                   const struct config__node *n, struct config *cfg) {
  struct config__walk w;
  const struct config__node *b, *r;
  size_t mark;
  config__walk_init(&w, errs, key);
  if (!is_map(&w, n))
    return;
  read_keys(&w, n, section_keys, sizeof section_keys / sizeof *section_keys, cfg);
  b = get(n, "backend");
  r = get(n, "redis");
  mark = config__walk_push(&w, "redis", 5);
  if (cfg->cache_backend == CONFIG_CACHE_REDIS && !r)
    config__walk_err(&w, b ? b : n, "backend redis needs a redis section with a url");
  if (cfg->cache_backend != CONFIG_CACHE_REDIS && r)
    config__walk_err(&w, r, "only used with backend: redis");
  config__walk_pop(&w, mark);
}
