/* MTA-STS policies in sqlite: one table keyed by domain, statements prepared once; and
 * the TLS-RPT counters, one table keyed by everything but the count.
 *
 * Ownership: struct store owns the sqlite3 handle and its statements; store_close()
 * finalizes them. Values are always bound, never pasted into SQL. */
#include "proxy/mtasts/store.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/error.h"

/* 1: mta_sts_policy, then tlsrpt_count; 2: tlsrpt_count has sending_ip. */
#define STORE_SCHEMA_VERSION 2
#define STORE_SCHEMA_PRAGMA "PRAGMA user_version = 2"

struct store {
  sqlite3 *db;           /* owned */
  sqlite3_stmt *get;     /* owned */
  sqlite3_stmt *put;     /* owned */
  sqlite3_stmt *del;     /* owned */
  sqlite3_stmt *rpt_add; /* owned */
  sqlite3_stmt *rpt_sub; /* owned */
  char err[256];         /* the last failure, for store_errmsg */
};

static const char SQL_CREATE[] = "CREATE TABLE IF NOT EXISTS mta_sts_policy ("
                                 " domain TEXT PRIMARY KEY,"
                                 " id TEXT,"
                                 " policy TEXT,"
                                 " fetched_at INTEGER,"
                                 " expires_at INTEGER)";
static const char SQL_GET[] = "SELECT id, policy, fetched_at, expires_at"
                              " FROM mta_sts_policy WHERE domain = ?1";
static const char SQL_PUT[] =
    "INSERT INTO mta_sts_policy (domain, id, policy, fetched_at, expires_at)"
    " VALUES (?1, ?2, ?3, ?4, ?5)"
    " ON CONFLICT (domain) DO UPDATE SET id = excluded.id, policy = excluded.policy,"
    " fetched_at = excluded.fetched_at, expires_at = excluded.expires_at";
static const char SQL_DEL[] = "DELETE FROM mta_sts_policy WHERE domain = ?1";

/* Added to schema version 1 as it is (a table more breaks no older reader); version
 * 2 added sending_ip to the key, which an older writer cannot fill. */
#define RPT_KEY_V1                                                                     \
  "period_start, period_end, domain, policy_type, policy_strings, mx_hosts,"           \
  " result_type, mx, ip, reason"
#define RPT_KEY RPT_KEY_V1 ", sending_ip"
static const char SQL_RPT_CREATE[] = "CREATE TABLE IF NOT EXISTS tlsrpt_count ("
                                     " period_start INTEGER NOT NULL,"
                                     " period_end INTEGER NOT NULL,"
                                     " domain TEXT NOT NULL,"
                                     " policy_type TEXT NOT NULL,"
                                     " policy_strings TEXT NOT NULL,"
                                     " mx_hosts TEXT NOT NULL,"
                                     " result_type TEXT NOT NULL,"
                                     " mx TEXT NOT NULL,"
                                     " ip TEXT NOT NULL,"
                                     " reason TEXT NOT NULL,"
                                     " sending_ip TEXT NOT NULL,"
                                     " count INTEGER NOT NULL,"
                                     " PRIMARY KEY (" RPT_KEY "))";
static const char SQL_RPT_ADD[] =
    "INSERT INTO tlsrpt_count (" RPT_KEY ", count)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    " ON CONFLICT (" RPT_KEY ") DO UPDATE SET count = count + excluded.count";
static const char SQL_RPT_SUB[] =
    "UPDATE tlsrpt_count SET count = count - ?12 WHERE period_start = ?1"
    " AND period_end = ?2 AND domain = ?3 AND policy_type = ?4"
    " AND policy_strings = ?5 AND mx_hosts = ?6 AND result_type = ?7 AND mx = ?8"
    " AND ip = ?9 AND reason = ?10 AND sending_ip = ?11";
static const char SQL_RPT_PRUNE[] = "DELETE FROM tlsrpt_count WHERE count <= 0";
/* Grouped by domain first: a sending run takes each domain's rows as one run. */
static const char SQL_RPT_LOAD[] =
    "SELECT " RPT_KEY ", count FROM tlsrpt_count WHERE period_end <= ?1 ORDER BY"
    " domain, period_start, period_end, policy_type, policy_strings, mx_hosts,"
    " result_type, mx, ip, reason, sending_ip";
/* Version 1 to 2: the counters move to the new table, without a sending IP. */
static const char SQL_RPT_MIGRATE[] =
    "ALTER TABLE tlsrpt_count RENAME TO tlsrpt_count_v1";
static const char SQL_RPT_MIGRATE_COPY[] =
    "INSERT INTO tlsrpt_count (" RPT_KEY ", count) SELECT " RPT_KEY_V1
    ", '', count FROM tlsrpt_count_v1; DROP TABLE tlsrpt_count_v1";

