/* The policy table's storage (entries plus a hash index of their keys), lookup and
 * the reader of Postfix table files. Key and value syntax: table_value.c. */
#include "policy/table.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest logical line (an entry with its continuation lines) of a table file. */
#define TABLE_LINE_MAX 65536

void table_init(struct table *t) {
  memset(t, 0, sizeof *t);
}

void table_free(struct table *t) {
  free(t->entries);
  free(t->index);
  table_init(t);
}

/* FNV-1a: the keys are the admin's own names, so flooding is not a concern. */
static uint32_t key_hash(const char *s, size_t len) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++)
    h = (h ^ (uint8_t)s[i]) * 16777619u;
  return h;
}

/* The slot holding key, or the free slot where it would go. index_cap must be > 0. */
static size_t index_slot(const struct table *t, const char *key, size_t len) {
  size_t mask = t->index_cap - 1, i = key_hash(key, len) & mask;
  while (t->index[i]) {
    const char *k = t->entries[t->index[i] - 1].key;
    if (strncmp(k, key, len) == 0 && k[len] == '\0')
      return i;
    i = (i + 1) & mask;
  }
  return i;
}

static const struct table_entry *find(const struct table *t, const char *key,
                                      size_t len) {
  size_t slot;
  if (!t->index_cap)
    return NULL;
  slot = index_slot(t, key, len);
  return t->index[slot] ? &t->entries[t->index[slot] - 1] : NULL;
}

/* Keeps the index at most half full. */
static int index_reserve(struct table *t, size_t n) {
  struct table grown = *t;
  size_t cap = t->index_cap ? t->index_cap : 64;
  while (cap / 2 < n)
    cap *= 2;
  if (cap == t->index_cap)
    return 0;
  if (!(grown.index = calloc(cap, sizeof *grown.index)))
    return -2;
  grown.index_cap = cap;
  for (size_t i = 0; i < t->n; i++) {
    const char *k = t->entries[i].key;
    grown.index[index_slot(&grown, k, strlen(k))] = (uint32_t)(i + 1);
  }
  free(t->index);
  t->index = grown.index;
  t->index_cap = cap;
  return 0;
}

static int entries_reserve(struct table *t, size_t n) {
  struct table_entry *grown;
  size_t cap = t->cap ? t->cap : 16;
  while (cap < n)
    cap *= 2;
  if (cap > TABLE_MAX_ENTRIES)
    cap = TABLE_MAX_ENTRIES;
  if (cap == t->cap)
    return 0;
  if (!(grown = realloc(t->entries, cap * sizeof *grown)))
    return -2;
  t->entries = grown;
  t->cap = cap;
  return 0;
}

int table_add(struct table *t, const struct table_entry *e, char *err, size_t errlen) {
  size_t len = strnlen(e->key, sizeof e->key);
  const struct table_entry *old;
  if (len == 0 || len > TABLE_NAME_MAX) {
    snprintf(err, errlen, "empty or unterminated key");
    return -1;
  }
  if ((old = find(t, e->key, len)) != NULL) {
    if (old->line)
      snprintf(err, errlen, "duplicate key \"%s\" (first at line %u)", old->key,
               old->line);
    else
      snprintf(err, errlen, "duplicate key \"%s\"", old->key);
    return -1;
  }
  if (t->n == TABLE_MAX_ENTRIES) {
    snprintf(err, errlen, "more than %d entries", TABLE_MAX_ENTRIES);
    return -1;
  }
  if (index_reserve(t, t->n + 1) < 0 || entries_reserve(t, t->n + 1) < 0) {
    snprintf(err, errlen, "out of memory");
    return -2;
  }
  t->entries[t->n] = *e;
  t->index[index_slot(t, e->key, len)] = (uint32_t)(t->n + 1);
  t->n++;
  return 0;
}

/* Postfix's order: the exact name, then ".parent" keys from the nearest parent up. */
const struct table_entry *table_lookup(const struct table *t, const char *domain) {
  char name[TABLE_NAME_MAX + 2];
  const struct table_entry *e;
  size_t len = strnlen(domain, sizeof name);
  if (len && domain[len - 1] == '.')
    len--;
  if (len == 0 || len > TABLE_NAME_MAX || domain[0] == '.' || t->n == 0)
    return NULL;
  for (size_t i = 0; i < len; i++)
    name[i] = domain[i] >= 'A' && domain[i] <= 'Z' ? (char)(domain[i] + 32) : domain[i];
  name[len] = '\0';
  if ((e = find(t, name, len)) != NULL)
    return e;
  for (size_t i = 1; i < len; i++)
    if (name[i] == '.' && (e = find(t, name + i, len - i)) != NULL)
      return e;
  return NULL;
}

