/* TLS reporting for a fleet (cache.backend redis): the memory counters go to Redis
 * one batch at a time (kept in memory while it is down, saved in the local file at
 * close and moved to Redis at the next start), and at the end of each period the
 * proxy that takes the period's lock loads the fleet's counters and reports them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/core/obj.h"
#include "proxy/tlsrpt/tlsrpt.h"
#include "proxy/tlsrpt/tlsrpt_internal.h"

/* The lock holder waits this long after the boundary so every proxy's last counts of
 * the period (flushed within TLSRPT_FLUSH_MS) are in Redis before it loads them. */
#define TLSRPT_SHARED_GRACE_MS (2 * TLSRPT_FLUSH_MS + 500)
#define TLSRPT_LOCK_MIN_S 60 /* the lock outlives every proxy's attempt at it */

/* Adds c to the memory counters (merging with a counter of the same key). */
static void merge(struct tlsrpt *t, struct tlsrpt__count *c) {
  for (struct tlsrpt__count *m = t->counts; m; m = m->next)
    if (tlsrpt__same_key(&m->row, &c->row)) {
      m->row.count += c->row.count;
      tlsrpt__row_free(&c->row);
      free(c);
      return;
    }
  c->next = t->counts;
  t->counts = c;
  t->ncounts++;
}

static void list_free(struct tlsrpt__count *l) {
  while (l) {
    struct tlsrpt__count *c = l;
    l = c->next;
    tlsrpt__row_free(&c->row);
    free(c);
  }
}

/* Rows (shallow copies) of list l; NULL when out of memory or empty. */
static struct store_tlsrpt_row *rows_of(struct tlsrpt__count *l, size_t *n) {
  size_t k = 0;
  for (struct tlsrpt__count *c = l; c; c = c->next)
    k++;
  struct store_tlsrpt_row *rows = k ? malloc(k * sizeof *rows) : NULL;
  *n = 0;
  for (struct tlsrpt__count *c = l; rows && c; c = c->next)
    rows[(*n)++] = c->row;
  return rows;
}

/* Counters Redis did not take are saved in the local file (moved back at start). */
static void save_local(struct tlsrpt *t, struct tlsrpt__count *l) {
  size_t n;
  struct store_tlsrpt_row *rows = rows_of(l, &n);
  if (!rows)
    return;
  if (store_tlsrpt_add(t->store, rows, n) == 0)
    log_msg(LOG_WARNING, NULL,
            "tlsrpt: shared cache unavailable at exit: %zu counter(s) saved locally, "
            "moved to it at the next start",
            n);
  else
    log_msg(LOG_WARNING, NULL, "tlsrpt: %zu counter(s) lost: %s", n,
            store_errmsg(t->store));
  free(rows);
}

static void on_added(void *arg, int rc) {
  struct tlsrpt *t = arg;
  CHECK_OBJ_NOTNULL(t, TLSRPT_MAGIC);
  struct tlsrpt__count *l = t->inflight;
  t->add_op = NULL;
  t->inflight = NULL;
  if (rc == 1) {
    list_free(l);
    if (t->shared_down)
      log_msg(LOG_INFO, NULL, "tlsrpt: shared cache back: counts caught up");
    t->shared_down = false;
  } else if (t->closing) {
    save_local(t, l);
    list_free(l);
  } else {
    if (!t->shared_down)
      log_msg(LOG_WARNING, NULL,
              "tlsrpt: shared cache unavailable: counts kept in memory until it is "
              "back");
    t->shared_down = true;
    while (l) {
      struct tlsrpt__count *c = l;
      l = c->next;
      merge(t, c);
    }
  }
  if (t->closing)
    tlsrpt__maybe_free(t);
  else
    tlsrpt__arm_flush(t);
}

/* One batch to Redis: the memory counters move to t->inflight until it is answered. */
int tlsrpt__shared_flush(struct tlsrpt *t) {
  if (t->add_op)
    return 0; /* one batch at a time; the timer comes back */
  size_t n;
  struct store_tlsrpt_row *rows = rows_of(t->counts, &n);
  if (!rows)
    return SP_E_NOMEM;
  t->add_op = cache_redis_tlsrpt_add(t->redis, rows, n, on_added, t);
  free(rows);
  if (!t->add_op) {
    if (!t->shared_down)
      log_msg(LOG_WARNING, NULL,
              "tlsrpt: shared cache unavailable: counts kept in memory until it is "
              "back");
    t->shared_down = true;
    tlsrpt__arm_flush(t);
    return SP_E_IO;
  }
  t->inflight = t->counts;
  t->counts = NULL;
  t->ncounts = 0;
  return 0;
}

/* At start: counters saved locally (at the last exit, or before the switch to a
 * shared cache) join the memory counters, for the next batch. */