static int sql_status(int rc) {
  return rc == SQLITE_NOMEM ? SP_E_NOMEM : SP_E_IO;
}

/* Records "what: sqlite's message" and returns the SP_E_* for rc. */
static int store_fail(struct store *s, int rc, const char *what) {
  snprintf(s->err, sizeof(s->err), "%s: %s", what, sqlite3_errmsg(s->db));
  return sql_status(rc);
}

static int exec(struct store *s, const char *sql, const char *what) {
  int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? 0 : store_fail(s, rc, what);
}

static int read_version(struct store *s, int *version) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
  if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    *version = sqlite3_column_int(st, 0);
    rc = SQLITE_OK;
  }
  int ret = rc == SQLITE_OK ? 0 : store_fail(s, rc, "reading schema version");
  sqlite3_finalize(st);
  return ret;
}

/* Version 1's counters, when the file has them, go to the table of version 2. */
static int migrate_1(struct store *s) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db,
                              "SELECT 1 FROM sqlite_master WHERE type = 'table' AND"
                              " name = 'tlsrpt_count'",
                              -1, &st, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  sqlite3_finalize(st);
  if (rc == SQLITE_DONE)
    return 0; /* no counters yet */
  if (rc != SQLITE_ROW)
    return store_fail(s, rc, "upgrading schema");
  int ret = exec(s, SQL_RPT_MIGRATE, "upgrading schema");
  if (ret == 0 && (ret = exec(s, SQL_RPT_CREATE, "upgrading schema")) == 0)
    ret = exec(s, SQL_RPT_MIGRATE_COPY, "upgrading schema");
  return ret;
}

/* Creates the table in a fresh file, upgrades a file of version 1, or accepts a file
 * already at our version. The version is read again once the file is locked: another
 * process may have done it meanwhile. */
static int schema(struct store *s) {
  int version = 0, ret;
  if ((ret = read_version(s, &version)) != 0)
    return ret;
  if (version == STORE_SCHEMA_VERSION)
    return 0;
  if ((ret = exec(s, "BEGIN IMMEDIATE", "creating schema")) != 0)
    return ret;
  if ((ret = read_version(s, &version)) == 0 && version != 0 && version != 1 &&
      version != STORE_SCHEMA_VERSION) {
    snprintf(s->err, sizeof(s->err), "schema version %d, expected %d", version,
             STORE_SCHEMA_VERSION);
    ret = SP_E_CONFIG;
  }
  if (ret == 0 && version == STORE_SCHEMA_VERSION)
    return exec(s, "COMMIT", "creating schema");
  if (ret == 0 && version == 0)
    ret = exec(s, SQL_CREATE, "creating schema");
  if (ret == 0 && version == 1)
    ret = migrate_1(s);
  if (ret == 0 && (ret = exec(s, STORE_SCHEMA_PRAGMA, "creating schema")) == 0 &&
      (ret = exec(s, "COMMIT", "creating schema")) == 0)
    return 0;
  sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
  return ret;
}

static int prepare(struct store *s, const char *sql, sqlite3_stmt **st) {
  int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
  return rc == SQLITE_OK ? 0 : store_fail(s, rc, "preparing statements");
}

static int open_db(struct store *s, const char *path) {
  int ret, rc = sqlite3_open_v2(path, &s->db,
                                SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc != SQLITE_OK) {
    if (s->db)
      return store_fail(s, rc, path);
    snprintf(s->err, sizeof(s->err), "%s: %s", path, sqlite3_errstr(rc));
    return sql_status(rc);
  }
  sqlite3_extended_result_codes(s->db, 1);
  sqlite3_busy_timeout(s->db, 2000);
  /* WAL: readers never block the one writer; NORMAL is durable across crashes of
   * this process, and a lost last write at power failure only means a refetch. */
  if ((ret = exec(s, "PRAGMA journal_mode = WAL", path)) != 0 ||
      (ret = exec(s, "PRAGMA synchronous = NORMAL", path)) != 0 ||
      (ret = schema(s)) != 0 || (ret = exec(s, SQL_RPT_CREATE, "creating schema")) != 0)
    return ret;
  if ((ret = prepare(s, SQL_GET, &s->get)) != 0 ||
      (ret = prepare(s, SQL_PUT, &s->put)) != 0 ||
      (ret = prepare(s, SQL_DEL, &s->del)) != 0 ||
      (ret = prepare(s, SQL_RPT_ADD, &s->rpt_add)) != 0 ||
      (ret = prepare(s, SQL_RPT_SUB, &s->rpt_sub)) != 0)
    return ret;
  return 0;
}

