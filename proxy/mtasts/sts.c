#include "proxy/mtasts/sts.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/core/obj.h"
#include "proxy/core/observe.h"
#include "proxy/mtasts/cache_redis.h"
#include "proxy/mtasts/store.h"
#include "proxy/mtasts/sts_cache.h"
#include "proxy/net/http.h"

#define STS_MAGIC 0x53545351u /* "STSQ" */
#define STS_FAIL_BACKOFF 300  /* seconds before refetching after a failure */
#define STS_POLL_MS 200       /* how often a proxy waiting on another's fetch looks */
#define STS_LEASE_SLACK 2000  /* ms a lease outlives the fetch timeout (DNS, clocks) */

#define STSC_MAGIC 0x53545343u /* "STSC": struct sts */
#define STSF_MAGIC 0x53545346u /* "STSF": struct sts_fetch */

/* A fetch, with a shared cache: look there first (another proxy may have fetched the
 * policy), then take the domain's lease and fetch, or wait for the holder to publish.
 * Without one (or while Redis is down): straight to DNS and HTTPS. */
enum fetch_phase {
  FETCH_SHARED, /* reading the shared entry */
  FETCH_LEASE,  /* taking the lease */
  FETCH_WAIT,   /* another proxy holds the lease: polling the shared entry */
  FETCH_DNS,    /* resolving mta-sts.<domain> */
  FETCH_HTTP,   /* the HTTPS GET */
};
static const char *const phase_names[] = {"shared", "lease", "wait", "dns", "http"};

/* One per domain in flight; pins its entry in the cache until it ends. */
struct sts_fetch {
  uint32_t magic;
  struct sts *s;
  struct sts_fetch *next; /* in s->fetches */
  struct sts_entry *e;
  enum fetch_phase phase;
  struct cache_op *op;  /* the shared-cache operation in flight */
  bool leased;          /* this proxy holds the domain's lease */
  uint64_t wait_until;  /* FETCH_WAIT: loop time (ms) to stop waiting */
  struct dns_query *dq; /* resolving mta-sts.<domain>, until answered */
  uint16_t qtype;       /* A, then AAAA */
  struct http_fetch *hf;
  bool fetched;              /* it put a new policy in force, expired or not */
  char id[STS_ID_MAX + 1];   /* the TXT id that triggered it */
  struct sts_query *waiters; /* queries answered when it ends */
};

struct sts_query {
  uint32_t magic;
  struct sts *s;
  char domain[256];
  sts_cb cb;
  void *arg;
  struct dns_query *dq;          /* the TXT lookup, until answered */
  struct sts_query *next;        /* in a fetch's waiters, or the done list */
  struct sts_fetch *waiting_on;  /* the fetch whose waiters list holds it, or NULL */
  struct sts_entry *answer_from; /* done: answer with this entry's policy (or none);
                                    pinned until the callback ran */
  bool fetched_now;              /* answered by the fetch that got that policy */
};

struct sts {
  uint32_t magic;
  uv_loop_t *loop;
  const struct config *cfg;  /* the runtime's; outlives the sts */
  struct dns *dns;           /* the runtime's */
  struct http *http;         /* owned */
  struct store *store;       /* owned */
  struct redis *redis;       /* the runtime's shared cache, or NULL */
  uv_timer_t poll_timer;     /* owned: ticks while a fetch waits on another proxy */
  char owner[300];           /* this process, as lease holder */
  struct sts_cache *cache;   /* owned: what we know per domain, bounded */
  struct sts_fetch *fetches; /* owned list: those in flight */
  struct sts_query *done;    /* answered, callback pending (runs from idle) */
  uv_idle_t idle;            /* owned */
  void (*on_closed)(void *arg);
  void *on_closed_arg;
  unsigned pending_closes;
};

static int64_t now_s(void) {
  return (int64_t)time(NULL);
}

/* ---- cache ---------------------------------------------------------------------- */

static bool cached_valid(const struct sts_entry *e) {
  return e->cached && now_s() < e->cached->expires_at;
}

/* ---- answering ------------------------------------------------------------------ */

static void sts_on_idle(uv_idle_t *h);

static void sts_answer(struct sts_query *q, struct sts_entry *e) {
  q->answer_from = e;
  if (e)
    e->answers++; /* kept in the cache until the callback read it */
  q->next = q->s->done;
  q->s->done = q;
  uv_idle_start(&q->s->idle, sts_on_idle);
}