/* ---- table files ---- */

struct reader {
  struct table *t;
  void (*on_error)(void *arg, unsigned line, const char *reason);
  void *arg;
  int nerrors;
  char *buf; /* the logical line being gathered */
  size_t len, cap;
  unsigned line; /* where it started */
  bool active, too_long, nomem;
};

__attribute__((format(printf, 3, 4))) static void
report(struct reader *r, unsigned line, const char *fmt, ...) {
  char reason[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  r->nerrors++;
  if (r->on_error)
    r->on_error(r->arg, line, reason);
}

static void append(struct reader *r, const char *s, size_t len) {
  if (r->too_long || r->nomem)
    return;
  if (r->len + len > TABLE_LINE_MAX) {
    r->too_long = true;
    return;
  }
  if (r->len + len > r->cap) {
    size_t cap = r->cap ? r->cap : 256;
    char *grown;
    while (cap < r->len + len)
      cap *= 2;
    if (!(grown = realloc(r->buf, cap))) {
      r->nomem = true;
      return;
    }
    r->buf = grown;
    r->cap = cap;
  }
  memcpy(r->buf + r->len, s, len);
  r->len += len;
}

static bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

/* Parses the gathered logical line "key value..." into the table. */
static void finish(struct reader *r) {
  struct table_entry e;
  char err[512];
  size_t klen = 0, vpos;
  int rc;
  if (!r->active)
    return;
  r->active = false;
  if (r->nomem || r->too_long) {
    if (r->nomem)
      report(r, r->line, "out of memory");
    else
      report(r, r->line, "entry longer than %d bytes", TABLE_LINE_MAX);
    return;
  }
  memset(&e, 0, sizeof e);
  while (klen < r->len && !is_blank(r->buf[klen]))
    klen++;
  for (vpos = klen; vpos < r->len && is_blank(r->buf[vpos]);)
    vpos++;
  if (table_parse_key(r->buf, klen, e.key, err, sizeof err) < 0)
    report(r, r->line, "%s", err);
  else if (vpos == r->len)
    report(r, r->line, "key \"%s\" has no policy (a level is required)", e.key);
  else if (table_parse_value(r->buf + vpos, r->len - vpos, &e, err, sizeof err) < 0)
    report(r, r->line, "%s", err);
  else {
    e.line = r->line;
    if ((rc = table_add(r->t, &e, err, sizeof err)) < 0)
      report(r, r->line, "%s", err);
  }
}

/* One physical line, without its '\n'. Postfix's rules: blank lines and lines whose
 * first non-blank character is '#' are skipped anywhere; a line starting with a blank
 * continues the entry before it. */
static void physical_line(struct reader *r, unsigned lineno, const char *s,
                          size_t len) {
  size_t first = 0;
  if (len && s[len - 1] == '\r')
    len--;
  while (first < len && is_blank(s[first]))
    first++;
  if (first == len || s[first] == '#')
    return;
  if (first > 0) {
    if (r->active)
      append(r, s, len);
    else
      report(r, lineno,
             "continuation line (starting with a blank) without an "
             "entry before it");
    return;
  }
  finish(r);
  r->active = true;
  r->too_long = r->nomem = false;
  r->len = 0;
  r->line = lineno;
  append(r, s, len);
}

int table_parse_file(struct table *t, const char *text, size_t len,
                     void (*on_error)(void *arg, unsigned line, const char *reason),
                     void *arg) {
  struct reader r = {.t = t, .on_error = on_error, .arg = arg};
  unsigned lineno = 0;
  for (size_t pos = 0; pos < len;) {
    const char *nl = memchr(text + pos, '\n', len - pos);
    size_t end = nl ? (size_t)(nl - text) : len;
    physical_line(&r, ++lineno, text + pos, end - pos);
    pos = end + 1;
  }
  finish(&r);
  free(r.buf);
  return r.nerrors;
}
