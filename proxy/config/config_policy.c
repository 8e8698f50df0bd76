/* The policy keys of the config: the local policy table from YAML and from a
 * Postfix-syntax file. The table's own syntax is policy/table*.c. */
#include "proxy/config/config_policy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy/table.h"
#include "proxy/config/config_walk.h"
#include "proxy/core/obj.h"

/* ---- policy.table ---- */

enum { F_LEVEL, F_MATCH, F_FINGERPRINTS, F_PROTOCOLS, F_COUNT };
static const char *const field_names[F_COUNT] = {"level", "match", "fingerprints",
                                                 "protocols"};

/* Feeds each item of a list node to add. Returns false after any error. */
static bool
add_items(struct config__walk *c, const struct config__node *n, struct table_entry *e,
          int (*add)(struct table_entry *, const char *, size_t, char *, size_t)) {
  char err[256];
  bool ok = true;
  if (!config__walk_usable(c, n))
    return false;
  if (n->type != CONFIG__SEQ) {
    config__walk_err(c, n, "expected a list, not %s", config__node_kind(n));
    return false;
  }
  if (n->n == 0) {
    config__walk_err(c, n, "must not be empty");
    return false;
  }
  for (size_t i = 0; i < n->n; i++) {
    size_t mark = config__walk_push_index(c, i);
    const char *s = config__walk_nonempty(c, n->items[i]);
    if (!s)
      ok = false;
    else if (add(e, s, n->items[i]->len, err, sizeof err) < 0) {
      config__walk_err(c, n->items[i], "%s", err);
      ok = false;
    }
    config__walk_pop(c, mark);
  }
  return ok;
}

/* Finds the known keys of an entry mapping; reports unknown and repeated ones. */
static bool entry_fields(struct config__walk *c, const struct config__node *map,
                         const struct config__node *f[F_COUNT]) {
  unsigned first[F_COUNT] = {0};
  bool ok = true;
  for (size_t i = 0; i + 1 < map->n; i += 2) {
    const struct config__node *k = map->items[i];
    size_t mark = config__walk_push(c, k->str ? k->str : "", k->len), j = 0;
    if (!config__walk_usable(c, k) || k->type != CONFIG__SCALAR || k->len == 0) {
      if (!k->alias && !k->tagged)
        config__walk_err(c, k, "keys must be non-empty scalars");
      ok = false;
      config__walk_pop(c, mark);
      continue;
    }
    while (j < F_COUNT && !(strlen(field_names[j]) == k->len &&
                            memcmp(field_names[j], k->str, k->len) == 0))
      j++;
    if (j == F_COUNT)
      config__walk_err(c, k, "unknown key");
    else if (f[j])
      config__walk_err(c, k, "duplicate key (first at line %u)", first[j]);
    else {
      f[j] = map->items[i + 1];
      first[j] = k->line;
    }
    ok = ok && j < F_COUNT && f[j] == map->items[i + 1];
    config__walk_pop(c, mark);
  }
  return ok;
}

/* The mapping form {level, match, fingerprints, protocols}. */
static bool entry_from_map(struct config__walk *c, const struct config__node *map,
                           struct table_entry *e) {
  const struct config__node *f[F_COUNT] = {NULL};
  char err[256];
  const char *s;
  bool ok = entry_fields(c, map, f);
  size_t mark;
  if (!f[F_LEVEL]) {
    config__walk_err(c, map, "level is required");
    return false;
  }
  mark = config__walk_push(c, "level", 5);
  if ((s = config__walk_nonempty(c, f[F_LEVEL])) != NULL &&
      tls_level_parse(s, &e->level) < 0) {
    config__walk_err(
        c, f[F_LEVEL],
        "must be none, may, encrypt, dane, dane-only, fingerprint, verify or secure");
    s = NULL;
  }
  config__walk_pop(c, mark);
  if (!s)
    return false;
  if (f[F_MATCH]) {
    mark = config__walk_push(c, "match", 5);
    if (e->level != TLS_LEVEL_VERIFY && e->level != TLS_LEVEL_SECURE) {
      config__walk_err(c, f[F_MATCH], "only for levels verify and secure, not %s",
                       tls_level_name(e->level));
      ok = false;
    } else {
      ok = add_items(c, f[F_MATCH], e, table_add_match) && ok;
    }
    config__walk_pop(c, mark);
  }
  if (f[F_FINGERPRINTS]) {
    mark = config__walk_push(c, "fingerprints", 12);
    if (e->level != TLS_LEVEL_FINGERPRINT) {
      config__walk_err(c, f[F_FINGERPRINTS], "only for level fingerprint, not %s",
                       tls_level_name(e->level));
      ok = false;
    } else {
      ok = add_items(c, f[F_FINGERPRINTS], e, table_add_fingerprint) && ok;
    }
    config__walk_pop(c, mark);
  }
  if (f[F_PROTOCOLS]) {
    mark = config__walk_push(c, "protocols", 9);
    if (!(s = config__walk_nonempty(c, f[F_PROTOCOLS])))
      ok = false;
    else if (table_parse_protocols(s, f[F_PROTOCOLS]->len, &e->min_protocol, err,
                                   sizeof err) < 0) {
      config__walk_err(c, f[F_PROTOCOLS], "%s", err);
      ok = false;
    }
    config__walk_pop(c, mark);
  }
  if (ok && table_check_entry(e, err, sizeof err) < 0) {
    config__walk_err(c, map, "%s", err);
    ok = false;
  }
  return ok;
}

