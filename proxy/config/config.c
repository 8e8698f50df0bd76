/* The config schema: a table of key descriptors per section, walked over the node tree
 * that config_yaml.c builds. Value syntax (addresses, networks, names) is in
 * config_value.c. */
#include "proxy/config/config.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/prov_ssl.h>

#include "proxy/config/config_cache.h"
#include "proxy/config/config_dkim.h"
#include "proxy/config/config_policy.h"
#include "proxy/config/config_value.h"
#include "proxy/config/config_walk.h"
#include "proxy/config/config_yaml.h"
#include "proxy/core/error.h"

/* Larger files are refused: a config is small, and the tree costs memory per byte. */
#define CONFIG_MAX_SIZE (1024 * 1024)

struct loader;

enum key_type {
  KEY_SECTION, /* a mapping of further keys */
  KEY_STRING,  /* char[] field, non-empty, optional extra check */
  KEY_UINT,    /* unsigned field of any width, decimal, bounded, optionally scaled */
  KEY_ENUM,    /* int-sized field, one of a list of names */
  KEY_VALUE,   /* any field, filled by a parse function from the text */
  KEY_LIST,    /* pointer + size_t count fields, a sequence parsed item by item */
  KEY_NODE,    /* any fields, filled by a function from the whole node */
};

struct enum_name {
  const char *name;
  int value;
};

struct key_desc {
  const char *name;
  enum key_type type;
  size_t off;                    /* the field in struct config */
  size_t size;                   /* STRING: buffer; UINT, ENUM: field; LIST: one item */
  uint64_t min, max;             /* UINT: bounds as written; LIST: item count bounds */
  uint64_t scale;                /* UINT: stored value = written value * scale */
  size_t count_off;              /* LIST: the size_t item count */
  const struct key_desc *keys;   /* SECTION: ends with a NULL name */
  const struct enum_name *names; /* ENUM: ends with a NULL name */
  config__check_fn check;        /* STRING: may be NULL */
  config__parse_fn parse;        /* VALUE, LIST items */
  config__node_fn node;          /* NODE; SECTION: cross-key checks after its keys */
  /* LIST: parses an item written as a mapping (NULL: items are scalars only) */
  bool (*item_map)(struct loader *ld, const struct config__node *map, void *dst);
  const char *hint;           /* ENUM: appended to the error; LIST: too few items */
  const char *const *subkeys; /* NODE: the keys it accepts below it, NULL-ended */
};

/* The schema. A new key is one row here plus its field in struct config; a new kind
 * of value is a config__parse_fn (KEY_VALUE, KEY_LIST) or a config__check_fn
 * (KEY_STRING); a structure of its own is a config__node_fn (KEY_NODE). */
// clang-format off
#define FIELD_(f)                                                                      \
  .off = offsetof(struct config, f), .size = sizeof(((struct config *)0)->f)
#define K_SECTION(n, k)      {.name = n, .type = KEY_SECTION, .keys = k}
#define K_SECTION_THEN(n, k, fn)                                                       \
  {.name = n, .type = KEY_SECTION, .keys = k, .node = fn}
#define K_STRING(n, f, chk)  {.name = n, .type = KEY_STRING, FIELD_(f), .check = chk}
#define K_UINT(n, f, lo, hi)                                                           \
  {.name = n, .type = KEY_UINT, FIELD_(f), .min = lo, .max = hi, .scale = 1}
#define K_SECONDS(n, f, hi)                                                            \
  {.name = n, .type = KEY_UINT, FIELD_(f), .min = 1, .max = hi, .scale = 1000}
#define K_ENUM(n, f, tbl, h)                                                           \
  {.name = n, .type = KEY_ENUM, FIELD_(f), .names = tbl, .hint = h}
#define K_VALUE(n, f, fn)    {.name = n, .type = KEY_VALUE, FIELD_(f), .parse = fn}
#define K_LIST(n, f, nf, fn, lo, hi, h)                                                \
  {.name = n, .type = KEY_LIST, .off = offsetof(struct config, f),                    \
   .size = sizeof(*((struct config *)0)->f), .count_off = offsetof(struct config, nf),\
   .parse = fn, .min = lo, .max = hi, .hint = h}
