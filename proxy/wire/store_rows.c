#include "proxy/wire/store_rows.h"

#include <stdlib.h>

void store_policy_free(struct store_policy *p) {
  if (!p)
    return;
  free(p->text);
  p->text = NULL;
}

void store_tlsrpt_rows_free(struct store_tlsrpt_row *rows, size_t n) {
  for (size_t i = 0; rows && i < n; i++) {
    free(rows[i].policy_strings);
    free(rows[i].mx_hosts);
  }
  free(rows);
}
