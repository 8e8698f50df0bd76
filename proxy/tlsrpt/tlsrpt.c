/* TLS reporting (RFC 8460): counting, the period timer, start/stop and the CLI.
 *
 * Counts are kept in memory and written to the store at most a second later (and at
 * close), so a restart or `tlsrpt send` sees them. Periods are aligned to multiples
 * of tlsrpt.interval since the epoch (a UTC day by default, as §4.1 suggests); when
 * one ends, every finished period in the store is reported (tlsrpt_run.c).
 *
 * With a shared cache (cache.backend redis) the counts go to Redis instead and one
 * proxy of the fleet reports each period (tlsrpt_shared.c).
 *
 * tlsrpt_record() has no context argument (it is observe.h's TLS sink, registered by
 * main), so the reporter of the running configuration is the module's one piece of
 * global state: set in tlsrpt_start, cleared in tlsrpt_close. Everything runs on the
 * loop's thread. */
#include "proxy/tlsrpt/tlsrpt.h"

#include <assert.h>
#include <errno.h>
#include <openssl/x509_vfy.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "policy/tlsrpt.h"
#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/core/obj.h"
#include "proxy/net/http.h"
#include "proxy/tlsrpt/dkimsig.h"
#include "proxy/tlsrpt/tlsrpt_internal.h"

#define TLSRPT_MEM_MAX 4096      /* distinct counters kept in memory */
#define TLSRPT_PERIOD_GRACE_MS 1 /* fire just after the boundary */

static struct tlsrpt *tlsrpt_active; /* the running configuration's reporter */

int64_t tlsrpt__interval_s(const struct tlsrpt *t) {
  int64_t s = (int64_t)(t->cfg->tlsrpt_interval_ms / 1000);
  return s > 0 ? s : 1;
}

/* ---- counting -------------------------------------------------------------------- */

static enum tlsrpt_event event_of(const struct observe_tls *o) {
  switch (o->failure) {
  case OBSERVE_OK:
    return TLSRPT_EV_OK;
  case OBSERVE_NO_STARTTLS:
    return TLSRPT_EV_NO_STARTTLS;
  case OBSERVE_HANDSHAKE:
    return TLSRPT_EV_HANDSHAKE;
  case OBSERVE_CERTIFICATE:
    return TLSRPT_EV_CERTIFICATE;
  case OBSERVE_MX_NOT_LISTED:
    return TLSRPT_EV_MX_NOT_LISTED;
  case OBSERVE_TLSA_LOOKUP:
    return TLSRPT_EV_TLSA_LOOKUP;
  case OBSERVE_DNSSEC:
  default:
    /* dane-only: secure records none of which is usable are "tlsa-invalid", no
     * secure TLSA records "dane-required" (§4.3.2); answers that are not secure at
     * all are "dnssec-invalid". */
    if (o->detail && strstr(o->detail, "no usable TLSA records"))
      return TLSRPT_EV_TLSA_UNUSABLE;
    return o->detail && strstr(o->detail, "TLSA records") ? TLSRPT_EV_DANE_REQUIRED
                                                          : TLSRPT_EV_DNSSEC;
  }
}

static enum tlsrpt_event sts_event_of(const struct observe_tls *o) {
  switch (o->sts_failure) {
  case OBSERVE_STS_FETCH:
    return TLSRPT_EV_STS_FETCH;
  case OBSERVE_STS_INVALID:
    return TLSRPT_EV_STS_INVALID;
  case OBSERVE_STS_WEBPKI:
    return TLSRPT_EV_STS_WEBPKI;
  case OBSERVE_STS_OK:
  default:
    return TLSRPT_EV_OK;
  }
}

static bool is_sts_event(enum tlsrpt_event ev) {
  return ev == TLSRPT_EV_STS_FETCH || ev == TLSRPT_EV_STS_INVALID ||
         ev == TLSRPT_EV_STS_WEBPKI;
}

static enum tlsrpt_cert cert_of(long e) {
  switch (e) {
  case X509_V_OK:
    return TLSRPT_CERT_UNKNOWN;
  case X509_V_ERR_HOSTNAME_MISMATCH:
    return TLSRPT_CERT_HOST_MISMATCH;
  case X509_V_ERR_CERT_HAS_EXPIRED:
    return TLSRPT_CERT_EXPIRED;
  case X509_V_ERR_DANE_NO_MATCH:
    return TLSRPT_CERT_DANE_NO_MATCH;
  case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
  case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
  case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
  case X509_V_ERR_CERT_UNTRUSTED:
    return TLSRPT_CERT_UNTRUSTED;
  default:
    return TLSRPT_CERT_OTHER;
  }
}

