/* Type checks for objects that come back to us through a void * (libuv handle data,
 * the argument of a curl, c-ares, hiredis or our own callback): STYLE asks that each
 * callback check what it was given before it trusts it.
 *
 * Such a struct has a `uint32_t magic` field, set to its own XXX_MAGIC constant when
 * made and zeroed just before it is freed, so that a pointer to some other struct, or
 * to one freed but not yet reused, fails the check.
 *
 * The rule, the same everywhere:
 *   - Checks are always on, in every build type (not assert(): NDEBUG keeps them).
 *     They cost a load and a compare, and a wrong object behind a pointer is memory
 *     corruption, which going on would only spread.
 *   - A failed check prints "file:line: <expr> is not a <MAGIC>" to stderr and
 *     aborts (a core dump shows the rest).
 *   - Whether NULL is allowed is the one choice per site: CHECK_OBJ_NOTNULL at a
 *     callback entry (NULL there is a bug too), CHECK_OBJ_ORNULL where NULL means
 *     "none" (a close or cancel of nothing).
 *   - OBJ_VALID is the test without the abort, kept where a site answers a wrong
 *     object by refusing rather than stopping: public close and cancel functions
 *     that by contract do nothing for NULL, and curl callbacks that fail the
 *     transfer (their return value says so). New code should not add more.
 *
 * The macros evaluate their pointer argument more than once: pass a variable. */
#ifndef SP_OBJ_H
#define SP_OBJ_H

#include <stdio.h>
#include <stdlib.h>

/* Whether p is non-NULL and carries magic m. */
#define OBJ_VALID(p, m) ((p) != NULL && (p)->magic == (m))

/* Aborts unless p is non-NULL and carries magic m. */
#define CHECK_OBJ_NOTNULL(p, m)                                                        \
  do {                                                                                 \
    if (!OBJ_VALID(p, m))                                                              \
      obj__fail(__FILE__, __LINE__, #p, #m);                                           \
  } while (0)

/* Aborts when p is non-NULL and does not carry magic m. */
#define CHECK_OBJ_ORNULL(p, m)                                                         \
  do {                                                                                 \
    if ((p) != NULL && (p)->magic != (m))                                              \
      obj__fail(__FILE__, __LINE__, #p, #m);                                           \
  } while (0)

/* v = ptr (a void * or a pointer to v's type), then CHECK_OBJ_NOTNULL(v, m). Spelt
 * out rather than calling CHECK_OBJ_NOTNULL, which would print m expanded. */
#define CAST_OBJ_NOTNULL(v, ptr, m)                                                    \
  do {                                                                                 \
    (v) = (ptr);                                                                       \
    if (!OBJ_VALID(v, m))                                                              \
      obj__fail(__FILE__, __LINE__, #v, #m);                                           \
  } while (0)

/* Out of the macros, and cold: each site stays a compare and a branch. */
__attribute__((cold)) static inline _Noreturn void
obj__fail(const char *file, int line, const char *expr, const char *magic) {
  fprintf(stderr, "%s:%d: %s is not a live %s\n", file, line, expr, magic);
  abort();
}

#endif
