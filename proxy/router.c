#include "router.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

struct router_query {
  struct runtime *rt; /* referenced for the query's life */
  struct dns_query *dq;
  router_cb cb;
  void *arg;
  char domain[256];
};

static void route_reply(struct route *r, int code, const char *enh, const char *fmt,
                        const char *a, const char *b) {
  r->status = SP_E_DNS_TEMP;
  r->reply_code = code;
  snprintf(r->reply_enh, sizeof r->reply_enh, "%s", enh);
  snprintf(r->reply_text, sizeof r->reply_text, fmt, a, b);
}

static void route_skip(struct route *r, const char *host, const char *why) {
  size_t n = strlen(r->skipped);
  snprintf(r->skipped + n, sizeof r->skipped - n, "%s%s: %s", n ? "; " : "", host, why);
}

static const char *host_skip_reason(const struct dns_mx_host *h) {
  switch (h->status) {
  case SP_E_DNS_NODATA:
    return "no address records";
  case SP_E_DNS_NXDOMAIN:
    return "host not found";
  default:
    return "address lookup failed";
  }
}

static void route_add_hosts(struct route *r, const struct dns_mx_result *res,
                            uint16_t port) {
  for (size_t i = 0; i < res->nhosts; i++) {
    const struct dns_mx_host *h = &res->hosts[i];
    if (h->status != 0 || h->naddrs == 0) {
      route_skip(r, h->name, host_skip_reason(h));
      continue;
    }
    for (size_t j = 0; j < h->naddrs && r->ncandidates < ROUTE_MAX_CANDIDATES; j++) {
      struct route_candidate *c = &r->candidates[r->ncandidates++];
      snprintf(c->host, sizeof c->host, "%s", h->name);
      c->addr = h->addrs[j];
      if (c->addr.ss_family == AF_INET)
        ((struct sockaddr_in *)&c->addr)->sin_port = htons(port);
      else
        ((struct sockaddr_in6 *)&c->addr)->sin6_port = htons(port);
    }
  }
}

/* Maps the DNS outcome to candidates or to the reply the MTA gets. */
static void route_from_dns(struct route *r, const char *domain,
                           const struct dns_mx_result *res, uint16_t port) {
  memset(r, 0, sizeof *r);
  switch (res->status) {
  case 0:
    break;
  case SP_E_DNS_NXDOMAIN:
    route_reply(r, 550, "5.1.2", "%s: domain not found (DNS NXDOMAIN)%s", domain, "");
    return;
  case SP_E_DNS_NULLMX:
    route_reply(r, 556, "5.1.10", "%s: domain accepts no mail (null MX, RFC 7505)%s",
                domain, "");
    return;
  default:
    route_reply(r, 451, "4.4.3", "%s: MX lookup failed: %s", domain,
                res->reason[0] ? res->reason : "temporary DNS failure");
    return;
  }
  route_add_hosts(r, res, port);
  if (r->ncandidates > 0)
    return;
  if (res->implicit && res->nhosts == 1 && res->hosts[0].status == SP_E_DNS_NODATA) {
    route_reply(r, 550, "5.1.2", "%s: domain has no MX or address records%s", domain,
                "");
    return;
  }
  route_reply(r, 451, "4.4.4", "%s: no usable MX host: %s", domain, r->skipped);
}

static void on_mx(void *arg, const struct dns_mx_result *res) {
  struct router_query *q = arg;
  struct route *r = malloc(sizeof *r);
  if (!r) {
    struct route fail = {0};
    route_reply(&fail, 451, "4.3.0", "%s: %s", q->domain, "out of memory");
    q->cb(q->arg, &fail);
  } else {
    route_from_dns(r, q->domain, res, q->rt->cfg->outbound_port);
    q->cb(q->arg, r);
    free(r);
  }
  runtime_unref(q->rt);
  free(q);
}

struct router_query *router_route(struct runtime *rt, const char *domain, router_cb cb,
                                  void *arg) {
  struct router_query *q = calloc(1, sizeof *q);
  if (!q)
    return NULL;
  q->rt = runtime_ref(rt);
  q->cb = cb;
  q->arg = arg;
  snprintf(q->domain, sizeof q->domain, "%s", domain);
  q->dq = dns_resolve_mx(rt->dns, domain, on_mx, q);
  if (!q->dq) {
    runtime_unref(rt);
    free(q);
    return NULL;
  }
  return q;
}

void router_cancel(struct router_query *q) {
  if (!q)
    return;
  dns_cancel(q->dq);
  runtime_unref(q->rt);
  free(q);
}
