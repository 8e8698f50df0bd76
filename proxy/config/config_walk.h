/* Internals of the config module: the dotted key path of the node a section parser is
 * checking, and errors reported under it. Not for use outside proxy/config*.c. */
#ifndef SP_CONFIG_WALK_H
#define SP_CONFIG_WALK_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/config/config_yaml.h"

/* Longest dotted path kept, NUL included; a longer one is cut short. */
#define CONFIG__WALK_PATH_SIZE 512
/* Longest key kept in the path (a whole domain name of the policy table), so one odd
 * key cannot crowd out the rest. */
#define CONFIG__WALK_SEGMENT_MAX 255

struct config__walk {
  struct config__errs *errs;
  char path[CONFIG__WALK_PATH_SIZE]; /* "outbound.tls.ca_file", "listen[2].path" */
  size_t len;
};

/* Starts at key, a path already made by a walk ("" or NULL: the document). */
void config__walk_init(struct config__walk *w, struct config__errs *errs,
                       const char *key);

/* Records "file:line:col: PATH: reason" at n; PATH is "document" at the top. */
void config__walk_err(struct config__walk *w, const struct config__node *n,
                      const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Appends ".seg" ("seg" at the top), at most CONFIG__WALK_SEGMENT_MAX bytes of it,
 * bytes that would garble a log line shown as '?'. Returns the length that
 * config__walk_pop restores. */
size_t config__walk_push(struct config__walk *w, const char *seg, size_t len);
/* Appends "[i]"; returns the length for config__walk_pop. */
size_t config__walk_push_index(struct config__walk *w, size_t i);
void config__walk_pop(struct config__walk *w, size_t old);

/* "a mapping", "a list" or "a scalar", for "expected X, not <kind>". */
const char *config__node_kind(const struct config__node *n);

/* False after reporting an alias or a tag, which the tree marks but no key accepts. */
bool config__walk_usable(struct config__walk *w, const struct config__node *n);

/* The text of a scalar with a value (maybe "") and no control characters, or NULL
 * after reporting why not. */
const char *config__walk_scalar(struct config__walk *w, const struct config__node *n);
/* The same, and "" is "a value is required" too. */
const char *config__walk_nonempty(struct config__walk *w, const struct config__node *n);

#endif