/* The entry with this key, or NULL. */
static const struct table_entry *entry_named(const struct table *t, const char *key,
                                             size_t *pos) {
  for (size_t i = 0; i < t->n; i++) {
    if (strcmp(t->entries[i].key, key) == 0) {
      *pos = i;
      return &t->entries[i];
    }
  }
  return NULL;
}

/* Adds e from policy.table. Entries before from_file came from policy.table_file. */
static void add_yaml_entry(struct config__walk *c, const struct config__node *k,
                           const struct table_entry *e, struct config *cfg,
                           size_t from_file) {
  const struct table_entry *old;
  char err[256];
  size_t pos;
  int rc = table_add(&cfg->policy_table, e, err, sizeof err);
  if (rc == -2)
    c->errs->nomem = true;
  if (rc != -1)
    return;
  if (!(old = entry_named(&cfg->policy_table, e->key, &pos)))
    config__walk_err(c, k, "%s", err);
  else if (pos < from_file)
    config__walk_err(c, k, "duplicate key (also in %s:%u)", cfg->policy_table_file,
                     old->line);
  else
    config__walk_err(c, k, "duplicate key (first at line %u)", old->line);
}

static void table_pair(struct config__walk *c, const struct config__node *k,
                       const struct config__node *v, struct config *cfg,
                       size_t from_file) {
  struct table_entry e;
  char err[256];
  bool ok;
  memset(&e, 0, sizeof e);
  if (!config__walk_usable(c, k) || k->type != CONFIG__SCALAR || k->null ||
      k->len == 0) {
    if (!k->alias && !k->tagged)
      config__walk_err(c, k, "keys must be non-empty scalars");
    return;
  }
  if (table_parse_key(k->str, k->len, e.key, err, sizeof err) < 0) {
    config__walk_err(c, k, "%s", err);
    return;
  }
  if (!config__walk_usable(c, v))
    return;
  if (v->type == CONFIG__MAP) {
    ok = entry_from_map(c, v, &e);
  } else if (v->type == CONFIG__SCALAR && !v->null) {
    ok = table_parse_value(v->str, v->len, &e, err, sizeof err) == 0;
    if (!ok)
      config__walk_err(c, v, "%s", err);
  } else if (v->type == CONFIG__SCALAR) {
    config__walk_err(c, v, "a policy is required");
    ok = false;
  } else {
    config__walk_err(c, v, "expected a policy string or a mapping, not a list");
    ok = false;
  }
  e.line = k->line;
  if (ok)
    add_yaml_entry(c, k, &e, cfg, from_file);
}

void config__policy_table(struct config__errs *errs, const char *key,
                          const struct config__node *n, struct config *cfg) {
  struct config__walk c;
  size_t from_file = cfg->policy_table.n;
  config__walk_init(&c, errs, key);
  if (n->type == CONFIG__SCALAR && n->null)
    return;
  if (n->type != CONFIG__MAP) {
    config__walk_err(&c, n, "expected a mapping of domains to policies, not %s",
                     config__node_kind(n));
    return;
  }
  for (size_t i = 0; i + 1 < n->n; i += 2) {
    const struct config__node *k = n->items[i];
    size_t mark =
        config__walk_push(&c, k->type == CONFIG__SCALAR ? k->str : "", k->len);
    table_pair(&c, k, n->items[i + 1], cfg, from_file);
    config__walk_pop(&c, mark);
  }
}

/* ---- policy.table_file ---- */