static void sts_on_idle(uv_idle_t *h) {
  struct sts *s;
  CAST_OBJ_NOTNULL(s, h->data, STSC_MAGIC);
  struct sts_query *list = s->done;
  s->done = NULL;
  uv_idle_stop(h);
  while (list) {
    struct sts_query *q = list;
    list = q->next;
    struct sts_entry *e = q->answer_from;
    /* A policy fetched for this query applies to it even when its max_age is 0 or
     * already ran out (RFC 8461 §5.1: the new policy is the one used); later
     * queries fetch again. */
    bool in_force = e && (cached_valid(e) || (q->fetched_now && e->cached));
    const struct sts_policy *p = in_force ? &e->cached->policy : NULL;
    /* Only an entry answered for a v=STSv1 record gets here with nothing cached. */
    const struct sts_failure *failed = !p && e && e->failed_at ? e->failure : NULL;
    q->magic = 0;
    q->cb(q->arg, p, failed);
    if (e)
      e->answers--;
    free(q);
  }
}

/* ---- fetching ------------------------------------------------------------------- */

static void fetch_set_phase(struct sts_fetch *f, enum fetch_phase ph) {
  log_msg(LOG_DEBUG, NULL, "mta-sts: %s: fetch %s -> %s", f->e->domain,
          phase_names[f->phase], phase_names[ph]);
  f->phase = ph;
}

static void fetch_unlink(struct sts_fetch *f) {
  for (struct sts_fetch **p = &f->s->fetches; *p; p = &(*p)->next)
    if (*p == f) {
      *p = f->next;
      return;
    }
}

static void sts_fetch_done(struct sts_fetch *f) {
  if (f->op)
    cache_op_cancel(f->op);
  if (f->leased && f->s->redis)
    cache_redis_lease_release(f->s->redis, f->e->domain, f->s->owner);
  f->e->fetch = NULL;
  while (f->waiters) {
    struct sts_query *q = f->waiters;
    f->waiters = q->next;
    q->waiting_on = NULL;
    q->fetched_now = f->fetched;
    sts_answer(q, f->e);
  }
  fetch_unlink(f);
  f->magic = 0;
  free(f);
}

static const char *mode_name(enum sts_mode m) {
  return m == STS_MODE_ENFORCE ? "enforce" : m == STS_MODE_TESTING ? "testing" : "none";
}

/* The policy in force for e: into the local file, and into the shared cache (or
 * marked for it when Redis is down). */
static void sts_store_policy(struct sts *s, struct sts_entry *e, const char *text,
                             bool share) {
  struct store_policy sp = {.fetched_at = e->cached->fetched_at,
                            .expires_at = e->cached->expires_at};
  snprintf(sp.domain, sizeof sp.domain, "%s", e->domain);
  snprintf(sp.id, sizeof sp.id, "%s", e->cached->id);
  sp.text = (char *)text;
  e->unpersisted = !s->store || store_put_policy(s->store, &sp) < 0;
  if (e->unpersisted && s->store)
    log_msg(LOG_WARNING, NULL, "mta-sts: %s: cannot persist policy: %s", e->domain,
            store_errmsg(s->store));
  if (share && s->redis) {
    e->unshared = cache_redis_policy_put(s->redis, &sp) < 0;
    if (e->unshared)
      log_msg(LOG_WARNING, NULL,
              "mta-sts: %s: shared cache unavailable: policy id=%s kept here, "
              "published when it is back",
              e->domain, e->cached->id);
  }
}

/* A policy fetched while Redis was down goes there once it is back. */
static void sts_publish_unshared(struct sts *s, struct sts_entry *e) {
  struct store_policy sp;
  if (!e->unshared || !s->redis || !redis_up(s->redis) || !s->store ||
      store_get_policy(s->store, e->domain, &sp) != 1)
    return;
  if (!strcmp(sp.id, e->cached->id) && cache_redis_policy_put(s->redis, &sp) == 0) {
    e->unshared = false;
    log_msg(LOG_INFO, NULL, "mta-sts: %s: policy id=%s published to the shared cache",
            e->domain, sp.id);
  }
  store_policy_free(&sp);
}

