#include "proxy/core/buf.h"

#include <stdlib.h>
#include <string.h>

#include "proxy/core/error.h"

void buf_init(struct buf *b, size_t max) {
  b->data = b->base = NULL;
  b->len = b->cap = 0;
  b->max = max;
}

int buf_append(struct buf *b, const void *data, size_t n) {
  if (n > b->max - b->len)
    return SP_E_OVERFLOW;
  if (b->len == 0)
    b->data = b->base;
  size_t off = (size_t)(b->data - b->base);
  if (off + b->len + n > b->cap && off > 0) {
    memmove(b->base, b->data, b->len);
    b->data = b->base;
    off = 0;
  }
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n)
      cap *= 2;
    if (cap > b->max)
      cap = b->max;
    char *grown = realloc(b->base, cap);
    if (!grown)
      return SP_E_NOMEM;
    b->base = b->data = grown;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, n);
  b->len += n;
  return 0;
}

void buf_consume(struct buf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    b->data = b->base;
    return;
  }
  b->data += n;
  b->len -= n;
}

size_t buf_room(const struct buf *b) {
  return b->max - b->len;
}

void buf_shrink_if_empty(struct buf *b) {
  if (b->len == 0)
    b->data = b->base;
  if (b->len == 0 && b->cap > 4096) {
    free(b->base);
    b->data = b->base = NULL;
    b->cap = 0;
  }
}

void buf_free(struct buf *b) {
  free(b->base);
  b->data = b->base = NULL;
  b->len = b->cap = 0;
}
