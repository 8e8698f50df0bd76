/* Asynchronous DNS on the libuv loop: c-ares 1.18 sends raw queries (ares_send) built
 * by dns_msg, so we see the AD bit and can parse any type; its sockets are watched with
 * uv_poll and its timeouts with one uv_timer.
 *
 * Ownership: struct dns owns the ares channel, every uv_poll_t and the timer; it is
 * freed by dns_close() once the last handle's close callback ran. Each query belongs to
 * the dns until its callback has run or dns_cancel() was called; after dns_cancel() the
 * callback never runs. */
#ifndef SP_DNS_H
#define SP_DNS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "proxy/config/dns_settings.h"
#include "proxy/wire/dns_msg.h"

#define DNS_MAX_MX 16   /* MX hosts kept, lowest preference first */
#define DNS_MAX_ADDRS 8 /* addresses kept per host */

struct dns;
struct dns_query;

struct dns_mx_host {
  char name[256]; /* lower-case, no trailing dot */
  uint16_t pref;
  int status; /* 0 when addresses were found; SP_E_DNS_NODATA (name has no
                       A/AAAA), SP_E_DNS_NXDOMAIN, SP_E_DNS_TEMP */
  /* DNSSEC is a property of each address RRset (RFC 7672 §2.2, as in Postfix): when
   * some family's answer was validated (AD) and has addresses, only validated
   * addresses are kept and addr_secure is true, whatever happened to the other family
   * (a lookup an attacker made fail, or time out, cannot switch DANE off). Otherwise
   * the insecure addresses are kept and addr_secure is false. */
  bool addr_secure;
  /* The name the kept addresses belong to after following CNAMEs, when it differs
   * from name (RFC 7672 §2.2.2: the first TLSA base domain to try); "" otherwise. */
  char cname[256];
  size_t naddrs;
  struct sockaddr_storage addrs[DNS_MAX_ADDRS]; /* port 0; IPv4 first, then IPv6 */
};

struct dns_mx_result {
  int status;       /* 0; SP_E_DNS_NXDOMAIN; SP_E_DNS_NULLMX (RFC 7505); SP_E_DNS_TEMP
                       (SERVFAIL, timeout, REFUSED, malformed answer) */
  bool implicit;    /* no MX records: the domain itself is the host (RFC 5321 §5.1) */
  bool mx_secure;   /* the MX answer had the AD bit */
  char reason[128]; /* for status != 0: e.g. "SERVFAIL", "timeout" */
  size_t nhosts;
  struct dns_mx_host hosts[DNS_MAX_MX]; /* by preference; equal preferences shuffled */
};

typedef void (*dns_mx_cb)(void *arg, const struct dns_mx_result *res);

/* The resolver of ds (config_dns_settings()): its servers (the system's when none),
 * timeouts, tries and answer cache. Returns 0 or a negative error. */
int dns_new(uv_loop_t *loop, const struct dns_settings *ds, struct dns **out);

/* Resolves domain's MX RRset, then A and AAAA of every host (in parallel), then calls
 * cb exactly once (never synchronously from inside this call). Returns the query, or
 * NULL on allocation failure. res is valid only during the callback. */
struct dns_query *dns_resolve_mx(struct dns *dns, const char *domain, dns_mx_cb cb,
                                 void *arg);

/* Generic raw query: cb gets 0 and the parsed answer, or a negative error (timeout
 * → SP_E_DNS_TEMP) and NULL. Used by the policy work (TLSA, TXT). */
typedef void (*dns_raw_cb)(void *arg, int status, const struct dns_answer *ans);
struct dns_query *dns_query_raw(struct dns *dns, const char *name, uint16_t type,
                                dns_raw_cb cb, void *arg);

void dns_cancel(struct dns_query *q);

/* Whether every resolver in use is on loopback: the AD bit is trusted only from a
 * validating resolver we reach without a network in between (RFC 7672 §2.1,
 * as Postfix, mox and maddy do). */
bool dns_servers_loopback(const struct dns *dns);

/* Cancels every query (their callbacks never run), closes the handles and frees dns
 * once closed; on_closed (may be NULL) runs then. */
void dns_close(struct dns *dns, void (*on_closed)(void *arg), void *arg);

#endif
