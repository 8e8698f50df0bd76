/* The resolver's answer cache with a fake clock: how long answers are kept (records,
 * negative answers with and without an SOA, the cap, failures never), that a hit is the
 * answer as received (AD bit included) with its TTLs counted down, coalescing of
 * concurrent lookups, and the entry and byte bounds. */
#include <stdlib.h>
#include <string.h>

#include "proxy/core/error.h"
#include "proxy/net/dns_cache.h"
#include "tests/unit/test.h"

static const uint8_t SECRET[LRU_KEY_BYTES] = {1, 2,  3,  4,  5,  6,  7,  8,
                                              9, 10, 11, 12, 13, 14, 15, 16};
static const struct dns_cache_limits LIM = {
    .entries = 100, .bytes = 1 << 20, .max_ttl = 3600, .negative_ttl = 60};

#define FL_RESP 0x8180u
#define FL_AD 0x0020u
#define FL_TC 0x0200u

struct msg {
  uint8_t b[512];
  size_t n;
};

static void put16(struct msg *m, unsigned v) {
  m->b[m->n++] = (uint8_t)(v >> 8);
  m->b[m->n++] = (uint8_t)v;
}

static void put32(struct msg *m, uint32_t v) {
  put16(m, v >> 16);
  put16(m, v & 0xffff);
}

static void put_name(struct msg *m, const char *name) {
  while (*name) {
    const char *dot = strchr(name, '.');
    size_t l = dot ? (size_t)(dot - name) : strlen(name);
    m->b[m->n++] = (uint8_t)l;
    memcpy(m->b + m->n, name, l);
    m->n += l;
    name += l + (dot ? 1 : 0);
  }
  m->b[m->n++] = 0;
}

/* A response for name/A with one A record per ttls[] entry (0-terminated) and, when
 * soa_min is not 0, an authority SOA (TTL 600) with that MINIMUM. */
static struct msg response(const char *name, unsigned flags, const uint32_t *ttls,
                           uint32_t soa_min) {
  struct msg m = {.n = 0};
  unsigned an = 0;
  while (ttls && ttls[an])
    an++;
  put16(&m, 7);
  put16(&m, flags);
  put16(&m, 1);
  put16(&m, an);
  put16(&m, soa_min ? 1 : 0);
  put16(&m, 0);
  put_name(&m, name);
  put16(&m, DNS_T_A);
  put16(&m, 1);
  for (unsigned i = 0; i < an; i++) {
    put_name(&m, name);
    put16(&m, DNS_T_A);
    put16(&m, 1);
    put32(&m, ttls[i]);
    put16(&m, 4);
    put32(&m, 0x7f000001u + i);
  }
  if (soa_min) {
    put_name(&m, "example");
    put16(&m, DNS_T_SOA);
    put16(&m, 1);
    put32(&m, 600);
    put16(&m, 1 + 1 + 20);
    put_name(&m, "");
    put_name(&m, "");
    for (int i = 0; i < 4; i++)
      put32(&m, 1);
    put32(&m, soa_min);
  }
  return m;
}

static uint32_t ttl_of(struct msg m) {
  struct dns_answer *a;
  ASSERT_EQ(dns_msg_parse(m.b, m.n, &a), 0);
  uint32_t t = dns_cache_ttl(a, &LIM);
  free(a);
  return t;
}

