/* Turns a destination domain into an ordered list of MX addresses to try, or into the
 * reply the MTA must get when there is nowhere to deliver (null MX, NXDOMAIN, DNS
 * failure). The policy work plugs in here: it adds per-host TLS requirements.
 *
 * A query belongs to the router until its callback runs or router_cancel(). */
#ifndef SP_ROUTER_H
#define SP_ROUTER_H

#include <stdbool.h>
#include <sys/socket.h>

#include "runtime.h"

#define ROUTE_MAX_CANDIDATES 16

struct route_candidate {
  char host[256];               /* MX host name */
  struct sockaddr_storage addr; /* port set to outbound.port */
};

struct route {
  /* 0: deliver to candidates[]. Otherwise no delivery is possible now, and the MTA
   * gets reply_code reply_enh reply_text. */
  int status;
  int reply_code;
  char reply_enh[16];
  char reply_text[512];
  size_t ncandidates;
  struct route_candidate candidates[ROUTE_MAX_CANDIDATES];
  /* Hosts that were left out before dialling, as "host: reason; ..." (for the 4xx
   * text when no candidate works). */
  char skipped[512];
};

typedef void (*router_cb)(void *arg, const struct route *route);

struct router_query;

/* Routes domain (lower-case, no trailing dot). cb runs exactly once, never from inside
 * this call. NULL on allocation failure. */
struct router_query *router_route(struct runtime *rt, const char *domain, router_cb cb,
                                  void *arg);
void router_cancel(struct router_query *q);

#endif
