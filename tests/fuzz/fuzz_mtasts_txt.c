/* Fuzzes sts_txt_parse: the input, split on '\n', is the TXT RRset (one record a
 * line, its strings already joined). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/mtasts.h"

#define FUZZ_MAX_RECORDS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *recs[FUZZ_MAX_RECORDS];
  size_t lens[FUZZ_MAX_RECORDS], n = 0, pos = 0;
  const char *text = (const char *)data;
  while (n < FUZZ_MAX_RECORDS && (pos < size || (n == 0 && size == 0))) {
    const char *lf = size ? memchr(text + pos, '\n', size - pos) : NULL;
    size_t end = lf ? (size_t)(lf - text) : size;
    recs[n] = text + pos;
    lens[n] = end - pos;
    n++;
    pos = end + 1;
  }
  char id[STS_ID_MAX + 1];
  memset(id, 'Z', sizeof id);
  int rc = sts_txt_parse(recs, lens, n, id);
  if (rc != STS_TXT_OK && rc != STS_TXT_NONE && rc != STS_TXT_INVALID)
    abort();
  if (rc == STS_TXT_OK) {
    size_t idlen = strnlen(id, sizeof id);
    if (idlen == 0 || idlen > STS_ID_MAX)
      abort();
    for (size_t i = 0; i < idlen; i++) {
      char c = id[i];
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
        abort();
    }
  }
  return 0;
}
