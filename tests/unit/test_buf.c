/* Unit tests of the bounded buffer: consuming advances the start without moving the
 * rest, appends move the held bytes to the front only when they need the room, the
 * limit holds, and an empty large buffer is released. */
#include "proxy/core/buf.h"
#include "proxy/core/error.h"
#include "tests/unit/test.h"

static void test_consume_moves_nothing(void) {
  struct buf b;
  buf_init(&b, 64 * 1024);
  char chunk[16 * 1024];
  memset(chunk, 'a', sizeof chunk);
  for (int i = 0; i < 4; i++) {
    chunk[0] = (char)('0' + i);
    ASSERT_EQ(buf_append(&b, chunk, sizeof chunk), 0);
  }
  ASSERT_EQ(b.len, 64 * 1024);
  ASSERT_EQ(buf_append(&b, "x", 1), SP_E_OVERFLOW); /* the limit, nothing appended */
  ASSERT_EQ(b.len, 64 * 1024);
  char *base = b.base;
  buf_consume(&b, sizeof chunk);
  ASSERT(b.data == base + sizeof chunk); /* no memmove: the start advanced */
  ASSERT_EQ(b.data[0], '1');
  ASSERT_EQ(b.len, 48 * 1024);
  ASSERT_EQ(buf_room(&b), 16 * 1024);
  /* An append that needs the room moves the held bytes to the front first. */
  chunk[0] = '4';
  ASSERT_EQ(buf_append(&b, chunk, sizeof chunk), 0);
  ASSERT(b.data == b.base);
  ASSERT_EQ(b.len, 64 * 1024);
  ASSERT_EQ(b.data[0], '1');
  ASSERT_EQ(b.data[16 * 1024], '2');
  ASSERT_EQ(b.data[48 * 1024], '4');
  buf_free(&b);
}

static void test_append_after_partial_consume_keeps_order(void) {
  struct buf b;
  buf_init(&b, 100);
  ASSERT_EQ(buf_append(&b, "hello world", 11), 0);
  buf_consume(&b, 6);
  ASSERT_MEM_EQ(b.data, b.len, "world", 5);
  ASSERT_EQ(buf_append(&b, "!", 1), 0); /* room at the end: no move */
  ASSERT_MEM_EQ(b.data, b.len, "world!", 6);
  buf_consume(&b, 6);
  ASSERT_EQ(b.len, 0);
  ASSERT(b.data == b.base);
  ASSERT_EQ(buf_append(&b, "again", 5), 0);
  ASSERT_MEM_EQ(b.data, b.len, "again", 5);
  buf_free(&b);
}

static void test_shrink_if_empty(void) {
  struct buf b;
  buf_init(&b, 1 << 20);
  char big[8192] = {0};
  ASSERT_EQ(buf_append(&b, big, sizeof big), 0);
  buf_shrink_if_empty(&b); /* not empty: kept */
  ASSERT(b.base != NULL);
  buf_consume(&b, 100);
  buf_shrink_if_empty(&b);
  ASSERT(b.base != NULL);
  buf_consume(&b, sizeof big);
  buf_shrink_if_empty(&b); /* empty and large: released */
  ASSERT(b.base == NULL && b.data == NULL);
  ASSERT_EQ(b.cap, 0);
  ASSERT_EQ(buf_append(&b, "x", 1), 0);
  ASSERT_EQ(b.cap, 1024);
  buf_consume(&b, 1);
  buf_shrink_if_empty(&b); /* small: kept for the next line */
  ASSERT(b.base != NULL);
  buf_free(&b);
}

int main(void) {
  RUN_TEST(test_consume_moves_nothing);
  RUN_TEST(test_append_after_partial_consume_keeps_order);
  RUN_TEST(test_shrink_if_empty);
  return 0;
}