static void on_fetched(void *arg, int status, const char *body, size_t len,
                       const char *err) {
  struct sts_fetch *f;
  CAST_OBJ_NOTNULL(f, arg, STSF_MAGIC);
  struct sts_entry *e = f->e;
  f->hf = NULL;
  struct sts_policy p;
  char why[256] = "";
  int prc = status == 0 ? sts_policy_parse(body, len, &p, why, sizeof why) : -1;
  if (prc == -2)
    status = SP_E_NOMEM; /* the policy was not judged: a failed fetch, not invalid */
  bool ok = status == 0 && prc == 0;
  observe_sts_fetch(ok);
  if (ok) {
    int64_t now = now_s();
    log_msg(LOG_INFO, NULL, "mta-sts: %s: fetched policy id=%s mode=%s max_age=%u",
            e->domain, f->id, mode_name(p.mode), p.max_age);
    char *text = strndup(body, len);
    if (!text || sts__entry_set_policy(e, f->id, &p, now, now + p.max_age) < 0)
      log_msg(LOG_WARNING, NULL, "mta-sts: %s: out of memory: policy id=%s not kept",
              e->domain, f->id);
    else {
      f->fetched = true;
      sts_store_policy(f->s, e, text, true);
    }
    free(text);
    sts_policy_free(&p);
  } else {
    /* RFC 8460 §4.3.2.2: a policy that did not parse is "sts-policy-invalid", a
     * policy host whose certificate did not validate "sts-webpki-invalid", any
     * other failure to get it "sts-policy-fetch-error". */
    enum observe_sts_failure kind = status == 0                  ? OBSERVE_STS_INVALID
                                    : status == SP_E_CERTIFICATE ? OBSERVE_STS_WEBPKI
                                                                 : OBSERVE_STS_FETCH;
    sts__entry_set_failure(e, kind, f->id,
                           status == 0 ? why
                           : err       ? err
                                       : sp_strerror(status),
                           now_s());
    log_msg(LOG_WARNING, NULL, "mta-sts: %s: policy fetch failed: %s%s%s", e->domain,
            status == 0 ? "invalid policy: " : "",
            status == 0 ? why
            : err       ? err
                        : sp_strerror(status),
            status == SP_E_ADDRESS ? " (mta_sts.allow_private_addresses: no)" : "");
    if (cached_valid(e))
      log_msg(LOG_INFO, NULL, "mta-sts: %s: keeping the cached policy id=%s", e->domain,
              e->cached->id);
  }
  sts_fetch_done(f);
}

static void sts_fetch_failed(struct sts_fetch *f, const char *why) {
  on_fetched(f, SP_E_DNS_TEMP, NULL, 0, why);
}

/* The policy host's address is known: fetch over HTTPS, connecting there. */
static void sts_fetch_http(struct sts_fetch *f, const char *ip) {
  struct sts *s = f->s;
  char url[400], resolve[400];
  snprintf(url, sizeof url, "https://mta-sts.%s:%u/.well-known/mta-sts.txt",
           f->e->domain, s->cfg->sts_port);
  snprintf(resolve, sizeof resolve, "mta-sts.%s:%u:%s", f->e->domain, s->cfg->sts_port,
           ip);
  struct http_request req = {
      .url = url,
      .max_bytes = STS_POLICY_MAX_BYTES,
      .connect_timeout_ms = (unsigned)s->cfg->sts_fetch_timeout_ms,
      .total_timeout_ms = (unsigned)s->cfg->sts_fetch_timeout_ms,
      .require_text_plain = true,
      .resolve = resolve,
      .allow_private_addresses = s->cfg->sts_allow_private != 0,
  };
  fetch_set_phase(f, FETCH_HTTP);
  f->hf = http_get(s->http, &req, on_fetched, f);
  if (!f->hf)
    sts_fetch_failed(f, "cannot start the fetch");
}

static void sts_resolve(struct sts_fetch *f, uint16_t qtype);

/* mta-sts.<domain> goes through our resolver too, like every other name. */
static void on_policy_host(void *arg, int status, const struct dns_answer *ans) {
  struct sts_fetch *f;
  CAST_OBJ_NOTNULL(f, arg, STSF_MAGIC);
  f->dq = NULL;
  char ip[INET6_ADDRSTRLEN + 2];
  if (status == 0 && ans && dns_answer_first_addr(ans, ip, sizeof ip)) {
    sts_fetch_http(f, ip);
    return;
  }
  if (f->qtype == DNS_T_A && status == 0 && ans && ans->rcode != DNS_R_NXDOMAIN)
    sts_resolve(f, DNS_T_AAAA);
  else
    sts_fetch_failed(f, "cannot resolve the policy host");
}

