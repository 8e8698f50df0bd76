/* `starttls-proxy check DOMAIN`: the router's view of a destination (DNS, DNSSEC, TLSA,
 * MTA-STS, the table entry and the per-host decision), then a live probe of every
 * candidate address through the real upstream code, so what is shown is what the
 * relay would do. No message is sent: each probe ends with QUIT after EHLO. */
#include "proxy/daemon/check.h"

#include <ctype.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "certs/verify.h"
#include "proxy/config/config.h"
#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/core/obj.h"
#include "proxy/mtasts/store.h"
#include "proxy/mtasts/sts.h"
#include "proxy/net/dns.h"
#include "proxy/outbound/router.h"
#include "proxy/outbound/runtime.h"
#include "proxy/outbound/upstream.h"

#define CHECK_EXIT_OK 0
#define CHECK_EXIT_UNDELIVERABLE 1
#define CHECK_EXIT_ERROR 2

#define CHECK_MAGIC 0x4348454bu /* "CHEK" */
#define PROBE_MAGIC 0x50524f42u /* "PROB" */

struct check;

struct check_probe {
  uint32_t magic;
  struct check *ck;
  struct upstream *up; /* until done */
  bool done, ok;
  char relay[UPSTREAM_RELAY_MAX];
  char tls[16];
  char verdict[16];
  char summary[512];
  char subject[256];
  char issuer[256];
  char match[160];
  char policy[DECIDE_POLICY_MAX];
  char reasons[1024];
  bool policy_failed;
};

enum check_txt { TXT_PENDING, TXT_FOUND, TXT_ABSENT, TXT_INVALID, TXT_FAILED };

struct check {
  uint32_t magic;
  uv_loop_t loop;
  struct runtime *rt; /* owned until the report is printed */
  char domain[256];
  bool json;
  size_t pending; /* route, MX and TXT answers awaited */
  struct route *route;
  struct dns_mx_result mx;
  bool trust_ad;
  enum check_txt txt;
  char txt_id[STS_ID_MAX + 1];
  bool have_cached;
  struct store_policy cached;
  struct check_probe probes[ROUTE_MAX_CANDIDATES];
  size_t nprobes, probes_left;
  int exit_code;
  char result[1400];
};

/* ---- JSON output ------------------------------------------------------------------ */

static void json_str(const char *s) {
  putchar('"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      printf("\\%c", *p);
    else if (*p < 0x20 || *p == 0x7f)
      printf("\\u%04x", *p);
    else
      putchar(*p);
  }
  putchar('"');
}

/* "key": "value" with a leading comma unless first. */
static void json_kv(bool first, const char *key, const char *value) {
  printf("%s", first ? "" : ",");
  json_str(key);
  putchar(':');
  if (value)
    json_str(value);
  else
    printf("null");
}

static void json_kb(bool first, const char *key, bool value) {
  printf("%s\"%s\":%s", first ? "" : ",", key, value ? "true" : "false");
}

static void json_kn(bool first, const char *key, long long value) {
  printf("%s\"%s\":%lld", first ? "" : ",", key, value);
}

/* ---- facts -------------------------------------------------------------------- */

static const char *tlsa_state_name(enum decide_tlsa t) {
  switch (t) {
  case DECIDE_TLSA_NONE:
    return "none";
  case DECIDE_TLSA_FAILED:
    return "lookup failed";
  case DECIDE_TLSA_FOUND:
    return "found";
  default:
    return "not looked up";
  }
}

static const char *auth_name(enum decide_auth a) {
  switch (a) {
  case DECIDE_AUTH_DANE:
    return "dane";
  case DECIDE_AUTH_FINGERPRINT:
    return "fingerprint";
  case DECIDE_AUTH_PKIX:
    return "pkix";
  default:
    return "none";
  }
}

static const char *txt_name(enum check_txt t) {
  static const char *const names[] = {"pending", "found", "absent", "invalid",
                                      "lookup failed"};
  return names[t];
}

static const char *sts_mode_name(enum sts_mode m) {
  return m == STS_MODE_ENFORCE ? "enforce" : m == STS_MODE_TESTING ? "testing" : "none";
}

