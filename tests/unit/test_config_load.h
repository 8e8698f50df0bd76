/* Loading a configuration text in a unit test: fails the test with the loader's
 * messages when the text does not load. */
#ifndef SP_TEST_CONFIG_LOAD_H
#define SP_TEST_CONFIG_LOAD_H

#include <stdlib.h>
#include <string.h>

#include "proxy/config/config.h"
#include "proxy/core/error.h"
#include "tests/unit/test.h"

static inline struct config *test_load_config(const char *yaml) {
  struct config *cfg = NULL;
  char *errors = NULL;
  int rc = config_load_buffer("t.yaml", yaml, strlen(yaml), &cfg, &errors);
  if (rc != 0)
    TEST_FAIL_("load failed (%d):\n%s", rc, errors ? errors : "(no text)");
  ASSERT(cfg != NULL);
  ASSERT(errors == NULL);
  return cfg;
}

/* The load of yaml[0..len) fails with exactly the error lines want. */
static inline void test_config_errors(const char *yaml, size_t len, const char *want) {
  struct config *cfg = (struct config *)&cfg; /* must be reset to NULL */
  char *errors = NULL;
  ASSERT_EQ(config_load_buffer("t.yaml", yaml, len, &cfg, &errors), SP_E_CONFIG);
  ASSERT(cfg == NULL);
  ASSERT(errors != NULL);
  ASSERT_STR_EQ(errors, want);
  free(errors);
}

#endif
