/* A bounded byte buffer: grows on demand up to `max`, never past it. Owned by whoever
 * embeds it; buf_free() releases the storage.
 *
 * buf_consume() only advances `data` (no memmove per consumed chunk: a reader taking
 * 16 KiB at a time from 64 KiB would otherwise move 48 KiB each time); the held bytes
 * are moved to the front of the storage only when an append needs the room. */
#ifndef SP_BUF_H
#define SP_BUF_H

#include <stddef.h>

struct buf {
  char *data; /* the held bytes: data[0..len); inside base[0..cap) */
  size_t len; /* bytes held */
  size_t cap; /* bytes allocated at base */
  size_t max; /* hard limit on len */
  char *base; /* the storage (owned); data == base until something is consumed */
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