static const struct dns_mx_host *mx_host(const struct check *ck, const char *name) {
  for (size_t i = 0; ck->mx.status == 0 && i < ck->mx.nhosts; i++)
    if (!strcmp(ck->mx.hosts[i].name, name))
      return &ck->mx.hosts[i];
  return NULL;
}

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t cap) {
  if (ss->ss_family == AF_INET6)
    uv_ip6_name((const struct sockaddr_in6 *)ss, out, cap);
  else
    uv_ip4_name((const struct sockaddr_in *)ss, out, cap);
}

static void date_text(int64_t t, char *out, size_t cap) {
  time_t tt = (time_t)t;
  struct tm tm;
  strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&tt, &tm));
}

/* The decision for one host in words: "TLS required, authenticated by dane". */
static void decision_text(const struct decide_host *r, char *out, size_t cap) {
  if (r->skip) {
    snprintf(out, cap, "not used: %s", r->skip_reason);
    return;
  }
  snprintf(out, cap, "level %s, %s%s%s", tls_level_name(r->level),
           r->tls_required              ? "TLS required"
           : r->level == TLS_LEVEL_NONE ? "no TLS"
                                        : "TLS when offered",
           r->auth == DECIDE_AUTH_NONE ? "" : ", authenticated by ",
           r->auth == DECIDE_AUTH_NONE ? "" : auth_name(r->auth));
}

/* ---- human output ----------------------------------------------------------------- */

static void human_table(const struct check *ck) {
  const struct table_entry *e = table_lookup(&ck->rt->cfg->policy_table, ck->domain);
  if (!e) {
    printf("policy table: no entry (default level %s)\n",
           tls_level_name(ck->rt->cfg->default_level));
    return;
  }
  printf("policy table: %s -> %s", e->key, tls_level_name(e->level));
  for (size_t i = 0; i < e->nmatch; i++)
    printf("%s%s", i ? ":" : " match=", e->match[i]);
  if (e->nfingerprints)
    printf(" (%zu pinned fingerprints)", e->nfingerprints);
  if (e->line)
    printf(" (line %u)", e->line);
  printf("\n");
}

static void human_host(const struct check *ck, const struct route_host *rh) {
  const struct dns_mx_host *h = mx_host(ck, rh->name);
  printf("  %u %s", h ? h->pref : 0, rh->name);
  for (size_t j = 0; h && j < h->naddrs; j++) {
    char ip[64];
    addr_text(&h->addrs[j], ip, sizeof ip);
    printf("%s%s", j ? ", " : " [", ip);
  }
  if (!h || h->naddrs == 0)
    printf(" [no addresses]");
  else
    printf("]");
  printf(" addresses DNSSEC: %s\n", rh->req.addr_secure ? "secure" : "insecure");
  if (rh->cname[0])
    printf("    CNAME %s\n", rh->cname);
  printf("    TLSA _%u._tcp.%s: %s\n", ck->rt->cfg->outbound_port,
         rh->tlsa_at_cname ? rh->cname : rh->name, tlsa_state_name(rh->req.tlsa));
  for (size_t j = 0; j < rh->nrecords; j++) {
    char rec[200];
    dane_tlsa_format(&rh->records[j], rec, sizeof rec);
    printf("      %s%s\n", rec, dane_tlsa_usable(&rh->records[j]) ? "" : " (unusable)");
  }
  char d[300];
  decision_text(&rh->req, d, sizeof d);
  printf("    decision: %s; policy=%s\n", d, rh->req.policy);
}

static void human_sts(const struct check *ck) {
  const struct config *cfg = ck->rt->cfg;
  printf("MTA-STS: TXT _mta-sts.%s: %s", ck->domain, txt_name(ck->txt));
  if (ck->txt == TXT_FOUND)
    printf(" (id=%s)", ck->txt_id);
  printf("\n");
  if (!cfg->sts_enabled)
    printf("  policy: not used (mta_sts.enabled: no)\n");
  else if (table_lookup(&cfg->policy_table, ck->domain))
    printf("  policy: not consulted (the policy table entry decides)\n");
  else if (!ck->route || !ck->route->has_sts)
    printf("  policy: none in force\n");
  else {
    const struct sts_policy *p = &ck->route->sts;
    printf("  policy: mode %s, max_age %u, mx:", sts_mode_name(p->mode), p->max_age);
    for (const char *m = sts_mx_next(p, NULL); m; m = sts_mx_next(p, m))
      printf(" %s", m);
    printf("\n");
  }
  if (ck->have_cached) {
    char f[32], e[32];
    date_text(ck->cached.fetched_at, f, sizeof f);
    date_text(ck->cached.expires_at, e, sizeof e);
    printf("  cached: id=%s fetched %s expires %s\n", ck->cached.id, f, e);
  }
}

