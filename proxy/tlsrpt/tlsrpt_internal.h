/* TLS reporting, shared between its files: tlsrpt.c (counting, timers, the CLI),
 * tlsrpt_run.c (one sending run: TXT lookups, reports, deletion of what was sent),
 * tlsrpt_post.c (gzip, HTTPS POST), tlsrpt_mail.c (the report as a message, delivered
 * to the rua's MX hosts through the outbound layer) and tlsrpt_shared.c (a fleet's
 * counters and report lock in Redis).
 *
 * Ownership: struct tlsrpt owns its store handle, its http client, its timers, the
 * memory counters, the shared-cache operations in flight and the run in progress, and
 * holds one runtime reference (for the resolver, the shared cache and the
 * configuration). A run owns the rows it loaded and its one delivery
 * in flight; cancelling a run cancels that delivery (no callback runs afterwards). */
#ifndef SP_TLSRPT_INTERNAL_H
#define SP_TLSRPT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/mtasts/cache_redis.h"
#include "proxy/mtasts/store.h"
#include "proxy/outbound/runtime.h"

#define TLSRPT_MAGIC 0x74727074u /* "trpt" */
#define TLSRPT_FLUSH_MS 1000     /* memory counters to the store, at most this late */

struct tlsrpt__count;
struct tlsrpt__run;

struct tlsrpt {
  uint32_t magic;
  uv_loop_t *loop;
  struct runtime *rt;           /* one reference */
  const struct config *cfg;     /* rt->cfg */
  struct store *store;          /* owned */
  struct http *http;            /* owned */
  uv_timer_t period_timer;      /* owned: the end of each period (or the CLI) */
  uv_timer_t flush_timer;       /* owned: memory counters to the store */
  int64_t boundary;             /* the period end period_timer is set for */
  struct tlsrpt__count *counts; /* owned list */
  size_t ncounts;               /* entries in counts */
  /* With a shared cache (rt->redis; NULL for sqlite): counts go there, one batch at a
   * time; the period's reports are sent by the proxy that takes its lock. */
  struct redis *redis;                /* rt->redis */
  struct cache_op *add_op;            /* the batch in flight */
  struct tlsrpt__count *inflight;     /* owned: the counters of that batch */
  struct cache_op *lock_op;           /* taking the report lock */
  struct cache_op *load_op;           /* loading the counters to report */
  uv_timer_t run_timer;               /* owned: grace before loading, CLI retries */
  uv_timer_t retry_timer;             /* owned: the next try of failed reports */
  uint64_t retry_ms;                  /* its last delay (0: none since the period) */
  int64_t retry_before;               /* the periods it sends: ending by this */
  int64_t lock_end;                   /* the period end the lock is for */
  uint64_t cli_deadline;              /* `tlsrpt send`: loop ms to wait for Redis */
  bool shared_down;                   /* a failure was logged; log the recovery */
  char owner[300];                    /* this process, as lock holder */
  struct tlsrpt__run *run;            /* owned; NULL when no run is in progress */
  struct tlsrpt__send_result *result; /* `tlsrpt send`: where the run's result goes */
  bool closing;
  unsigned pending_closes;
};

/* What `tlsrpt send` reports. */
struct tlsrpt__send_result {
  bool done;
  unsigned sent, failed, dropped;
};

/* Counts sent reports, failed ones (kept for the next run) and domains dropped. */
typedef void (*tlsrpt__run_cb)(struct tlsrpt *t, unsigned sent, unsigned failed,
                               unsigned dropped);

/* Sends every report of periods ending at or before end_before (the current one too
 * when end_before is INT64_MAX, its end cut at now). Returns 0 and calls cb once when
 * done (cb may run before this returns; afterwards t->run is NULL again), 1 when
 * there is nothing to send (no cb), or a negative error (logged). */
int tlsrpt__run_start(struct tlsrpt *t, int64_t end_before, int64_t now,
                      tlsrpt__run_cb cb);
/* The same over rows already loaded (sorted by domain, then period; taken over, also
 * on failure). */
int tlsrpt__run_start_rows(struct tlsrpt *t, struct store_tlsrpt_row *rows, size_t n,
                           int64_t now, tlsrpt__run_cb cb);
/* Stops a run: its lookup or delivery is cancelled, nothing more is deleted. */
void tlsrpt__run_cancel(struct tlsrpt__run *r);

