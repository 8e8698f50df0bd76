/* The shared cache's operations: each is one command (a Lua script where several
 * keys must change together, so a batch is applied whole or not at all), except the
 * counter load (SMEMBERS, then one HGETALL per period). */
#include "proxy/mtasts/cache_redis.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/core/obj.h"
#include "proxy/wire/cache_codec.h"

#define OP_MAGIC 0x63616f70u   /* "caop" */
#define SLOT_MAGIC 0x63616f73u /* "caos" */
#define KEY_MAX 512

enum op_kind { OP_POLICY, OP_DONE, OP_LOAD };

struct slot {
  uint32_t magic;
  struct slot *next;
  struct cache_op *op;
  struct redis_cmd *cmd; /* NULL once answered */
  int64_t start, end;    /* OP_LOAD: the period of an HGETALL */
};

struct cache_op {
  uint32_t magic;
  struct redis *r;
  enum op_kind kind;
  cache_policy_cb policy_cb;
  cache_done_cb done_cb;
  cache_rows_cb rows_cb;
  void *arg;
  char domain[256];
  struct slot *slots; /* owned */
  unsigned pending;   /* slots waiting for a reply */
  int rc;             /* the first failure, for OP_LOAD */
  int64_t end_before;
  struct store_tlsrpt_row *rows; /* OP_LOAD: owned until handed over */
  size_t nrows, cap;
};

/* Lua scripts: KEYS[1] the periods set, KEYS[i+1] the hash of row i; ARGV[3i-2] its
 * field, ARGV[3i-1] the count, ARGV[3i] its period member. */
static const char LUA_ADD[] =
    "for i = 1, #KEYS - 1 do"
    " redis.call('HINCRBY', KEYS[i + 1], ARGV[3 * i - 2], ARGV[3 * i - 1])"
    " redis.call('EXPIRE', KEYS[i + 1], "
    "1209600"
    ")"
    " redis.call('SADD', KEYS[1], ARGV[3 * i])"
    " end return #KEYS - 1";
static const char LUA_SUB[] =
    "for i = 1, #KEYS - 1 do"
    " local v = redis.call('HINCRBY', KEYS[i + 1], ARGV[3 * i - 2],"
    " -tonumber(ARGV[3 * i - 1]))"
    " if v <= 0 then redis.call('HDEL', KEYS[i + 1], ARGV[3 * i - 2]) end"
    " if redis.call('HLEN', KEYS[i + 1]) == 0 then"
    " redis.call('SREM', KEYS[1], ARGV[3 * i]) end"
    " end return 1";
