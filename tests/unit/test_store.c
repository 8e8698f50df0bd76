/* store: MTA-STS policies in an sqlite file in a temporary directory. */
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include "proxy/core/error.h"
#include "proxy/mtasts/store.h"
#include "tests/unit/test.h"

static char dir[64];

static void path_of(char *out, size_t len, const char *name) {
  snprintf(out, len, "%s/%s", dir, name);
}

static void remove_db(const char *name) {
  static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
  for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
    char path[160];
    snprintf(path, sizeof(path), "%s/%s%s", dir, name, suffixes[i]);
    unlink(path);
  }
}

static struct store *open_ok(const char *name) {
  char path[128], err[256];
  struct store *s = NULL;
  path_of(path, sizeof(path), name);
  int rc = store_open(path, &s, err, sizeof(err));
  if (rc != 0)
    TEST_FAIL_("store_open(%s): %d %s", path, rc, err);
  ASSERT(s != NULL);
  return s;
}

static struct store_policy make(const char *domain, const char *id, const char *text,
                                int64_t fetched, int64_t expires) {
  struct store_policy p;
  memset(&p, 0, sizeof(p));
  snprintf(p.domain, sizeof(p.domain), "%s", domain);
  snprintf(p.id, sizeof(p.id), "%s", id);
  p.text = (char *)text; /* put only reads it */
  p.fetched_at = fetched;
  p.expires_at = expires;
  return p;
}

static void expect(struct store *s, const char *domain, const char *id,
                   const char *text, int64_t fetched, int64_t expires) {
  struct store_policy got;
  ASSERT_EQ(store_get_policy(s, domain, &got), 1);
  ASSERT_STR_EQ(got.domain, domain);
  ASSERT_STR_EQ(got.id, id);
  ASSERT_STR_EQ(got.text, text);
  ASSERT_EQ(got.fetched_at, fetched);
  ASSERT_EQ(got.expires_at, expires);
  store_policy_free(&got);
  ASSERT(got.text == NULL);
}

static const char POLICY[] = "version: STSv1\nmode: enforce\nmx: mail.example.com\n"
                             "max_age: 86400\n";
static const char ODD[] = "it's \"quoted\"; DROP TABLE mta_sts_policy; --\n'\n\r\n\t%s";

static void test_put_get_update_delete(void) {
  struct store *s = open_ok("a.db");
  struct store_policy got;
  ASSERT_EQ(store_get_policy(s, "example.com", &got), 0);

  struct store_policy p = make("example.com", "20240101T000000", POLICY, 1000, 87400);
  ASSERT_EQ(store_put_policy(s, &p), 0);
  expect(s, "example.com", "20240101T000000", POLICY, 1000, 87400);
  ASSERT_EQ(store_get_policy(s, "example.org", &got), 0);

  p = make("example.com", "2", "version: STSv1\nmode: testing\n", 2000, 3000);
  ASSERT_EQ(store_put_policy(s, &p), 0); /* same domain: replaced */
  expect(s, "example.com", "2", "version: STSv1\nmode: testing\n", 2000, 3000);

  p = make("o'neil.example", "q", ODD, -1, INT64_MAX);
  ASSERT_EQ(store_put_policy(s, &p), 0);
  expect(s, "o'neil.example", "q", ODD, -1, INT64_MAX);
  p = make("empty.example", "e", "", 0, 0);
  ASSERT_EQ(store_put_policy(s, &p), 0);
  expect(s, "empty.example", "e", "", 0, 0);

  ASSERT_EQ(store_delete_policy(s, "example.com"), 1);
  ASSERT_EQ(store_delete_policy(s, "example.com"), 0);
  ASSERT_EQ(store_get_policy(s, "example.com", &got), 0);
  expect(s, "o'neil.example", "q", ODD, -1, INT64_MAX); /* the others stay */
  store_close(s);
  remove_db("a.db");
}

