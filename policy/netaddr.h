/* Which IP addresses a fetch whose host a destination's DNS chose may connect to.
 * MTA-STS policy hosts (mta-sts.<domain>) and TLS-RPT https: endpoints are named by
 * DNS records anyone with a domain controls; without this check such a record could
 * aim the proxy's HTTPS requests at the operator's own network (loopback, RFC 1918,
 * the cloud metadata address 169.254.169.254): server-side request forgery. Pure. */
#ifndef SP_POLICY_NETADDR_H
#define SP_POLICY_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* addr: network-order bytes, len 4 (IPv4) or 16 (IPv6); any other len is not global.
 * True only for a globally reachable unicast address: false for loopback,
 * unspecified, private (RFC 1918, ULA fc00::/7), shared (100.64/10), link-local,
 * multicast, broadcast, reserved (0/8, 240/4, 192.0.0/24, 198.18/15, IETF 2001::/23,
 * site-local fec0::/10), documentation and discard ranges, and IPv6 outside the
 * global unicast 2000::/3. IPv6 forms that carry an IPv4 address (mapped
 * ::ffff:a.b.c.d, compatible ::a.b.c.d, SIIT ::ffff:0:a.b.c.d, NAT64 64:ff9b::/96,
 * 6to4 2002::/16) are judged by that IPv4 address. */
bool netaddr_is_global(const uint8_t *addr, size_t len);

/* addr as above. Whether an MX address may be dialled at all: false for 0.0.0.0/8 and
 * :: (the kernel connects those to this host), multicast, and reserved IPv4 240/4 with
 * the broadcast address, also in the IPv4-mapped form ::ffff:a.b.c.d. Loopback and
 * private addresses are dialable: a local or internal MX is a deployment's choice. */
bool netaddr_is_dialable(const uint8_t *addr, size_t len);

#endif
