/* How the shared cache (Redis) stores what the sqlite store keeps in tables, and the
 * strict parsers that read it back. Pure: no I/O. What Redis returns is outside input
 * (another proxy, another version, or anyone with access may have written it), so
 * every decoder checks every byte and is fuzzed (tests/fuzz/fuzz_cache_codec.c).
 *
 * Policy: a hash with the fields id, fetched_at, expires_at, policy (the file as
 * fetched). TLS-RPT: one hash per period, its fields the encoded row keys and its
 * values the counts; a set lists the periods as "<start>:<end>". */
#ifndef SP_CACHE_CODEC_H
#define SP_CACHE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/wire/store_rows.h"

/* Longest string in an encoded row. A policy's strings (tlsrpt_sts_strings) are its
 * file rewritten, "mx: " for "mx:" on each line: at most a fifth longer than the
 * file's STS_POLICY_MAX_BYTES, with any number of mx lines. */
#define CACHE_CODEC_FIELD_MAX (2 * STS_POLICY_MAX_BYTES)

/* v[0..3] = id, fetched_at, expires_at, policy as returned by HMGET (NULL = nil).
 * Returns 1 with out filled (out->text malloc'd: store_policy_free), 0 when all four
 * are nil (no entry), SP_E_PROTOCOL when malformed, SP_E_NOMEM. */
int cache_codec_policy_decode(const char *domain, const char *const v[4],
                              const size_t len[4], struct store_policy *out);

/* A decimal int64 (optional '-'), nothing else. 0 or SP_E_PROTOCOL. */
int cache_codec_int(const char *s, size_t len, int64_t *out);

/* The row's key without its period: eight netstrings "<len>:<bytes>," (domain,
 * policy_type, policy_strings, mx_hosts, result_type, mx, ip, reason), and a ninth,
 * sending_ip, when it is not empty. malloc'd, NULL when out of memory. */
char *cache_codec_row_encode(const struct store_tlsrpt_row *r, size_t *len);
/* The inverse, into out (period and count untouched; policy_strings and mx_hosts
 * malloc'd). 0, SP_E_PROTOCOL (nothing allocated) or SP_E_NOMEM. */
int cache_codec_row_decode(const char *s, size_t len, struct store_tlsrpt_row *out);

/* "<start>:<end>" with start < end. 0 or SP_E_PROTOCOL. */
int cache_codec_period_decode(const char *s, size_t len, int64_t *start, int64_t *end);

#endif