static void test_bad_arguments(void) {
  struct store *s = open_ok("args.db");
  struct store_policy got, p = make("example.com", "1", NULL, 0, 0);
  ASSERT_EQ(store_put_policy(s, &p), SP_E_INVAL); /* no text */
  p = make("", "1", POLICY, 0, 0);
  ASSERT_EQ(store_put_policy(s, &p), SP_E_INVAL);
  p = make("example.com", "1", POLICY, 0, 0);
  memset(p.id, 'x', sizeof(p.id)); /* not terminated */
  ASSERT_EQ(store_put_policy(s, &p), SP_E_INVAL);
  ASSERT_EQ(store_get_policy(s, "", &got), SP_E_INVAL);
  ASSERT_EQ(store_delete_policy(s, NULL), SP_E_INVAL);
  store_close(s);
  store_close(NULL);
  remove_db("args.db");

  char err[256];
  ASSERT_EQ(store_open("", &s, err, sizeof(err)), SP_E_INVAL);
  ASSERT(s == NULL);
}

static void test_reopen_keeps_data(void) {
  struct store *s = open_ok("r.db");
  struct store_policy p = make("example.net", "abc", POLICY, 5, 6);
  ASSERT_EQ(store_put_policy(s, &p), 0);
  store_close(s);

  s = open_ok("r.db");
  expect(s, "example.net", "abc", POLICY, 5, 6);
  store_close(s);
  remove_db("r.db");
}

static void write_bytes(const char *name, off_t at, const void *data, size_t len) {
  char path[128];
  path_of(path, sizeof(path), name);
  int fd = open(path, O_WRONLY | O_CREAT, 0600);
  ASSERT(fd >= 0);
  ASSERT_EQ(pwrite(fd, data, len, at), (ssize_t)len);
  ASSERT_EQ(close(fd), 0);
}

static void test_corrupt_file(void) {
  char path[128], err[256];
  struct store *s = NULL;
  char junk[8192];
  memset(junk, 'Z', sizeof(junk));
  write_bytes("junk.db", 0, junk, sizeof(junk));
  path_of(path, sizeof(path), "junk.db");
  ASSERT(store_open(path, &s, err, sizeof(err)) < 0);
  ASSERT(s == NULL);
  ASSERT(strstr(err, "not a database") != NULL);
  remove_db("junk.db");

  /* A real store whose table pages are overwritten: open or read fails cleanly. */
  s = open_ok("bad.db");
  for (int i = 0; i < 50; i++) {
    char domain[32];
    snprintf(domain, sizeof(domain), "d%d.example", i);
    struct store_policy p = make(domain, "1", POLICY, i, i);
    ASSERT_EQ(store_put_policy(s, &p), 0);
  }
  store_close(s);
  memset(junk, 0xff, sizeof(junk));
  write_bytes("bad.db", 4096, junk, sizeof(junk)); /* pages 2 and 3 */
  path_of(path, sizeof(path), "bad.db");
  s = NULL;
  int rc = store_open(path, &s, err, sizeof(err));
  if (rc == 0) {
    struct store_policy got;
    ASSERT(store_get_policy(s, "d7.example", &got) < 0);
    ASSERT(strstr(store_errmsg(s), "malformed") != NULL);
    store_close(s);
  } else {
    ASSERT(s == NULL && err[0] != '\0');
  }
  remove_db("bad.db");
}

static void test_schema_version(void) {
  struct store *s = open_ok("v.db");
  store_close(s);
  char path[128], err[256];
  path_of(path, sizeof(path), "v.db");
  sqlite3 *db;
  ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
  sqlite3_stmt *st;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  ASSERT_EQ(sqlite3_column_int(st, 0), 2);
  sqlite3_finalize(st);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);

  s = NULL;
  ASSERT(store_open(path, &s, err, sizeof(err)) < 0);
  ASSERT(s == NULL);
  ASSERT_STR_EQ(err, "schema version 99, expected 2");
  remove_db("v.db");
}

/* A file of version 1 (TLS-RPT counters without sending_ip) is upgraded as it opens:
 * its policies and counts are kept, the counts with an empty sending IP. */
