#include "proxy/config/config_yaml.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "proxy/core/error.h"

/* ---- errors ---- */

static int errs_push(struct config__errs *errs, unsigned line, unsigned col,
                     char *text) {
  if (errs->n == errs->cap) {
    size_t cap = errs->cap ? errs->cap * 2 : 8;
    struct config__err *v = realloc(errs->v, cap * sizeof *v);
    if (!v) {
      free(text);
      errs->nomem = true;
      return SP_E_NOMEM;
    }
    errs->v = v;
    errs->cap = cap;
  }
  errs->v[errs->n] = (struct config__err){line, col, errs->n, text};
  errs->n++;
  return 0;
}

static void errs_vadd(struct config__errs *errs, unsigned line, unsigned col,
                      const char *key, const char *fmt, va_list ap) {
  char *reason = NULL, *text = NULL;
  int rc;
  if (vasprintf(&reason, fmt, ap) < 0) {
    reason = NULL;
    goto nomem;
  }
  if (line == 0)
    rc = asprintf(&text, "%s: %s", errs->name, reason);
  else if (!key)
    rc = asprintf(&text, "%s:%u:%u: %s", errs->name, line, col, reason);
  else
    rc = asprintf(&text, "%s:%u:%u: %s: %s", errs->name, line, col, key, reason);
  if (rc < 0)
    goto nomem;
  free(reason);
  errs_push(errs, line, col, text);
  return;
nomem:
  free(reason);
  errs->nomem = true;
}

void config__verrf(struct config__errs *errs, unsigned line, unsigned col,
                   const char *key, const char *fmt, va_list ap) {
  if (errs->capped)
    return;
  if (errs->n == CONFIG__MAX_ERRORS) {
    errs->capped = true;
    key = NULL;
    fmt = "too many errors, giving up"; /* reads none of ap */
  }
  errs_vadd(errs, line, col, key, fmt, ap);
}

void config__errf(struct config__errs *errs, unsigned line, unsigned col,
                  const char *key, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  config__verrf(errs, line, col, key, fmt, ap);
  va_end(ap);
}