static void sts_resolve(struct sts_fetch *f, uint16_t qtype) {
  char host[300];
  snprintf(host, sizeof host, "mta-sts.%s", f->e->domain);
  fetch_set_phase(f, FETCH_DNS);
  f->qtype = qtype;
  f->dq = dns_query_raw(f->s->dns, host, qtype, on_policy_host, f);
  if (!f->dq)
    sts_fetch_failed(f, "cannot resolve the policy host");
}

/* ---- the shared cache's part of a fetch -------------------------------------------- */

static void fetch_shared(struct sts_fetch *f);

/* The shared entry, when it has the id DNS announces, has not expired, parses, and is
 * newer than what this proxy holds. */
static bool adopt(struct sts_fetch *f, const struct store_policy *sp) {
  struct sts_entry *e = f->e;
  struct sts_policy p;
  char why[200];
  int64_t now = now_s();
  if (strcmp(sp->id, f->id) != 0 || sp->expires_at <= now)
    return false;
  if (cached_valid(e) && !strcmp(e->cached->id, sp->id) &&
      sp->fetched_at <= e->cached->fetched_at)
    return false; /* what we hold already: a refresh must fetch */
  if (sts_policy_parse(sp->text, strlen(sp->text), &p, why, sizeof why) != 0) {
    log_msg(LOG_WARNING, NULL, "mta-sts: %s: invalid policy in the shared cache: %s",
            e->domain, why);
    return false;
  }
  enum sts_mode mode = p.mode;
  int rc = sts__entry_set_policy(e, sp->id, &p, sp->fetched_at, sp->expires_at);
  sts_policy_free(&p);
  if (rc < 0)
    return false;
  log_msg(LOG_INFO, NULL, "mta-sts: %s: policy id=%s mode=%s from the shared cache",
          e->domain, sp->id, mode_name(mode));
  sts_store_policy(f->s, e, sp->text, false);
  return true;
}

static void on_poll(uv_timer_t *t) {
  struct sts *s;
  CAST_OBJ_NOTNULL(s, t->data, STSC_MAGIC);
  bool waiting = false;
  struct sts_fetch *next;
  for (struct sts_fetch *f = s->fetches; f; f = next) {
    next = f->next; /* f may end at once */
    if (f->phase == FETCH_WAIT) {
      waiting = true;
      fetch_shared(f);
    }
  }
  if (!waiting)
    uv_timer_stop(t);
}

static void on_lease(void *arg, int rc) {
  struct sts_fetch *f;
  CAST_OBJ_NOTNULL(f, arg, STSF_MAGIC);
  f->op = NULL;
  if (rc == 0) {
    /* Another proxy fetches: wait for it, queries of this domain with us. */
    fetch_set_phase(f, FETCH_WAIT);
    f->wait_until =
        uv_now(f->s->loop) + f->s->cfg->sts_fetch_timeout_ms + STS_LEASE_SLACK;
    if (!uv_is_active((uv_handle_t *)&f->s->poll_timer))
      uv_timer_start(&f->s->poll_timer, on_poll, STS_POLL_MS, STS_POLL_MS);
    return;
  }
  f->leased = rc == 1;
  sts_resolve(f, DNS_T_A); /* ours to fetch, or Redis failed: fetch all the same */
}

static void on_shared_policy(void *arg, int rc, const struct store_policy *sp) {
  struct sts_fetch *f;
  CAST_OBJ_NOTNULL(f, arg, STSF_MAGIC);
  struct sts *s = f->s;
  bool waited = f->phase == FETCH_SHARED && f->wait_until > 0;
  f->op = NULL;
  if (rc == 1 && adopt(f, sp)) {
    sts_fetch_done(f);
    return;
  }
  if (rc < 0) { /* Redis is down: this proxy fetches itself */
    sts_resolve(f, DNS_T_A);
    return;
  }
  if (waited && uv_now(s->loop) < f->wait_until) {
    fetch_set_phase(f, FETCH_WAIT);
    return;
  }
  if (waited && !f->waiters && cached_valid(f->e)) {
    sts_fetch_done(f); /* a refresh: the holder failed; keep the policy we have */
    return;
  }
  fetch_set_phase(f, FETCH_LEASE);
  f->op =
      cache_redis_lease(s->redis, f->e->domain, s->owner,
                        s->cfg->sts_fetch_timeout_ms + STS_LEASE_SLACK, on_lease, f);
  if (!f->op)
    sts_resolve(f, DNS_T_A);
}