/* Printable ASCII only: the text goes into JSON and logs. */
static void copy_clean(char *dst, size_t cap, const char *src) {
  size_t n = 0;
  for (; src && *src && n + 1 < cap; src++)
    dst[n++] = (*src >= 0x20 && *src < 0x7f) ? *src : '?';
  dst[n] = '\0';
}

static void lower_copy(char *dst, size_t cap, const char *src) {
  copy_clean(dst, cap, src);
  for (char *p = dst; *p; p++)
    if (*p >= 'A' && *p <= 'Z')
      *p = (char)(*p - 'A' + 'a');
}

/* The policy half of the key: its type, strings and mx-host list. */
static int row_policy(struct store_tlsrpt_row *r, const struct observe_tls *o,
                      enum tlsrpt_policy_type type) {
  snprintf(r->policy_type, sizeof r->policy_type, "%s", tlsrpt_policy_type_name(type));
  if (type == TLSRPT_POLICY_STS && o->sts) {
    r->policy_strings = tlsrpt_sts_strings(o->sts);
    r->mx_hosts = tlsrpt_sts_mx_hosts(o->sts);
  } else if (type == TLSRPT_POLICY_STS) {
    /* The policy could not be had: no strings and no mx patterns to quote. */
    r->policy_strings = strdup("");
    r->mx_hosts = strdup("");
  } else {
    r->policy_strings = type == TLSRPT_POLICY_TLSA && o->tlsa
                            ? tlsrpt_tlsa_strings(o->tlsa, o->ntlsa)
                            : strdup("");
    char mx[256];
    lower_copy(mx, sizeof mx, o->mx_host);
    r->mx_hosts = strdup(mx);
  }
  return r->policy_strings && r->mx_hosts ? 0 : SP_E_NOMEM;
}

void tlsrpt__row_free(struct store_tlsrpt_row *r) {
  free(r->policy_strings);
  free(r->mx_hosts);
  r->policy_strings = r->mx_hosts = NULL;
}

static int row_from(struct tlsrpt *t, const struct observe_tls *o,
                    struct store_tlsrpt_row *r) {
  memset(r, 0, sizeof *r);
  int64_t now = (int64_t)time(NULL), iv = tlsrpt__interval_s(t);
  r->period_start = now - now % iv;
  r->period_end = r->period_start + iv;
  r->count = 1;
  lower_copy(r->domain, sizeof r->domain, o->domain);
  size_t ntlsa = o->tlsa ? o->ntlsa : 0;
  enum tlsrpt_event ev = tlsrpt_session_event(event_of(o), sts_event_of(o), o->policy,
                                              o->sts != NULL, ntlsa);
  enum tlsrpt_policy_type type =
      tlsrpt_policy_type_of(o->policy, o->sts != NULL, ntlsa, ev);
  enum tlsrpt_result res = tlsrpt_classify(type, ev, cert_of(o->verify_error));
  if (row_policy(r, o, type) < 0) {
    tlsrpt__row_free(r);
    return SP_E_NOMEM;
  }
  if (res == TLSRPT_SUCCESS)
    return 0;
  snprintf(r->result_type, sizeof r->result_type, "%s", tlsrpt_result_name(res));
  lower_copy(r->mx, sizeof r->mx, o->mx_host);
  copy_clean(r->ip, sizeof r->ip, o->ip);
  copy_clean(r->sending_ip, sizeof r->sending_ip, o->local_ip);
  if (is_sts_event(ev))
    copy_clean(r->reason, sizeof r->reason, o->sts_detail);
  else if (ev == TLSRPT_EV_CERTIFICATE && o->verify_error != X509_V_OK)
    copy_clean(r->reason, sizeof r->reason,
               X509_verify_cert_error_string(o->verify_error));
  else
    copy_clean(r->reason, sizeof r->reason, o->detail);
  return 0;
}

