/* Internals of the config module (config_yaml.c, config.c): a YAML document read into
 * a tree of nodes that keep their line and column, and the list of errors a load
 * collects. Not for use outside proxy/config*.c. */
#ifndef SP_CONFIG_YAML_H
#define SP_CONFIG_YAML_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* Deepest nesting of mappings and sequences accepted; deeper input is one error. */
#define CONFIG__MAX_DEPTH 32
/* After this many errors the load records "too many errors" and stops recording. */
#define CONFIG__MAX_ERRORS 100

enum config__node_type { CONFIG__SCALAR, CONFIG__SEQ, CONFIG__MAP };

struct config__node {
  enum config__node_type type;
  unsigned line, col; /* 1-based, where the node starts */
  /* CONFIG__SCALAR: owned, NUL-terminated text of len bytes (may hold NULs). */
  char *str;
  size_t len;
  bool plain;  /* written without quotes or block indicators */
  bool null;   /* plain "", "~", "null", "Null", "NULL", or an alias stand-in */
  bool alias;  /* stands for an alias (*name), which the schema rejects */
  bool tagged; /* had an explicit tag (!!str, !foo), which the schema rejects */
  /* CONFIG__SEQ: n items. CONFIG__MAP: n/2 pairs, key at 2i and value at 2i + 1.
   * The array and every child are owned by this node. */
  struct config__node **items;
  size_t n;
};

struct config__err {
  unsigned line, col; /* 0 for errors about the whole file */
  size_t seq;         /* order of recording, to keep sorting stable */
  char *text;         /* owned, the whole line without '\n' */
};

/* Errors of one load. name is borrowed from the caller for the load's duration. */
struct config__errs {
  const char *name;
  struct config__err *v; /* owned */
  size_t n, cap;
  bool nomem;  /* an allocation failed; the load must return SP_E_NOMEM */
  bool capped; /* CONFIG__MAX_ERRORS reached */
};

/* Records "name:line:col: key: reason" ("name: reason" when line is 0, and without
 * "key: " when key is NULL). Failure to allocate sets errs->nomem. */
void config__errf(struct config__errs *errs, unsigned line, unsigned col,
                  const char *key, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The same from a va_list, for reporters that add the key themselves. */
void config__verrf(struct config__errs *errs, unsigned line, unsigned col,
                   const char *key, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

/* All errors sorted by position (recording order among equals), each ending in '\n'.
 * malloc'd, the caller frees; NULL when there are none or on allocation failure. */
char *config__errs_join(const struct config__errs *errs);
void config__errs_free(struct config__errs *errs);

/* Parses one YAML document into *root (owned by the caller; NULL for an empty stream).
 * Aliases and tags are not errors here: they are marked on the nodes (an alias becomes
 * a null scalar) for the validator to reject with the key's path. Returns 0,
 * SP_E_CONFIG after a syntax error, too deep a nesting or a second document (reported
 * in errs; *root is NULL), or SP_E_NOMEM. */
int config__yaml_parse(struct config__errs *errs, const char *buf, size_t len,
                       struct config__node **root);
void config__node_free(struct config__node *node);

#endif