/* ---- tlsrpt.c, for the other files ---- */

struct tlsrpt__count {
  struct tlsrpt__count *next;
  struct store_tlsrpt_row row; /* policy_strings and mx_hosts malloc'd */
};

int64_t tlsrpt__interval_s(const struct tlsrpt *t);
bool tlsrpt__same_key(const struct store_tlsrpt_row *a,
                      const struct store_tlsrpt_row *b);
void tlsrpt__row_free(struct store_tlsrpt_row *r);
void tlsrpt__counts_free(struct tlsrpt *t); /* the memory counters */
void tlsrpt__arm_flush(struct tlsrpt *t);   /* a flush soon, when counts wait */
void tlsrpt__maybe_free(struct tlsrpt *t);  /* one pending close is over */
/* What ends a run: the daemon's log line, or `tlsrpt send`'s result. */
tlsrpt__run_cb tlsrpt__end_cb(const struct tlsrpt *t);

/* ---- tlsrpt_shared.c: the fleet's counters in Redis (t->redis set) ---- */

/* One batch of the memory counters to Redis (they wait in t->inflight). 0, or a
 * negative error when Redis is unavailable (they stay in memory, a flush is armed). */
int tlsrpt__shared_flush(struct tlsrpt *t);
/* At start: counters saved in the local file join the memory counters. */
void tlsrpt__shared_adopt_local(struct tlsrpt *t);
/* A period ended: take its lock; the holder loads and reports after a grace. */
void tlsrpt__shared_period(struct tlsrpt *t);
/* Loads the counters of periods ending by end_before and runs (or, for `tlsrpt
 * send`, ends with t->result). 0, or a negative error when Redis is unavailable. */
int tlsrpt__shared_load(struct tlsrpt *t, int64_t end_before);
/* At close: cancels the lock and load, sends or saves locally the memory counters. */
void tlsrpt__shared_close(struct tlsrpt *t);

/* A delivery ended: ok, or why it failed. */
typedef void (*tlsrpt__done_cb)(void *arg, bool ok, const char *why);

/* gzip (RFC 1952) of in[0..len): *out malloc'd. Returns 0 or a negative error. */
int tlsrpt__gzip(const void *in, size_t len, unsigned char **out, size_t *outlen);

/* POSTs body (copied) as application/tlsrpt+gzip to url (https:), its host resolved
 * through the proxy's resolver. cb runs once, never from inside this call. NULL (with
 * err) when it cannot start. */
struct tlsrpt__post;
struct tlsrpt__post *tlsrpt__post_start(struct tlsrpt *t, const char *url,
                                        const void *body, size_t len,
                                        tlsrpt__done_cb cb, void *arg, char *err,
                                        size_t errlen);
void tlsrpt__post_cancel(struct tlsrpt__post *p);

/* The facts of one report message (RFC 8460 section 5.3). */
struct tlsrpt__mail_info {
  const char *domain;    /* the policy domain reported on */
  const char *submitter; /* the contact's domain (§5.3), also the filename's sender */
  const char *from;      /* contact address, the From: header */
  const char *rcpt;      /* the mailto: address */
  const char *report_id;
  const char *hostname; /* for Message-ID */
  int64_t start, end;   /* the report's period */
  int64_t now;          /* Date: */
  const void *gz;       /* the gzipped JSON report */
  size_t gzlen;
};

/* The message, CRLF line ends, not dot-stuffed: malloc'd, length in *len; NULL when
 * out of memory. */
char *tlsrpt__mail_compose(const struct tlsrpt__mail_info *m, size_t *len);

/* Delivers msg (copied) from from to rcpt at the MX hosts of rcpt's domain (MAIL,
 * RCPT, DATA, QUIT) under RFC 8460 §5.3: opportunistic TLS whatever the domain's
 * policy (which is logged, not enforced), the sessions not counted for TLS reports
 * (router_route_report). cb runs once, never from inside this call. NULL (with err)
 * when it cannot start. */
struct tlsrpt__mail;
struct tlsrpt__mail *tlsrpt__mail_start(struct tlsrpt *t, const char *from,
                                        const char *rcpt, const char *msg, size_t len,
                                        tlsrpt__done_cb cb, void *arg, char *err,
                                        size_t errlen);
void tlsrpt__mail_cancel(struct tlsrpt__mail *m);

#endif
