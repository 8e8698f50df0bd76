/* One sending run (RFC 8460 §4, §5): for each policy domain with counts, the
 * _smtp._tls TXT lookup, then one report per period, gzipped and delivered to each
 * rua in turn. A report that reached at least one rua is taken off the store (only
 * the counts it carried: what was counted meanwhile stays); a domain without a
 * record loses its counts; anything else is kept for the next run, up to a week.
 *
 * The run is a small state machine advanced by run_advance() after each lookup or
 * delivery; one thing is in flight at a time, which is plenty for a daily batch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/tlsrpt.h"
#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/core/obj.h"
#include "proxy/net/dns.h"
#include "proxy/tlsrpt/dkimsig.h"
#include "proxy/tlsrpt/tlsrpt_internal.h"

#define TLSRPT_GIVE_UP_S (7 * 86400) /* a report still failing this late is dropped */
#define RUN_MAGIC 0x7472756eu        /* "trun" */

enum run_phase { RUN_DOMAIN, RUN_REPORT, RUN_RUA, RUN_REPORT_DONE, RUN_DONE };

struct tlsrpt__run {
  uint32_t magic;
  struct tlsrpt *t;
  tlsrpt__run_cb cb;
  int64_t now;
  struct store_tlsrpt_row *rows; /* owned, as loaded */
  size_t nrows;
  enum run_phase phase;
  size_t dom, dom_end; /* rows of the current domain */
  size_t rep, rep_end; /* rows of the current report */
  struct tlsrpt_record rec;
  struct dns_query *dq;      /* the TXT lookup in flight */
  struct tlsrpt__post *post; /* the POST in flight */
  struct tlsrpt__mail *mail; /* the submission in flight */
  char report_id[400];
  int64_t range_start, range_end; /* the current report's date-range */
  unsigned char *gz;              /* owned: the current report */
  size_t gzlen;
  size_t rua; /* next rua of rec to try */
  bool delivered;
  unsigned sent, failed, dropped;
};

static void run_advance(struct tlsrpt__run *r);

static const char *rdomain(const struct tlsrpt__run *r) {
  return r->rows[r->dom].domain;
}

/* Takes rows [a, b) off the store (the shared cache, when there is one). */
static void forget(struct tlsrpt__run *r, size_t a, size_t b) {
  if (r->t->redis) {
    if (cache_redis_tlsrpt_subtract(r->t->redis, r->rows + a, b - a) < 0)
      log_msg(LOG_WARNING, NULL,
              "tlsrpt: %s: cannot remove counts: shared cache unavailable (they "
              "will be reported again)",
              r->rows[a].domain);
    return;
  }
  if (store_tlsrpt_subtract(r->t->store, r->rows + a, b - a) < 0)
    log_msg(LOG_WARNING, NULL, "tlsrpt: %s: cannot remove counts: %s",
            r->rows[a].domain, store_errmsg(r->t->store));
}

/* A report (rows [a, b)) could not be delivered: kept, unless it is too old. */
static void report_failed(struct tlsrpt__run *r, size_t a, size_t b) {
  if (r->rows[a].period_end + TLSRPT_GIVE_UP_S < r->now) {
    log_msg(LOG_WARNING, NULL,
            "tlsrpt: %s: giving up the report of a period that "
            "ended over 7 days ago",
            r->rows[a].domain);
    forget(r, a, b);
  }
  r->failed++;
}

/* ---- the TXT record ---------------------------------------------------------------- */

/* 1: a usable record in r->rec; 0: none (the domain does not want reports); -1: the
 * lookup failed (try again next run). */
static int txt_outcome(struct tlsrpt__run *r, int status, const struct dns_answer *ans,
                       char *why, size_t cap) {
  if (status < 0 || !ans ||
      (ans->rcode != DNS_R_NOERROR && ans->rcode != DNS_R_NXDOMAIN)) {
    snprintf(why, cap, "%s", status < 0 ? sp_strerror(status) : "DNS error");
    return -1;
  }
  if (ans->rcode == DNS_R_NXDOMAIN) {
    snprintf(why, cap, "no TLS-RPT record (NXDOMAIN)");
    return 0;
  }
  struct dns_texts t;
  if (dns_answer_texts(ans, &t) != 0) {
    snprintf(why, cap, "%s", sp_strerror(SP_E_NOMEM));
    return -1;
  }
  char err[200] = "";
  int rc = tlsrpt_txt_parse(t.texts, t.lens, t.n, &r->rec, err, sizeof err);
  dns_texts_free(&t);
  if (rc == TLSRPT_TXT_OK)
    return 1;
  snprintf(why, cap, "%s", rc == TLSRPT_TXT_NONE ? "no TLS-RPT record" : err);
  if (rc == TLSRPT_TXT_INVALID)
    snprintf(why, cap, "invalid TLS-RPT record: %s", err);
  return 0;
}

