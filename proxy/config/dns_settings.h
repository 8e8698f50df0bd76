/* What the resolver (proxy/net/dns.c) takes from the configuration, and nothing more:
 * dns_new() needs no struct config. Filled by config_dns_settings(). */
#ifndef SP_DNS_SETTINGS_H
#define SP_DNS_SETTINGS_H

#include <stddef.h>
#include <sys/socket.h>

#define DNS_SETTINGS_MAX_SERVERS 16 /* as many as dns.servers takes */

struct dns_settings {
  struct sockaddr_storage servers[DNS_SETTINGS_MAX_SERVERS]; /* port 0 means 53 */
  size_t nservers;             /* 0: the system's resolver */
  unsigned timeout_ms;         /* per try; 0: c-ares's default */
  unsigned tries;              /* per server; 0: c-ares's default */
  size_t cache_size;           /* answers kept; 0: no cache (lookups still shared) */
  unsigned cache_max_ttl;      /* seconds */
  unsigned cache_negative_ttl; /* seconds, when a negative answer carries no SOA */
};

#endif