#define K_LIST_MAP(n, f, nf, fn, mfn, lo, hi, h)                                       \
  {.name = n, .type = KEY_LIST, .off = offsetof(struct config, f),                    \
   .size = sizeof(*((struct config *)0)->f), .count_off = offsetof(struct config, nf),\
   .parse = fn, .item_map = mfn, .min = lo, .max = hi, .hint = h}
#define K_NODE(n, fn)        {.name = n, .type = KEY_NODE, .node = fn}
#define K_NODE_KEYS(n, fn, k) {.name = n, .type = KEY_NODE, .node = fn, .subkeys = k}
#define K_END {.name = NULL}

static const struct enum_name bare_names[] = {
  {"refuse", CONFIG_BARE_REFUSE}, {"normalize", CONFIG_BARE_NORMALIZE}, {NULL, 0}};
static const struct enum_name tls_names[] = {
  {"TLSv1.2", TLS1_2_VERSION}, {"TLSv1.3", TLS1_3_VERSION}, {NULL, 0}};
static const struct enum_name output_names[] = {
  {"stderr", LOG_OUTPUT_STDERR}, {"syslog", LOG_OUTPUT_SYSLOG}, {NULL, 0}};
static const struct enum_name format_names[] = {
  {"postfix", LOG_FORMAT_POSTFIX}, {"json", LOG_FORMAT_JSON}, {NULL, 0}};
static const struct enum_name level_names[] = {
  {"error", LOG_ERROR}, {"warning", LOG_WARNING},
  {"info", LOG_INFO}, {"debug", LOG_DEBUG}, {NULL, 0}};
static const struct enum_name trust_names[] = {
  {"auto", CONFIG_TRUST_AD_AUTO}, {"yes", CONFIG_TRUST_AD_YES},
  {"no", CONFIG_TRUST_AD_NO}, {NULL, 0}};

static const struct enum_name yesno_names[] = {
  {"yes", 1}, {"no", 0}, {NULL, 0}};

static bool listen_item(struct loader *ld, const struct config__node *map, void *dst);

static const struct key_desc clients_keys[] = {
  K_LIST("allow", allow, nallow, config__parse_cidr, 1, 4096,
         "at least one network required"),
  K_END};

static const struct key_desc limits_keys[] = {
  K_UINT("connections",  max_connections,  1, 1000000),
  K_UINT("message_size", max_message_size, 0, UINT64_MAX),
  K_UINT("recipients",   max_recipients,   1, 1000000),
  K_END};

static const struct key_desc timeouts_keys[] = {
  K_SECONDS("inbound_command", timeout_inbound_command, 86400),
  K_SECONDS("inbound_data",    timeout_inbound_data,    86400),
  K_SECONDS("connect",         timeout_connect,         86400),
  K_SECONDS("command",         timeout_command,         86400),
  K_SECONDS("data_done",       timeout_data_done,       86400),
  K_END};

static const struct key_desc inbound_keys[] = {
  K_ENUM("bare_newline", bare_newline, bare_names, NULL),
  K_END};

static const struct key_desc dns_keys[] = {
  K_LIST("servers", dns_servers, ndns_servers, config__parse_dns_server, 0, 16, NULL),
  K_SECONDS("timeout", dns_timeout_ms, 300),
  K_UINT("tries", dns_tries, 1, 10),
  K_ENUM("trust_ad", dns_trust_ad, trust_names, NULL),
  K_UINT("cache_size", dns_cache_size, 0, 1000000),
  K_UINT("cache_max_ttl", dns_cache_max_ttl, 0, 86400),
  K_UINT("cache_negative_ttl", dns_cache_negative_ttl, 0, 86400),
  K_END};

static const struct key_desc tls_keys[] = {
  K_ENUM("min_protocol",   tls.min_protocol, tls_names, "TLS 1.2 is the minimum"),
  K_STRING("groups",       tls.groups,       config__check_groups),
  K_UINT("min_dh_bits",    tls.min_dh_bits,  1024, 16384),
  K_STRING("ciphers",      tls.ciphers,      NULL),
  K_STRING("ciphersuites", tls.ciphersuites, NULL),
  K_STRING("ca_file",      tls.ca_file,      config__check_file),
  K_STRING("ca_path",      tls.ca_path,      config__check_dir),
  K_VALUE("default_level", default_level,    config__parse_level),
  K_END};