static void test_upgrade_from_1(void) {
  char path[128];
  path_of(path, sizeof(path), "v1.db");
  sqlite3 *db;
  ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(
          db,
          "CREATE TABLE mta_sts_policy (domain TEXT PRIMARY KEY, id TEXT, policy TEXT,"
          " fetched_at INTEGER, expires_at INTEGER);"
          "INSERT INTO mta_sts_policy VALUES ('example.org', 'v1', 'text', 1, 2);"
          "CREATE TABLE tlsrpt_count (period_start INTEGER NOT NULL, period_end INTEGER"
          " NOT NULL, domain TEXT NOT NULL, policy_type TEXT NOT NULL, policy_strings"
          " TEXT NOT NULL, mx_hosts TEXT NOT NULL, result_type TEXT NOT NULL, mx TEXT"
          " NOT NULL, ip TEXT NOT NULL, reason TEXT NOT NULL, count INTEGER NOT NULL,"
          " PRIMARY KEY (period_start, period_end, domain, policy_type, policy_strings,"
          " mx_hosts, result_type, mx, ip, reason));"
          "INSERT INTO tlsrpt_count VALUES (0, 86400, 'example.org', 'no-policy-found',"
          " '', 'mx.example.org', 'starttls-not-supported', 'mx.example.org',"
          " '192.0.2.1', 'no STARTTLS', 3);"
          "PRAGMA user_version = 1",
          NULL, NULL, NULL),
      SQLITE_OK);
  sqlite3_close(db);

  struct store *s = open_ok("v1.db");
  expect(s, "example.org", "v1", "text", 1, 2);
  struct store_tlsrpt_row *rows = NULL;
  size_t n = 0;
  ASSERT_EQ(store_tlsrpt_load(s, INT64_MAX, &rows, &n), 0);
  ASSERT_EQ(n, 1);
  struct store_tlsrpt_row r = rows[0];
  ASSERT_STR_EQ(r.result_type, "starttls-not-supported");
  ASSERT_STR_EQ(r.ip, "192.0.2.1");
  ASSERT_STR_EQ(r.sending_ip, "");
  ASSERT_EQ(r.count, 3);
  /* The same key counts on; another sending IP is a counter of its own. */
  r.count = 1;
  ASSERT_EQ(store_tlsrpt_add(s, &r, 1), 0);
  snprintf(r.sending_ip, sizeof r.sending_ip, "198.51.100.25");
  ASSERT_EQ(store_tlsrpt_add(s, &r, 1), 0);
  store_tlsrpt_rows_free(rows, n);
  ASSERT_EQ(store_tlsrpt_load(s, INT64_MAX, &rows, &n), 0);
  ASSERT_EQ(n, 2);
  ASSERT_STR_EQ(rows[0].sending_ip, "");
  ASSERT_EQ(rows[0].count, 4);
  ASSERT_STR_EQ(rows[1].sending_ip, "198.51.100.25");
  ASSERT_EQ(rows[1].count, 1);
  ASSERT_EQ(store_tlsrpt_subtract(s, &rows[1], 1), 0);
  store_tlsrpt_rows_free(rows, n);
  ASSERT_EQ(store_tlsrpt_load(s, INT64_MAX, &rows, &n), 0);
  ASSERT_EQ(n, 1);
  store_tlsrpt_rows_free(rows, n);
  store_close(s);
  s = open_ok("v1.db"); /* already upgraded */
  store_close(s);
  remove_db("v1.db");
}

int main(void) {
  snprintf(dir, sizeof(dir), "/tmp/sp-test-store-XXXXXX");
  ASSERT(mkdtemp(dir) != NULL);
  RUN_TEST(test_put_get_update_delete);
  RUN_TEST(test_bad_arguments);
  RUN_TEST(test_reopen_keeps_data);
  RUN_TEST(test_corrupt_file);
  RUN_TEST(test_schema_version);
  RUN_TEST(test_upgrade_from_1);
  ASSERT_EQ(rmdir(dir), 0);
  return 0;
}