static void human_probe(const struct check_probe *p) {
  if (!p->ok) {
    size_t n = strlen(p->relay); /* the reasons name the relay too */
    bool named = !strncmp(p->reasons, p->relay, n) && !strncmp(p->reasons + n, ": ", 2);
    printf("  %s: FAILED: %s\n", p->relay, p->reasons + (named ? n + 2 : 0));
    return;
  }
  if (!p->summary[0]) {
    printf("  %s: OK without TLS (policy=%s)\n", p->relay, p->policy);
    return;
  }
  printf("  %s: OK: %s TLS: %s (policy=%s)\n", p->relay, p->verdict, p->summary,
         p->policy);
  printf("    certificate: subject %s; issuer %s\n", p->subject, p->issuer);
  if (p->match[0])
    printf("    matched %s %s\n",
           strstr(p->policy, "fingerprint") ? "pin" : "TLSA record", p->match);
}

static void human_report(const struct check *ck) {
  printf("domain: %s\n", ck->domain);
  human_table(ck);
  if (ck->mx.status != 0)
    printf("MX: %s%s%s\n", sp_strerror(ck->mx.status), ck->mx.reason[0] ? ": " : "",
           ck->mx.reason);
  else
    printf("MX RRset%s: DNSSEC %s%s\n",
           ck->mx.implicit ? " (none: the domain itself)" : "",
           ck->mx.mx_secure ? "secure" : "insecure",
           ck->trust_ad ? "" : " (AD bit not trusted: dns.trust_ad)");
  for (size_t i = 0; ck->route && i < ck->route->nhosts; i++)
    human_host(ck, &ck->route->hosts[i]);
  human_sts(ck);
  if (ck->route && ck->route->skipped[0])
    printf("skipped before dialling: %s\n", ck->route->skipped);
  if (ck->nprobes)
    printf("probes:\n");
  for (size_t i = 0; i < ck->nprobes; i++)
    human_probe(&ck->probes[i]);
  printf("result: %s\n", ck->result);
}

/* ---- JSON report ------------------------------------------------------------------ */

static void json_table(const struct check *ck) {
  const struct table_entry *e = table_lookup(&ck->rt->cfg->policy_table, ck->domain);
  printf(",\"policy_table\":");
  if (!e) {
    printf("null");
    return;
  }
  printf("{");
  json_kv(true, "key", e->key);
  json_kv(false, "level", tls_level_name(e->level));
  printf(",\"match\":[");
  for (size_t i = 0; i < e->nmatch; i++) {
    printf("%s", i ? "," : "");
    json_str(e->match[i]);
  }
  printf("]");
  json_kn(false, "fingerprints", (long long)e->nfingerprints);
  json_kn(false, "line", e->line);
  printf("}");
}

static void json_host(const struct check *ck, const struct route_host *rh) {
  const struct dns_mx_host *h = mx_host(ck, rh->name);
  printf("{");
  json_kv(true, "name", rh->name);
  json_kn(false, "pref", h ? h->pref : 0);
  printf(",\"addresses\":[");
  for (size_t j = 0; h && j < h->naddrs; j++) {
    char ip[64];
    addr_text(&h->addrs[j], ip, sizeof ip);
    printf("%s", j ? "," : "");
    json_str(ip);
  }
  printf("]");
  json_kb(false, "addresses_secure", rh->req.addr_secure);
  json_kv(false, "cname", rh->cname);
  json_kv(false, "tlsa_base", rh->tlsa_at_cname ? rh->cname : rh->name);
  json_kv(false, "tlsa", tlsa_state_name(rh->req.tlsa));
  printf(",\"tlsa_records\":[");
  for (size_t j = 0; j < rh->nrecords; j++) {
    char rec[200];
    dane_tlsa_format(&rh->records[j], rec, sizeof rec);
    printf("%s", j ? "," : "");
    json_str(rec);
  }
  printf("]");
  json_kv(false, "level", tls_level_name(rh->req.level));
  json_kb(false, "tls_required", rh->req.tls_required);
  json_kv(false, "auth", auth_name(rh->req.auth));
  json_kv(false, "policy", rh->req.policy);
  json_kb(false, "skip", rh->req.skip);
  json_kv(false, "skip_reason", rh->req.skip ? rh->req.skip_reason : NULL);
  printf("}");
}

