/* The resolver's answer cache and its in-flight table: one per struct dns (so per
 * loop, and dropped with the resolver when a reload rebuilds the runtime).
 *
 * An entry is keyed by name and type and holds the response message exactly as it
 * arrived, AD bit included: a hit is parsed again and so reports the DNSSEC status
 * the first answer had, never a better one (the cache does not know whether the
 * caller needs DNSSEC, so it never changes what the answer says). Only answers are
 * kept: NOERROR (records or NODATA) and NXDOMAIN, not truncated, for their smallest
 * record TTL, or for a negative answer the authority SOA's (RFC 2308 §5) or else
 * negative_ttl; always at most max_ttl. Failures (SERVFAIL, REFUSED, timeouts,
 * malformed or truncated answers) are never kept: a failure an attacker induced must
 * not outlive its cause, and the coalescing below already stops concurrent lookups
 * from hammering the resolver.
 *
 * Concurrent lookups of one name and type are coalesced: the first becomes a flight
 * (one query on the wire) and later ones wait on it. A waiter is a node the caller
 * embeds in its own struct; the cache only links it.
 *
 * Pure: no I/O, no clock (the caller passes now in milliseconds), allocation only
 * for entries. Not thread-safe: one loop uses one cache. */
#ifndef SP_DNS_CACHE_H
#define SP_DNS_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/core/lru.h"
#include "proxy/wire/dns_msg.h"

struct dns_cache_limits {
  size_t entries;        /* answers kept, least recently used dropped first; 0 keeps
                            none (lookups are still coalesced) */
  size_t bytes;          /* message bytes kept, all answers together */
  uint32_t max_ttl;      /* seconds an answer is kept at most */
  uint32_t negative_ttl; /* seconds for NXDOMAIN/NODATA without an SOA */
};

struct dns_cache_waiter {
  struct dns_cache_waiter *next; /* the cache's while linked */
};

struct dns_cache;
struct dns_cache_flight;

/* 0, SP_E_INVAL or SP_E_NOMEM. secret keys the hash of names (random in production). */
int dns_cache_new(const struct dns_cache_limits *lim,
                  const uint8_t secret[LRU_KEY_BYTES], struct dns_cache **out);
/* Frees every entry and flight; waiters still linked are dropped, not touched. */
void dns_cache_free(struct dns_cache *c);

/* Seconds ans may be kept (see above); 0 when it must not be. */
uint32_t dns_cache_ttl(const struct dns_answer *ans,
                       const struct dns_cache_limits *lim);

/* Lowers every record's TTL by age seconds (not below 0): a cached answer handed out
 * later reports what remains of each TTL. */
void dns_cache_age(struct dns_answer *ans, uint32_t age);

enum dns_cache_result {
  DNS_CACHE_HIT,    /* *hit is the cached answer */
  DNS_CACHE_JOINED, /* w waits on a flight already on the wire */
  DNS_CACHE_SEND,   /* w waits on *flight, new: the caller sends the query */
};

struct dns_cache_hit {
  const uint8_t *msg; /* valid until the next call that changes the cache */
  size_t len;
  uint32_t age; /* whole seconds since it was stored */
};

/* name is lower-case without a trailing dot (at most DNS_NAME_MAX bytes). Returns an
 * enum dns_cache_result, or SP_E_NOMEM (nothing linked). */
int dns_cache_lookup(struct dns_cache *c, const char *name, uint16_t type,
                     uint64_t now_ms, struct dns_cache_waiter *w,
                     struct dns_cache_hit *hit, struct dns_cache_flight **flight);

/* The flight's query ended: msg/len is the response (NULL on a failure), kept for
 * ttl seconds when ttl > 0 (from dns_cache_ttl). The flight is freed; its waiters are
 * unlinked and returned in the order they joined, for the caller to answer. A waiter
 * that is no longer interested stays on the list until then: the caller skips it. */
struct dns_cache_waiter *dns_cache_land(struct dns_cache *c, struct dns_cache_flight *f,
                                        const uint8_t *msg, size_t len, uint32_t ttl,
                                        uint64_t now_ms);

const struct dns_cache_limits *dns_cache_limits(const struct dns_cache *c);

/* Answers kept and message bytes they hold (flights not counted). */
size_t dns_cache_count(const struct dns_cache *c);
size_t dns_cache_bytes(const struct dns_cache *c);

#endif
