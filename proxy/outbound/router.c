#include "proxy/outbound/router.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/netaddr.h"
#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/core/obj.h"
#include "proxy/core/observe.h"

#define ROUTER_MAGIC 0x52545251u /* "RTRQ" */
#define TLSA_MAGIC 0x544c5341u   /* "TLSA" */

struct tlsa_lookup {
  uint32_t magic;
  struct router_query *q;
  size_t host;
  struct dns_query *dq; /* NULL once answered */
  bool at_cname;        /* this lookup is at the host's CNAME-expanded name */
};

struct router_query {
  uint32_t magic;
  struct runtime *rt; /* referenced for the query's life */
  struct dns_query *dq;
  router_cb cb;
  void *arg;
  char domain[256];
  bool report; /* router_route_report() */
  bool trust_ad;
  struct decide_domain d;
  struct route *route;      /* being built; handed to cb */
  struct dns_mx_result *mx; /* owned copy, kept while other answers are awaited */
  struct sts_query *sq;     /* the MTA-STS lookup, until answered */
  struct sts_policy sts;    /* its answer (owned, until moved into the route) */
  bool has_sts;
  bool sts_nomem; /* the answer could not be copied: no route (out of memory) */
  struct sts_failure sts_failure; /* why there is none, when the fetch failed */
  size_t pending;                 /* MX, MTA-STS and TLSA answers still awaited */
  struct tlsa_lookup *lookups;    /* owned, one per host */
  size_t nlookups;
};

void route_free(struct route *r) {
  if (!r)
    return;
  for (size_t i = 0; i < r->nhosts; i++)
    free(r->hosts[i].records);
  free(r->hosts);
  sts_policy_free(&r->sts);
  free(r);
}

static void route_reply(struct route *r, int code, const char *enh, const char *fmt,
                        const char *a, const char *b) {
  r->status = SP_E_DNS_TEMP;
  r->reply_code = code;
  snprintf(r->reply_enh, sizeof r->reply_enh, "%s", enh);
  snprintf(r->reply_text, sizeof r->reply_text, fmt, a, b);
}

const char *route_no_mx(char *out, size_t cap, const char *domain, bool policy,
                        const char *reasons) {
  snprintf(out, cap, "%s: %s: %s", domain,
           policy ? "no MX host passed the TLS policy" : "no MX host reachable",
           reasons);
  return policy ? "4.7.5" : "4.4.1";
}

static void route_skip(struct route *r, const char *host, const char *why) {
  size_t n = strlen(r->skipped);
  snprintf(r->skipped + n, sizeof r->skipped - n, "%s%s: %s", n ? "; " : "", host, why);
}

static const char *host_skip_reason(int status) {
  switch (status) {
  case SP_E_DNS_NODATA:
    return "no address records";
  case SP_E_DNS_NXDOMAIN:
    return "host not found";
  default:
    return "address lookup failed";
  }
}