bool tlsrpt__same_key(const struct store_tlsrpt_row *a,
                      const struct store_tlsrpt_row *b) {
  return a->period_start == b->period_start && a->period_end == b->period_end &&
         !strcmp(a->domain, b->domain) && !strcmp(a->policy_type, b->policy_type) &&
         !strcmp(a->policy_strings, b->policy_strings) &&
         !strcmp(a->mx_hosts, b->mx_hosts) && !strcmp(a->result_type, b->result_type) &&
         !strcmp(a->mx, b->mx) && !strcmp(a->ip, b->ip) &&
         !strcmp(a->reason, b->reason) && !strcmp(a->sending_ip, b->sending_ip);
}

void tlsrpt__counts_free(struct tlsrpt *t) {
  while (t->counts) {
    struct tlsrpt__count *c = t->counts;
    t->counts = c->next;
    tlsrpt__row_free(&c->row);
    free(c);
  }
  t->ncounts = 0;
}

/* Memory counters → store, in one transaction. Kept in memory when that fails. */
static int flush(struct tlsrpt *t) {
  if (!t->counts)
    return 0;
  if (t->redis)
    return tlsrpt__shared_flush(t);
  struct store_tlsrpt_row *rows = malloc(t->ncounts * sizeof *rows);
  if (!rows)
    return SP_E_NOMEM;
  size_t n = 0;
  for (struct tlsrpt__count *c = t->counts; c; c = c->next)
    rows[n++] = c->row; /* shallow: the strings stay with the counters */
  int rc = store_tlsrpt_add(t->store, rows, n);
  free(rows);
  if (rc < 0) {
    log_msg(LOG_WARNING, NULL, "tlsrpt: cannot save counts: %s",
            store_errmsg(t->store));
    return rc;
  }
  tlsrpt__counts_free(t);
  return 0;
}

static void on_flush_timer(uv_timer_t *h) {
  struct tlsrpt *t = h->data;
  CHECK_OBJ_NOTNULL(t, TLSRPT_MAGIC);
  flush(t);
}

void tlsrpt__arm_flush(struct tlsrpt *t) {
  if (!t->closing && t->counts && !uv_is_active((uv_handle_t *)&t->flush_timer))
    uv_timer_start(&t->flush_timer, on_flush_timer, TLSRPT_FLUSH_MS, 0);
}

static void count(struct tlsrpt *t, struct store_tlsrpt_row *r) {
  for (struct tlsrpt__count *c = t->counts; c; c = c->next)
    if (tlsrpt__same_key(&c->row, r)) {
      c->row.count++;
      tlsrpt__row_free(r);
      return;
    }
  struct tlsrpt__count *c = NULL;
  if ((t->ncounts < TLSRPT_MEM_MAX || flush(t) == 0) && (c = calloc(1, sizeof *c))) {
    c->row = *r;
    c->next = t->counts;
    t->counts = c;
    t->ncounts++;
  } else {
    log_msg(LOG_WARNING, NULL, "tlsrpt: %s: session not counted (out of memory)",
            r->domain);
    tlsrpt__row_free(r);
  }
  tlsrpt__arm_flush(t);
}

void tlsrpt_record(const struct observe_tls *o) {
  struct tlsrpt *t = tlsrpt_active;
  struct store_tlsrpt_row r;
  if (!t || t->closing || !o || !o->domain || !*o->domain || !o->mx_host)
    return;
  if (row_from(t, o, &r) < 0) {
    log_msg(LOG_WARNING, NULL, "tlsrpt: %s: session not counted (out of memory)",
            o->domain);
    return;
  }
  count(t, &r);
}

/* ---- life cycle ------------------------------------------------------------------ */

void tlsrpt__maybe_free(struct tlsrpt *t) {
  assert(t->closing && t->pending_closes > 0); /* one call per close begun */
  if (--t->pending_closes > 0)
    return;
  struct runtime *rt = t->rt;
  store_close(t->store);
  t->magic = 0;
  free(t);
  runtime_unref(rt);
}

static void on_handle_closed(uv_handle_t *h) {
  struct tlsrpt *t = h->data;
  CHECK_OBJ_NOTNULL(t, TLSRPT_MAGIC);
  tlsrpt__maybe_free(t);
}
static void on_http_closed(void *arg) {
  struct tlsrpt *t = arg;
  CHECK_OBJ_NOTNULL(t, TLSRPT_MAGIC);
  tlsrpt__maybe_free(t);
}

