/* libFuzzer target: the whole config loader (YAML parse, schema walk, value syntax) on
 * arbitrary input. Every outcome must free what it took; the error text must be a set
 * of complete lines naming the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/config/config.h"
#include "proxy/core/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct config *cfg = NULL;
  char *errors = NULL;
  int rc = config_load_buffer("fuzz", (const char *)data, size, &cfg, &errors);
  if (rc == 0) {
    if (!cfg || errors || cfg->nlisten == 0 || cfg->nallow == 0)
      abort();
    config_unref(config_ref(cfg));
    config_unref(cfg);
  } else {
    size_t len;
    if (cfg || (rc != SP_E_CONFIG && rc != SP_E_NOMEM))
      abort();
    if (rc == SP_E_CONFIG && (!errors || strncmp(errors, "fuzz", 4) != 0))
      abort();
    if (errors && ((len = strlen(errors)) == 0 || errors[len - 1] != '\n'))
      abort();
    free(errors);
  }
  return 0;
}
