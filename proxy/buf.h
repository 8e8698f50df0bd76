/* A bounded byte buffer: grows on demand up to `max`, never past it. Owned by whoever
 * embeds it; buf_free() releases the storage. */
#ifndef SP_BUF_H
#define SP_BUF_H

#include <stddef.h>

struct buf {
  char *data;
  size_t len; /* bytes held */
  size_t cap; /* bytes allocated */
  size_t max; /* hard limit on len */
};

void buf_init(struct buf *b, size_t max);
/* Appends n bytes. Returns 0, SP_E_OVERFLOW (would exceed max; nothing appended) or
 * SP_E_NOMEM. */
int buf_append(struct buf *b, const void *data, size_t n);
/* Drops the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
size_t buf_room(const struct buf *b); /* max - len */
/* Releases the storage when empty and large, so idle connections stay small. */
void buf_shrink_if_empty(struct buf *b);
void buf_free(struct buf *b);

#endif