void store_path(const char *state_dir, char *out, size_t cap) {
  snprintf(out, cap, "%s/policies.sqlite3", state_dir);
}

int store_open(const char *path, struct store **out, char *err, size_t errlen) {
  *out = NULL;
  if (errlen > 0)
    err[0] = '\0';
  if (!path || !*path) {
    snprintf(err, errlen, "empty path");
    return SP_E_INVAL;
  }
  struct store *s = calloc(1, sizeof(*s));
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return SP_E_NOMEM;
  }
  int ret = open_db(s, path);
  if (ret != 0) {
    snprintf(err, errlen, "%s", s->err);
    store_close(s);
    return ret;
  }
  *out = s;
  return 0;
}

void store_close(struct store *s) {
  if (!s)
    return;
  sqlite3_finalize(s->get);
  sqlite3_finalize(s->put);
  sqlite3_finalize(s->del);
  sqlite3_finalize(s->rpt_add);
  sqlite3_finalize(s->rpt_sub);
  sqlite3_close(s->db); /* every statement is finalized: this cannot be busy */
  free(s);
}

const char *store_errmsg(const struct store *s) {
  return s ? s->err : "no store";
}

static bool domain_ok(const char *domain) {
  return domain && *domain &&
         strlen(domain) < sizeof(((struct store_policy *)0)->domain);
}

/* Copies row st into out; the row's id must fit and the policy must be present. */
static int read_row(struct store *s, sqlite3_stmt *st, const char *domain,
                    struct store_policy *out) {
  const unsigned char *id = sqlite3_column_text(st, 0);
  int idlen = sqlite3_column_bytes(st, 0);
  const unsigned char *text = sqlite3_column_text(st, 1);
  int textlen = sqlite3_column_bytes(st, 1);
  if (!id || !text || idlen > STS_ID_MAX) {
    if (sqlite3_errcode(s->db) == SQLITE_NOMEM)
      return store_fail(s, SQLITE_NOMEM, "reading policy");
    snprintf(s->err, sizeof(s->err), "reading policy: bad row for %s", domain);
    return SP_E_IO;
  }
  char *copy = malloc((size_t)textlen + 1);
  if (!copy) {
    snprintf(s->err, sizeof(s->err), "out of memory");
    return SP_E_NOMEM;
  }
  memcpy(copy, text, (size_t)textlen);
  copy[textlen] = '\0';
  memset(out, 0, sizeof(*out));
  snprintf(out->domain, sizeof(out->domain), "%s", domain);
  memcpy(out->id, id, (size_t)idlen);
  out->id[idlen] = '\0';
  out->text = copy;
  out->fetched_at = sqlite3_column_int64(st, 2);
  out->expires_at = sqlite3_column_int64(st, 3);
  return 1;
}

