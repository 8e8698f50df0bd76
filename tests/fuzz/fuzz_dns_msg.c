/* Fuzzes dns_msg_parse and dns_answer_target on arbitrary bytes, and the query
 * builder on the same bytes read as a name. Seeds: responses written by
 * `test_dns_msg --write-corpus`. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/dns_msg.h"
#include "proxy/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct dns_answer ans; /* too large for the stack */

static void check_answer(void) {
  if (ans.nrrs > DNS_MAX_RRS || strlen(ans.qname) > DNS_NAME_MAX)
    abort();
  for (size_t i = 0; i < ans.nrrs; i++) {
    const struct dns_rr *rr = &ans.rrs[i];
    if (strlen(rr->owner) > DNS_NAME_MAX)
      abort();
    if (rr->type == DNS_T_TXT && rr->u.txt.len > DNS_RDATA_MAX)
      abort();
    if (rr->type == DNS_T_TLSA && rr->u.tlsa.dlen > DNS_RDATA_MAX)
      abort();
  }
  const char *t = dns_answer_target(&ans, ans.qname);
  if (!t || strlen(t) > DNS_NAME_MAX)
    abort();
  if (ans.nrrs > 0)
    (void)dns_answer_target(&ans, ans.rrs[0].owner);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int rc = dns_msg_parse(data, size, &ans);
  if (rc == 0)
    check_answer();
  else if (rc != SP_E_DNS_FORMAT && rc != SP_E_OVERFLOW)
    abort();

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