static const struct key_desc outbound_keys[] = {
  K_UINT("port",        outbound_port, 1, 65535),
  K_STRING("helo_name", helo_name,     config__check_dns_name),
  K_UINT("connection_cache_time", conn_cache_secs, 0, 3600),
  K_UINT("connection_cache_size", conn_cache_size, 0, 1000000),
  K_UINT("connection_cache_per_domain", conn_cache_per_domain, 0, 1000000),
  K_UINT("max_connections", outbound_max_connections, 1, 1000000),
  K_SECTION("tls",      tls_keys),
  K_END};

static const struct key_desc log_keys[] = {
  K_ENUM("format", log_format, format_names, NULL),
  K_ENUM("output", log_output, output_names, NULL),
  K_ENUM("level",  log_level,  level_names,  NULL),
  K_END};

static const struct key_desc policy_keys[] = {
  K_NODE("table",      config__policy_table),
  K_NODE("table_file", config__policy_table_file),
  K_END};

static const struct key_desc mta_sts_keys[] = {
  K_ENUM("enabled",         sts_enabled,         yesno_names, NULL),
  K_STRING("ca_file",       sts_ca_file,         config__check_file),
  K_UINT("port",            sts_port,            1, 65535),
  K_SECONDS("fetch_timeout", sts_fetch_timeout_ms, 300),
  K_ENUM("allow_private_addresses", sts_allow_private, yesno_names, NULL),
  K_UINT("cache_entries",   sts_cache_entries,   1, 1000000),
  K_END};

static const struct key_desc tlsrpt_dkim_keys[] = {
  K_STRING("domain",   tlsrpt_dkim_domain,   config__check_dns_name),
  K_STRING("selector", tlsrpt_dkim_selector, config__check_dns_name),
  K_NODE("key_file",   config__dkim_key_file),
  K_END};

static const struct key_desc tlsrpt_keys[] = {
  K_ENUM("enabled",        tlsrpt_enabled,      yesno_names, NULL),
  K_STRING("organization", tlsrpt_organization, NULL),
  K_STRING("contact",      tlsrpt_contact,      NULL),
  K_SECONDS("interval",    tlsrpt_interval_ms,  31 * 86400),
  K_STRING("ca_file",      tlsrpt_ca_file,      config__check_file),
  K_ENUM("allow_private_addresses", tlsrpt_allow_private, yesno_names, NULL),
  K_SECTION_THEN("dkim",   tlsrpt_dkim_keys,    config__dkim_section),
  K_END};

static const struct key_desc metrics_keys[] = {
  K_VALUE("listen", metrics_listen, config__parse_listen),
  K_END};

static const struct key_desc lmtp_keys[] = {
  K_UINT("max_recipients",   lmtp_max_recipients,   1, 100000),
  K_UINT("max_destinations", lmtp_max_destinations, 1, 1000),
  K_END};

static const struct key_desc top_keys[] = {
  K_STRING("hostname", hostname, config__check_dns_name),
  K_LIST_MAP("listen", listen, nlisten, config__parse_listen, listen_item, 1, 64,
             "at least one address required"),
  K_SECTION("clients",  clients_keys),
  K_SECTION("limits",   limits_keys),
  K_SECTION("timeouts", timeouts_keys),
  K_SECTION("inbound",  inbound_keys),
  K_SECTION("dns",      dns_keys),
  K_SECTION("outbound", outbound_keys),
  K_SECTION("log",      log_keys),
  K_SECTION("policy",   policy_keys),
  K_STRING("state_dir", state_dir, NULL),
  K_SECTION("mta_sts",  mta_sts_keys),
  K_STRING("user",      user,      NULL),
  K_SECTION("tlsrpt",   tlsrpt_keys),
  K_SECTION("metrics",  metrics_keys),
  K_NODE_KEYS("cache",  config__cache, config__cache_keys),
  K_SECTION("lmtp",     lmtp_keys),
  K_VALUE("workers",    workers,   config__parse_workers),
  K_END};
// clang-format on

/* Most keys one section may hold (the duplicate check keeps one slot per key). */
#define SECTION_MAX_KEYS 32

/* ---- the walk ---- */

struct loader {
  struct config *cfg;
  struct config__walk w; /* at the node being checked */
};