int store_get_policy(struct store *s, const char *domain, struct store_policy *out) {
  if (!s || !domain_ok(domain) || !out)
    return SP_E_INVAL;
  int ret = 0, rc = sqlite3_bind_text(s->get, 1, domain, -1, SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(s->get);
  if (rc == SQLITE_ROW)
    ret = read_row(s, s->get, domain, out);
  else if (rc != SQLITE_DONE)
    ret = store_fail(s, rc, "reading policy");
  sqlite3_reset(s->get);
  sqlite3_clear_bindings(s->get);
  return ret;
}

int store_put_policy(struct store *s, const struct store_policy *p) {
  if (!s || !p || !domain_ok(p->domain) || !p->text ||
      strnlen(p->id, sizeof(p->id)) == sizeof(p->id))
    return SP_E_INVAL;
  sqlite3_stmt *st = s->put;
  int ret = 0, rc = sqlite3_bind_text(st, 1, p->domain, -1, SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_text(st, 2, p->id, -1, SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_text(st, 3, p->text, -1, SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_int64(st, 4, p->fetched_at);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_int64(st, 5, p->expires_at);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  if (rc != SQLITE_DONE)
    ret = store_fail(s, rc, "writing policy");
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return ret;
}

int store_delete_policy(struct store *s, const char *domain) {
  if (!s || !domain_ok(domain))
    return SP_E_INVAL;
  int ret = 0, rc = sqlite3_bind_text(s->del, 1, domain, -1, SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(s->del);
  if (rc == SQLITE_DONE)
    ret = sqlite3_changes(s->db) > 0 ? 1 : 0;
  else
    ret = store_fail(s, rc, "deleting policy");
  sqlite3_reset(s->del);
  sqlite3_clear_bindings(s->del);
  return ret;
}

/* ---- TLS-RPT counters ------------------------------------------------------------ */

static const char *nz(const char *s) {
  return s ? s : "";
}

static int bind_row(sqlite3_stmt *st, const struct store_tlsrpt_row *r) {
  int rc = sqlite3_bind_int64(st, 1, r->period_start);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_int64(st, 2, r->period_end);
  const char *text[] = {r->domain,       r->policy_type, nz(r->policy_strings),
                        nz(r->mx_hosts), r->result_type, r->mx,
                        r->ip,           r->reason,      r->sending_ip};
  for (int i = 0; rc == SQLITE_OK && i < 9; i++)
    rc = sqlite3_bind_text(st, 3 + i, text[i], -1, SQLITE_STATIC);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_int64(st, 12, r->count);
  return rc;
}

/* Runs st once per row inside one transaction (then extra, when not NULL). */
static int rpt_batch(struct store *s, sqlite3_stmt *st,
                     const struct store_tlsrpt_row *rows, size_t n, const char *extra,
                     const char *what) {
  int ret = exec(s, "BEGIN IMMEDIATE", what);
  if (ret != 0)
    return ret;
  for (size_t i = 0; i < n && ret == 0; i++) {
    int rc = bind_row(st, &rows[i]);
    if (rc == SQLITE_OK)
      rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
      ret = store_fail(s, rc, what);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
  }
  if (ret == 0 && extra)
    ret = exec(s, extra, what);
  if (ret == 0 && (ret = exec(s, "COMMIT", what)) == 0)
    return 0;
  sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
  return ret;
}

int store_tlsrpt_add(struct store *s, const struct store_tlsrpt_row *rows, size_t n) {
  if (!s || (n > 0 && !rows))
    return SP_E_INVAL;
  if (n == 0)
    return 0;
  return rpt_batch(s, s->rpt_add, rows, n, NULL, "writing TLS-RPT counts");
}

int store_tlsrpt_subtract(struct store *s, const struct store_tlsrpt_row *rows,
                          size_t n) {
  if (!s || (n > 0 && !rows))
    return SP_E_INVAL;
  if (n == 0)
    return 0;
  return rpt_batch(s, s->rpt_sub, rows, n, SQL_RPT_PRUNE, "removing TLS-RPT counts");
}

static void col_copy(sqlite3_stmt *st, int i, char *dst, size_t cap) {
  const unsigned char *t = sqlite3_column_text(st, i);
  snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static char *col_dup(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return strdup(t ? (const char *)t : "");
}

/* Appends the current row of st to *rows. */
static int rpt_read_row(sqlite3_stmt *st, struct store_tlsrpt_row **rows, size_t *n,
                        size_t *cap) {
  if (*n == *cap) {
    size_t c = *cap ? *cap * 2 : 16;
    struct store_tlsrpt_row *p = realloc(*rows, c * sizeof *p);
    if (!p)
      return SP_E_NOMEM;
    *rows = p;
    *cap = c;
  }
  struct store_tlsrpt_row *r = &(*rows)[*n];
  memset(r, 0, sizeof *r);
  r->period_start = sqlite3_column_int64(st, 0);
  r->period_end = sqlite3_column_int64(st, 1);
  col_copy(st, 2, r->domain, sizeof r->domain);
  col_copy(st, 3, r->policy_type, sizeof r->policy_type);
  r->policy_strings = col_dup(st, 4);
  r->mx_hosts = col_dup(st, 5);
  col_copy(st, 6, r->result_type, sizeof r->result_type);
  col_copy(st, 7, r->mx, sizeof r->mx);
  col_copy(st, 8, r->ip, sizeof r->ip);
  col_copy(st, 9, r->reason, sizeof r->reason);
  col_copy(st, 10, r->sending_ip, sizeof r->sending_ip);
  r->count = sqlite3_column_int64(st, 11);
  (*n)++;
  if (!r->policy_strings || !r->mx_hosts)
    return SP_E_NOMEM;
  return 0;
}

int store_tlsrpt_load(struct store *s, int64_t end_before,
                      struct store_tlsrpt_row **rows, size_t *n) {
  if (!s || !rows || !n)
    return SP_E_INVAL;
  *rows = NULL;
  *n = 0;
  sqlite3_stmt *st = NULL;
  size_t cap = 0;
  int ret = 0, rc = sqlite3_prepare_v2(s->db, SQL_RPT_LOAD, -1, &st, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_bind_int64(st, 1, end_before);
  while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    if ((ret = rpt_read_row(st, rows, n, &cap)) != 0)
      break;
    rc = SQLITE_OK;
  }
  if (ret != 0)
    snprintf(s->err, sizeof(s->err), "out of memory");
  else if (rc != SQLITE_DONE)
    ret = store_fail(s, rc, "reading TLS-RPT counts");
  sqlite3_finalize(st);
  if (ret != 0) {
    store_tlsrpt_rows_free(*rows, *n);
    *rows = NULL;
    *n = 0;
  }
  return ret;
}
