/* The rows of persistent state, as plain structs: what the sqlite store (store.h)
 * reads and writes and what the shared cache's codec (cache_codec.h) encodes. Pure:
 * no I/O here, so the codec and its fuzzer need nothing of sqlite. */
#ifndef SP_STORE_ROWS_H
#define SP_STORE_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "policy/mtasts.h"

/* One cached MTA-STS policy. */
struct store_policy {
  char domain[256];
  char id[STS_ID_MAX + 1];
  char *text; /* the policy file as fetched (malloc'd; store_policy_free) */
  int64_t fetched_at;
  int64_t expires_at;
};
/* Frees p->text (p itself is the caller's); NULL is a no-op. */
void store_policy_free(struct store_policy *p);

/* One TLS-RPT counter: sessions of one period, policy domain, policy and outcome. All
 * fields but count form the key. */
struct store_tlsrpt_row {
  int64_t period_start, period_end; /* unix seconds, [start, end) */
  char domain[256];                 /* policy domain */
  char policy_type[16];             /* "sts", "tlsa", "no-policy-found" */
  char *policy_strings;             /* "\n"-joined (may be "") */
  char *mx_hosts;                   /* "\n"-joined (may be "") */
  char result_type[32];             /* RFC 8460 result type; "" = successful sessions */
  char mx[256];                     /* receiving MX host ("" for successes) */
  char ip[64];                      /* receiving IP ("" when unknown) */
  char reason[256];                 /* failure-reason-code ("" = none) */
  char sending_ip[64];              /* sending-mta-ip: ours ("" when not connected) */
  int64_t count;
};
/* Frees n rows (as loaded or decoded: malloc'd array, malloc'd strings). */
void store_tlsrpt_rows_free(struct store_tlsrpt_row *rows, size_t n);

#endif