static void fetch_shared(struct sts_fetch *f) {
  fetch_set_phase(f, FETCH_SHARED);
  f->op = cache_redis_policy_get(f->s->redis, f->e->domain, on_shared_policy, f);
  if (!f->op)
    sts_resolve(f, DNS_T_A);
}

/* Starts a fetch for e (or joins the one in flight); q may be NULL (a refresh). */
static void sts_fetch(struct sts *s, struct sts_entry *e, const char *id,
                      struct sts_query *q) {
  if (e->fetch) {
    if (q) {
      q->next = e->fetch->waiters;
      e->fetch->waiters = q;
      q->waiting_on = e->fetch;
    }
    return;
  }
  struct sts_fetch *f = calloc(1, sizeof *f);
  if (!f) {
    if (q)
      sts_answer(q, e);
    return;
  }
  f->magic = STSF_MAGIC;
  f->s = s;
  f->e = e;
  snprintf(f->id, sizeof f->id, "%s", id);
  e->fetch = f;
  f->next = s->fetches;
  s->fetches = f;
  if (q) {
    q->next = NULL;
    f->waiters = q;
    q->waiting_on = f;
  }
  if (s->redis)
    fetch_shared(f); /* may end the fetch at once */
  else
    sts_resolve(f, DNS_T_A); /* may end the fetch at once */
}

/* ---- lookups -------------------------------------------------------------------- */

static enum sts_txt_state txt_state(int status, const struct dns_answer *ans,
                                    char id[STS_ID_MAX + 1]) {
  if (status < 0 || !ans)
    return STS_DNS_TEMPFAIL;
  if (ans->rcode == DNS_R_NXDOMAIN)
    return STS_DNS_ABSENT;
  struct dns_texts t;
  if (dns_answer_texts(ans, &t) != 0)
    return STS_DNS_TEMPFAIL;
  int rc = sts_txt_parse(t.texts, t.lens, t.n, id);
  dns_texts_free(&t);
  return rc == STS_TXT_OK ? STS_DNS_FOUND : STS_DNS_ABSENT;
}

static void on_txt(void *arg, int status, const struct dns_answer *ans) {
  struct sts_query *q = arg;
  CHECK_OBJ_NOTNULL(q, STS_MAGIC);
  struct sts *s = q->s;
  q->dq = NULL;
  char id[STS_ID_MAX + 1] = "";
  enum sts_txt_state st = txt_state(status, ans, id);
  struct sts_entry *e = sts__cache_get(s->cache, s->store, q->domain);
  if (!e) {
    sts_answer(q, NULL);
    return;
  }
  int64_t now = now_s();
  switch (sts_cache_decide(e->cached, st, id, now)) {
  case STS_ACT_FETCH:
    /* After a failure with nothing cached, wait before trying that id again; a new
     * id is fetched at once (RFC 8461 §3.3 limits attempts per version id). */
    if (!cached_valid(e) && e->failed_at && now - e->failed_at < STS_FAIL_BACKOFF &&
        (!e->failure || strcmp(e->failure->id, id) == 0)) {
      sts_answer(q, e);
      return;
    }
    sts_fetch(s, e, id, q);
    return;
  case STS_ACT_USE_CACHED:
    sts_publish_unshared(s, e);
    if (st == STS_DNS_FOUND && sts_cache_should_refresh(e->cached, now))
      sts_fetch(s, e, id, NULL); /* §10.2: refresh proactively, answer from cache */
    sts_answer(q, e);
    return;
  case STS_ACT_NO_POLICY:
  default:
    sts_answer(q, NULL);
    return;
  }
}

struct sts_query *sts_lookup(struct sts *s, const char *domain, sts_cb cb, void *arg) {
  struct sts_query *q = calloc(1, sizeof *q);
  if (!q)
    return NULL;
  q->magic = STS_MAGIC;
  q->s = s;
  q->cb = cb;
  q->arg = arg;
  snprintf(q->domain, sizeof q->domain, "%s", domain);
  char name[300];
  snprintf(name, sizeof name, "_mta-sts.%s", domain);
  q->dq = dns_query_raw(s->dns, name, DNS_T_TXT, on_txt, q);
  if (!q->dq) {
    q->magic = 0;
    free(q);
    return NULL;
  }
  return q;
}

static void unlink_from(struct sts_query **list, struct sts_query *q) {
  for (struct sts_query **p = list; *p; p = &(*p)->next)
    if (*p == q) {
      *p = q->next;
      return;
    }
}