static void json_sts(const struct check *ck) {
  printf(",\"mta_sts\":{");
  json_kv(true, "txt", txt_name(ck->txt));
  json_kv(false, "id", ck->txt == TXT_FOUND ? ck->txt_id : NULL);
  printf(",\"policy\":");
  if (ck->route && ck->route->has_sts) {
    const struct sts_policy *p = &ck->route->sts;
    printf("{");
    json_kv(true, "mode", sts_mode_name(p->mode));
    json_kn(false, "max_age", p->max_age);
    printf(",\"mx\":[");
    for (const char *m = sts_mx_next(p, NULL); m; m = sts_mx_next(p, m)) {
      printf("%s", m != p->mx ? "," : "");
      json_str(m);
    }
    printf("]}");
  } else {
    printf("null");
  }
  printf(",\"cached\":");
  if (ck->have_cached) {
    char f[32], e[32];
    date_text(ck->cached.fetched_at, f, sizeof f);
    date_text(ck->cached.expires_at, e, sizeof e);
    printf("{");
    json_kv(true, "id", ck->cached.id);
    json_kv(false, "fetched", f);
    json_kv(false, "expires", e);
    printf("}");
  } else {
    printf("null");
  }
  printf("}");
}

static void json_probe(const struct check_probe *p) {
  printf("{");
  json_kv(true, "relay", p->relay);
  json_kb(false, "ok", p->ok);
  json_kv(false, "policy", p->policy);
  json_kv(false, "tls", p->ok ? p->tls : NULL);
  json_kv(false, "verdict", p->ok && p->verdict[0] ? p->verdict : NULL);
  json_kv(false, "summary", p->summary[0] ? p->summary : NULL);
  json_kv(false, "subject", p->subject[0] ? p->subject : NULL);
  json_kv(false, "issuer", p->issuer[0] ? p->issuer : NULL);
  json_kv(false, "matched", p->match[0] ? p->match : NULL);
  json_kv(false, "reason", p->ok ? NULL : p->reasons);
  printf("}");
}

static void json_report(const struct check *ck) {
  printf("{");
  json_kv(true, "domain", ck->domain);
  json_table(ck);
  printf(",\"dns\":{");
  json_kv(true, "status", ck->mx.status ? sp_strerror(ck->mx.status) : "ok");
  json_kv(false, "reason", ck->mx.reason[0] ? ck->mx.reason : NULL);
  json_kb(false, "mx_secure", ck->mx.status == 0 && ck->mx.mx_secure);
  json_kb(false, "ad_trusted", ck->trust_ad);
  json_kb(false, "implicit_mx", ck->mx.status == 0 && ck->mx.implicit);
  printf("},\"hosts\":[");
  for (size_t i = 0; ck->route && i < ck->route->nhosts; i++) {
    printf("%s", i ? "," : "");
    json_host(ck, &ck->route->hosts[i]);
  }
  printf("]");
  json_sts(ck);
  json_kv(false, "skipped",
          ck->route && ck->route->skipped[0] ? ck->route->skipped : NULL);
  printf(",\"probes\":[");
  for (size_t i = 0; i < ck->nprobes; i++) {
    printf("%s", i ? "," : "");
    json_probe(&ck->probes[i]);
  }
  printf("]");
  json_kb(false, "deliverable", ck->exit_code == CHECK_EXIT_OK);
  json_kv(false, "result", ck->result);
  printf("}\n");
}

/* ---- conclusion ------------------------------------------------------------------- */

/* What the MTA would hear: the first candidate that worked, or the reply the relay
 * gives when none did (the same codes as a session's leg, session_leg.c). */