static void test_ttl(void) {
  ASSERT_EQ(ttl_of(response("a.test", FL_RESP, (uint32_t[]){300, 120, 0}, 0)), 120);
  ASSERT_EQ(ttl_of(response("a.test", FL_RESP, (uint32_t[]){86400, 0}, 0)), 3600);
  /* NODATA and NXDOMAIN: the SOA's min(TTL, MINIMUM), else the configured value. */
  ASSERT_EQ(ttl_of(response("a.test", FL_RESP, NULL, 0)), 60);
  ASSERT_EQ(ttl_of(response("a.test", FL_RESP | DNS_R_NXDOMAIN, NULL, 0)), 60);
  ASSERT_EQ(ttl_of(response("a.test", FL_RESP | DNS_R_NXDOMAIN, NULL, 30)), 30);
  ASSERT_EQ(ttl_of(response("a.test", FL_RESP, NULL, 900)), 600);
  /* Failures are never kept. */
  ASSERT_EQ(ttl_of(response("a.test", FL_RESP | DNS_R_SERVFAIL, NULL, 0)), 0);
  ASSERT_EQ(ttl_of(response("a.test", FL_RESP | DNS_R_REFUSED, NULL, 0)), 0);
  ASSERT_EQ(ttl_of(response("a.test", FL_RESP | FL_TC, NULL, 0)), 0);
  ASSERT_EQ(dns_cache_ttl(NULL, &LIM), 0);
}

/* Looks name up at now: the result, with a hit's parsed answer in *ans (or NULL). */
static int look(struct dns_cache *c, const char *name, uint64_t now,
                struct dns_cache_waiter *w, struct dns_cache_flight **f,
                struct dns_answer **ans) {
  struct dns_cache_hit hit;
  *ans = NULL;
  int r = dns_cache_lookup(c, name, DNS_T_A, now, w, &hit, f);
  if (r == DNS_CACHE_HIT) {
    ASSERT_EQ(dns_msg_parse(hit.msg, hit.len, ans), 0);
    dns_cache_age(*ans, hit.age);
  }
  return r;
}

static void land(struct dns_cache *c, struct dns_cache_flight *f, const struct msg *m,
                 uint64_t now) {
  struct dns_answer *a = NULL;
  uint32_t ttl = 0;
  if (m) {
    ASSERT_EQ(dns_msg_parse(m->b, m->n, &a), 0);
    ttl = dns_cache_ttl(a, &LIM);
  }
  free(a);
  dns_cache_land(c, f, m ? m->b : NULL, m ? m->n : 0, ttl, now);
}

static void test_expiry_and_age(void) {
  struct dns_cache *c;
  ASSERT_EQ(dns_cache_new(&LIM, SECRET, &c), 0);
  struct dns_cache_waiter w;
  struct dns_cache_flight *f;
  struct dns_answer *a;
  uint64_t t0 = 1000000;
  ASSERT_EQ(look(c, "mx.test", t0, &w, &f, &a), DNS_CACHE_SEND);
  struct msg m = response("mx.test", FL_RESP | FL_AD, (uint32_t[]){10, 300, 0}, 0);
  land(c, f, &m, t0);
  ASSERT_EQ(look(c, "mx.test", t0 + 4500, &w, &f, &a), DNS_CACHE_HIT);
  ASSERT(a->ad); /* as received */
  ASSERT_EQ(a->rrs[0].ttl, 6);
  ASSERT_EQ(a->rrs[1].ttl, 296);
  free(a);
  ASSERT_EQ(look(c, "mx.test", t0 + 9999, &w, &f, &a), DNS_CACHE_HIT);
  free(a);
  /* Expired: the next lookup goes to the wire, and the new answer (now without AD)
   * is what later lookups see. */
  ASSERT_EQ(look(c, "mx.test", t0 + 10000, &w, &f, &a), DNS_CACHE_SEND);
  ASSERT_EQ(dns_cache_count(c), 0);
  m = response("mx.test", FL_RESP, (uint32_t[]){10, 0}, 0);
  land(c, f, &m, t0 + 10000);
  ASSERT_EQ(look(c, "mx.test", t0 + 10001, &w, &f, &a), DNS_CACHE_HIT);
  ASSERT(!a->ad);
  free(a);
  dns_cache_free(c);
}

