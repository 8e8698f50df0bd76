/* The cursor of the node walk: the dotted key path, errors reported under it, and the
 * checks every section makes of a node before reading it. */
#include "proxy/config/config_walk.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "policy/chars.h"

void config__walk_init(struct config__walk *w, struct config__errs *errs,
                       const char *key) {
  size_t len = key ? strlen(key) : 0;
  w->errs = errs;
  w->len = len < sizeof w->path ? len : sizeof w->path - 1;
  memcpy(w->path, key ? key : "", w->len);
  w->path[w->len] = '\0';
}

void config__walk_err(struct config__walk *w, const struct config__node *n,
                      const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  /* Only the root node has no key to name. */
  config__verrf(w->errs, n->line, n->col, w->len ? w->path : "document", fmt, ap);
  va_end(ap);
}

size_t config__walk_push(struct config__walk *w, const char *seg, size_t len) {
  size_t old = w->len, room = sizeof w->path - 1;
  if (old && old < room)
    w->path[w->len++] = '.';
  if (len > CONFIG__WALK_SEGMENT_MAX)
    len = CONFIG__WALK_SEGMENT_MAX;
  for (size_t i = 0; i < len && w->len < room; i++) {
    unsigned char c = (unsigned char)seg[i];
    w->path[w->len++] = chars_vchar(c) ? (char)c : '?';
  }
  w->path[w->len] = '\0';
  return old;
}

size_t config__walk_push_index(struct config__walk *w, size_t i) {
  size_t old = w->len, room = sizeof w->path - old;
  int n = snprintf(w->path + old, room, "[%zu]", i);
  if (n > 0)
    w->len += (size_t)n < room ? (size_t)n : room - 1;
  return old;
}

void config__walk_pop(struct config__walk *w, size_t old) {
  w->len = old;
  w->path[old] = '\0';
}

const char *config__node_kind(const struct config__node *n) {
  return n->type == CONFIG__MAP   ? "a mapping"
         : n->type == CONFIG__SEQ ? "a list"
                                  : "a scalar";
}

bool config__walk_usable(struct config__walk *w, const struct config__node *n) {
  if (n->alias)
    config__walk_err(w, n, "aliases are not supported");
  else if (n->tagged)
    config__walk_err(w, n, "tags are not supported");
  return !n->alias && !n->tagged;
}

static const char *scalar(struct config__walk *w, const struct config__node *n,
                          bool nonempty) {
  if (!config__walk_usable(w, n))
    return NULL;
  if (n->type != CONFIG__SCALAR) {
    config__walk_err(w, n, "expected a single value, not %s", config__node_kind(n));
    return NULL;
  }
  if (n->null || (nonempty && n->len == 0)) {
    config__walk_err(w, n, "a value is required");
    return NULL;
  }
  for (size_t i = 0; i < n->len; i++) {
    unsigned char c = (unsigned char)n->str[i];
    if (c < 0x20 || c == 0x7f) {
      config__walk_err(w, n, "control characters are not allowed");
      return NULL;
    }
  }
  return n->str;
}

const char *config__walk_scalar(struct config__walk *w, const struct config__node *n) {
  return scalar(w, n, false);
}

const char *config__walk_nonempty(struct config__walk *w,
                                  const struct config__node *n) {
  return scalar(w, n, true);
}