static int make_dir(const char *path) {
  return mkdir(path, 0750) == 0 || errno == EEXIST ? 0 : -1;
}

/* A reporter for rt: its own store handle and HTTPS client, timers stopped. */
static int tlsrpt_new(uv_loop_t *loop, struct runtime *rt, struct tlsrpt **out,
                      char *err, size_t errlen) {
  char path[STORE_PATH_MAX], why[512];
  struct tls_trust trust = config_trust(rt->cfg, CONFIG_TRUST_TLSRPT);
  struct tlsrpt *t = calloc(1, sizeof *t);
  if (!t) {
    snprintf(err, errlen, "out of memory");
    return SP_E_NOMEM;
  }
  t->loop = loop;
  t->cfg = rt->cfg;
  int rc = SP_E_IO;
  store_path(t->cfg->state_dir, path, sizeof path);
  if (make_dir(t->cfg->state_dir) < 0) {
    snprintf(err, errlen, "tlsrpt: state_dir %s: %s", t->cfg->state_dir,
             strerror(errno));
    goto fail_dir;
  }
  if (store_open(path, &t->store, why, sizeof why) < 0) {
    snprintf(err, errlen, "tlsrpt: %s", why);
    goto fail_store;
  }
  if (http_new(loop, &trust, &t->http) < 0) {
    snprintf(err, errlen, "tlsrpt: cannot start the HTTPS client");
    rc = SP_E_NOMEM;
    goto fail_http;
  }
  uv_timer_init(loop, &t->period_timer);
  uv_timer_init(loop, &t->flush_timer);
  uv_timer_init(loop, &t->run_timer);
  uv_timer_init(loop, &t->retry_timer);
  t->period_timer.data = t->flush_timer.data = t->run_timer.data = t;
  t->retry_timer.data = t;
  t->redis = rt->redis;
  snprintf(t->owner, sizeof t->owner, "%s/%ld", t->cfg->hostname, (long)getpid());
  t->rt = runtime_ref(rt);
  t->magic = TLSRPT_MAGIC;
  *out = t;
  return 0;

  /* Each label undoes what succeeded before the step it is named after. */
fail_http:
  store_close(t->store);
fail_store:
fail_dir:
  free(t);
  return rc;
}

void tlsrpt_close(struct tlsrpt *t) {
  if (!OBJ_VALID(t, TLSRPT_MAGIC) || t->closing)
    return;
  if (tlsrpt_active == t)
    tlsrpt_active = NULL;
  t->closing = true;
  cache_op_cancel(t->lock_op);
  cache_op_cancel(t->load_op);
  t->lock_op = t->load_op = NULL;
  t->pending_closes = 5;
  if (t->redis) {
    tlsrpt__shared_close(t);
  } else {
    flush(t);
    tlsrpt__counts_free(t); /* what could not be saved is lost with the process */
  }
  /* The last batch is answered (or fails, and is saved locally) before the store
   * closes: its callback ends the wait. */
  if (t->add_op)
    t->pending_closes++;
  if (t->run)
    tlsrpt__run_cancel(t->run);
  t->run = NULL;
  uv_close((uv_handle_t *)&t->period_timer, on_handle_closed);
  uv_close((uv_handle_t *)&t->flush_timer, on_handle_closed);
  uv_close((uv_handle_t *)&t->run_timer, on_handle_closed);
  uv_close((uv_handle_t *)&t->retry_timer, on_handle_closed);
  http_close(t->http, on_http_closed, t);
}

/* ---- the period timer ------------------------------------------------------------ */

static void schedule(struct tlsrpt *t);
static void on_send_done(struct tlsrpt *t, unsigned sent, unsigned failed,
                         unsigned dropped);

static int64_t wall_ms(void) {
  uv_timeval64_t tv;
  return uv_gettimeofday(&tv) == 0 ? tv.tv_sec * 1000 + tv.tv_usec / 1000 : 0;
}

static void on_run_done(struct tlsrpt *t, unsigned sent, unsigned failed,
                        unsigned dropped);