static void check_conclude(struct check *ck) {
  struct route *r = ck->route;
  ck->exit_code = CHECK_EXIT_UNDELIVERABLE;
  if (!r) {
    ck->exit_code = CHECK_EXIT_ERROR;
    snprintf(ck->result, sizeof ck->result, "out of memory");
    return;
  }
  if (r->status != 0) {
    snprintf(ck->result, sizeof ck->result, "not deliverable: %d %s %s", r->reply_code,
             r->reply_enh, r->reply_text);
    return;
  }
  char reasons[1200] = "";
  bool policy = r->policy_skipped;
  for (size_t i = 0; i < ck->nprobes; i++) {
    const struct check_probe *p = &ck->probes[i];
    if (p->ok) {
      ck->exit_code = CHECK_EXIT_OK;
      snprintf(ck->result, sizeof ck->result,
               "deliverable via %s (tls=%s%s%s, policy=%s)", p->relay, p->tls,
               p->verdict[0] ? "/" : "", p->verdict, p->policy);
      return;
    }
    policy = policy || p->policy_failed;
    size_t n = strlen(reasons);
    snprintf(reasons + n, sizeof reasons - n, "%s%s", n ? "; " : "", p->reasons);
  }
  size_t n = strlen(reasons);
  if (r->skipped[0])
    snprintf(reasons + n, sizeof reasons - n, "%s%s", n ? "; " : "", r->skipped);
  char text[sizeof ck->result];
  const char *enh = route_no_mx(text, sizeof text, ck->domain, policy, reasons);
  snprintf(ck->result, sizeof ck->result, "not deliverable: 451 %s %s", enh, text);
}

static void check_report(struct check *ck) {
  check_conclude(ck);
  if (ck->json)
    json_report(ck);
  else
    human_report(ck);
  fflush(stdout);
  route_free(ck->route);
  ck->route = NULL;
  if (ck->have_cached)
    store_policy_free(&ck->cached);
  runtime_unref(ck->rt); /* the loop ends once its handles are closed */
  ck->rt = NULL;
}

/* ---- probes ------------------------------------------------------------------- */

/* The route with only candidate c (and its host), for upstream_open to own. */
static struct route *route_for_candidate(const struct route *r, size_t c) {
  const struct route_host *src = &r->hosts[r->candidates[c].host];
  struct route *one = calloc(1, sizeof *one);
  struct route_host *h = malloc(sizeof *h);
  if (!one || !h)
    goto fail;
  *h = *src;
  h->records = dane_tlsa_dup(src->records, src->nrecords);
  if (src->nrecords && !h->records)
    goto fail;
  h->req.host = h->name;
  h->req.records = h->records;
  one->hosts = h;
  one->nhosts = 1;
  one->ncandidates = 1;
  one->candidates[0] = r->candidates[c];
  one->candidates[0].host = 0;
  snprintf(one->policy, sizeof one->policy, "%s", h->req.policy);
  one->has_sts = r->has_sts;
  if (sts_policy_copy(&one->sts, &r->sts) < 0) {
    route_free(one); /* and h with it */
    return NULL;
  }
  return one;
fail:
  free(h);
  free(one);
  return NULL;
}

static void probe_done(struct check_probe *p) {
  struct check *ck = p->ck;
  p->done = true;
  upstream_close(p->up, true); /* QUIT: no message is sent */
  p->up = NULL;
  if (--ck->probes_left == 0)
    check_report(ck);
}

static void x509_name_text(const X509_NAME *name, char *out, size_t cap) {
  out[0] = '\0';
  if (name)
    X509_NAME_oneline(name, out, (int)cap);
}

static struct check_probe *probe_of(void *arg) {
  struct check_probe *p;
  CAST_OBJ_NOTNULL(p, arg, PROBE_MAGIC);
  return p;
}