static void on_txt(void *arg, int status, const struct dns_answer *ans) {
  struct tlsrpt__run *r = arg;
  CHECK_OBJ_NOTNULL(r, RUN_MAGIC);
  r->dq = NULL;
  char why[256];
  int found = txt_outcome(r, status, ans, why, sizeof why);
  if (found > 0) {
    r->rep = r->dom;
    r->phase = RUN_REPORT;
  } else if (found == 0) {
    log_msg(LOG_INFO, NULL, "tlsrpt: %s: %s: counts dropped", rdomain(r), why);
    forget(r, r->dom, r->dom_end);
    r->dropped++;
    r->dom = r->dom_end;
  } else {
    log_msg(LOG_WARNING, NULL,
            "tlsrpt: %s: _smtp._tls lookup failed: %s: reports kept "
            "for the next run",
            rdomain(r), why);
    for (size_t a = r->dom; a < r->dom_end;) {
      size_t b = a;
      while (b < r->dom_end && r->rows[b].period_start == r->rows[a].period_start &&
             r->rows[b].period_end == r->rows[a].period_end)
        b++;
      report_failed(r, a, b);
      a = b;
    }
    r->dom = r->dom_end;
  }
  run_advance(r);
}

/* Starts the lookup for the domain at r->dom; false when it could not start. */
static bool start_domain(struct tlsrpt__run *r) {
  r->dom_end = r->dom;
  while (r->dom_end < r->nrows && !strcmp(r->rows[r->dom_end].domain, rdomain(r)))
    r->dom_end++;
  char name[300];
  snprintf(name, sizeof name, "_smtp._tls.%s", rdomain(r));
  r->dq = dns_query_raw(r->t->rt->dns, name, DNS_T_TXT, on_txt, r);
  return r->dq != NULL;
}

/* ---- one report -------------------------------------------------------------------- */

static bool same_policy(const struct store_tlsrpt_row *a,
                        const struct store_tlsrpt_row *b) {
  return !strcmp(a->policy_type, b->policy_type) &&
         !strcmp(a->policy_strings, b->policy_strings) &&
         !strcmp(a->mx_hosts, b->mx_hosts);
}

/* Groups rows [rep, rep_end) into policies and failure details, then the JSON. */
static char *report_json(struct tlsrpt__run *r, size_t *len) {
  const struct config *cfg = r->t->cfg;
  const struct store_tlsrpt_row *rows = r->rows + r->rep;
  size_t n = r->rep_end - r->rep, nb = 0, nd = 0;
  struct tlsrpt_policy_block *blocks = calloc(n, sizeof *blocks);
  struct tlsrpt_detail *details = calloc(n, sizeof *details);
  char *json = NULL;
  if (!blocks || !details)
    goto out;
  for (size_t i = 0; i < n; i++) {
    const struct store_tlsrpt_row *w = &rows[i];
    if (i == 0 || !same_policy(&rows[i - 1], w))
      blocks[nb++] = (struct tlsrpt_policy_block){.type = w->policy_type,
                                                  .domain = w->domain,
                                                  .strings = w->policy_strings,
                                                  .mx_host = w->mx_hosts,
                                                  .details = details + nd};
    struct tlsrpt_policy_block *b = &blocks[nb - 1];
    uint64_t c = w->count > 0 ? (uint64_t)w->count : 0;
    if (!w->result_type[0]) {
      b->successes += c;
      continue;
    }
    details[nd++] = (struct tlsrpt_detail){.result_type = w->result_type,
                                           .sending_ip = w->sending_ip,
                                           .mx = w->mx,
                                           .ip = w->ip,
                                           .reason = w->reason,
                                           .count = c};
    b->ndetails++;
  }
  int64_t start = rows[0].period_start;
  int64_t end = rows[0].period_end < r->now ? rows[0].period_end : r->now;
  /* The id is also the Subject's Report-ID, an RFC 5322 msg-id (§5.3): atext only
   * on the left ("20240101T000000Z", no ":"). */
  char sdt[21], compact[21];
  size_t k = 0;
  tlsrpt_datetime(start, sdt);
  for (const char *c = sdt; *c; c++)
    if (*c != '-' && *c != ':')
      compact[k++] = *c;
  compact[k] = '\0';
  snprintf(r->report_id, sizeof r->report_id, "%s_%s_%lld@%s", compact, rows[0].domain,
           (long long)end, cfg->hostname);
  r->range_start = start;
  r->range_end = end - 1 > start ? end - 1 : start; /* the last second covered */
  struct tlsrpt_report rep = {
      .organization = cfg->tlsrpt_organization,
      .contact = cfg->tlsrpt_contact,
      .report_id = r->report_id,
      .start = r->range_start,
      .end = r->range_end,
      .policies = blocks,
      .npolicies = nb,
  };
  json = tlsrpt_report_json(&rep, len);
out:
  free(blocks);
  free(details);
  return json;
}