/* An insecure answer stays insecure until it expires, whatever the later answer. */
static void test_ad_kept(void) {
  struct dns_cache *c;
  ASSERT_EQ(dns_cache_new(&LIM, SECRET, &c), 0);
  struct dns_cache_waiter w;
  struct dns_cache_flight *f;
  struct dns_answer *a;
  ASSERT_EQ(look(c, "x.test", 0, &w, &f, &a), DNS_CACHE_SEND);
  struct msg m = response("x.test", FL_RESP, (uint32_t[]){2, 0}, 0);
  land(c, f, &m, 0);
  ASSERT_EQ(look(c, "x.test", 1999, &w, &f, &a), DNS_CACHE_HIT);
  ASSERT(!a->ad);
  free(a);
  ASSERT_EQ(look(c, "x.test", 2000, &w, &f, &a), DNS_CACHE_SEND);
  m = response("x.test", FL_RESP | FL_AD, (uint32_t[]){2, 0}, 0);
  land(c, f, &m, 2000);
  ASSERT_EQ(look(c, "x.test", 2001, &w, &f, &a), DNS_CACHE_HIT);
  ASSERT(a->ad);
  free(a);
  dns_cache_free(c);
}

static void test_negative_and_failures(void) {
  struct dns_cache *c;
  ASSERT_EQ(dns_cache_new(&LIM, SECRET, &c), 0);
  struct dns_cache_waiter w;
  struct dns_cache_flight *f;
  struct dns_answer *a;
  ASSERT_EQ(look(c, "gone.test", 0, &w, &f, &a), DNS_CACHE_SEND);
  struct msg m = response("gone.test", FL_RESP | DNS_R_NXDOMAIN, NULL, 5);
  land(c, f, &m, 0);
  ASSERT_EQ(look(c, "gone.test", 4999, &w, &f, &a), DNS_CACHE_HIT);
  ASSERT_EQ(a->rcode, DNS_R_NXDOMAIN);
  free(a);
  ASSERT_EQ(look(c, "gone.test", 5000, &w, &f, &a), DNS_CACHE_SEND);
  land(c, f, NULL, 5000); /* a timeout */
  ASSERT_EQ(look(c, "gone.test", 5000, &w, &f, &a), DNS_CACHE_SEND);
  m = response("gone.test", FL_RESP | DNS_R_SERVFAIL, NULL, 0);
  land(c, f, &m, 5000);
  ASSERT_EQ(look(c, "gone.test", 5000, &w, &f, &a), DNS_CACHE_SEND);
  land(c, f, NULL, 5000);
  ASSERT_EQ(dns_cache_count(c), 0);
  dns_cache_free(c);
}

/* Three lookups while the first is on the wire: one flight, every waiter answered in
 * order, and the answer kept for the next one. */
static void test_coalescing(void) {
  struct dns_cache *c;
  ASSERT_EQ(dns_cache_new(&LIM, SECRET, &c), 0);
  struct dns_cache_waiter w[3], other;
  struct dns_cache_flight *f = NULL, *f2 = NULL, *fo = NULL;
  struct dns_answer *a;
  ASSERT_EQ(look(c, "new.test", 0, &w[0], &f, &a), DNS_CACHE_SEND);
  ASSERT_EQ(look(c, "new.test", 1, &w[1], &f2, &a), DNS_CACHE_JOINED);
  ASSERT(f2 == NULL);
  ASSERT_EQ(look(c, "other.test", 1, &other, &fo, &a), DNS_CACHE_SEND);
  ASSERT_EQ(look(c, "new.test", 2, &w[2], &f2, &a), DNS_CACHE_JOINED);
  struct msg m = response("new.test", FL_RESP, (uint32_t[]){60, 0}, 0);
  struct dns_cache_waiter *list = dns_cache_land(c, f, m.b, m.n, 60, 3);
  ASSERT(list == &w[0] && w[0].next == &w[1] && w[1].next == &w[2] && !w[2].next);
  ASSERT_EQ(look(c, "new.test", 4, &w[0], &f, &a), DNS_CACHE_HIT);
  free(a);
  list = dns_cache_land(c, fo, NULL, 0, 0, 5);
  ASSERT(list == &other && !other.next);
  ASSERT_EQ(dns_cache_count(c), 1);
  dns_cache_free(c);
}