static void store_uint(void *field, size_t size, uint64_t v) {
  uint8_t v8 = (uint8_t)v;
  uint16_t v16 = (uint16_t)v;
  uint32_t v32 = (uint32_t)v;
  switch (size) {
  case 1:
    memcpy(field, &v8, 1);
    break;
  case 2:
    memcpy(field, &v16, 2);
    break;
  case 4:
    memcpy(field, &v32, 4);
    break;
  default:
    assert(size == 8);
    memcpy(field, &v, 8);
  }
}

static void apply_string(struct loader *ld, const struct key_desc *d,
                         const struct config__node *n, char *field) {
  char buf[256];
  const char *s = config__walk_scalar(&ld->w, n), *reason;
  if (!s)
    return;
  if (n->len == 0)
    config__walk_err(&ld->w, n, "must not be empty");
  else if (n->len >= d->size)
    config__walk_err(&ld->w, n, "longer than %zu characters", d->size - 1);
  else if (d->check && (reason = d->check(s, buf, sizeof buf)) != NULL)
    config__walk_err(&ld->w, n, "%s", reason);
  else
    memcpy(field, s, n->len + 1);
}

static void apply_uint(struct loader *ld, const struct key_desc *d,
                       const struct config__node *n, char *field) {
  const char *s = config__walk_scalar(&ld->w, n), *reason,
             *unit = d->scale == 1000 ? " seconds" : "";
  uint64_t v;
  if (!s)
    return;
  if (!n->plain) {
    config__walk_err(&ld->w, n, "must be a decimal integer, without quotes");
    return;
  }
  if ((reason = config__parse_u64(s, &v)) != NULL)
    config__walk_err(&ld->w, n, "%s", reason);
  else if (v < d->min || v > d->max) {
    if (d->max == UINT64_MAX)
      config__walk_err(&ld->w, n, "must be at least %" PRIu64 "%s", d->min, unit);
    else
      config__walk_err(&ld->w, n, "must be between %" PRIu64 " and %" PRIu64 "%s",
                       d->min, d->max, unit);
  } else {
    /* The table's bounds are chosen so the scaled value fits the field. */
    assert(d->size == 8 || d->max * d->scale < (UINT64_C(1) << (8 * d->size)));
    store_uint(field, d->size, v * d->scale);
  }
}

static void apply_enum(struct loader *ld, const struct key_desc *d,
                       const struct config__node *n, char *field) {
  char choices[256] = "";
  size_t off = 0, count = 0;
  const char *s = config__walk_scalar(&ld->w, n);
  if (!s)
    return;
  for (const struct enum_name *e = d->names; e->name; e++, count++) {
    if (strlen(e->name) == n->len && memcmp(e->name, s, n->len) == 0) {
      store_uint(field, d->size, (uint64_t)e->value);
      return;
    }
  }
  for (size_t i = 0; i < count && off < sizeof choices; i++) {
    const char *sep = i == 0 ? "" : i + 1 == count ? " or " : ", ";
    int w =
        snprintf(choices + off, sizeof choices - off, "%s%s", sep, d->names[i].name);
    off += w > 0 ? (size_t)w : 0;
  }
  if (d->hint)
    config__walk_err(&ld->w, n, "must be %s; %s", choices, d->hint);
  else
    config__walk_err(&ld->w, n, "must be %s", choices);
}

static void apply_value(struct loader *ld, const struct key_desc *d,
                        const struct config__node *n, char *field) {
  char buf[256];
  const char *s = config__walk_scalar(&ld->w, n), *reason;
  if (s && (reason = d->parse(s, field, buf, sizeof buf)) != NULL)
    config__walk_err(&ld->w, n, "%s", reason);
}