/* Builds the current report; false (counted as failed) when out of memory. */
static bool start_report(struct tlsrpt__run *r) {
  r->rep_end = r->rep;
  while (r->rep_end < r->dom_end &&
         r->rows[r->rep_end].period_start == r->rows[r->rep].period_start &&
         r->rows[r->rep_end].period_end == r->rows[r->rep].period_end)
    r->rep_end++;
  size_t len = 0;
  char *json = report_json(r, &len);
  int rc = json ? tlsrpt__gzip(json, len, &r->gz, &r->gzlen) : SP_E_NOMEM;
  free(json);
  if (rc < 0) {
    log_msg(LOG_WARNING, NULL, "tlsrpt: %s: cannot build the report: %s", rdomain(r),
            sp_strerror(rc));
    return false;
  }
  r->rua = 0;
  r->delivered = false;
  return true;
}

static void on_delivered(void *arg, bool ok, const char *why) {
  struct tlsrpt__run *r = arg;
  CHECK_OBJ_NOTNULL(r, RUN_MAGIC);
  const struct tlsrpt_uri *u = &r->rec.rua[r->rua];
  r->post = NULL;
  r->mail = NULL;
  if (ok)
    log_msg(LOG_INFO, NULL, "tlsrpt: %s: report %s sent to %s", rdomain(r),
            r->report_id, u->uri);
  else
    log_msg(LOG_WARNING, NULL, "tlsrpt: %s: report %s to %s failed: %s", rdomain(r),
            r->report_id, u->uri, why ? why : "unknown error");
  r->delivered |= ok;
  r->rua++;
  run_advance(r);
}

static bool start_mail(struct tlsrpt__run *r, const struct tlsrpt_uri *u, char *err,
                       size_t errlen) {
  const struct config *cfg = r->t->cfg;
  const char *from = cfg->tlsrpt_contact;
  char fallback[300];
  bool usable = strchr(from, '@') && strlen(from) <= TLSRPT_ADDR_MAX;
  for (const char *c = from; usable && *c; c++) /* it goes into MAIL FROM:<...> */
    usable = *c > 0x20 && *c < 0x7f && !strchr("<>\"(),;\\[]", *c);
  if (!usable) {
    snprintf(fallback, sizeof fallback, "postmaster@%s", cfg->hostname);
    from = fallback;
  }
  /* RFC 8460 §5.3: TLS-Report-Submitter MUST be the domain of contact-info (and §5.1
   * names the report file after it too): that of from, contact as checked above. */
  const char *at = strrchr(from, '@');
  const char *submitter = at[1] ? at + 1 : cfg->hostname;
  const struct store_tlsrpt_row *w = &r->rows[r->rep];
  struct tlsrpt__mail_info m = {
      .domain = w->domain,
      .submitter = submitter,
      .from = from,
      .rcpt = u->addr,
      .report_id = r->report_id,
      .hostname = cfg->hostname,
      .start = r->range_start, /* as in the report (§5.6: it is authoritative) */
      .end = r->range_end,
      .now = r->now,
      .gz = r->gz,
      .gzlen = r->gzlen,
  };
  size_t len = 0, slen = 0;
  char *msg = tlsrpt__mail_compose(&m, &len), *signed_msg = NULL;
  if (!msg) {
    snprintf(err, errlen, "out of memory");
    return false;
  }
  const struct dkimsig_key key = {
      .domain = cfg->tlsrpt_dkim_domain,
      .selector = cfg->tlsrpt_dkim_selector,
      .pem = cfg->tlsrpt_dkim_key,
      .alg = cfg->tlsrpt_dkim_alg,
  };
  char why[256];
  if (dkimsig_sign(&key, msg, len, &signed_msg, &slen, why, sizeof why) < 0)
    snprintf(err, errlen, "cannot DKIM-sign it: %s", why);
  else
    r->mail = tlsrpt__mail_start(r->t, from, u->addr, signed_msg, slen, on_delivered, r,
                                 err, errlen);
  free(signed_msg);
  free(msg);
  return r->mail != NULL;
}

/* RFC 8460 §3: a report by mail MUST be DKIM-signed; without a key it is not sent
 * (https: rua still are). Logged each time, so the admin sees what is missed. */
static bool rua_skipped(struct tlsrpt__run *r) {
  const struct tlsrpt_uri *u = &r->rec.rua[r->rua];
  if (u->kind != TLSRPT_URI_MAILTO || r->t->cfg->tlsrpt_dkim_key)
    return false;
  log_msg(LOG_WARNING, NULL,
          "tlsrpt: %s: report %s to %s skipped: no tlsrpt.dkim key to sign it "
          "(RFC 8460 section 3: reports by mail MUST be DKIM-signed)",
          rdomain(r), r->report_id, u->uri);
  return true;
}