void tlsrpt__shared_adopt_local(struct tlsrpt *t) {
  struct store_tlsrpt_row *rows = NULL;
  size_t n = 0;
  if (store_tlsrpt_load(t->store, INT64_MAX, &rows, &n) < 0 || n == 0) {
    store_tlsrpt_rows_free(rows, n);
    return;
  }
  if (store_tlsrpt_subtract(t->store, rows, n) < 0) {
    store_tlsrpt_rows_free(rows, n);
    return;
  }
  size_t moved = 0;
  for (size_t i = 0; i < n; i++) {
    struct tlsrpt__count *c = calloc(1, sizeof *c);
    if (!c)
      break;
    c->row = rows[i];
    rows[i].policy_strings = rows[i].mx_hosts = NULL;
    merge(t, c);
    moved++;
  }
  store_tlsrpt_rows_free(rows, n);
  log_msg(LOG_INFO, NULL, "tlsrpt: %zu counter(s) saved locally go to the shared cache",
          moved);
  tlsrpt__arm_flush(t);
}

static void on_loaded(void *arg, int rc, struct store_tlsrpt_row *rows, size_t n) {
  struct tlsrpt *t = arg;
  CHECK_OBJ_NOTNULL(t, TLSRPT_MAGIC);
  t->load_op = NULL;
  tlsrpt__run_cb cb = tlsrpt__end_cb(t);
  if (rc < 0 || t->run) {
    store_tlsrpt_rows_free(rows, n);
    if (rc < 0)
      log_msg(LOG_WARNING, NULL,
              "tlsrpt: cannot read counts from the shared cache: reports wait for "
              "the next run");
    if (t->result) {
      t->result->done = false;
      tlsrpt_close(t);
    }
    return;
  }
  int64_t now = (int64_t)time(NULL);
  if (!t->result && now < t->lock_end)
    now = t->lock_end;
  int started = tlsrpt__run_start_rows(t, rows, n, now, cb);
  if (started != 0 && t->result) {
    t->result->done = started > 0;
    tlsrpt_close(t);
  }
}

/* The lock holder's grace is over: the fleet's counts of the period are in Redis. */
static void on_grace(uv_timer_t *h) {
  struct tlsrpt *t = h->data;
  CHECK_OBJ_NOTNULL(t, TLSRPT_MAGIC);
  if (t->run || t->load_op)
    return;
  if (tlsrpt__shared_load(t, t->lock_end) < 0)
    log_msg(LOG_WARNING, NULL,
            "tlsrpt: shared cache unavailable: reports wait for the next run");
}

static void on_lock(void *arg, int rc) {
  struct tlsrpt *t = arg;
  CHECK_OBJ_NOTNULL(t, TLSRPT_MAGIC);
  t->lock_op = NULL;
  if (rc == 1) {
    log_msg(LOG_INFO, NULL,
            "tlsrpt: this proxy reports for the fleet (period end %lld)",
            (long long)t->lock_end);
    uv_timer_start(&t->run_timer, on_grace, TLSRPT_SHARED_GRACE_MS, 0);
  } else if (rc == 0) {
    log_msg(LOG_INFO, NULL,
            "tlsrpt: another proxy reports for the fleet (period end %lld)",
            (long long)t->lock_end);
  } else {
    log_msg(LOG_WARNING, NULL,
            "tlsrpt: shared cache unavailable: reports wait for the next run");
  }
}

void tlsrpt__shared_period(struct tlsrpt *t) {
  if (t->run || t->lock_op || t->load_op || uv_is_active((uv_handle_t *)&t->run_timer))
    return;
  int64_t iv = tlsrpt__interval_s(t);
  t->lock_end = t->boundary;
  t->lock_op = cache_redis_report_lock(
      t->redis, t->lock_end, t->owner,
      (uint64_t)(iv > TLSRPT_LOCK_MIN_S ? iv : TLSRPT_LOCK_MIN_S), on_lock, t);
  if (!t->lock_op)
    log_msg(LOG_WARNING, NULL,
            "tlsrpt: shared cache unavailable: reports wait for the next run");
}

static void on_loaded(void *arg, int rc, struct store_tlsrpt_row *rows, size_t n);

int tlsrpt__shared_load(struct tlsrpt *t, int64_t end_before) {
  t->load_op = cache_redis_tlsrpt_load(t->redis, end_before, on_loaded, t);
  return t->load_op ? 0 : SP_E_IO;
}

void tlsrpt__shared_close(struct tlsrpt *t) {
  cache_op_cancel(t->lock_op);
  cache_op_cancel(t->load_op);
  t->lock_op = t->load_op = NULL;
  if (!t->counts)
    return;
  /* A last batch when none is in flight; what cannot go now waits in the file. */
  if (t->add_op || tlsrpt__shared_flush(t) < 0) {
    save_local(t, t->counts);
    tlsrpt__counts_free(t);
  }
}