/* Only the holder's own lease is given back. */
static const char LUA_RELEASE[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then"
                                  " return redis.call('DEL', KEYS[1]) end return 0";

static struct cache_op *op_new(struct redis *r, enum op_kind kind, void *arg) {
  struct cache_op *op = calloc(1, sizeof *op);
  if (!op) {
    redis_count_error();
    return NULL;
  }
  op->magic = OP_MAGIC;
  op->r = r;
  op->kind = kind;
  op->arg = arg;
  return op;
}

static void op_free(struct cache_op *op) {
  while (op->slots) {
    struct slot *s = op->slots;
    op->slots = s->next;
    if (s->cmd)
      redis_cancel(s->cmd);
    s->magic = 0;
    free(s);
  }
  store_tlsrpt_rows_free(op->rows, op->nrows);
  op->magic = 0;
  free(op);
}

void cache_op_cancel(struct cache_op *op) {
  if (!OBJ_VALID(op, OP_MAGIC))
    return;
  op_free(op);
}

/* Sends one command for op; its reply goes to on_reply with the slot. */
static struct slot *op_send(struct cache_op *op, redis_cb on_reply, int argc,
                            const char **argv, const size_t *argvlen) {
  struct slot *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->magic = SLOT_MAGIC;
  s->op = op;
  s->cmd = redis_command(op->r, on_reply, s, argc, argv, argvlen);
  if (!s->cmd) {
    free(s);
    return NULL;
  }
  s->next = op->slots;
  op->slots = s;
  op->pending++;
  return s;
}

static struct cache_op *slot_answered(void *arg) {
  struct slot *s = arg;
  CHECK_OBJ_NOTNULL(s, SLOT_MAGIC);
  CHECK_OBJ_NOTNULL(s->op, OP_MAGIC);
  /* redis.c runs each command's callback once: an answered slot is never answered
   * again, so the op still counts it. */
  assert(s->cmd != NULL && s->op->pending > 0);
  s->cmd = NULL;
  s->op->pending--;
  return s->op;
}

#define REPEAT_QUIET_MS 60000 /* the same error reply is logged once a minute */

/* An error reply is usually a setting (ACL, memory limit) that fails every retry:
 * logged when it changes, and once a minute while it lasts. */
static void log_error_reply(const char *what, const redisReply *reply) {
  static _Thread_local char last[256];
  static _Thread_local uint64_t last_ms;
  char msg[256];
  uv_timeval64_t tv;
  uint64_t now = uv_gettimeofday(&tv) == 0
                     ? (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000
                     : 0;
  snprintf(msg, sizeof msg, "%s: %.*s", what,
           (int)(reply->len > 200 ? 200 : reply->len), reply->str);
  if (!strcmp(msg, last) && now - last_ms < REPEAT_QUIET_MS)
    return;
  snprintf(last, sizeof last, "%s", msg);
  last_ms = now;
  log_msg(LOG_WARNING, NULL, "cache: redis: %s", msg);
}

static void reply_error(const char *what, const redisReply *reply, const char *why) {
  if (reply && reply->type == REDIS_REPLY_ERROR) {
    redis_count_error();
    log_error_reply(what, reply);
  } else if (!reply) {
    log_msg(LOG_DEBUG, NULL, "cache: redis: %s: %s", what, why ? why : "failed");
  }
}

static bool key_of(struct redis *r, char *out, const char *fmt, const char *a) {
  char suffix[KEY_MAX];
  snprintf(suffix, sizeof suffix, fmt, a);
  return redis_key(r, out, KEY_MAX, suffix);
}

/* ---- policies --------------------------------------------------------------------- */

static void on_policy(void *arg, const redisReply *reply, const char *why) {
  struct cache_op *op = slot_answered(arg);
  struct store_policy p;
  int rc = SP_E_IO;
  if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 4) {
    const char *v[4];
    size_t len[4];
    bool types_ok = true;
    for (int i = 0; i < 4; i++) {
      const redisReply *e = reply->element[i];
      types_ok &= e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_NIL;
      v[i] = e->type == REDIS_REPLY_STRING ? e->str : NULL;
      len[i] = e->type == REDIS_REPLY_STRING ? e->len : 0;
    }
    rc = types_ok ? cache_codec_policy_decode(op->domain, v, len, &p) : SP_E_PROTOCOL;
    if (rc == SP_E_PROTOCOL) {
      redis_count_error();
      log_msg(LOG_WARNING, NULL, "cache: redis: malformed policy entry for %s ignored",
              op->domain);
    }
  } else {
    reply_error("reading a policy", reply, why);
  }
  op->policy_cb(op->arg, rc, rc == 1 ? &p : NULL);
  if (rc == 1)
    store_policy_free(&p);
  op_free(op);
}

struct cache_op *cache_redis_policy_get(struct redis *r, const char *domain,
                                        cache_policy_cb cb, void *arg) {
  char key[KEY_MAX];
  if (!key_of(r, key, "sts:policy:%s", domain))
    return NULL;
  struct cache_op *op = op_new(r, OP_POLICY, arg);
  if (!op)
    return NULL;
  op->policy_cb = cb;
  snprintf(op->domain, sizeof op->domain, "%s", domain);
  const char *argv[] = {"HMGET", key, "id", "fetched_at", "expires_at", "policy"};
  if (!op_send(op, on_policy, 6, argv, NULL)) {
    op_free(op);
    return NULL;
  }
  return op;
}

static void on_ignored(void *arg, const redisReply *reply, const char *why) {
  (void)arg;
  reply_error("writing", reply, why);
}

int cache_redis_policy_put(struct redis *r, const struct store_policy *p) {
  char key[KEY_MAX], fetched[24], expires[24];
  if (!key_of(r, key, "sts:policy:%s", p->domain))
    return SP_E_INVAL;
  snprintf(fetched, sizeof fetched, "%" PRId64, p->fetched_at);
  snprintf(expires, sizeof expires, "%" PRId64, p->expires_at);
  /* One script: the entry and its expiry change together. */
  static const char lua[] =
      "redis.call('HSET', KEYS[1], 'id', ARGV[1], 'fetched_at', ARGV[2],"
      " 'expires_at', ARGV[3], 'policy', ARGV[4])"
      " redis.call('EXPIREAT', KEYS[1], ARGV[3]) return 1";
  const char *argv[] = {"EVAL", lua, "1", key, p->id, fetched, expires, p->text};
  return redis_command(r, on_ignored, NULL, 8, argv, NULL) ? 0 : SP_E_IO;
}

/* ---- locks ------------------------------------------------------------------------ */

static void on_set_nx(void *arg, const redisReply *reply, const char *why) {
  struct cache_op *op = slot_answered(arg);
  int rc = SP_E_IO;
  if (reply && reply->type == REDIS_REPLY_STATUS)
    rc = 1; /* OK */
  else if (reply && reply->type == REDIS_REPLY_NIL)
    rc = 0; /* another proxy holds it */
  else
    reply_error("taking a lock", reply, why);
  op->done_cb(op->arg, rc);
  op_free(op);
}

static struct cache_op *set_nx(struct redis *r, const char *key, const char *owner,
                               const char *unit, uint64_t ttl, cache_done_cb cb,
                               void *arg) {
  char ttl_s[24];
  snprintf(ttl_s, sizeof ttl_s, "%" PRIu64, ttl > 0 ? ttl : 1);
  struct cache_op *op = op_new(r, OP_DONE, arg);
  if (!op)
    return NULL;
  op->done_cb = cb;
  const char *argv[] = {"SET", key, owner, "NX", unit, ttl_s};
  if (!op_send(op, on_set_nx, 6, argv, NULL)) {
    op_free(op);
    return NULL;
  }
  return op;
}

struct cache_op *cache_redis_lease(struct redis *r, const char *domain,
                                   const char *owner, uint64_t ms, cache_done_cb cb,
                                   void *arg) {
  char key[KEY_MAX];
  if (!key_of(r, key, "sts:lease:%s", domain))
    return NULL;
  return set_nx(r, key, owner, "PX", ms, cb, arg);
}

void cache_redis_lease_release(struct redis *r, const char *domain, const char *owner) {
  char key[KEY_MAX];
  if (!key_of(r, key, "sts:lease:%s", domain))
    return;
  const char *argv[] = {"EVAL", LUA_RELEASE, "1", key, owner};
  redis_command(r, on_ignored, NULL, 5, argv, NULL);
}

struct cache_op *cache_redis_report_lock(struct redis *r, int64_t end,
                                         const char *owner, uint64_t ttl_s,
                                         cache_done_cb cb, void *arg) {
  char key[KEY_MAX], e[24];
  snprintf(e, sizeof e, "%" PRId64, end);
  if (!key_of(r, key, "tlsrpt:lock:%s", e))
    return NULL;
  return set_nx(r, key, owner, "EX", ttl_s, cb, arg);
}

/* ---- counters --------------------------------------------------------------------- */

/* argv for LUA_ADD / LUA_SUB over rows; every string malloc'd in *strs. */
static int rows_argv(struct redis *r, const char *script,
                     const struct store_tlsrpt_row *rows, size_t n, const char ***argv,
                     size_t **argvlen, char ***strs, int *argc) {
  size_t total = 4 + 4 * n, k = 0;
  *argv = calloc(total, sizeof **argv);
  *argvlen = calloc(total, sizeof **argvlen);
  *strs = calloc(4 * n + 2, sizeof **strs);
  if (!*argv || !*argvlen || !*strs)
    return SP_E_NOMEM;
  char nkeys[24], periods[KEY_MAX];
  snprintf(nkeys, sizeof nkeys, "%zu", n + 1);
  if (!redis_key(r, periods, sizeof periods, "tlsrpt:periods"))
    return SP_E_INVAL;
  size_t si = 0;
  (*strs)[si] = strdup(nkeys);
  (*strs)[si + 1] = strdup(periods);
  if (!(*strs)[si] || !(*strs)[si + 1])
    return SP_E_NOMEM;
  (*argv)[k++] = "EVAL";
  (*argv)[k++] = script;
  (*argv)[k++] = (*strs)[si++];
  (*argv)[k++] = (*strs)[si++];
  for (size_t i = 0; i < n; i++) { /* KEYS */
    char suffix[80], key[KEY_MAX];
    snprintf(suffix, sizeof suffix, "tlsrpt:%" PRId64 ":%" PRId64, rows[i].period_start,
             rows[i].period_end);
    if (!redis_key(r, key, sizeof key, suffix) || !((*strs)[si] = strdup(key)))
      return SP_E_NOMEM;
    (*argv)[k++] = (*strs)[si++];
  }
  for (size_t i = 0; i < n; i++) { /* ARGV */
    size_t flen = 0;
    char count[24], member[64];
    snprintf(count, sizeof count, "%" PRId64, rows[i].count);
    snprintf(member, sizeof member, "%" PRId64 ":%" PRId64, rows[i].period_start,
             rows[i].period_end);
    if (!((*strs)[si] = cache_codec_row_encode(&rows[i], &flen)))
      return SP_E_NOMEM;
    (*argvlen)[k] = flen;
    (*argv)[k++] = (*strs)[si++];
    if (!((*strs)[si] = strdup(count)) || !((*strs)[si + 1] = strdup(member)))
      return SP_E_NOMEM;
    (*argv)[k++] = (*strs)[si++];
    (*argv)[k++] = (*strs)[si++];
  }
  for (size_t i = 0; i < k; i++)
    if (!(*argvlen)[i])
      (*argvlen)[i] = strlen((*argv)[i]);
  *argc = (int)k;
  return 0;
}

static void argv_free(const char **argv, size_t *argvlen, char **strs, size_t n) {
  for (size_t i = 0; strs && i < 4 * n + 2; i++)
    free(strs[i]);
  free(strs);
  free(argv);
  free(argvlen);
}

static void on_added(void *arg, const redisReply *reply, const char *why) {
  struct cache_op *op = slot_answered(arg);
  int rc = reply && reply->type == REDIS_REPLY_INTEGER ? 1 : SP_E_IO;
  if (rc < 0)
    reply_error("adding TLS-RPT counts", reply, why);
  op->done_cb(op->arg, rc);
  op_free(op);
}

/* Sends script over rows, its reply to cb (NULL: ignored) with op. */
static bool send_rows(struct redis *r, struct cache_op *op, const char *script,
                      const struct store_tlsrpt_row *rows, size_t n, redis_cb cb) {
  const char **argv = NULL;
  size_t *argvlen = NULL;
  char **strs = NULL;
  int argc = 0;
  bool ok = false;
  if (rows_argv(r, script, rows, n, &argv, &argvlen, &strs, &argc) == 0)
    ok = op ? op_send(op, cb, argc, argv, argvlen) != NULL
            : redis_command(r, on_ignored, NULL, argc, argv, argvlen) != NULL;
  argv_free(argv, argvlen, strs, n);
  return ok;
}

struct cache_op *cache_redis_tlsrpt_add(struct redis *r,
                                        const struct store_tlsrpt_row *rows, size_t n,
                                        cache_done_cb cb, void *arg) {
  struct cache_op *op = op_new(r, OP_DONE, arg);
  if (!op)
    return NULL;
  op->done_cb = cb;
  if (!send_rows(r, op, LUA_ADD, rows, n, on_added)) {
    op_free(op);
    return NULL;
  }
  return op;
}

int cache_redis_tlsrpt_subtract(struct redis *r, const struct store_tlsrpt_row *rows,
                                size_t n) {
  if (n == 0)
    return 0;
  return send_rows(r, NULL, LUA_SUB, rows, n, NULL) ? 0 : SP_E_IO;
}

/* ---- loading counters -------------------------------------------------------------- */

static int row_cmp(const void *pa, const void *pb) {
  const struct store_tlsrpt_row *a = pa, *b = pb;
  int c;
  if ((c = strcmp(a->domain, b->domain)))
    return c;
  if (a->period_start != b->period_start)
    return a->period_start < b->period_start ? -1 : 1;
  if (a->period_end != b->period_end)
    return a->period_end < b->period_end ? -1 : 1;
  const char *x[] = {
      a->policy_type, a->policy_strings, a->mx_hosts, a->result_type, a->mx,
      a->ip,          a->reason};
  const char *y[] = {
      b->policy_type, b->policy_strings, b->mx_hosts, b->result_type, b->mx,
      b->ip,          b->reason};
  for (int i = 0; i < 7; i++)
    if ((c = strcmp(x[i], y[i])))
      return c;
  return 0;
}

static void load_finish(struct cache_op *op) {
  if (op->pending > 0)
    return;
  struct store_tlsrpt_row *rows = op->rows;
  size_t n = op->nrows;
  int rc = op->rc;
  if (rc < 0) {
    store_tlsrpt_rows_free(rows, n);
    rows = NULL;
    n = 0;
  } else if (n > 1) {
    qsort(rows, n, sizeof *rows, row_cmp);
  }
  op->rows = NULL;
  op->nrows = 0;
  op->rows_cb(op->arg, rc, rows, n);
  op_free(op);
}

static int add_row(struct cache_op *op, const struct slot *s, const redisReply *f,
                   const redisReply *v) {
  struct store_tlsrpt_row row = {.period_start = s->start, .period_end = s->end};
  if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
      cache_codec_int(v->str, v->len, &row.count) < 0 ||
      cache_codec_row_decode(f->str, f->len, &row) < 0)
    return SP_E_PROTOCOL;
  if (row.count <= 0) {
    free(row.policy_strings);
    free(row.mx_hosts);
    return 0;
  }
  if (op->nrows == op->cap) {
    size_t c = op->cap ? op->cap * 2 : 16;
    struct store_tlsrpt_row *p = realloc(op->rows, c * sizeof *p);
    if (!p) {
      free(row.policy_strings);
      free(row.mx_hosts);
      return SP_E_NOMEM;
    }
    op->rows = p;
    op->cap = c;
  }
  op->rows[op->nrows++] = row;
  return 0;
}

