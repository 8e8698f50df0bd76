/* Fuzzes dns_msg_parse and dns_answer_target on arbitrary bytes, and the query
 * builder on the same bytes read as a name. Seeds: responses written by
 * `test_dns_msg --write-corpus` (small answers, and big ones: hundreds of records,
 * a 10 KB TXT, a 4 KB TLSA, TLSA RDATA too short for its fields, lying counts and
 * lengths). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/error.h"
#include "proxy/wire/dns_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every pointer of the answer lies inside its one allocation. */
static void check_inside(const struct dns_answer *ans, const void *p, size_t n) {
  const char *lo = (const char *)ans, *at = p;
  if (!p || at < lo || at + n > lo + ans->size)
    abort();
}

static void check_rr(const struct dns_answer *ans, const struct dns_rr *rr) {
  check_inside(ans, rr->owner, strlen(rr->owner) + 1);
  if (strlen(rr->owner) > DNS_NAME_MAX)
    abort();
  if (rr->type == DNS_T_CNAME)
    check_inside(ans, rr->u.cname, strlen(rr->u.cname) + 1);
  if (rr->type == DNS_T_MX)
    check_inside(ans, rr->u.mx.host, strlen(rr->u.mx.host) + 1);
  if (rr->type == DNS_T_TXT)
    check_inside(ans, rr->u.txt.text, (size_t)rr->u.txt.len + 1);
  if (rr->type == DNS_T_TLSA && rr->u.tlsa.dlen > 0)
    check_inside(ans, rr->u.tlsa.data, rr->u.tlsa.dlen);
}

static void check_answer(const struct dns_answer *ans, size_t size) {
  /* At most one record per 11 message bytes. */
  if (ans->nrrs > size / 11 || strlen(ans->qname) > DNS_NAME_MAX)
    abort();
  for (size_t i = 0; i < ans->nrrs; i++)
    check_rr(ans, &ans->rrs[i]);
  const char *t = dns_answer_target(ans, ans->qname);
  if (!t || strlen(t) > DNS_NAME_MAX)
    abort();
  if (ans->nrrs > 0)
    (void)dns_answer_target(ans, ans->rrs[0].owner);
  struct dns_texts texts;
  if (dns_answer_texts(ans, &texts) == 0 && texts.n > ans->nrrs)
    abort();
  dns_texts_free(&texts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct dns_answer *ans = NULL;
  int rc = dns_msg_parse(data, size, &ans);
  if (rc == 0)
    check_answer(ans, size);
  else if ((rc != SP_E_DNS_FORMAT && rc != SP_E_NOMEM) || ans)
    abort();
  free(ans);

  char name[300];
  size_t n = size < sizeof name - 1 ? size : sizeof name - 1;
  memcpy(name, data, n);
  name[n] = '\0';
  uint8_t q[512];
  int len = dns_msg_build_query(1, name, DNS_T_MX, q, sizeof q);
  if (len > 0 && (size_t)len > sizeof q)
    abort();
  return 0;
}
