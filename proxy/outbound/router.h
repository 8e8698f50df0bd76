/* Turns a destination domain into the MX addresses to try, each with the TLS it must
 * get, or into the reply the MTA gets when there is nowhere to deliver (null MX,
 * NXDOMAIN, DNS failure, no host acceptable under the TLS policy).
 *
 * Facts come from DNS (MX, A/AAAA, TLSA with the AD bit, trusted only from loopback
 * resolvers unless dns.trust_ad says otherwise); the decision is policy/decide.c's.
 *
 * A query belongs to the router until its callback runs or router_cancel(). The route
 * handed to the callback belongs to the callee (route_free). */
#ifndef SP_ROUTER_H
#define SP_ROUTER_H

#include <stdbool.h>
#include <sys/socket.h>

#include "policy/decide.h"
#include "proxy/mtasts/sts.h"
#include "proxy/outbound/runtime.h"

#define ROUTE_MAX_CANDIDATES 16

struct route_host {
  char name[256];
  /* The CNAME-expanded name of the host's addresses ("" when none). The TLSA base
   * domain (RFC 7672 §2.2.2) is cname when the TLSA records were found there, else
   * name; DANE-TA name checks accept both names (§3.2.2). */
  char cname[256];
  bool tlsa_at_cname;
  struct dane_tlsa *records; /* owned (dane_tlsa_dup: data included): the secure
                                TLSA RRset, when one was found */
  size_t nrecords;
  /* The table entry's pins: they point into the runtime's config, which outlives
   * every route (routes live in sessions and upstreams, which hold the runtime). */
  const unsigned char (*fingerprints)[32];
  size_t nfingerprints;
  struct decide_host req; /* what this host must give; req.host points at name */
};

struct route_candidate {
  size_t host;                  /* index into route.hosts */
  struct sockaddr_storage addr; /* port set to outbound.port */
};

struct route {
  /* 0: deliver to candidates[]. Otherwise the MTA gets reply_code reply_enh
   * reply_text. */
  int status;
  int reply_code;
  char reply_enh[16];
  char reply_text[1024];
  struct route_host *hosts; /* owned */
  size_t nhosts;
  size_t ncandidates;
  struct route_candidate candidates[ROUTE_MAX_CANDIDATES];
  /* Hosts left out before dialling, as "host: reason; ..." */
  char skipped[768];
  bool policy_skipped; /* some host was left out by the TLS policy */
  char policy
      [DECIDE_POLICY_MAX]; /* the first host's policy ("dane", "table/secure"), for logs */
  bool has_sts;            /* an MTA-STS policy was in force (for TLS reports) */
  struct sts_policy sts;
  /* No policy in force because the domain's could not be fetched (for TLS reports);
   * kind OBSERVE_STS_OK otherwise. */
  struct sts_failure sts_failure;
  /* Routed by router_route_report(): every host at tlsrpt/may, and the sessions are
   * not counted for TLS reports. */
  bool report;
};

void route_free(struct route *r);

/* The one wording of "no MX host is left for domain": policy says the TLS policy ruled
 * them out (4.7.5), otherwise none could be reached (4.4.1). Writes
 * "domain: no MX host passed the TLS policy: reasons" into out (cut at cap) and
 * returns the enhanced code. The MTA's reply, the logs and `check` all say it so. */
const char *route_no_mx(char *out, size_t cap, const char *domain, bool policy,
                        const char *reasons);

/* route is NULL when memory ran out. */
typedef void (*router_cb)(void *arg, struct route *route);

struct router_query;

/* Routes domain (lower-case, no trailing dot). cb runs exactly once, never from inside
 * this call. NULL on allocation failure. */
struct router_query *router_route(struct runtime *rt, const char *domain, router_cb cb,
                                  void *arg);
/* The same for a TLS report by mail (RFC 8460 §5.3: delivered despite any TLS-related
 * failures, its session not counted in the next report): the domain's own MX hosts,
 * the policy decided and logged as for any message, then every host with addresses
 * given level may (decide_report). For the reporter's own submissions only: an
 * upstream opened on such a route must never go to the connection pool. */
struct router_query *router_route_report(struct runtime *rt, const char *domain,
                                         router_cb cb, void *arg);
void router_cancel(struct router_query *q);

#endif