/* Tries the failed reports of the periods that ended by t->retry_before again. */
static void on_retry(uv_timer_t *h) {
  struct tlsrpt *t = h->data;
  CHECK_OBJ_NOTNULL(t, TLSRPT_MAGIC);
  if (t->run || t->load_op)
    return;
  if (t->redis) /* this proxy still holds the period's report lock */
    tlsrpt__shared_load(t, t->lock_end);
  else
    tlsrpt__run_start(t, t->retry_before, (int64_t)time(NULL), on_run_done);
}

/* RFC 8460 §5.5: a failed delivery SHOULD be tried again for up to 24 hours, with
 * exponential backoff. Here: interval/288 after the run (5 minutes for a day; 1 s at
 * least), doubling each time, for as long as the next try comes before the end of
 * the current period, whose run takes the reports over (and later periods' runs, up
 * to 7 days). */
static void on_run_done(struct tlsrpt *t, unsigned sent, unsigned failed,
                        unsigned dropped) {
  log_msg(LOG_INFO, NULL,
          "tlsrpt: %u report(s) sent, %u failed (kept for the next run)"
          ", %u domain(s) without a TLS-RPT record dropped",
          sent, failed, dropped);
  if (failed == 0 || t->closing)
    return;
  uint64_t base = (uint64_t)tlsrpt__interval_s(t) * 1000 / 288;
  uint64_t delay = t->retry_ms ? 2 * t->retry_ms : base > 1000 ? base : 1000;
  if (wall_ms() + (int64_t)delay >= t->boundary * 1000)
    return;
  t->retry_ms = delay;
  log_msg(LOG_INFO, NULL, "tlsrpt: %u report(s) failed: retrying in %llu s", failed,
          (unsigned long long)(delay + 500) / 1000);
  uv_timer_start(&t->retry_timer, on_retry, delay, 0);
}

static void on_period(uv_timer_t *h) {
  struct tlsrpt *t = h->data;
  CHECK_OBJ_NOTNULL(t, TLSRPT_MAGIC);
  flush(t);
  /* The loop's clock may run a little behind the wall clock: the period that this
   * timer was set to close is over, whatever time() says. */
  int64_t now = (int64_t)time(NULL);
  if (now < t->boundary)
    now = t->boundary;
  uv_timer_stop(&t->retry_timer); /* this period's run takes the reports over */
  t->retry_ms = 0;
  t->retry_before = now;
  if (t->redis)
    tlsrpt__shared_period(t);
  else if (!t->run)
    tlsrpt__run_start(t, now, now, on_run_done);
  schedule(t);
}

/* Fires just after the end of the current period. */
static void schedule(struct tlsrpt *t) {
  uv_timeval64_t tv;
  int64_t now_ms = 0;
  if (uv_gettimeofday(&tv) == 0)
    now_ms = tv.tv_sec * 1000 + tv.tv_usec / 1000;
  int64_t iv_ms = tlsrpt__interval_s(t) * 1000;
  int64_t next = now_ms - now_ms % iv_ms + iv_ms;
  t->boundary = next / 1000;
  uv_update_time(t->loop); /* the timer counts from the loop's clock */
  uv_timer_start(&t->period_timer, on_period,
                 (uint64_t)(next - now_ms + TLSRPT_PERIOD_GRACE_MS), 0);
}

int tlsrpt_check(const struct config *cfg, char *err, size_t errlen) {
  if (!cfg->tlsrpt_dkim_key || dkimsig_supported(cfg->tlsrpt_dkim_alg))
    return 0;
  snprintf(err, errlen,
           "tlsrpt.dkim.key_file: %s: this libopendkim cannot sign with %s; use an RSA "
           "key",
           cfg->tlsrpt_dkim_key_file, config_dkim_alg_name(cfg->tlsrpt_dkim_alg));
  return SP_E_CONFIG;
}

/* Said at every start and reload: a report by mail that is never sent is otherwise
 * only noticed by its absence. */
static void log_dkim(const struct config *cfg) {
  if (cfg->tlsrpt_dkim_key)
    log_msg(LOG_INFO, NULL,
            "tlsrpt: reports by mail are DKIM-signed: d=%s s=%s a=%s (%u-bit key %s)",
            cfg->tlsrpt_dkim_domain, cfg->tlsrpt_dkim_selector,
            config_dkim_alg_name(cfg->tlsrpt_dkim_alg), cfg->tlsrpt_dkim_bits,
            cfg->tlsrpt_dkim_key_file);
  else
    log_msg(LOG_WARNING, NULL,
            "tlsrpt: no tlsrpt.dkim key: reports to mailto: rua will not be sent (RFC "
            "8460 section 3: they MUST be DKIM-signed); https: rua are not affected");
}