/* The address bytes of a resolved MX address, for the pure classifier. */
static bool addr_dialable(const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET6)
    return netaddr_is_dialable(((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr,
                               16);
  return netaddr_is_dialable(
      (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr.s_addr, 4);
}

/* Adds h's dialable addresses; false when it has none. */
static bool route_add_addrs(struct route *r, size_t host, const struct dns_mx_host *h,
                            uint16_t port) {
  bool any = false;
  for (size_t j = 0; j < h->naddrs && r->ncandidates < ROUTE_MAX_CANDIDATES; j++) {
    if (!addr_dialable(&h->addrs[j]))
      continue;
    any = true;
    struct route_candidate *c = &r->candidates[r->ncandidates++];
    c->host = host;
    c->addr = h->addrs[j];
    if (c->addr.ss_family == AF_INET)
      ((struct sockaddr_in *)&c->addr)->sin_port = htons(port);
    else
      ((struct sockaddr_in6 *)&c->addr)->sin6_port = htons(port);
  }
  return any;
}

/* DNS outcomes that leave nowhere to deliver. Returns true when r got a reply. */
static bool route_dns_failure(struct route *r, const char *domain,
                              const struct dns_mx_result *res) {
  if (res->status == SP_E_DNS_TEMP)
    observe_dns_failure();
  switch (res->status) {
  case 0:
    return false;
  case SP_E_DNS_NXDOMAIN:
    route_reply(r, 550, "5.1.2", "%s: domain not found (DNS NXDOMAIN)%s", domain, "");
    return true;
  case SP_E_DNS_NULLMX:
    route_reply(r, 556, "5.1.10", "%s: domain accepts no mail (null MX, RFC 7505)%s",
                domain, "");
    return true;
  default:
    route_reply(r, 451, "4.4.3", "%s: MX lookup failed: %s", domain,
                res->reason[0] ? res->reason : "temporary DNS failure");
    return true;
  }
}

/* A host left out by the policy is a failed TLS session for the reports. */
static void router_observe_skip(const struct router_query *q,
                                const struct route_host *rh) {
  enum observe_failure f = OBSERVE_DNSSEC;
  if (rh->req.tlsa == DECIDE_TLSA_FAILED)
    f = OBSERVE_TLSA_LOOKUP;
  else if (strstr(rh->req.skip_reason, "MTA-STS"))
    f = OBSERVE_MX_NOT_LISTED;
  struct observe_tls t = {
      .domain = q->domain,
      .mx_host = rh->name,
      .ip = "",
      .local_ip = "",
      .policy = rh->req.policy,
      .failure = f,
      .detail = rh->req.skip_reason,
      .sts = q->d.sts,
      .tlsa = rh->records,
      .ntlsa = rh->nrecords,
      .sts_failure = q->sts_failure.kind,
      .sts_detail = q->sts_failure.reason,
  };
  observe_tls_result(&t);
}

/* One line per routed domain: what each MX host must give, or why it is left out. */
static void router_log_decision(const struct router_query *q) {
  const struct route *r = q->route;
  char text[1500];
  size_t n = 0;
  for (size_t i = 0; i < r->nhosts && n < sizeof text; i++) {
    const struct decide_host *h = &r->hosts[i].req;
    n += (size_t)snprintf(text + n, sizeof text - n, "%s%s %s%s%s%s", i ? ", " : "",
                          r->hosts[i].name, h->policy, h->skip ? " skipped (" : "",
                          h->skip ? h->skip_reason : "", h->skip ? ")" : "");
  }
  /* A published policy that could not be had is named, with why: the admin reading
   * this line should not take it for a domain without MTA-STS. */
  static const char *const unavailable[] = {
      [OBSERVE_STS_FETCH] = "unavailable (fetch error: ",
      [OBSERVE_STS_INVALID] = "unavailable (invalid policy: ",
      [OBSERVE_STS_WEBPKI] = "unavailable (policy host certificate: ",
  };
  enum observe_sts_failure f = q->has_sts ? OBSERVE_STS_OK : q->sts_failure.kind;
  log_msg(LOG_INFO, NULL, "policy: %s: mx_secure=%s sts=%s%s%s: %s", q->domain,
          q->d.mx_secure ? "yes" : "no",
          f != OBSERVE_STS_OK                  ? unavailable[f]
          : !q->has_sts                        ? "none"
          : q->d.sts->mode == STS_MODE_ENFORCE ? "enforce"
          : q->d.sts->mode == STS_MODE_TESTING ? "testing"
                                               : "mode-none",
          f != OBSERVE_STS_OK ? q->sts_failure.reason : "",
          f != OBSERVE_STS_OK ? ")" : "", n ? text : "no MX hosts");
}

/* A TLS report's route: the decision just logged is replaced by level may. */
static void route_relax(struct router_query *q) {
  struct route *r = q->route;
  r->report = true;
  for (size_t i = 0; i < r->nhosts; i++)
    decide_report(&r->hosts[i].req);
  log_msg(LOG_INFO, NULL,
          "policy: %s: TLS report delivery (RFC 8460 section 5.3): the policy above is "
          "not enforced, every MX host at tlsrpt/may",
          q->domain);
}

/* Applies the policy to every host and lists the addresses to dial. */
static void route_finish(struct router_query *q, const struct dns_mx_result *res) {
  struct route *r = q->route;
  uint16_t port = q->rt->cfg->outbound_port;
  for (size_t i = 0; i < r->nhosts; i++) {
    struct route_host *rh = &r->hosts[i];
    const struct dns_mx_host *h = &res->hosts[i];
    rh->req.host = rh->name;
    rh->req.addr_secure = h->addr_secure && q->trust_ad;
    rh->req.records = rh->records;
    rh->req.nrecords = rh->nrecords;
    decide_host(&q->d, &rh->req);
  }
  router_log_decision(q);
  if (q->report)
    route_relax(q);
  for (size_t i = 0; i < r->nhosts; i++) {
    struct route_host *rh = &r->hosts[i];
    const struct dns_mx_host *h = &res->hosts[i];
    if (i == 0)
      snprintf(r->policy, sizeof r->policy, "%s", rh->req.policy);
    if (h->status != 0 || h->naddrs == 0) {
      route_skip(r, h->name, host_skip_reason(h->status));
    } else if (rh->req.skip) {
      route_skip(r, h->name, rh->req.skip_reason);
      r->policy_skipped = true;
      router_observe_skip(q, rh);
    } else if (!route_add_addrs(r, i, h, port) &&
               r->ncandidates < ROUTE_MAX_CANDIDATES) {
      route_skip(r, h->name, "no usable address");
    }
  }
  if (r->ncandidates > 0)
    return;
  if (r->policy_skipped) {
    char text[sizeof r->reply_text];
    const char *enh = route_no_mx(text, sizeof text, q->domain, true, r->skipped);
    route_reply(r, 451, enh, "%s%s", text, "");
  } else if (res->implicit && res->nhosts == 1 &&
             res->hosts[0].status == SP_E_DNS_NODATA)
    route_reply(r, 550, "5.1.2", "%s: domain has no MX or address records%s", q->domain,
                "");
  else
    route_reply(r, 451, "4.4.4", "%s: no usable MX host: %s", q->domain, r->skipped);
}

/* Frees q and what it owns but the route. */
static void router_free(struct router_query *q) {
  for (size_t i = 0; i < q->nlookups; i++)
    q->lookups[i].magic = 0;
  free(q->mx);
  free(q->lookups);
  sts_policy_free(&q->sts);
  runtime_unref(q->rt);
  q->magic = 0;
  free(q);
}

static void router_done(struct router_query *q) {
  struct route *r = q->route;
  q->route = NULL;
  if (q->sts_nomem) { /* never routed as if the domain had no policy */
    route_free(r);
    r = NULL;
  }
  q->cb(q->arg, r);
  router_free(q);
}

/* One awaited answer arrived; the route is built when the last one did. */
static void router_answered(struct router_query *q) {
  if (--q->pending > 0)
    return;
  if (q->route->status == 0) {
    q->route->has_sts = q->has_sts;
    q->route->sts = q->sts; /* moved: from here on the route's is the one */
    memset(&q->sts, 0, sizeof q->sts);
    q->d.sts = q->has_sts ? &q->route->sts : NULL;
    q->route->sts_failure = q->sts_failure;
    route_finish(q, q->mx);
  }
  router_done(q);
}

static void on_sts(void *arg, const struct sts_policy *policy,
                   const struct sts_failure *failed) {
  struct router_query *q;
  CAST_OBJ_NOTNULL(q, arg, ROUTER_MAGIC);
  q->sq = NULL;
  q->has_sts = policy != NULL;
  if (policy && sts_policy_copy(&q->sts, policy) < 0) {
    q->has_sts = false;
    q->sts_nomem = true;
  }
  if (failed)
    q->sts_failure = *failed;
  if (q->route) /* the MX answer is in: it allocated the route */
    router_answered(q);
  else
    q->pending--;
}

static void tlsa_store(struct route_host *rh, const struct dns_answer *ans) {
  const char *owner = dns_answer_target(ans, ans->qname);
  size_t n = 0;
  for (size_t i = 0; i < ans->nrrs; i++)
    n += ans->rrs[i].type == DNS_T_TLSA && strcmp(ans->rrs[i].owner, owner) == 0;
  /* The whole RRset: any record may be the usable one (RFC 6698 §2.1), and an RRset
   * cut to its first records could look unusable, which means unauthenticated TLS. */
  struct dane_tlsa *found = n ? malloc(n * sizeof *found) : NULL;
  for (size_t i = 0, k = 0; found && i < ans->nrrs && k < n; i++) {
    const struct dns_rr *rr = &ans->rrs[i];
    if (rr->type != DNS_T_TLSA || strcmp(rr->owner, owner) != 0)
      continue;
    found[k++] = (struct dane_tlsa){.usage = rr->u.tlsa.usage,
                                    .selector = rr->u.tlsa.selector,
                                    .mtype = rr->u.tlsa.mtype,
                                    .len = rr->u.tlsa.dlen,
                                    .data = rr->u.tlsa.data,
                                    .malformed = rr->u.tlsa.malformed};
  }
  /* The answer goes away after this callback: the route keeps its own copy. */
  rh->records = found ? dane_tlsa_dup(found, n) : NULL;
  free(found);
  if (n && !rh->records) {
    rh->req.tlsa = DECIDE_TLSA_FAILED;
    return;
  }
  rh->nrecords = n;
  rh->req.tlsa = rh->nrecords ? DECIDE_TLSA_FOUND : DECIDE_TLSA_NONE;
}

static bool tlsa_ask(struct tlsa_lookup *l, const char *host);

static void on_tlsa(void *arg, int status, const struct dns_answer *ans) {
  struct tlsa_lookup *l;
  CAST_OBJ_NOTNULL(l, arg, TLSA_MAGIC);
  struct router_query *q = l->q;
  CHECK_OBJ_NOTNULL(q, ROUTER_MAGIC);
  struct route_host *rh = &q->route->hosts[l->host];
  l->dq = NULL;
  if (status < 0 || !ans)
    rh->req.tlsa = DECIDE_TLSA_FAILED; /* RFC 7672 §2.1.2: the host is unusable */
  else if (ans->rcode == DNS_R_NXDOMAIN || !ans->ad || !q->trust_ad)
    rh->req.tlsa = DECIDE_TLSA_NONE; /* secure denial, or insecure: no DANE */
  else
    tlsa_store(rh, ans);
  /* §2.2.2: no TLSA records at the expanded name: the original name is tried next.
   * A failed lookup is not: it may hide a downgrade, and the host stays unusable. */
  if (l->at_cname && rh->req.tlsa == DECIDE_TLSA_NONE) {
    l->at_cname = false;
    if (tlsa_ask(l, rh->name))
      return;
    rh->req.tlsa = DECIDE_TLSA_FAILED;
  }
  rh->tlsa_at_cname = l->at_cname && rh->req.tlsa == DECIDE_TLSA_FOUND;
  router_answered(q);
}

/* Sends the TLSA query for host's port; false when it could not be sent. */
static bool tlsa_ask(struct tlsa_lookup *l, const char *host) {
  char name[300];
  snprintf(name, sizeof name, "_%u._tcp.%s", l->q->rt->cfg->outbound_port, host);
  l->dq = dns_query_raw(l->q->rt->dns, name, DNS_T_TLSA, on_tlsa, l);
  return l->dq != NULL;
}

/* Starts a TLSA lookup for every host whose addresses are secure: at the expanded
 * name first when the addresses came through a (validated) CNAME chain. */
static void router_ask_tlsa(struct router_query *q) {
  const struct dns_mx_result *res = q->mx;
  /* route->nhosts, not res->nhosts: it is 0 when the hosts could not be allocated. */
  size_t n = q->route->nhosts;
  q->lookups = calloc(n ? n : 1, sizeof *q->lookups);
  for (size_t i = 0; !q->lookups && i < n; i++)
    q->route->hosts[i].req.tlsa = DECIDE_TLSA_FAILED;
  if (!q->lookups)
    return;
  q->nlookups = n;
  for (size_t i = 0; i < n; i++) {
    const struct dns_mx_host *h = &res->hosts[i];
    struct tlsa_lookup *l = &q->lookups[i];
    l->magic = TLSA_MAGIC;
    l->q = q;
    l->host = i;
    if (h->status != 0 || h->naddrs == 0 || !h->addr_secure)
      continue;
    q->route->hosts[i].req.tlsa = DECIDE_TLSA_FAILED; /* until answered */
    l->at_cname = h->cname[0] != '\0';
    if (tlsa_ask(l, l->at_cname ? h->cname : h->name))
      q->pending++;
  }
}

static void on_mx(void *arg, const struct dns_mx_result *res) {
  struct router_query *q;
  CAST_OBJ_NOTNULL(q, arg, ROUTER_MAGIC);
  q->dq = NULL;
  struct route *r = calloc(1, sizeof *r);
  q->route = r;
  q->mx = malloc(sizeof *q->mx);
  if (!r || !q->mx) {
    route_free(r);
    q->route = NULL;
    sts_cancel(q->sq);
    q->cb(q->arg, NULL); /* out of memory */
    router_free(q);
    return;
  }
  *q->mx = *res;
  if (route_dns_failure(r, q->domain, res)) {
    sts_cancel(q->sq);
    q->sq = NULL;
    q->pending = 1;
    router_answered(q);
    return;
  }
  r->hosts = calloc(res->nhosts ? res->nhosts : 1, sizeof *r->hosts);
  r->nhosts = r->hosts ? res->nhosts : 0;
  const struct config *cfg = q->rt->cfg;
  q->trust_ad =
      cfg->dns_trust_ad == CONFIG_TRUST_AD_YES ||
      (cfg->dns_trust_ad == CONFIG_TRUST_AD_AUTO && dns_servers_loopback(q->rt->dns));
  q->d.domain = q->domain;
  q->d.default_level = cfg->default_level;
  q->d.mx_secure = res->mx_secure && q->trust_ad;
  for (size_t i = 0; i < r->nhosts; i++) {
    struct route_host *rh = &r->hosts[i];
    snprintf(rh->name, sizeof rh->name, "%s", res->hosts[i].name);
    snprintf(rh->cname, sizeof rh->cname, "%s", res->hosts[i].cname);
    if (q->d.entry && q->d.entry->level == TLS_LEVEL_FINGERPRINT) {
      rh->fingerprints = (const unsigned char(*)[32])q->d.entry->fingerprints;
      rh->nfingerprints = q->d.entry->nfingerprints;
    }
  }
  if (decide_wants_tlsa(&q->d))
    router_ask_tlsa(q);
  router_answered(q);
}

static struct router_query *route_start(struct runtime *rt, const char *domain,
                                        bool report, router_cb cb, void *arg) {
  struct router_query *q = calloc(1, sizeof *q);
  if (!q)
    return NULL;
  q->magic = ROUTER_MAGIC;
  q->report = report;
  q->rt = runtime_ref(rt);
  q->cb = cb;
  q->arg = arg;
  snprintf(q->domain, sizeof q->domain, "%s", domain);
  q->d.entry = table_lookup(&rt->cfg->policy_table, q->domain);
  q->pending = 1;
  q->dq = dns_resolve_mx(rt->dns, domain, on_mx, q);
  if (!q->dq) {
    router_free(q);
    return NULL;
  }
  /* MTA-STS only matters where no table entry decides (DESIGN §3). */
  if (!q->d.entry && rt->sts && (q->sq = sts_lookup(rt->sts, domain, on_sts, q)))
    q->pending++;
  return q;
}

struct router_query *router_route(struct runtime *rt, const char *domain, router_cb cb,
                                  void *arg) {
  return route_start(rt, domain, false, cb, arg);
}

struct router_query *router_route_report(struct runtime *rt, const char *domain,
                                         router_cb cb, void *arg) {
  return route_start(rt, domain, true, cb, arg);
}

void router_cancel(struct router_query *q) {
  CHECK_OBJ_ORNULL(q, ROUTER_MAGIC);
  if (!q)
    return;
  if (q->dq)
    dns_cancel(q->dq);
  sts_cancel(q->sq);
  for (size_t i = 0; q->lookups && q->route && i < q->route->nhosts; i++)
    if (q->lookups[i].dq)
      dns_cancel(q->lookups[i].dq);
  route_free(q->route);
  router_free(q);
}
