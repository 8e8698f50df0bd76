/* libFuzzer target: the Postfix table-file reader (lines, continuations, keys, levels,
 * attributes, fingerprints, protocols) on arbitrary input, then lookups. Every entry
 * added must be well formed; every error must come with a line inside the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/table.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct errors {
  unsigned lines; /* lines in the input */
  int count;
};

static void on_error(void *arg, unsigned line, const char *reason) {
  struct errors *e = arg;
  if (line == 0 || line > e->lines || !reason[0] || strchr(reason, '\n'))
    abort();
  e->count++;
}

static void check_entry(const struct table_entry *e) {
  size_t len = strnlen(e->key, sizeof e->key);
  if (len == 0 || len > TABLE_NAME_MAX || e->nmatch > TABLE_MAX_MATCH ||
      e->nfingerprints > TABLE_MAX_MATCH)
    abort();
  for (size_t i = 0; i < len; i++)
    if (e->key[i] >= 'A' && e->key[i] <= 'Z')
      abort();
  if (e->min_protocol != 0 && e->min_protocol != 0x0303 && e->min_protocol != 0x0304)
    abort();
  if ((e->level == TLS_LEVEL_FINGERPRINT) != (e->nfingerprints > 0))
    abort();
  if (e->nmatch && e->level != TLS_LEVEL_VERIFY && e->level != TLS_LEVEL_SECURE)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const names[] = {"example.com", "mx.example.com",
                                      "a.b.example.net", "localhost", "x.y.z"};
  struct errors errs = {.lines = 1};
  struct table t;
  for (size_t i = 0; i < size; i++)
    errs.lines += data[i] == '\n';
  table_init(&t);
  int n = table_parse_file(&t, (const char *)data, size, on_error, &errs);
  if (n != errs.count || n < 0)
    abort();
  for (size_t i = 0; i < t.n; i++) {
    check_entry(&t.entries[i]);
    /* Every key finds itself; a suffix key through a name under it, unless that
     * name has an exact entry of its own. */
    char name[TABLE_NAME_MAX + 3] = "x";
    const char *key = t.entries[i].key, *probe = key;
    if (key[0] == '.') {
      memcpy(name + 1, key, strlen(key) + 1);
      probe = name;
    }
    const struct table_entry *found = table_lookup(&t, probe);
    if (found != &t.entries[i] &&
        !(probe == name && found && !strcmp(found->key, name)))
      abort();
  }
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const struct table_entry *e = table_lookup(&t, names[i]);
    if (e && (e < t.entries || e >= t.entries + t.n))
      abort();
  }
  table_free(&t);
  return 0;
}
