#include "policy/level.h"

#include <strings.h>

static const char *const level_names[] = {
    [TLS_LEVEL_NONE] = "none",           [TLS_LEVEL_MAY] = "may",
    [TLS_LEVEL_ENCRYPT] = "encrypt",     [TLS_LEVEL_DANE] = "dane",
    [TLS_LEVEL_DANE_ONLY] = "dane-only", [TLS_LEVEL_FINGERPRINT] = "fingerprint",
    [TLS_LEVEL_VERIFY] = "verify",       [TLS_LEVEL_SECURE] = "secure",
};

#define LEVEL_COUNT (sizeof level_names / sizeof level_names[0])

const char *tls_level_name(enum tls_level level) {
  if ((unsigned)level >= LEVEL_COUNT)
    return "unknown";
  return level_names[level];
}

int tls_level_parse(const char *name, enum tls_level *out) {
  for (unsigned i = 0; i < LEVEL_COUNT; i++) {
    if (strcasecmp(name, level_names[i]) == 0) {
      *out = (enum tls_level)i;
      return 0;
    }
  }
  return -1;
}