static void apply_list(struct loader *ld, const struct key_desc *d,
                       const struct config__node *n, char *field) {
  size_t nitems = 0;
  char *items = NULL, *old, buf[256];
  bool ok = true;
  if (!config__walk_usable(&ld->w, n))
    return;
  if (n->type == CONFIG__SEQ)
    nitems = n->n;
  else if (n->type != CONFIG__SCALAR || !n->null) {
    config__walk_err(&ld->w, n, "expected a list, not %s", config__node_kind(n));
    return;
  }
  if (nitems < d->min || nitems > d->max) {
    if (nitems < d->min && d->hint)
      config__walk_err(&ld->w, n, "%s", d->hint);
    else
      config__walk_err(&ld->w, n, "must have %" PRIu64 " to %" PRIu64 " entries",
                       d->min, d->max);
    return;
  }
  if (nitems && !(items = calloc(nitems, d->size))) {
    ld->w.errs->nomem = true;
    return;
  }
  for (size_t i = 0; i < nitems; i++) {
    size_t mark = config__walk_push_index(&ld->w, i);
    const struct config__node *item = n->items[i];
    if (d->item_map && item->type == CONFIG__MAP && config__walk_usable(&ld->w, item)) {
      ok = d->item_map(ld, item, items + i * d->size) && ok;
      config__walk_pop(&ld->w, mark);
      continue;
    }
    const char *s = config__walk_scalar(&ld->w, item), *reason = NULL;
    if (s && (reason = d->parse(s, items + i * d->size, buf, sizeof buf)) != NULL)
      config__walk_err(&ld->w, item, "%s", reason);
    ok = ok && s && !reason;
    config__walk_pop(&ld->w, mark);
  }
  if (!ok) {
    free(items);
    return;
  }
  memcpy(&old, field, sizeof old);
  free(old);
  memcpy(field, &items, sizeof items);
  memcpy((char *)ld->cfg + d->count_off, &nitems, sizeof nitems);
}

static const struct enum_name protocol_names[] = {
    {"smtp", CONFIG_PROTO_SMTP}, {"lmtp", CONFIG_PROTO_LMTP}, {NULL, 0}};

/* One listen entry written as a mapping: {address: host:port | path: /socket,
 * mode: "0660", protocol: smtp | lmtp}. */
static bool listen_item(struct loader *ld, const struct config__node *map, void *dst) {
  const struct config__node *where = NULL, *mode = NULL, *proto = NULL;
  bool is_path = false, ok = true;
  char buf[256];
  for (size_t i = 0; i + 1 < map->n; i += 2) {
    const struct config__node *k = map->items[i], *v = map->items[i + 1];
    const char *name = k->type == CONFIG__SCALAR ? k->str : "";
    size_t mark = config__walk_push(&ld->w, name, strlen(name));
    const struct config__node **slot = NULL;
    if (!strcmp(name, "address") || !strcmp(name, "path")) {
      if (where)
        config__walk_err(&ld->w, k, "give either address or path, once");
      else
        is_path = name[0] == 'p';
      slot = &where;
    } else if (!strcmp(name, "mode")) {
      slot = &mode;
    } else if (!strcmp(name, "protocol")) {
      slot = &proto;
    } else {
      config__walk_err(&ld->w, k, "unknown key");
    }
    if (slot && *slot && slot != &where)
      config__walk_err(&ld->w, k, "duplicate key");
    if (slot && !*slot && config__walk_scalar(&ld->w, v))
      *slot = v;
    ok = ok && slot && *slot == v;
    config__walk_pop(&ld->w, mark);
  }
  if (!where) {
    config__walk_err(&ld->w, map, "address or path required");
    return false;
  }
  struct config_addr a;
  memset(&a, 0, sizeof a);
  const char *reason = is_path
                           ? config__parse_unix_path(where->str, &a, buf, sizeof buf)
                           : config__parse_listen(where->str, &a, buf, sizeof buf);
  size_t mark =
      config__walk_push(&ld->w, is_path ? "path" : "address", is_path ? 4 : 7);
  if (reason) {
    config__walk_err(&ld->w, where, "%s", reason);
    ok = false;
  }
  config__walk_pop(&ld->w, mark);
  a.mode = 0660;
  if (mode) {
    mark = config__walk_push(&ld->w, "mode", 4);
    if (!is_path)
      config__walk_err(&ld->w, mode, "only for a unix socket (path)");
    else if ((reason = config__parse_mode(mode->str, &a.mode)) != NULL)
      config__walk_err(&ld->w, mode, "%s", reason);
    ok = ok && is_path && !reason;
    config__walk_pop(&ld->w, mark);
  }
  if (proto) {
    int v = -1;
    for (const struct enum_name *e = protocol_names; e->name; e++)
      if (!strcmp(e->name, proto->str))
        v = e->value;
    mark = config__walk_push(&ld->w, "protocol", 8);
    if (v < 0)
      config__walk_err(&ld->w, proto, "must be smtp or lmtp");
    else
      a.protocol = (enum config_protocol)v;
    ok = ok && v >= 0;
    config__walk_pop(&ld->w, mark);
  }
  if (ok)
    memcpy(dst, &a, sizeof a);
  return ok;
}

