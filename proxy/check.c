/* stub: being written */
#include "check.h"

#include <stdio.h>

int check_main(const char *config_path, const char *domain, bool json) {
  (void)config_path, (void)json;
  fprintf(stderr, "check %s: not implemented yet\n", domain);
  return 2;
}