/* Reads path whole into *out (malloc'd); NULL or the reason it cannot. */
static const char *read_whole(const char *path, char **out, size_t *len, char *buf,
                              size_t cap) {
  struct stat st;
  char *data = NULL;
  size_t want, got = 0;
  ssize_t r;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) != 0) {
    snprintf(buf, cap, "cannot read %s: %s", path, strerror(errno));
    goto fail;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(buf, cap, "%s: not a regular file", path);
    goto fail;
  }
  want = st.st_size > CONFIG__TABLE_FILE_MAX ? CONFIG__TABLE_FILE_MAX + 1
                                             : (size_t)st.st_size + 1;
  if (!(data = malloc(want))) {
    snprintf(buf, cap, "%s: out of memory", path);
    goto fail;
  }
  while (got < want && (r = read(fd, data + got, want - got)) != 0) {
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      snprintf(buf, cap, "cannot read %s: %s", path, strerror(errno));
      goto fail;
    }
    got += (size_t)r;
  }
  if (got > CONFIG__TABLE_FILE_MAX) {
    snprintf(buf, cap, "%s: larger than %d bytes", path, CONFIG__TABLE_FILE_MAX);
    goto fail;
  }
  close(fd);
  *out = data;
  *len = got;
  return NULL;
fail:
  if (fd >= 0)
    close(fd);
  free(data);
  return buf;
}

#define FILE_CTX_MAGIC 0x7074666cu /* "ptfl" */

/* On the stack while table_parse_file() runs, which hands it back to on_file_error. */
struct file_ctx {
  uint32_t magic;
  struct config__walk *c;
  const struct config__node *n;
  const char *file;
};

static void on_file_error(void *arg, unsigned line, const char *reason) {
  struct file_ctx *f;
  CAST_OBJ_NOTNULL(f, arg, FILE_CTX_MAGIC);
  config__walk_err(f->c, f->n, "%s:%u: %s", f->file, line, reason);
}

/* Adds the file's entries to the table, which holds only policy.table's so far. */
static void merge_file(struct config__walk *c, const struct config__node *n,
                       const char *file, const struct table *from, struct config *cfg) {
  for (size_t i = 0; i < from->n; i++) {
    const struct table_entry *e = &from->entries[i], *old;
    char err[256];
    size_t pos;
    int rc = table_add(&cfg->policy_table, e, err, sizeof err);
    if (rc == -2) {
      c->errs->nomem = true;
      return;
    }
    if (rc == 0)
      continue;
    if ((old = entry_named(&cfg->policy_table, e->key, &pos)) != NULL)
      config__walk_err(c, n,
                       "%s:%u: duplicate key \"%s\" (also in policy.table at line %u)",
                       file, e->line, e->key, old->line);
    else
      config__walk_err(c, n, "%s:%u: %s", file, e->line, err);
  }
}

void config__policy_table_file(struct config__errs *errs, const char *key,
                               const struct config__node *n, struct config *cfg) {
  struct config__walk c;
  struct table from;
  char *data = NULL, buf[1200];
  const char *s, *reason;
  size_t len;
  config__walk_init(&c, errs, key);
  if (!(s = config__walk_nonempty(&c, n)))
    return;
  if (n->len >= sizeof cfg->policy_table_file) {
    config__walk_err(&c, n, "longer than %zu characters",
                     sizeof cfg->policy_table_file - 1);
    return;
  }
  if ((reason = read_whole(s, &data, &len, buf, sizeof buf)) != NULL) {
    config__walk_err(&c, n, "%s", reason);
    return;
  }
  memcpy(cfg->policy_table_file, s, n->len + 1);
  table_init(&from);
  struct file_ctx f = {.magic = FILE_CTX_MAGIC, .c = &c, .n = n, .file = s};
  table_parse_file(&from, data, len, on_file_error, &f);
  free(data);
  merge_file(&c, n, s, &from, cfg);
  table_free(&from);
}

/* ---- outbound.tls.default_level ---- */

const char *config__parse_level(const char *s, void *dst, char *buf, size_t cap) {
  enum tls_level level;
  (void)buf;
  (void)cap;
  if (tls_level_parse(s, &level) < 0)
    return "must be none, may, encrypt, dane, dane-only, verify or secure";
  if (level == TLS_LEVEL_FINGERPRINT)
    return "fingerprint needs per-domain fingerprints: set it in policy.table";
  *(enum tls_level *)dst = level;
  return NULL;
}