static void on_probe_ready(void *arg) {
  struct check_probe *p = probe_of(arg);
  p->ok = true;
  snprintf(p->relay, sizeof p->relay, "%s", upstream_relay(p->up));
  snprintf(p->tls, sizeof p->tls, "%s", upstream_tls(p->up));
  const char *v = upstream_verdict(p->up);
  snprintf(p->verdict, sizeof p->verdict, "%s", v ? v : "");
  snprintf(p->policy, sizeof p->policy, "%s", upstream_policy(p->up));
  SSL *ssl = upstream_ssl(p->up);
  if (ssl) {
    tls_verify_summary(ssl, p->summary, sizeof p->summary);
    X509 *cert = SSL_get0_peer_certificate(ssl);
    x509_name_text(cert ? X509_get_subject_name(cert) : NULL, p->subject,
                   sizeof p->subject);
    x509_name_text(cert ? X509_get_issuer_name(cert) : NULL, p->issuer,
                   sizeof p->issuer);
    tls_verify_dane_match(ssl, p->match, sizeof p->match);
  }
  probe_done(p);
}

static void on_probe_failed(void *arg, const char *reasons, bool policy) {
  struct check_probe *p = probe_of(arg);
  snprintf(p->relay, sizeof p->relay, "%s", upstream_relay(p->up));
  snprintf(p->policy, sizeof p->policy, "%s", upstream_policy(p->up));
  snprintf(p->reasons, sizeof p->reasons, "%s", reasons);
  p->policy_failed = policy;
  probe_done(p);
}

/* No command is ever queued and the probe closes at ready: these never run. */
static void on_probe_reply(void *arg, const struct smtp_reply *r) {
  (void)r;
  probe_of(arg);
}
static void on_probe_drain(void *arg) {
  probe_of(arg);
}
static void on_probe_lost(void *arg, const char *reason) {
  (void)reason;
  probe_of(arg);
}

static const struct upstream_events probe_events = {
    .on_ready = on_probe_ready,
    .on_failed = on_probe_failed,
    .on_reply = on_probe_reply,
    .on_drain = on_probe_drain,
    .on_lost = on_probe_lost,
};

/* Every candidate at once: the checks are independent and the timeouts add up. */
static void check_probe_all(struct check *ck) {
  const struct route *r = ck->route;
  size_t n = r && r->status == 0 ? r->ncandidates : 0;
  ck->probes_left = 1; /* held until every probe is started */
  for (size_t i = 0; i < n; i++) {
    struct check_probe *p = &ck->probes[ck->nprobes];
    p->magic = PROBE_MAGIC;
    p->ck = ck;
    struct route *one = route_for_candidate(r, i);
    p->up =
        one ? upstream_open(ck->rt, one, ck->domain, "check", &probe_events, p) : NULL;
    if (!p->up)
      continue;
    ck->nprobes++;
    ck->probes_left++;
  }
  if (--ck->probes_left == 0)
    check_report(ck);
}

/* ---- lookups ------------------------------------------------------------------ */

static void check_cached_policy(struct check *ck) {
  const struct config *cfg = ck->rt->cfg;
  if (!cfg->sts_enabled)
    return;
  char path[STORE_PATH_MAX], err[256];
  store_path(cfg->state_dir, path, sizeof path);
  struct store *st;
  if (store_open(path, &st, err, sizeof err) < 0)
    return;
  ck->have_cached = store_get_policy(st, ck->domain, &ck->cached) == 1;
  store_close(st);
}

static void check_answered(struct check *ck) {
  if (--ck->pending > 0)
    return;
  check_cached_policy(ck);
  check_probe_all(ck);
}

static void on_route(void *arg, struct route *route) {
  struct check *ck;
  CAST_OBJ_NOTNULL(ck, arg, CHECK_MAGIC);
  ck->route = route;
  check_answered(ck);
}

static void on_mx(void *arg, const struct dns_mx_result *res) {
  struct check *ck;
  CAST_OBJ_NOTNULL(ck, arg, CHECK_MAGIC);
  ck->mx = *res;
  check_answered(ck);
}