static void on_period(void *arg, const redisReply *reply, const char *why) {
  struct slot *s = arg;
  struct cache_op *op = slot_answered(arg);
  if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements % 2) {
    reply_error("reading TLS-RPT counts", reply, why);
    op->rc = SP_E_IO;
  } else {
    unsigned bad = 0;
    for (size_t i = 0; i + 1 < reply->elements && op->rc == 0; i += 2) {
      int rc = add_row(op, s, reply->element[i], reply->element[i + 1]);
      if (rc == SP_E_PROTOCOL)
        bad++;
      else if (rc < 0)
        op->rc = rc;
    }
    if (bad) {
      redis_count_error();
      log_msg(LOG_WARNING, NULL,
              "cache: redis: %u malformed TLS-RPT counter(s) of %" PRId64 " ignored",
              bad, s->end);
    }
  }
  load_finish(op);
}

static void on_periods(void *arg, const redisReply *reply, const char *why) {
  struct cache_op *op = slot_answered(arg);
  if (!reply || reply->type != REDIS_REPLY_ARRAY) {
    reply_error("listing TLS-RPT periods", reply, why);
    op->rc = SP_E_IO;
    load_finish(op);
    return;
  }
  for (size_t i = 0; i < reply->elements && op->rc == 0; i++) {
    const redisReply *e = reply->element[i];
    int64_t start, end;
    char suffix[80], key[KEY_MAX];
    if (e->type != REDIS_REPLY_STRING ||
        cache_codec_period_decode(e->str, e->len, &start, &end) < 0) {
      redis_count_error();
      continue;
    }
    if (end > op->end_before)
      continue;
    snprintf(suffix, sizeof suffix, "tlsrpt:%" PRId64 ":%" PRId64, start, end);
    if (!redis_key(op->r, key, sizeof key, suffix))
      continue;
    const char *argv[] = {"HGETALL", key};
    struct slot *s = op_send(op, on_period, 2, argv, NULL);
    if (!s) {
      op->rc = SP_E_IO;
      break;
    }
    s->start = start;
    s->end = end;
  }
  load_finish(op);
}

struct cache_op *cache_redis_tlsrpt_load(struct redis *r, int64_t end_before,
                                         cache_rows_cb cb, void *arg) {
  char key[KEY_MAX];
  if (!redis_key(r, key, sizeof key, "tlsrpt:periods"))
    return NULL;
  struct cache_op *op = op_new(r, OP_LOAD, arg);
  if (!op)
    return NULL;
  op->rows_cb = cb;
  op->end_before = end_before;
  const char *argv[] = {"SMEMBERS", key};
  if (!op_send(op, on_periods, 2, argv, NULL)) {
    op_free(op);
    return NULL;
  }
  return op;
}