static int err_cmp(const void *a, const void *b) {
  const struct config__err *x = a, *y = b;
  if (x->line != y->line)
    return x->line < y->line ? -1 : 1;
  if (x->col != y->col)
    return x->col < y->col ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

char *config__errs_join(const struct config__errs *errs) {
  struct config__err *sorted = NULL;
  char *out = NULL;
  size_t total = 1, off = 0;
  if (errs->n == 0)
    return NULL;
  sorted = malloc(errs->n * sizeof *sorted);
  if (!sorted)
    goto out;
  memcpy(sorted, errs->v, errs->n * sizeof *sorted);
  qsort(sorted, errs->n, sizeof *sorted, err_cmp);
  for (size_t i = 0; i < errs->n; i++)
    total += strlen(sorted[i].text) + 1;
  out = malloc(total);
  if (!out)
    goto out;
  for (size_t i = 0; i < errs->n; i++) {
    size_t len = strlen(sorted[i].text);
    memcpy(out + off, sorted[i].text, len);
    off += len;
    out[off++] = '\n';
  }
  out[off] = '\0';
out:
  free(sorted);
  return out;
}

void config__errs_free(struct config__errs *errs) {
  for (size_t i = 0; i < errs->n; i++)
    free(errs->v[i].text);
  free(errs->v);
  errs->v = NULL;
  errs->n = errs->cap = 0;
}

/* ---- nodes ---- */

void config__node_free(struct config__node *node) {
  if (!node)
    return;
  for (size_t i = 0; i < node->n; i++)
    config__node_free(node->items[i]);
  free(node->items);
  free(node->str);
  free(node);
}

static struct config__node *node_new(enum config__node_type type, yaml_mark_t mark) {
  struct config__node *node = calloc(1, sizeof *node);
  if (!node)
    return NULL;
  node->type = type;
  node->line = (unsigned)mark.line + 1;
  node->col = (unsigned)mark.column + 1;
  return node;
}

static bool is_null_text(const char *s, size_t len) {
  static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
  for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
    if (len == strlen(nulls[i]) && memcmp(s, nulls[i], len) == 0)
      return true;
  return false;
}

static struct config__node *scalar_new(const yaml_event_t *ev) {
  struct config__node *node = node_new(CONFIG__SCALAR, ev->start_mark);
  size_t len = ev->data.scalar.length;
  if (!node)
    return NULL;
  node->str = malloc(len + 1);
  if (!node->str) {
    free(node);
    return NULL;
  }
  memcpy(node->str, ev->data.scalar.value, len);
  node->str[len] = '\0';
  node->len = len;
  node->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
  node->null = node->plain && is_null_text(node->str, len);
  node->tagged = ev->data.scalar.tag != NULL;
  return node;
}

/* A null scalar standing in for an alias; the validator rejects it where it is used. */
static struct config__node *alias_new(yaml_mark_t mark) {
  struct config__node *node = node_new(CONFIG__SCALAR, mark);
  if (!node)
    return NULL;
  node->str = calloc(1, 1);
  if (!node->str) {
    free(node);
    return NULL;
  }
  node->plain = node->null = node->alias = true;
  return node;
}

/* On success the parent owns child; on failure the caller still does. */
static int node_append(struct config__node *parent, struct config__node *child) {
  /* Capacity is implied by n: 4, then doubling at each power of two. */
  if (parent->n == 0 || (parent->n >= 4 && (parent->n & (parent->n - 1)) == 0)) {
    size_t cap = parent->n ? parent->n * 2 : 4;
    struct config__node **items = realloc(parent->items, cap * sizeof *items);
    if (!items)
      return SP_E_NOMEM;
    parent->items = items;
  }
  parent->items[parent->n++] = child;
  return 0;
}

/* ---- libyaml events to nodes ---- */

struct builder {
  struct config__errs *errs;
  struct config__node *root;
  struct config__node *stack[CONFIG__MAX_DEPTH];
  size_t depth;
  unsigned docs;
};

static void line_col_at(const char *buf, size_t len, size_t offset, unsigned *line,
                        unsigned *col) {
  *line = 1;
  *col = 1;
  for (size_t i = 0; i < offset && i < len; i++) {
    if (buf[i] == '\n') {
      ++*line;
      *col = 1;
    } else {
      ++*col;
    }
  }
}

static int report_parser_error(struct builder *b, const yaml_parser_t *p,
                               const char *buf, size_t len) {
  const char *problem = p->problem ? p->problem : "unknown error";
  unsigned line, col;
  switch (p->error) {
  case YAML_MEMORY_ERROR:
    return SP_E_NOMEM;
  case YAML_READER_ERROR:
    /* libyaml gives reader errors as a byte offset, not a mark. */
    line_col_at(buf, len, p->problem_offset, &line, &col);
    config__errf(b->errs, line, col, "syntax error", "%s", problem);
    return SP_E_CONFIG;
  default:
    line = (unsigned)p->problem_mark.line + 1;
    col = (unsigned)p->problem_mark.column + 1;
    if (p->context)
      config__errf(b->errs, line, col, "syntax error", "%s (%s)", problem, p->context);
    else
      config__errf(b->errs, line, col, "syntax error", "%s", problem);
    return SP_E_CONFIG;
  }
}

/* Hangs node under the open container, or makes it the root. Takes node either way. */
static int builder_add(struct builder *b, struct config__node *node) {
  if (!node)
    return SP_E_NOMEM;
  if (b->depth == 0) {
    config__node_free(b->root); /* cannot happen: one root per document */
    b->root = node;
    return 0;
  }
  if (node_append(b->stack[b->depth - 1], node) < 0) {
    config__node_free(node);
    return SP_E_NOMEM;
  }
  return 0;
}

static int builder_open(struct builder *b, const yaml_event_t *ev,
                        enum config__node_type type, const yaml_char_t *tag) {
  struct config__node *node;
  int rc;
  if (b->depth == CONFIG__MAX_DEPTH) {
    config__errf(b->errs, (unsigned)ev->start_mark.line + 1,
                 (unsigned)ev->start_mark.column + 1, "syntax error",
                 "nested deeper than %d levels", CONFIG__MAX_DEPTH);
    return SP_E_CONFIG;
  }
  node = node_new(type, ev->start_mark);
  if (node)
    node->tagged = tag != NULL;
  if ((rc = builder_add(b, node)) < 0)
    return rc;
  b->stack[b->depth++] = node;
  return 0;
}

static int builder_event(struct builder *b, const yaml_event_t *ev) {
  unsigned line = (unsigned)ev->start_mark.line + 1,
           col = (unsigned)ev->start_mark.column + 1;
  switch (ev->type) {
  case YAML_DOCUMENT_START_EVENT:
    if (++b->docs > 1) {
      config__errf(b->errs, line, col, "syntax error",
                   "only one YAML document is allowed");
      return SP_E_CONFIG;
    }
    return 0;
  case YAML_ALIAS_EVENT:
    return builder_add(b, alias_new(ev->start_mark));
  case YAML_SCALAR_EVENT:
    return builder_add(b, scalar_new(ev));
  case YAML_SEQUENCE_START_EVENT:
    return builder_open(b, ev, CONFIG__SEQ, ev->data.sequence_start.tag);
  case YAML_MAPPING_START_EVENT:
    return builder_open(b, ev, CONFIG__MAP, ev->data.mapping_start.tag);
  case YAML_SEQUENCE_END_EVENT:
  case YAML_MAPPING_END_EVENT:
    if (b->depth > 0)
      b->depth--;
    return 0;
  default:
    return 0;
  }
}

int config__yaml_parse(struct config__errs *errs, const char *buf, size_t len,
                       struct config__node **root) {
  struct builder b = {.errs = errs};
  yaml_parser_t parser;
  yaml_event_t ev;
  bool done = false;
  int rc = 0;

  *root = NULL;
  if (!yaml_parser_initialize(&parser))
    return SP_E_NOMEM;
  yaml_parser_set_input_string(&parser, (const unsigned char *)(buf ? buf : ""),
                               buf ? len : 0);
  while (!done) {
    if (!yaml_parser_parse(&parser, &ev)) {
      rc = report_parser_error(&b, &parser, buf, len);
      goto out;
    }
    done = ev.type == YAML_STREAM_END_EVENT;
    rc = builder_event(&b, &ev);
    yaml_event_delete(&ev);
    if (rc < 0)
      goto out;
  }
out:
  yaml_parser_delete(&parser);
  if (rc < 0) {
    config__node_free(b.root);
    return rc;
  }
  *root = b.root;
  return 0;
}