static void on_txt(void *arg, int status, const struct dns_answer *ans) {
  struct check *ck;
  CAST_OBJ_NOTNULL(ck, arg, CHECK_MAGIC);
  if (status < 0 || !ans ||
      (ans->rcode != DNS_R_NOERROR && ans->rcode != DNS_R_NXDOMAIN))
    ck->txt = TXT_FAILED;
  else if (ans->rcode == DNS_R_NXDOMAIN)
    ck->txt = TXT_ABSENT;
  else {
    struct dns_texts t;
    bool got = dns_answer_texts(ans, &t) == 0;
    int rc = got ? sts_txt_parse(t.texts, t.lens, t.n, ck->txt_id) : 0;
    dns_texts_free(&t);
    ck->txt = !got                 ? TXT_FAILED
              : rc == STS_TXT_OK   ? TXT_FOUND
              : rc == STS_TXT_NONE ? TXT_ABSENT
                                   : TXT_INVALID;
  }
  check_answered(ck);
}

/* The router's answer, and beside it the raw facts it does not keep: the MX RRset's
 * DNSSEC status and preferences, and the MTA-STS TXT id. */
static void check_start(struct check *ck) {
  const struct config *cfg = ck->rt->cfg;
  ck->trust_ad =
      cfg->dns_trust_ad == CONFIG_TRUST_AD_YES ||
      (cfg->dns_trust_ad == CONFIG_TRUST_AD_AUTO && dns_servers_loopback(ck->rt->dns));
  char txt[300];
  snprintf(txt, sizeof txt, "_mta-sts.%s", ck->domain);
  ck->pending = 4; /* three lookups, and this function */
  ck->mx.status = SP_E_NOMEM;
  ck->txt = TXT_FAILED;
  if (!router_route(ck->rt, ck->domain, on_route, ck))
    ck->pending--;
  if (!dns_resolve_mx(ck->rt->dns, ck->domain, on_mx, ck))
    ck->pending--;
  if (!dns_query_raw(ck->rt->dns, txt, DNS_T_TXT, on_txt, ck))
    ck->pending--;
  check_answered(ck);
}

/* Lower-case, without the trailing dot; letters, digits, '-', '_' and dots. */
static int normalize_domain(const char *in, char out[256]) {
  size_t n = strlen(in);
  if (n > 0 && in[n - 1] == '.')
    n--;
  if (n == 0 || n > 253 || in[0] == '.')
    return -1;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)in[i];
    if (!isalnum(c) && c != '-' && c != '_' && c != '.')
      return -1;
    if (c == '.' && in[i + 1] == '.')
      return -1;
    out[i] = (char)tolower(c);
  }
  out[n] = '\0';
  return 0;
}

int check_main(const char *config_path, const char *domain, bool json) {
  struct check *ck = calloc(1, sizeof *ck);
  if (!ck || normalize_domain(domain, ck->domain) < 0) {
    fprintf(stderr, "check: %s: %s\n", domain,
            ck ? "not a domain name" : "out of memory");
    free(ck);
    return CHECK_EXIT_ERROR;
  }
  ck->magic = CHECK_MAGIC;
  struct config *cfg;
  char *errors = NULL;
  if (config_load(config_path, &cfg, &errors) < 0) {
    fprintf(stderr, "%s", errors ? errors : "cannot load configuration\n");
    free(errors);
    ck->magic = 0;
    free(ck);
    return CHECK_EXIT_ERROR;
  }
  /* Only warnings on stderr, unless the configuration asks for the whole dialogue. */
  log_configure(cfg->log_format, cfg->log_level == LOG_DEBUG ? LOG_DEBUG : LOG_WARNING,
                cfg->hostname);
  signal(SIGPIPE, SIG_IGN);
  ck->json = json;
  ck->exit_code = CHECK_EXIT_ERROR;
  uv_loop_init(&ck->loop);
  char err[512];
  if (runtime_new(&ck->loop, cfg, &ck->rt, err, sizeof err) < 0)
    fprintf(stderr, "%s: %s\n", config_path, err);
  else
    check_start(ck);
  config_unref(cfg);
  uv_run(&ck->loop, UV_RUN_DEFAULT);
  int rc = ck->exit_code;
  if (uv_loop_close(&ck->loop) != 0) {
    fprintf(stderr, "check: event loop closed with handles open\n");
    rc = CHECK_EXIT_ERROR;
  }
  for (size_t i = 0; i < sizeof ck->probes / sizeof *ck->probes; i++)
    ck->probes[i].magic = 0; /* a slot whose upstream did not open is set too */
  ck->magic = 0;
  free(ck);
  return rc;
}