static void walk_section(struct loader *ld, const struct key_desc *keys,
                         const struct config__node *map);

static void apply(struct loader *ld, const struct key_desc *d,
                  const struct config__node *n) {
  char *field = (char *)ld->cfg + d->off;
  switch (d->type) {
  case KEY_SECTION:
    walk_section(ld, d->keys, n);
    if (d->node && !n->alias && !n->tagged) /* else reported by the walk */
      d->node(ld->w.errs, ld->w.path, n, ld->cfg);
    break;
  case KEY_STRING:
    apply_string(ld, d, n, field);
    break;
  case KEY_UINT:
    apply_uint(ld, d, n, field);
    break;
  case KEY_ENUM:
    apply_enum(ld, d, n, field);
    break;
  case KEY_VALUE:
    apply_value(ld, d, n, field);
    break;
  case KEY_LIST:
    apply_list(ld, d, n, field);
    break;
  case KEY_NODE:
    if (config__walk_usable(&ld->w, n))
      d->node(ld->w.errs, ld->w.path, n, ld->cfg);
    break;
  }
}

static void keys_walk(const struct key_desc *keys, const char *prefix,
                      void (*fn)(const char *key, void *arg), void *arg) {
  char name[256];
  for (const struct key_desc *k = keys; k->name; k++) {
    snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", k->name);
    if (k->type == KEY_SECTION) {
      keys_walk(k->keys, name, fn, arg);
    } else if (k->subkeys) {
      char sub[256];
      for (const char *const *s = k->subkeys; *s; s++) {
        snprintf(sub, sizeof sub, "%s.%s", name, *s);
        fn(sub, arg);
      }
    } else {
      fn(name, arg);
    }
  }
}

void config_keys(void (*fn)(const char *key, void *arg), void *arg) {
  keys_walk(top_keys, "", fn, arg);
}

static const struct key_desc *find_key(const struct key_desc *keys, const char *name,
                                       size_t len) {
  for (const struct key_desc *d = keys; d->name; d++)
    if (strlen(d->name) == len && memcmp(d->name, name, len) == 0)
      return d;
  return NULL;
}

/* A null value counts as an empty section, so commenting out every key of a section
 * leaves its defaults. */
static void walk_section(struct loader *ld, const struct key_desc *keys,
                         const struct config__node *map) {
  unsigned seen[SECTION_MAX_KEYS] = {0}; /* line of each key's first occurrence */
  if (!config__walk_usable(&ld->w, map) || (map->type == CONFIG__SCALAR && map->null))
    return;
  if (map->type != CONFIG__MAP) {
    config__walk_err(&ld->w, map, "expected a mapping, not %s", config__node_kind(map));
    return;
  }
  for (size_t i = 0; i + 1 < map->n; i += 2) {
    const struct config__node *key = map->items[i], *val = map->items[i + 1];
    const struct key_desc *d;
    size_t mark;
    if (!config__walk_usable(&ld->w, key))
      continue;
    if (key->type != CONFIG__SCALAR || key->len == 0) {
      config__walk_err(&ld->w, key, "keys must be non-empty scalars");
      continue;
    }
    mark = config__walk_push(&ld->w, key->str, key->len);
    d = find_key(keys, key->str, key->len);
    assert(!d || d - keys < SECTION_MAX_KEYS);
    if (!d)
      config__walk_err(&ld->w, key, "unknown key");
    else if (seen[d - keys])
      config__walk_err(&ld->w, key, "duplicate key (first at line %u)", seen[d - keys]);
    else {
      seen[d - keys] = key->line;
      apply(ld, d, val);
    }
    config__walk_pop(&ld->w, mark);
  }
}

/* ---- defaults, loading, lifetime ---- */