/* Entries and bytes are bounded, the least recently used answer goes first, and a
 * flight is never dropped to make room. */
static void test_bounds(void) {
  struct dns_cache_limits lim = LIM;
  lim.entries = 3;
  struct dns_cache *c;
  ASSERT_EQ(dns_cache_new(&lim, SECRET, &c), 0);
  struct dns_cache_waiter w, wf;
  struct dns_cache_flight *f, *pending;
  struct dns_answer *a;
  ASSERT_EQ(look(c, "pending.test", 0, &wf, &pending, &a), DNS_CACHE_SEND);
  const char *names[] = {"n0.test", "n1.test", "n2.test", "n3.test", "n4.test"};
  for (int i = 0; i < 5; i++) {
    ASSERT_EQ(look(c, names[i], 0, &w, &f, &a), DNS_CACHE_SEND);
    struct msg m = response(names[i], FL_RESP, (uint32_t[]){60, 0}, 0);
    dns_cache_land(c, f, m.b, m.n, 60, 0);
    if (i == 2) { /* n0 used again: n1 is then the oldest */
      ASSERT_EQ(look(c, "n0.test", 0, &w, &f, &a), DNS_CACHE_HIT);
      free(a);
    }
    ASSERT(dns_cache_count(c) <= 3);
  }
  ASSERT_EQ(dns_cache_count(c), 3);
  const char *kept[] = {"n0.test", "n3.test", "n4.test"};
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(look(c, kept[i], 1, &w, &f, &a), DNS_CACHE_HIT);
    free(a);
  }
  ASSERT_EQ(look(c, "n1.test", 1, &w, &f, &a), DNS_CACHE_SEND);
  dns_cache_land(c, f, NULL, 0, 0, 1);
  /* The flight survived every eviction. */
  ASSERT(dns_cache_land(c, pending, NULL, 0, 0, 1) == &wf);
  dns_cache_free(c);

  /* Bytes: room for two of these messages only. */
  struct msg m = response("b0.test", FL_RESP, (uint32_t[]){60, 0}, 0);
  lim.entries = 100;
  lim.bytes = 2 * m.n + 1;
  ASSERT_EQ(dns_cache_new(&lim, SECRET, &c), 0);
  for (int i = 0; i < 4; i++) {
    ASSERT_EQ(look(c, names[i], 0, &w, &f, &a), DNS_CACHE_SEND);
    m = response(names[i], FL_RESP, (uint32_t[]){60, 0}, 0);
    dns_cache_land(c, f, m.b, m.n, 60, 0);
    ASSERT(dns_cache_bytes(c) <= lim.bytes);
  }
  ASSERT_EQ(dns_cache_count(c), 2);
  dns_cache_free(c);

  /* entries 0: nothing kept, lookups still coalesced. */
  lim.entries = 0;
  ASSERT_EQ(dns_cache_new(&lim, SECRET, &c), 0);
  ASSERT_EQ(look(c, "z.test", 0, &w, &f, &a), DNS_CACHE_SEND);
  ASSERT_EQ(look(c, "z.test", 0, &wf, &pending, &a), DNS_CACHE_JOINED);
  m = response("z.test", FL_RESP, (uint32_t[]){60, 0}, 0);
  ASSERT(dns_cache_land(c, f, m.b, m.n, 60, 0) == &w);
  ASSERT_EQ(look(c, "z.test", 0, &w, &f, &a), DNS_CACHE_SEND);
  dns_cache_free(c); /* frees the flight still linked */
}

int main(void) {
  RUN_TEST(test_ttl);
  RUN_TEST(test_expiry_and_age);
  RUN_TEST(test_ad_kept);
  RUN_TEST(test_negative_and_failures);
  RUN_TEST(test_coalescing);
  RUN_TEST(test_bounds);
  return 0;
}