/* Starts the delivery to rua r->rua; false (err set) when it could not start. */
static bool start_rua(struct tlsrpt__run *r, char *err, size_t errlen) {
  const struct tlsrpt_uri *u = &r->rec.rua[r->rua];
  if (u->kind == TLSRPT_URI_MAILTO)
    return start_mail(r, u, err, errlen);
  r->post =
      tlsrpt__post_start(r->t, u->uri, r->gz, r->gzlen, on_delivered, r, err, errlen);
  return r->post != NULL;
}

static void end_report(struct tlsrpt__run *r) {
  free(r->gz);
  r->gz = NULL;
  if (r->delivered) {
    forget(r, r->rep, r->rep_end);
    r->sent++;
  } else {
    report_failed(r, r->rep, r->rep_end);
  }
  r->rep = r->rep_end;
}

/* ---- the machine ------------------------------------------------------------------- */

static void run_free(struct tlsrpt__run *r) {
  if (r->dq)
    dns_cancel(r->dq);
  if (r->post)
    tlsrpt__post_cancel(r->post);
  if (r->mail)
    tlsrpt__mail_cancel(r->mail);
  store_tlsrpt_rows_free(r->rows, r->nrows);
  free(r->gz);
  r->magic = 0;
  free(r);
}

static void run_finish(struct tlsrpt__run *r) {
  struct tlsrpt *t = r->t;
  tlsrpt__run_cb cb = r->cb;
  unsigned sent = r->sent, failed = r->failed, dropped = r->dropped;
  t->run = NULL;
  run_free(r);
  cb(t, sent, failed, dropped);
}

/* Advances until something is in flight or the run is over. */
static void run_advance(struct tlsrpt__run *r) {
  char err[256];
  for (;;) {
    switch (r->phase) {
    case RUN_DOMAIN:
      if (r->dom >= r->nrows) {
        r->phase = RUN_DONE;
      } else if (start_domain(r)) {
        return;
      } else {
        log_msg(LOG_WARNING, NULL, "tlsrpt: %s: cannot start the TXT lookup",
                rdomain(r));
        r->failed++;
        r->dom = r->dom_end;
      }
      break;
    case RUN_REPORT:
      if (r->rep >= r->dom_end) {
        r->dom = r->dom_end;
        r->phase = RUN_DOMAIN;
      } else if (start_report(r)) {
        r->phase = RUN_RUA;
      } else {
        report_failed(r, r->rep, r->rep_end);
        r->rep = r->rep_end;
      }
      break;
    case RUN_RUA:
      if (r->rua >= r->rec.nrua) {
        r->phase = RUN_REPORT_DONE;
      } else if (rua_skipped(r)) {
        r->rua++;
      } else if (start_rua(r, err, sizeof err)) {
        return;
      } else {
        log_msg(LOG_WARNING, NULL, "tlsrpt: %s: report %s to %s failed: %s", rdomain(r),
                r->report_id, r->rec.rua[r->rua].uri, err);
        r->rua++;
      }
      break;
    case RUN_REPORT_DONE:
      end_report(r);
      r->phase = RUN_REPORT;
      break;
    case RUN_DONE:
    default:
      run_finish(r);
      return;
    }
  }
}

int tlsrpt__run_start(struct tlsrpt *t, int64_t end_before, int64_t now,
                      tlsrpt__run_cb cb) {
  struct store_tlsrpt_row *rows = NULL;
  size_t n = 0;
  int rc = store_tlsrpt_load(t->store, end_before, &rows, &n);
  if (rc < 0) {
    log_msg(LOG_WARNING, NULL, "tlsrpt: cannot read counts: %s",
            store_errmsg(t->store));
    return rc;
  }
  return tlsrpt__run_start_rows(t, rows, n, now, cb);
}

int tlsrpt__run_start_rows(struct tlsrpt *t, struct store_tlsrpt_row *rows, size_t n,
                           int64_t now, tlsrpt__run_cb cb) {
  if (n == 0) {
    store_tlsrpt_rows_free(rows, n);
    return 1;
  }
  struct tlsrpt__run *r = calloc(1, sizeof *r);
  if (!r) {
    store_tlsrpt_rows_free(rows, n);
    return SP_E_NOMEM;
  }
  r->rows = rows;
  r->nrows = n;
  r->magic = RUN_MAGIC;
  r->t = t;
  r->cb = cb;
  r->now = now;
  r->phase = RUN_DOMAIN;
  t->run = r;
  run_advance(r);
  return 0;
}

void tlsrpt__run_cancel(struct tlsrpt__run *r) {
  if (!OBJ_VALID(r, RUN_MAGIC))
    return;
  r->t->run = NULL;
  run_free(r);
}