static void set_defaults(struct config *cfg) {
  cfg->workers = 1;
  cfg->max_connections = 1000;
  cfg->max_message_size = 52428800;
  cfg->max_recipients = 1000;
  cfg->timeout_inbound_command = 300000;
  cfg->timeout_inbound_data = 300000;
  cfg->timeout_connect = 30000;
  cfg->timeout_command = 300000;
  cfg->timeout_data_done = 600000;
  cfg->bare_newline = CONFIG_BARE_REFUSE;
  cfg->dns_timeout_ms = 5000;
  cfg->dns_tries = 2;
  cfg->dns_cache_size = 10000;
  cfg->dns_cache_max_ttl = 3600;
  cfg->dns_cache_negative_ttl = 60;
  cfg->outbound_port = 25;
  cfg->tls.min_protocol = TLS1_2_VERSION;
  snprintf(cfg->tls.groups, sizeof cfg->tls.groups, "%s",
           "X25519:P-256:P-384:X448:P-521");
  cfg->tls.min_dh_bits = 2048;
  snprintf(cfg->tls.ciphers, sizeof cfg->tls.ciphers, "%s",
           "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20");
  snprintf(
      cfg->tls.ciphersuites, sizeof cfg->tls.ciphersuites, "%s",
      "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256");
  cfg->log_format = LOG_FORMAT_POSTFIX;
  cfg->log_level = LOG_INFO;
  cfg->dns_trust_ad = CONFIG_TRUST_AD_AUTO;
  cfg->default_level = TLS_LEVEL_MAY;
  table_init(&cfg->policy_table);
  snprintf(cfg->state_dir, sizeof cfg->state_dir, "%s", "/var/lib/starttls-proxy");
  cfg->sts_enabled = 1;
  cfg->sts_port = 443;
  cfg->sts_fetch_timeout_ms = 10000;
  cfg->sts_cache_entries = 10000;
  cfg->tlsrpt_interval_ms = 86400000;
  cfg->conn_cache_secs = 10;
  cfg->conn_cache_size = 1024;
  cfg->conn_cache_per_domain = 256;
  config__cache_defaults(cfg);
  cfg->lmtp_max_recipients = 100;
  cfg->lmtp_max_destinations = 20;
  cfg->outbound_max_connections = 500;
}

/* Fills an unset list from literal texts through the key's own parser. */
static int default_list(struct config *cfg, const struct key_desc *d,
                        const char *const *texts, size_t n) {
  char *field = (char *)cfg + d->off, *items, buf[256];
  size_t count;
  memcpy(&count, (char *)cfg + d->count_off, sizeof count);
  if (count)
    return 0;
  if (!(items = calloc(n, d->size)))
    return SP_E_NOMEM;
  for (size_t i = 0; i < n; i++) {
    const char *reason = d->parse(texts[i], items + i * d->size, buf, sizeof buf);
    assert(!reason);
    (void)reason;
  }
  memcpy(field, &items, sizeof items);
  memcpy((char *)cfg + d->count_off, &n, sizeof n);
  return 0;
}

static int finalize(struct config *cfg) {
  static const char *const listen[] = {"127.0.0.1:10025"};
  static const char *const allow[] = {"127.0.0.0/8", "::1/128"};
  int rc;
  if (!cfg->hostname[0]) {
    if (gethostname(cfg->hostname, sizeof cfg->hostname - 1) != 0 || !cfg->hostname[0])
      snprintf(cfg->hostname, sizeof cfg->hostname, "%s", "localhost");
    cfg->hostname[sizeof cfg->hostname - 1] = '\0';
  }
  if (!cfg->helo_name[0])
    memcpy(cfg->helo_name, cfg->hostname, sizeof cfg->helo_name);
  cfg->metrics_enabled = cfg->metrics_listen.salen > 0;
  if (!cfg->tlsrpt_organization[0])
    snprintf(cfg->tlsrpt_organization, sizeof cfg->tlsrpt_organization, "%s",
             cfg->hostname);
  if (!cfg->tlsrpt_contact[0])
    snprintf(cfg->tlsrpt_contact, sizeof cfg->tlsrpt_contact, "postmaster@%s",
             cfg->hostname);
  if ((rc = default_list(cfg, find_key(top_keys, "listen", 6), listen, 1)) < 0)
    return rc;
  return default_list(cfg, find_key(clients_keys, "allow", 5), allow, 2);
}

static void config_free(struct config *cfg) {
  if (!cfg)
    return;
  free(cfg->listen);
  free(cfg->allow);
  free(cfg->dns_servers);
  table_free(&cfg->policy_table);
  config__dkim_free(cfg);
  free(cfg);
}