void sts_cancel(struct sts_query *q) {
  if (!q)
    return;
  CHECK_OBJ_NOTNULL(q, STS_MAGIC);
  if (q->dq) {
    dns_cancel(q->dq);
  } else if (q->waiting_on) {
    unlink_from(&q->waiting_on->waiters, q);
  } else {
    unlink_from(&q->s->done, q);
    if (q->answer_from)
      q->answer_from->answers--;
  }
  q->magic = 0;
  free(q);
}

/* ---- life cycle ----------------------------------------------------------------- */

static int make_dir(const char *path) {
  if (mkdir(path, 0750) == 0 || errno == EEXIST)
    return 0;
  return -1;
}

int sts_new(uv_loop_t *loop, const struct config *cfg, struct dns *dns,
            struct redis *redis, struct sts **out, char *err, size_t errlen) {
  struct sts *s = calloc(1, sizeof *s);
  if (!s)
    return SP_E_NOMEM;
  s->magic = STSC_MAGIC;
  s->loop = loop;
  s->cfg = cfg;
  s->dns = dns;
  s->redis = redis;
  snprintf(s->owner, sizeof s->owner, "%s/%ld", cfg->hostname, (long)getpid());
  char path[STORE_PATH_MAX];
  store_path(cfg->state_dir, path, sizeof path);
  struct tls_trust trust = config_trust(cfg, CONFIG_TRUST_MTA_STS);
  int rc = SP_E_IO;
  if (make_dir(cfg->state_dir) < 0) {
    snprintf(err, errlen, "state_dir %s: %s", cfg->state_dir, strerror(errno));
    goto fail_dir;
  }
  if (store_open(path, &s->store, err, errlen) < 0)
    goto fail_store;
  rc = SP_E_NOMEM;
  if (sts__cache_new(cfg->sts_cache_entries, &s->cache) < 0) {
    snprintf(err, errlen, "cannot allocate the MTA-STS cache");
    goto fail_cache;
  }
  if (http_new(loop, &trust, &s->http) < 0) {
    snprintf(err, errlen, "cannot start the HTTPS client");
    goto fail_http;
  }
  uv_idle_init(loop, &s->idle);
  s->idle.data = s;
  uv_timer_init(loop, &s->poll_timer);
  s->poll_timer.data = s;
  *out = s;
  return 0;

  /* Each label undoes what succeeded before the step it is named after. */
fail_http:
  sts__cache_free(s->cache);
fail_cache:
  store_close(s->store);
fail_store:
fail_dir:
  s->magic = 0;
  free(s);
  return rc;
}

static void sts_maybe_free(struct sts *s) {
  if (--s->pending_closes > 0)
    return;
  sts__cache_free(s->cache);
  void (*cb)(void *) = s->on_closed;
  void *arg = s->on_closed_arg;
  s->magic = 0;
  free(s);
  if (cb)
    cb(arg);
}

static void on_http_closed(void *arg) {
  struct sts *s;
  CAST_OBJ_NOTNULL(s, arg, STSC_MAGIC);
  sts_maybe_free(s);
}
static void on_handle_closed(uv_handle_t *h) {
  struct sts *s;
  CAST_OBJ_NOTNULL(s, h->data, STSC_MAGIC);
  sts_maybe_free(s);
}

void sts_close(struct sts *s, void (*on_closed)(void *arg), void *arg) {
  s->on_closed = on_closed;
  s->on_closed_arg = arg;
  /* Pending answers and fetches end without callbacks: their owners are gone. */
  while (s->done) {
    struct sts_query *q = s->done;
    s->done = q->next;
    q->magic = 0;
    free(q);
  }
  while (s->fetches) {
    struct sts_fetch *f = s->fetches;
    s->fetches = f->next;
    while (f->waiters) {
      struct sts_query *q = f->waiters;
      f->waiters = q->next;
      q->magic = 0;
      free(q);
    }
    if (f->dq)
      dns_cancel(f->dq);
    cache_op_cancel(f->op);
    if (f->leased && s->redis)
      cache_redis_lease_release(s->redis, f->e->domain, s->owner);
    f->e->fetch = NULL;
    f->magic = 0;
    free(f);
  }
  store_close(s->store);
  s->store = NULL;
  s->pending_closes = 3;
  uv_close((uv_handle_t *)&s->idle, on_handle_closed);
  uv_close((uv_handle_t *)&s->poll_timer, on_handle_closed);
  http_close(s->http, on_http_closed, s);
}
