/* The type checks of proxy/obj.h: what passes, and that a failed check stops the
 * process (SIGABRT) with the site in its message, in every build type. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proxy/core/obj.h"
#include "tests/unit/test.h"

#define THING_MAGIC 0x7468696eu /* "thin" */
#define OTHER_MAGIC 0x6f746872u /* "othr" */

struct thing {
  uint32_t magic;
};

/* Runs fn in a child; returns the signal that ended it (0 = exited) and the start
 * of what it wrote on stderr. */
static int in_child(void (*fn)(void *), void *arg, char *err, size_t cap) {
  int fds[2];
  ASSERT(pipe(fds) == 0);
  fflush(NULL);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    dup2(fds[1], 2);
    fn(arg);
    _exit(0);
  }
  close(fds[1]);
  size_t n = 0;
  ssize_t r;
  while (n + 1 < cap && (r = read(fds[0], err + n, cap - 1 - n)) > 0)
    n += (size_t)r;
  err[n] = '\0';
  close(fds[0]);
  int status;
  ASSERT(waitpid(pid, &status, 0) == pid);
  return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

static void check_notnull(void *p) {
  struct thing *t;
  CAST_OBJ_NOTNULL(t, p, THING_MAGIC);
}
static void check_ornull(void *p) {
  struct thing *t = p;
  CHECK_OBJ_ORNULL(t, THING_MAGIC);
}

static void test_passes(void) {
  struct thing t = {THING_MAGIC};
  struct thing *none = NULL;
  ASSERT(OBJ_VALID(&t, THING_MAGIC));
  ASSERT(!OBJ_VALID(&t, OTHER_MAGIC));
  ASSERT(!OBJ_VALID(none, THING_MAGIC));
  char err[256];
  ASSERT_EQ(in_child(check_notnull, &t, err, sizeof err), 0);
  ASSERT_EQ(in_child(check_ornull, &t, err, sizeof err), 0);
  ASSERT_EQ(in_child(check_ornull, NULL, err, sizeof err), 0);
}

static void test_aborts(void) {
  struct thing other = {OTHER_MAGIC};
  char err[256];
  ASSERT_EQ(in_child(check_notnull, NULL, err, sizeof err), SIGABRT);
  ASSERT(strstr(err, "test_obj.c:") != NULL);
  ASSERT(strstr(err, "THING_MAGIC") != NULL);
  ASSERT_EQ(in_child(check_notnull, &other, err, sizeof err), SIGABRT);
  ASSERT_EQ(in_child(check_ornull, &other, err, sizeof err), SIGABRT);
  other.magic = 0; /* as after a free */
  ASSERT_EQ(in_child(check_ornull, &other, err, sizeof err), SIGABRT);
}

int main(void) {
  RUN_TEST(test_passes);
  RUN_TEST(test_aborts);
  return 0;
}