/* Hands the collected errors to the caller; SP_E_NOMEM wins over SP_E_CONFIG. */
static int give_errors(struct config__errs *errs, int rc, char **errors) {
  if (errs->nomem)
    rc = SP_E_NOMEM;
  if (errors)
    *errors = config__errs_join(errs);
  return rc;
}

int config_load_buffer(const char *name, const char *yaml, size_t len,
                       struct config **out, char **errors) {
  struct config__errs errs = {.name = name};
  struct config__node *root = NULL;
  struct config *cfg = NULL;
  struct loader ld = {0};
  int rc;

  *out = NULL;
  if (errors)
    *errors = NULL;
  if (!(cfg = calloc(1, sizeof *cfg))) {
    rc = SP_E_NOMEM;
    goto out;
  }
  set_defaults(cfg);
  cfg->refs = 1;
  snprintf(cfg->path, sizeof cfg->path, "%s", name);
  if (len > CONFIG_MAX_SIZE) {
    config__errf(&errs, 0, 0, NULL, "larger than %d bytes", CONFIG_MAX_SIZE);
    rc = SP_E_CONFIG;
    goto out;
  }
  if ((rc = config__yaml_parse(&errs, yaml, len, &root)) < 0)
    goto out;
  ld.cfg = cfg;
  config__walk_init(&ld.w, &errs, NULL);
  if (root)
    walk_section(&ld, top_keys, root);
  rc = errs.n || errs.nomem ? SP_E_CONFIG : finalize(cfg);
out:
  config__node_free(root);
  if (rc < 0) {
    rc = give_errors(&errs, rc, errors);
    config_free(cfg);
  } else {
    *out = cfg;
  }
  config__errs_free(&errs);
  return rc;
}

int config_load(const char *file, struct config **out, char **errors) {
  struct config__errs errs = {.name = file};
  FILE *f = NULL;
  char *buf = NULL;
  size_t len = 0;
  int rc;

  *out = NULL;
  if (errors)
    *errors = NULL;
  /* One byte more than the limit, so an oversized file is seen as such. */
  if (!(buf = malloc(CONFIG_MAX_SIZE + 1))) {
    rc = SP_E_NOMEM;
    goto out;
  }
  if (!(f = fopen(file, "rb"))) {
    config__errf(&errs, 0, 0, NULL, "%s", strerror(errno));
    rc = give_errors(&errs, SP_E_CONFIG, errors);
    goto out;
  }
  len = fread(buf, 1, CONFIG_MAX_SIZE + 1, f);
  if (ferror(f)) {
    config__errf(&errs, 0, 0, NULL, "%s", strerror(errno));
    rc = give_errors(&errs, SP_E_CONFIG, errors);
    goto out;
  }
  rc = config_load_buffer(file, buf, len, out, errors);
out:
  if (f)
    fclose(f);
  free(buf);
  config__errs_free(&errs);
  return rc;
}

bool config_client_allowed(const struct config *cfg, const struct sockaddr *addr) {
  uint8_t bytes[16];
  int family;
  if (!cfg || !addr)
    return false;
  if (!config__sockaddr_bytes(addr, &family, bytes))
    return false;
  for (size_t i = 0; i < cfg->nallow; i++)
    if (config__cidr_match(&cfg->allow[i], family, bytes))
      return true;
  return false;
}

struct config *config_ref(struct config *cfg) {
  if (cfg)
    cfg->refs++;
  return cfg;
}

void config_unref(struct config *cfg) {
  if (cfg && --cfg->refs == 0)
    config_free(cfg);
}

struct dns_settings config_dns_settings(const struct config *cfg) {
  struct dns_settings ds = {
      .timeout_ms = cfg->dns_timeout_ms,
      .tries = cfg->dns_tries,
      .cache_size = cfg->dns_cache_size,
      .cache_max_ttl = cfg->dns_cache_max_ttl,
      .cache_negative_ttl = cfg->dns_cache_negative_ttl,
  };
  for (size_t i = 0; i < cfg->ndns_servers && i < DNS_SETTINGS_MAX_SERVERS; i++)
    ds.servers[ds.nservers++] = cfg->dns_servers[i].sa;
  return ds;
}
