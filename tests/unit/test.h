/* Minimal unit-test helpers: each ASSERT prints both values and the location, then
 * exits non-zero. A test file is a main() that calls its test functions in order. */
#ifndef SP_TEST_H
#define SP_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_FAIL_(...)                                                                \
  do {                                                                                 \
    fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                    \
    fprintf(stderr, __VA_ARGS__);                                                      \
    fputc('\n', stderr);                                                               \
    exit(1);                                                                           \
  } while (0)

#define ASSERT(cond)                                                                   \
  do {                                                                                 \
    if (!(cond))                                                                       \
      TEST_FAIL_("assertion failed: %s", #cond);                                       \
  } while (0)

#define ASSERT_EQ(a, b)                                                                \
  do {                                                                                 \
    long long a_ = (long long)(a), b_ = (long long)(b);                                \
    if (a_ != b_)                                                                      \
      TEST_FAIL_("%s == %s: %lld != %lld", #a, #b, a_, b_);                            \
  } while (0)

#define ASSERT_STR_EQ(a, b)                                                            \
  do {                                                                                 \
    const char *a_ = (a), *b_ = (b);                                                   \
    if (strcmp(a_, b_) != 0)                                                           \
      TEST_FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b, a_, b_);                        \
  } while (0)

#define ASSERT_MEM_EQ(a, alen, b, blen)                                                \
  do {                                                                                 \
    size_t al_ = (alen), bl_ = (blen);                                                 \
    if (al_ != bl_ || memcmp((a), (b), al_) != 0)                                      \
      TEST_FAIL_("%s == %s: \"%.*s\" != \"%.*s\"", #a, #b, (int)al_,                   \
                 (const char *)(a), (int)bl_, (const char *)(b));                      \
  } while (0)

#define RUN_TEST(fn)                                                                   \
  do {                                                                                 \
    fn();                                                                              \
    printf("ok %s\n", #fn);                                                            \
  } while (0)

#endif