int tlsrpt_start(uv_loop_t *loop, struct runtime *rt, struct tlsrpt **out, char *err,
                 size_t errlen) {
  *out = NULL;
  if (!rt->cfg->tlsrpt_enabled)
    return 0;
  if (tlsrpt_check(rt->cfg, err, errlen) < 0)
    return SP_E_CONFIG;
  log_dkim(rt->cfg);
  struct tlsrpt *t;
  int rc = tlsrpt_new(loop, rt, &t, err, errlen);
  if (rc < 0)
    return rc;
  schedule(t);
  if (t->redis)
    tlsrpt__shared_adopt_local(t);
  tlsrpt_active = t; /* main closed the previous configuration's reporter */
  *out = t;
  return 0;
}

tlsrpt__run_cb tlsrpt__end_cb(const struct tlsrpt *t) {
  return t->result ? on_send_done : on_run_done;
}

/* ---- `tlsrpt send` --------------------------------------------------------------- */

static void on_send_done(struct tlsrpt *t, unsigned sent, unsigned failed,
                         unsigned dropped) {
  struct tlsrpt__send_result *r = t->result;
  r->done = true;
  r->sent = sent;
  r->failed = failed;
  r->dropped = dropped;
  tlsrpt_close(t);
}

#define TLSRPT_CLI_POLL_MS 20

static void on_send_timer(uv_timer_t *h) {
  struct tlsrpt *t = h->data;
  CHECK_OBJ_NOTNULL(t, TLSRPT_MAGIC);
  if (t->redis) {
    /* The counts are in Redis: wait for the connection (bounded), then load them. */
    if (!t->cli_deadline)
      t->cli_deadline = uv_now(t->loop) + t->cfg->redis.timeout_ms;
    if (!redis_up(t->redis) && uv_now(t->loop) < t->cli_deadline) {
      uv_timer_start(&t->period_timer, on_send_timer, TLSRPT_CLI_POLL_MS, 0);
      return;
    }
    if (tlsrpt__shared_load(t, INT64_MAX) < 0) {
      fprintf(stderr, "tlsrpt: the shared cache (redis) is unavailable\n");
      tlsrpt_close(t);
    }
    return;
  }
  int rc = tlsrpt__run_start(t, INT64_MAX, (int64_t)time(NULL), on_send_done);
  if (rc != 0) {
    t->result->done = rc > 0;
    tlsrpt_close(t);
  }
}

static int load(const char *path, struct config **cfg) {
  char *errors = NULL;
  int rc = config_load(path, cfg, &errors);
  if (rc < 0)
    fprintf(stderr, "%s", errors ? errors : "cannot load configuration\n");
  free(errors);
  return rc;
}

int tlsrpt_send_now(const char *config_path) {
  struct config *cfg;
  if (load(config_path, &cfg) < 0)
    return 1;
  log_configure(cfg->log_format, cfg->log_level, cfg->hostname);
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t loop;
  struct runtime *rt = NULL;
  struct tlsrpt *t = NULL;
  struct tlsrpt__send_result res = {0};
  char err[512];
  if (uv_loop_init(&loop) != 0) {
    config_unref(cfg);
    return 1;
  }
  if (tlsrpt_check(cfg, err, sizeof err) == 0 &&
      runtime_new(&loop, cfg, &rt, err, sizeof err) == 0 &&
      tlsrpt_new(&loop, rt, &t, err, sizeof err) == 0) {
    t->result = &res;
    uv_timer_start(&t->period_timer, on_send_timer, 0, 0);
  } else {
    fprintf(stderr, "%s: %s\n", config_path, err);
  }
  if (rt)
    runtime_unref(rt);
  config_unref(cfg);
  uv_run(&loop, UV_RUN_DEFAULT);
  int closed = uv_loop_close(&loop);
  if (!t)
    return 1;
  if (res.done)
    printf("tlsrpt: %u report(s) sent, %u failed, %u domain(s) without a TLS-RPT "
           "record\n",
           res.sent, res.failed, res.dropped);
  return res.done && res.failed == 0 && closed == 0 ? 0 : 1;
}
