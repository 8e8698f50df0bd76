/* dns_msg: pure build/parse tests on hand-made messages. dns: loop tests against an
 * in-process fake DNS server (a uv_udp_t on 127.0.0.1:0 answering from a table).
 *
 * `test_dns_msg --write-corpus DIR` writes the hand-made responses as fuzz seeds. */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>

#include "proxy/config/config.h"
#include "proxy/core/error.h"
#include "proxy/net/dns.h"
#include "proxy/wire/dns_msg.h"
#include "tests/unit/test.h"

/* ---- message builder (both the pure tests and the fake server use it) ---------- */

struct mb {
  uint8_t b[65535]; /* the largest DNS message (over TCP) */
  size_t n;
};

static void mb_u8(struct mb *m, unsigned v) {
  ASSERT(m->n < sizeof m->b);
  m->b[m->n++] = (uint8_t)v;
}

static void mb_u16(struct mb *m, unsigned v) {
  mb_u8(m, v >> 8);
  mb_u8(m, v & 0xff);
}

static void mb_u32(struct mb *m, uint32_t v) {
  mb_u16(m, v >> 16);
  mb_u16(m, v & 0xffff);
}

static void mb_raw(struct mb *m, const void *p, size_t n) {
  ASSERT(m->n + n <= sizeof m->b);
  memcpy(m->b + m->n, p, n);
  m->n += n;
}

static void mb_name(struct mb *m, const char *name) { /* uncompressed; "" is root */
  while (*name) {
    const char *dot = strchr(name, '.');
    size_t l = dot ? (size_t)(dot - name) : strlen(name);
    mb_u8(m, (unsigned)l);
    mb_raw(m, name, l);
    name += l + (dot ? 1 : 0);
  }
  mb_u8(m, 0);
}

static void mb_hdr(struct mb *m, unsigned id, unsigned flags, unsigned qd, unsigned an,
                   unsigned ns, unsigned ar) {
  m->n = 0;
  mb_u16(m, id);
  mb_u16(m, flags);
  mb_u16(m, qd);
  mb_u16(m, an);
  mb_u16(m, ns);
  mb_u16(m, ar);
}

static void mb_question(struct mb *m, const char *name, unsigned type) {
  mb_name(m, name);
  mb_u16(m, type);
  mb_u16(m, 1);
}

static size_t mb_rr(struct mb *m, const char *owner, unsigned type) {
  mb_name(m, owner);
  mb_u16(m, type);
  mb_u16(m, 1);
  mb_u32(m, 300);
  mb_u16(m, 0); /* rdlength, patched by mb_rr_end */
  return m->n;
}

static void mb_rr_end(struct mb *m, size_t start) {
  size_t l = m->n - start;
  m->b[start - 2] = (uint8_t)(l >> 8);
  m->b[start - 1] = (uint8_t)l;
}

static void mb_opt(struct mb *m) {
  mb_u8(m, 0);
  mb_u16(m, 41);
  mb_u16(m, 1232);
  mb_u32(m, 0x8000);
  mb_u16(m, 0);
}

/* One record from a compact description: val is an address, a host name, a TXT text
 * with '|' between character-strings, or TLSA "usage selector mtype hexdata" (or
 * "#hexrdata": the whole RDATA, however short). */
struct rec {
  uint16_t type;
  const char *owner;
  uint16_t pref;
  const char *val;
};

static void mb_rec(struct mb *m, const struct rec *r, const char *qname) {
  size_t s = mb_rr(m, r->owner ? r->owner : qname, r->type);
  uint8_t addr[16];
  switch (r->type) {
  case DNS_T_A:
    ASSERT_EQ(inet_pton(AF_INET, r->val, addr), 1);
    mb_raw(m, addr, 4);
    break;
  case DNS_T_AAAA:
    ASSERT_EQ(inet_pton(AF_INET6, r->val, addr), 1);
    mb_raw(m, addr, 16);
    break;
  case DNS_T_MX:
    mb_u16(m, r->pref);
    /* fallthrough */
  case DNS_T_CNAME:
    mb_name(m, r->val);
    break;
  case DNS_T_TXT:
    for (const char *p = r->val;;) {
      const char *bar = strchr(p, '|');
      size_t l = bar ? (size_t)(bar - p) : strlen(p);
      mb_u8(m, (unsigned)l);
      mb_raw(m, p, l);
      if (!bar)
        break;
      p = bar + 1;
    }
    break;
  case DNS_T_TLSA: {
    unsigned u, s2, t;
    int used = 1;
    if (r->val[0] != '#') {
      ASSERT_EQ(sscanf(r->val, "%u %u %u %n", &u, &s2, &t, &used), 3);
      mb_u8(m, u);
      mb_u8(m, s2);
      mb_u8(m, t);
    }
    for (const char *h = r->val + used; h[0] && h[1]; h += 2) {
      unsigned byte;
      ASSERT_EQ(sscanf(h, "%2x", &byte), 1);
      mb_u8(m, byte);
    }
    break;
  }
  default:
    ASSERT(0);
  }
  mb_rr_end(m, s);
}

#define F_RESP 0x8180u /* QR, RD, RA */
#define F_AD 0x0020u
#define F_TC 0x0200u

/* A response to qname/qtype with recs (type 0 ends the list) and an OPT record. */
static void mb_response(struct mb *m, unsigned id, unsigned flags, const char *qname,
                        unsigned qtype, const struct rec *recs) {
  unsigned an = 0;
  while (recs && recs[an].type)
    an++;
  mb_hdr(m, id, flags, 1, an, 0, 1);
  mb_question(m, qname, qtype);
  for (unsigned i = 0; i < an; i++)
    mb_rec(m, &recs[i], qname);
  mb_opt(m);
}

static struct dns_answer *ans; /* the last parse's answer */

/* Parses into ans (freeing the previous one). */
static int parse(const uint8_t *p, size_t n) {
  free(ans);
  ans = NULL;
  int rc = dns_msg_parse(p, n, &ans);
  ASSERT((rc == 0) == (ans != NULL));
  return rc;
}

/* ---- seeds: valid responses, also written as the fuzz corpus -------------------- */

static const struct rec mx_recs[] = {{DNS_T_MX, NULL, 20, "mx2.example.org"},
                                     {DNS_T_MX, NULL, 10, "MX1.Example.ORG."},
                                     {0, NULL, 0, NULL}};
static const struct rec addr_recs[] = {
    {DNS_T_A, "mx1.example.org", 0, "192.0.2.1"},
    {DNS_T_AAAA, "mx1.example.org", 0, "2001:db8::1"},
    {0, NULL, 0, NULL}};
static const struct rec cname_recs[] = {
    {DNS_T_CNAME, "www.example.org", 0, "a.example.net"},
    {DNS_T_CNAME, "a.example.net", 0, "b.example.com"},
    {DNS_T_A, "b.example.com", 0, "198.51.100.7"},
    {0, NULL, 0, NULL}};
static const struct rec txt_recs[] = {{DNS_T_TXT, NULL, 0, "v=STSv1; |id=2024|"},
                                      {0, NULL, 0, NULL}};
static const struct rec tlsa_recs[] = {
    {DNS_T_TLSA, NULL, 0,
     "3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
    {0, NULL, 0, NULL}};
static const struct rec nullmx_recs[] = {{DNS_T_MX, NULL, 0, ""}, {0, NULL, 0, NULL}};
/* RDATA of 2 and 0 bytes, too short for usage, selector and matching type, around a
 * good record: each short one is an unusable record, not a broken answer. */
static const struct rec tlsa_short_recs[] = {
    {DNS_T_TLSA, NULL, 0, "#0301"},
    {DNS_T_TLSA, NULL, 0,
     "3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
    {DNS_T_TLSA, NULL, 0, "#"},
    {0, NULL, 0, NULL}};

static void seed_mx(struct mb *m) {
  mb_response(m, 0x1234, F_RESP | F_AD, "example.org", DNS_T_MX, mx_recs);
}
static void seed_addr(struct mb *m) {
  mb_response(m, 7, F_RESP, "mx1.example.org", DNS_T_A, addr_recs);
}
static void seed_cname(struct mb *m) {
  mb_response(m, 8, F_RESP, "www.example.org", DNS_T_A, cname_recs);
}
static void seed_txt(struct mb *m) {
  mb_response(m, 9, F_RESP, "_mta-sts.example.org", DNS_T_TXT, txt_recs);
}
static void seed_tlsa(struct mb *m) {
  mb_response(m, 10, F_RESP | F_AD, "_25._tcp.mx1.example.org", DNS_T_TLSA, tlsa_recs);
}
static void seed_tlsa_short(struct mb *m) {
  mb_response(m, 14, F_RESP | F_AD, "_25._tcp.mx1.example.org", DNS_T_TLSA,
              tlsa_short_recs);
}
static void seed_nullmx(struct mb *m) {
  mb_response(m, 11, F_RESP, "example.com", DNS_T_MX, nullmx_recs);
}
static void seed_nxdomain(struct mb *m) {
  mb_response(m, 12, F_RESP | 3, "nope.example", DNS_T_MX, NULL);
}

/* Compressed: the MX host and the A owner point back into the question. */
static void seed_compressed(struct mb *m) {
  mb_hdr(m, 13, F_RESP, 1, 2, 0, 0);
  mb_question(m, "Example.Org", DNS_T_MX); /* name at offset 12 */
  mb_u16(m, 0xc00c);
  mb_u16(m, DNS_T_MX);
  mb_u16(m, 1);
  mb_u32(m, 60);
  mb_u16(m, 7);
  mb_u16(m, 5);
  mb_u8(m, 2);
  mb_raw(m, "mx", 2);
  mb_u16(m, 0xc00c);      /* mx.example.org */
  mb_u16(m, 0xc000 | 43); /* owner: the MX host name at offset 43 */
  mb_u16(m, DNS_T_A);
  mb_u16(m, 1);
  mb_u32(m, 60);
  mb_u16(m, 4);
  mb_raw(m, "\x0a\x00\x00\x01", 4);
}

static void seed_many_a(struct mb *m);
static void seed_big_txt(struct mb *m);
static void seed_big_tlsa(struct mb *m);

static void (*const seeds[])(struct mb *) = {
    seed_mx,     seed_addr,    seed_cname,    seed_txt,
    seed_tlsa,   seed_nullmx,  seed_nxdomain, seed_compressed,
    seed_many_a, seed_big_txt, seed_big_tlsa, seed_tlsa_short};
#define NSEEDS (sizeof seeds / sizeof seeds[0])

/* ---- pure tests ----------------------------------------------------------------- */

static void test_build_query(void) {
  uint8_t out[512];
  int n = dns_msg_build_query(0xbeef, "Mx.Example.org.", DNS_T_MX, out, sizeof out);
  static const uint8_t want[] = {0xbe, 0xef, 0x01, 0x20, 0,    1,   0,   0,
                                 0,    0,    0,    1, /* RD AD, 1 q, 1 ar */
                                 2,    'M',  'x',  7,    'E',  'x', 'a', 'm',
                                 'p',  'l',  'e',  3,    'o',  'r', 'g', 0, /* name */
                                 0,    15,   0,    1,                       /* MX IN */
                                 0,    0,    41,   0x04, 0xd0, 0,   0,   0x80,
                                 0,    0,    0}; /* OPT 1232 DO */
  ASSERT_MEM_EQ(out, (size_t)n, want, sizeof want);
  ASSERT_EQ(dns_msg_build_query(1, "mx.example.org", 1, out, sizeof want - 1),
            SP_E_OVERFLOW);
  ASSERT_EQ(dns_msg_build_query(1, "", 1, out, sizeof out), SP_E_INVAL);
  ASSERT_EQ(dns_msg_build_query(1, ".", 1, out, sizeof out), SP_E_INVAL);
  ASSERT_EQ(dns_msg_build_query(1, "a..b", 1, out, sizeof out), SP_E_INVAL);
  ASSERT_EQ(dns_msg_build_query(1, ".a", 1, out, sizeof out), SP_E_INVAL);
  ASSERT_EQ(dns_msg_build_query(1, "a b", 1, out, sizeof out), SP_E_INVAL);
  ASSERT_EQ(dns_msg_build_query(1, "a\\046b", 1, out, sizeof out), SP_E_INVAL);
  char name[300];
  memset(name, 'a', 64);
  name[64] = '\0';
  ASSERT_EQ(dns_msg_build_query(1, name, 1, out, sizeof out), SP_E_INVAL);
  name[63] = '\0';
  ASSERT(dns_msg_build_query(1, name, 1, out, sizeof out) > 0);
  /* 253 characters is the longest name; 254 is one too many. */
  for (int i = 0; i < 254; i++)
    name[i] = (i % 2) ? '.' : 'a';
  name[253] = '\0';
  ASSERT(dns_msg_build_query(1, name, 1, out, sizeof out) > 0);
  name[253] = 'a';
  name[254] = '\0';
  ASSERT_EQ(dns_msg_build_query(1, name, 1, out, sizeof out), SP_E_INVAL);
}

static void test_parse_mx(void) {
  struct mb m;
  seed_mx(&m);
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT_EQ(ans->id, 0x1234);
  ASSERT(ans->ad && !ans->tc);
  ASSERT_EQ(ans->rcode, DNS_R_NOERROR);
  ASSERT_STR_EQ(ans->qname, "example.org");
  ASSERT_EQ(ans->qtype, DNS_T_MX);
  ASSERT_EQ(ans->nrrs, 2);
  ASSERT_EQ(ans->rrs[0].u.mx.pref, 20);
  ASSERT_STR_EQ(ans->rrs[0].u.mx.host, "mx2.example.org");
  ASSERT_STR_EQ(ans->rrs[1].u.mx.host, "mx1.example.org"); /* lower-cased, no dot */
  ASSERT_STR_EQ(ans->rrs[1].owner, "example.org");
  ASSERT_EQ(ans->rrs[1].ttl, 300);
  ASSERT_EQ(ans->rrs[1].klass, 1);
  seed_compressed(&m);
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT_EQ(ans->nrrs, 2);
  ASSERT_STR_EQ(ans->rrs[0].owner, "example.org");
  ASSERT_STR_EQ(ans->rrs[0].u.mx.host, "mx.example.org");
  ASSERT_STR_EQ(ans->rrs[1].owner, "mx.example.org");
  ASSERT_EQ(ans->rrs[1].u.a[0], 10);
}

static void test_parse_addr_cname(void) {
  struct mb m;
  seed_addr(&m);
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT_EQ(ans->nrrs, 2);
  ASSERT_MEM_EQ(ans->rrs[0].u.a, 4, "\xc0\x00\x02\x01", 4);
  ASSERT_EQ(ans->rrs[1].type, DNS_T_AAAA);
  ASSERT_MEM_EQ(ans->rrs[1].u.aaaa, 16, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01",
                16);
  ASSERT(!ans->ad);
  seed_cname(&m);
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT_EQ(ans->nrrs, 3);
  ASSERT_STR_EQ(dns_answer_target(ans, "www.example.org"), "b.example.com");
  ASSERT_STR_EQ(dns_answer_target(ans, "WWW.Example.org."), "b.example.com");
  ASSERT_STR_EQ(dns_answer_target(ans, "a.example.net"), "b.example.com");
  ASSERT_STR_EQ(dns_answer_target(ans, "other.example"), "other.example");
  /* A CNAME loop stops after 8 steps instead of spinning. */
  static const struct rec loop[] = {{DNS_T_CNAME, "a.test", 0, "b.test"},
                                    {DNS_T_CNAME, "b.test", 0, "a.test"},
                                    {0, NULL, 0, NULL}};
  mb_response(&m, 1, F_RESP, "a.test", DNS_T_A, loop);
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT_STR_EQ(dns_answer_target(ans, "a.test"), "a.test");
}

static void test_parse_txt_tlsa_nullmx(void) {
  struct mb m;
  seed_txt(&m);
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT_EQ(ans->nrrs, 1);
  ASSERT_EQ(ans->rrs[0].u.txt.len, 16);
  ASSERT_STR_EQ(ans->rrs[0].u.txt.text, "v=STSv1; id=2024");
  seed_tlsa(&m);
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT_EQ(ans->nrrs, 1);
  ASSERT_STR_EQ(ans->qname, "_25._tcp.mx1.example.org");
  ASSERT_EQ(ans->rrs[0].u.tlsa.usage, 3);
  ASSERT_EQ(ans->rrs[0].u.tlsa.selector, 1);
  ASSERT_EQ(ans->rrs[0].u.tlsa.mtype, 1);
  ASSERT_EQ(ans->rrs[0].u.tlsa.dlen, 32);
  ASSERT_EQ(ans->rrs[0].u.tlsa.data[1], 0x23);
  ASSERT(ans->ad);
  seed_nullmx(&m);
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT_EQ(ans->nrrs, 1);
  ASSERT_EQ(ans->rrs[0].u.mx.pref, 0);
  ASSERT_STR_EQ(ans->rrs[0].u.mx.host, "");
}

static void test_parse_tlsa_short(void) {
  struct mb m;
  seed_tlsa_short(&m);
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT(ans->ad);
  ASSERT_EQ(ans->nrrs, 3);
  const struct dns_rr *two = &ans->rrs[0], *good = &ans->rrs[1], *none = &ans->rrs[2];
  ASSERT_EQ(two->type, DNS_T_TLSA);
  ASSERT(two->u.tlsa.malformed);
  ASSERT_EQ(two->u.tlsa.usage, 0);
  ASSERT_EQ(two->u.tlsa.selector, 0);
  ASSERT_EQ(two->u.tlsa.mtype, 0);
  ASSERT_EQ(two->u.tlsa.dlen, 2);
  ASSERT_MEM_EQ(two->u.tlsa.data, 2, "\x03\x01", 2);
  ASSERT_STR_EQ(two->owner, "_25._tcp.mx1.example.org");
  ASSERT(!good->u.tlsa.malformed);
  ASSERT_EQ(good->u.tlsa.usage, 3);
  ASSERT_EQ(good->u.tlsa.selector, 1);
  ASSERT_EQ(good->u.tlsa.mtype, 1);
  ASSERT_EQ(good->u.tlsa.dlen, 32);
  ASSERT_EQ(good->u.tlsa.data[31], 0xef);
  ASSERT(none->u.tlsa.malformed);
  ASSERT_EQ(none->u.tlsa.dlen, 0);
  ASSERT(none->u.tlsa.data == NULL);
  /* Only TLSA is lenient: a 2-byte A or MX record still breaks the answer, and so
   * does a short TLSA whose rdlength runs past the end. */
  mb_hdr(&m, 1, F_RESP, 1, 1, 0, 0);
  mb_question(&m, "a.test", DNS_T_A);
  size_t s = mb_rr(&m, "a.test", DNS_T_A);
  mb_raw(&m, "\3\1", 2);
  mb_rr_end(&m, s);
  ASSERT_EQ(parse(m.b, m.n), SP_E_DNS_FORMAT);
  m.b[s - 9] = DNS_T_MX; /* the type's low byte */
  ASSERT_EQ(parse(m.b, m.n), SP_E_DNS_FORMAT);
  m.b[s - 9] = DNS_T_TLSA;
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT(ans->rrs[0].u.tlsa.malformed);
  m.b[s - 1] = 3;
  ASSERT_EQ(parse(m.b, m.n), SP_E_DNS_FORMAT);
}

static void test_parse_flags(void) {
  struct mb m;
  seed_nxdomain(&m);
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT_EQ(ans->rcode, DNS_R_NXDOMAIN);
  ASSERT_EQ(ans->nrrs, 0);
  mb_response(&m, 1, F_RESP | F_TC, "big.example", DNS_T_TXT, NULL);
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT(ans->tc && !ans->ad);
  /* Records of other types and classes are walked and skipped. */
  mb_hdr(&m, 1, F_RESP, 1, 2, 0, 0);
  mb_question(&m, "x.test", DNS_T_A);
  mb_name(&m, "x.test");
  mb_u16(&m, 99); /* SPF */
  mb_u16(&m, 1);
  mb_u32(&m, 1);
  mb_u16(&m, 2);
  mb_u16(&m, 0x0141);
  size_t s = mb_rr(&m, "x.test", DNS_T_A);
  mb_raw(&m, "\1\2\3\4", 4);
  mb_rr_end(&m, s);
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT_EQ(ans->nrrs, 1);
  ASSERT_EQ(ans->rrs[0].type, DNS_T_A);
  /* A label with a dot, a space and upper case: escaped, lower-cased. */
  mb_hdr(&m, 1, F_RESP, 1, 0, 0, 0);
  mb_u8(&m, 5);
  mb_raw(&m, "A.b C", 5);
  mb_u8(&m, 0);
  mb_u16(&m, 1);
  mb_u16(&m, 1);
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT_STR_EQ(ans->qname, "a\\046b\\032c");
}

/* An SOA record with the given TTL and MINIMUM. */
static void mb_soa(struct mb *m, const char *owner, uint32_t ttl, uint32_t minimum) {
  mb_name(m, owner);
  mb_u16(m, DNS_T_SOA);
  mb_u16(m, 1);
  mb_u32(m, ttl);
  mb_u16(m, 0);
  size_t s = m->n;
  mb_name(m, "ns.example");
  mb_name(m, "hostmaster.example");
  for (int i = 0; i < 4; i++)
    mb_u32(m, 1000); /* serial, refresh, retry, expire */
  mb_u32(m, minimum);
  mb_rr_end(m, s);
}

/* RFC 2308: the authority section's SOA gives min(TTL, MINIMUM); one in the
 * additional section does not count. */
static void test_parse_soa(void) {
  struct mb m;
  mb_hdr(&m, 1, F_RESP | DNS_R_NXDOMAIN, 1, 0, 1, 0);
  mb_question(&m, "gone.example", DNS_T_MX);
  mb_soa(&m, "example", 300, 60);
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT(ans->soa);
  ASSERT_EQ(ans->neg_ttl, 60);
  mb_hdr(&m, 1, F_RESP, 1, 0, 1, 0);
  mb_question(&m, "gone.example", DNS_T_MX);
  mb_soa(&m, "example", 30, 3600);
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT(ans->soa);
  ASSERT_EQ(ans->neg_ttl, 30);
  mb_hdr(&m, 1, F_RESP, 1, 0, 0, 1);
  mb_question(&m, "gone.example", DNS_T_MX);
  mb_soa(&m, "example", 30, 3600);
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT(!ans->soa);
}

static int parse_bytes(const uint8_t *p, size_t n) {
  return parse(p, n);
}

static void test_parse_malformed(void) {
  struct mb m;
  /* Every strict prefix of every seed is malformed, never a crash. */
  for (size_t i = 0; i < NSEEDS; i++) {
    seeds[i](&m);
    ASSERT_EQ(parse_bytes(m.b, m.n), 0);
    for (size_t cut = 0; cut < m.n; cut++) {
      uint8_t *copy = malloc(cut + 1); /* exact size, so ASan sees any over-read */
      memcpy(copy, m.b, cut);
      ASSERT_EQ(parse_bytes(copy, cut), SP_E_DNS_FORMAT);
      free(copy);
    }
  }
  /* Not a response; two questions; counts that claim a record that is not there. */
  mb_hdr(&m, 1, 0x0100, 1, 0, 0, 0);
  mb_question(&m, "a.test", 1);
  ASSERT_EQ(parse_bytes(m.b, m.n), SP_E_DNS_FORMAT);
  mb_hdr(&m, 1, F_RESP, 2, 0, 0, 0);
  mb_question(&m, "a.test", 1);
  mb_question(&m, "b.test", 1);
  ASSERT_EQ(parse_bytes(m.b, m.n), SP_E_DNS_FORMAT);
  mb_hdr(&m, 1, F_RESP, 1, 0, 0, 1);
  mb_question(&m, "a.test", 1);
  ASSERT_EQ(parse_bytes(m.b, m.n), SP_E_DNS_FORMAT);
  /* Pointer to itself, forward pointer, pointer loop through a label. */
  mb_hdr(&m, 1, F_RESP, 1, 0, 0, 0);
  mb_u16(&m, 0xc00c);
  mb_u32(&m, 0x00010001);
  ASSERT_EQ(parse_bytes(m.b, m.n), SP_E_DNS_FORMAT);
  mb_hdr(&m, 1, F_RESP, 1, 0, 0, 0);
  mb_u16(&m, 0xc00e);
  mb_name(&m, "a");
  mb_u32(&m, 0x00010001);
  ASSERT_EQ(parse_bytes(m.b, m.n), SP_E_DNS_FORMAT);
  mb_hdr(&m, 1, F_RESP, 1, 0, 0, 0);
  mb_u8(&m, 1);
  mb_u8(&m, 'a');
  mb_u16(&m, 0xc00c); /* a.a.a.a... through the label before it */
  mb_u32(&m, 0x00010001);
  ASSERT_EQ(parse_bytes(m.b, m.n), SP_E_DNS_FORMAT);
  /* 0x40 label type; label running past the end. */
  mb_hdr(&m, 1, F_RESP, 1, 0, 0, 0);
  mb_u8(&m, 0x41);
  mb_u8(&m, 'a');
  mb_u8(&m, 0);
  mb_u32(&m, 0x00010001);
  ASSERT_EQ(parse_bytes(m.b, m.n), SP_E_DNS_FORMAT);
  mb_hdr(&m, 1, F_RESP, 1, 0, 0, 0);
  mb_u8(&m, 40);
  mb_raw(&m, "abc", 3);
  ASSERT_EQ(parse_bytes(m.b, m.n), SP_E_DNS_FORMAT);
  /* Names of 255 octets pass, 257 do not (also when built from pointers). */
  for (int octets = 255; octets <= 257; octets += 2) {
    mb_hdr(&m, 1, F_RESP, 1, 0, 0, 0);
    int left = octets - 1;
    while (left > 0) {
      int l = left - 1 > 63 ? 63 : left - 1;
      mb_u8(&m, (unsigned)l);
      for (int k = 0; k < l; k++)
        mb_u8(&m, 'a');
      left -= l + 1;
    }
    mb_u8(&m, 0);
    mb_u32(&m, 0x00010001);
    ASSERT_EQ(parse_bytes(m.b, m.n), octets == 255 ? 0 : SP_E_DNS_FORMAT);
  }
  mb_hdr(&m, 1, F_RESP, 1, 1, 0, 0);
  mb_question(&m, "abcdefghijklmnopqrstuvwxyz.abcdefghijklmnopqrstuvwxyz", 5);
  size_t s = mb_rr(&m, "x", DNS_T_CNAME);
  for (int k = 0; k < 8; k++) { /* 8 * 27 + 55 > 255 */
    mb_u8(&m, 26);
    mb_raw(&m, "abcdefghijklmnopqrstuvwxyz", 26);
  }
  mb_u16(&m, 0xc00c);
  mb_rr_end(&m, s);
  ASSERT_EQ(parse_bytes(m.b, m.n), SP_E_DNS_FORMAT);
}

static void test_parse_rdata_lies(void) {
  struct mb m;
  /* A with rdlength 5; rdlength past the end; MX host running past its rdata. */
  mb_hdr(&m, 1, F_RESP, 1, 1, 0, 0);
  mb_question(&m, "a.test", 1);
  size_t s = mb_rr(&m, "a.test", DNS_T_A);
  mb_raw(&m, "\1\2\3\4\5", 5);
  mb_rr_end(&m, s);
  ASSERT_EQ(parse_bytes(m.b, m.n), SP_E_DNS_FORMAT);
  m.b[m.n - 6] = 200;
  ASSERT_EQ(parse_bytes(m.b, m.n), SP_E_DNS_FORMAT);
  mb_hdr(&m, 1, F_RESP, 1, 2, 0, 0);
  mb_question(&m, "a.test", DNS_T_MX);
  s = mb_rr(&m, "a.test", DNS_T_MX);
  mb_u16(&m, 10);
  mb_name(&m, "mx.a.test");
  mb_rr_end(&m, s);
  m.b[s - 1] -= 3; /* the name now ends inside the next record */
  s = mb_rr(&m, "a.test", DNS_T_A);
  mb_raw(&m, "\1\2\3\4", 4);
  mb_rr_end(&m, s);
  ASSERT_EQ(parse_bytes(m.b, m.n), SP_E_DNS_FORMAT);
  /* TXT string longer than its rdata; empty MX rdata. */
  mb_hdr(&m, 1, F_RESP, 1, 1, 0, 0);
  mb_question(&m, "a.test", DNS_T_TXT);
  s = mb_rr(&m, "a.test", DNS_T_TXT);
  mb_u8(&m, 10);
  mb_raw(&m, "abc", 3);
  mb_rr_end(&m, s);
  mb_u32(&m, 0); /* padding so only the rdlength bounds the string */
  ASSERT_EQ(parse_bytes(m.b, m.n), SP_E_DNS_FORMAT);
  mb_hdr(&m, 1, F_RESP, 1, 1, 0, 0);
  mb_question(&m, "a.test", DNS_T_MX);
  s = mb_rr(&m, "a.test", DNS_T_MX);
  mb_rr_end(&m, s);
  ASSERT_EQ(parse_bytes(m.b, m.n), SP_E_DNS_FORMAT);
}

/* Big answers: none of them fits the old fixed arrays (64 records, 2,048 bytes). */
#define MANY_A 200
#define BIG_TXT_STRINGS 41 /* of 250 bytes: 10,250 bytes of text */
#define BIG_TLSA_DATA 4096

/* An A record whose owner points back at the question (offset 12). */
static void mb_a_compressed(struct mb *m, uint32_t addr) {
  mb_u16(m, 0xc00c);
  mb_u16(m, DNS_T_A);
  mb_u16(m, 1);
  mb_u32(m, 1);
  mb_u16(m, 4);
  mb_u32(m, addr);
}

static void seed_many_a(struct mb *m) {
  mb_hdr(m, 14, F_RESP, 1, MANY_A, 0, 0);
  mb_question(m, "many.example", DNS_T_A);
  for (uint32_t i = 0; i < MANY_A; i++)
    mb_a_compressed(m, 0x0a000000u + i);
}

static void seed_big_txt(struct mb *m) {
  mb_hdr(m, 15, F_RESP, 1, 1, 0, 0);
  mb_question(m, "_mta-sts.big.example", DNS_T_TXT);
  size_t s = mb_rr(m, "_mta-sts.big.example", DNS_T_TXT);
  for (int i = 0; i < BIG_TXT_STRINGS; i++) {
    mb_u8(m, 250);
    for (int k = 0; k < 250; k++)
      mb_u8(m, (unsigned)('a' + (i + k) % 26));
  }
  mb_rr_end(m, s);
}

static void seed_big_tlsa(struct mb *m) {
  mb_hdr(m, 16, F_RESP | F_AD, 1, 1, 0, 1);
  mb_question(m, "_25._tcp.big.example", DNS_T_TLSA);
  size_t s = mb_rr(m, "_25._tcp.big.example", DNS_T_TLSA);
  mb_raw(m, "\3\0\0", 3);
  for (int i = 0; i < BIG_TLSA_DATA; i++)
    mb_u8(m, (unsigned)i & 0xff);
  mb_rr_end(m, s);
  mb_opt(m);
}

static void test_parse_many_records(void) {
  struct mb m;
  seed_many_a(&m);
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT_EQ(ans->nrrs, MANY_A);
  for (size_t i = 0; i < MANY_A; i++) {
    ASSERT_EQ(ans->rrs[i].type, DNS_T_A);
    ASSERT_STR_EQ(ans->rrs[i].owner, "many.example");
    ASSERT_EQ(ans->rrs[i].u.a[3], i & 0xff);
  }
  /* One owner string for all of them: the answer is about the size of the message
   * plus one small struct per record. */
  ASSERT(ans->size <= sizeof *ans + MANY_A * sizeof(struct dns_rr) + 16);
  char ip[64];
  ASSERT(dns_answer_first_addr(ans, ip, sizeof ip));
  ASSERT_STR_EQ(ip, "10.0.0.0");
}

/* Two long names, then CNAME records whose owner and target are 2-byte pointers to
 * them, owners alternating (so no owner copy is shared): each 14-byte record expands
 * to two 200-odd-byte names. The parsed answer would take megabytes: refused. */
static void test_parse_expansion_bomb(void) {
  static struct mb m;
  char l1[240], l2[240];
  memset(l1, 0, sizeof l1);
  for (int i = 0; i < 3; i++)
    memset(l1 + i * 60, 'a' + i, 59), l1[i * 60 + 59] = '.';
  memcpy(l1 + 180, "one.test", 9);
  memcpy(l2, l1, sizeof l2);
  memcpy(l2 + 180, "two.test", 9);
  unsigned nrec = 2 + 4000;
  mb_hdr(&m, 1, 0x8180, 1, nrec, 0, 0);
  mb_question(&m, "q.test", DNS_T_A);
  size_t at1 = m.n;
  size_t s = mb_rr(&m, l1, DNS_T_CNAME);
  size_t at2 = m.n;
  mb_name(&m, l2);
  mb_rr_end(&m, s);
  s = mb_rr(&m, l2, DNS_T_CNAME);
  mb_u16(&m, 0xc000 | (unsigned)at1);
  mb_rr_end(&m, s);
  for (unsigned i = 0; i < nrec - 2; i++) {
    mb_u16(&m, 0xc000 | (unsigned)(i % 2 ? at2 : at1));
    mb_u16(&m, DNS_T_CNAME);
    mb_u16(&m, 1);
    mb_u32(&m, 300);
    mb_u16(&m, 2);
    mb_u16(&m, 0xc000 | (unsigned)(i % 2 ? at1 : at2));
  }
  ASSERT(m.n < 65535);
  ASSERT_EQ(parse(m.b, m.n), SP_E_OVERFLOW);
  ASSERT(ans == NULL);
  /* The same shape with few records stays well under the bound and parses. */
  uint8_t *small = malloc(m.n);
  ASSERT(small != NULL);
  memcpy(small, m.b, m.n);
  small[6] = 0;
  small[7] = 12;
  size_t cut = m.n - (nrec - 12) * 14; /* keep the long names and 10 pointer records */
  ASSERT_EQ(parse(small, cut), 0);
  ASSERT_EQ(ans->nrrs, 12);
  ASSERT(ans->size < DNS_ANSWER_MAX);
  free(small);
}

static void test_parse_big_rdata(void) {
  struct mb m;
  seed_big_txt(&m);
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT_EQ(ans->nrrs, 1);
  ASSERT_EQ(ans->rrs[0].u.txt.len, BIG_TXT_STRINGS * 250);
  ASSERT_EQ(strlen(ans->rrs[0].u.txt.text), BIG_TXT_STRINGS * 250);
  ASSERT_EQ(ans->rrs[0].u.txt.text[250], 'b'); /* the second string joined on */
  struct dns_texts t;
  ASSERT_EQ(dns_answer_texts(ans, &t), 0);
  ASSERT_EQ(t.n, 1);
  ASSERT_EQ(t.lens[0], BIG_TXT_STRINGS * 250);
  dns_texts_free(&t);
  ASSERT(t.texts == NULL && t.n == 0);

  seed_big_tlsa(&m);
  ASSERT_EQ(parse(m.b, m.n), 0);
  ASSERT_EQ(ans->nrrs, 1);
  ASSERT(ans->ad);
  ASSERT_EQ(ans->rrs[0].u.tlsa.usage, 3);
  ASSERT_EQ(ans->rrs[0].u.tlsa.mtype, 0);
  ASSERT_EQ(ans->rrs[0].u.tlsa.dlen, BIG_TLSA_DATA);
  ASSERT_EQ(ans->rrs[0].u.tlsa.data[BIG_TLSA_DATA - 1], (BIG_TLSA_DATA - 1) & 0xff);
  ASSERT(ans->size < sizeof *ans + sizeof(struct dns_rr) + BIG_TLSA_DATA + 64);
}

/* Malformed big answers, each copied into an exact-size buffer so ASan would see an
 * over-read. */
static int parse_exact(const struct mb *m) {
  uint8_t *copy = malloc(m->n);
  memcpy(copy, m->b, m->n);
  int rc = parse(copy, m->n);
  free(copy);
  return rc;
}

/* More records counted than the message holds, by one and by 65,335. */
static void bad_counts(struct mb *m) {
  seed_many_a(m);
  m->b[6] = (MANY_A + 1) >> 8;
  m->b[7] = (MANY_A + 1) & 0xff;
}
static void bad_counts_huge(struct mb *m) {
  seed_many_a(m);
  m->b[6] = m->b[7] = 0xff;
}
/* A TLSA rdlength running past the end of the message. */
static void bad_rdata_past_end(struct mb *m) {
  seed_big_tlsa(m);
  m->n -= 11 + 100; /* drop the OPT record and the last 100 data bytes */
  m->b[11] = 0;     /* ARCOUNT */
}
/* Two names pointing at each other (a compression loop). */
static void bad_pointer_loop(struct mb *m) {
  mb_hdr(m, 1, F_RESP, 1, 2, 0, 0);
  mb_question(m, "a.test", DNS_T_A);
  size_t first = m->n;
  mb_u16(m, 0xc000 | (unsigned)(first + 16)); /* -> the second owner */
  mb_u16(m, DNS_T_A);
  mb_u16(m, 1);
  mb_u32(m, 1);
  mb_u16(m, 4);
  mb_u32(m, 1);
  mb_u16(m, 0xc000 | (unsigned)first); /* -> the first owner */
  mb_u16(m, DNS_T_A);
  mb_u16(m, 1);
  mb_u32(m, 1);
  mb_u16(m, 4);
  mb_u32(m, 2);
}
/* A pointer past the end of the message. */
static void bad_pointer_past_end(struct mb *m) {
  mb_hdr(m, 1, F_RESP, 1, 1, 0, 0);
  mb_question(m, "a.test", DNS_T_A);
  mb_u16(m, 0xc000 | 0x3fff);
  mb_u16(m, DNS_T_A);
  mb_u16(m, 1);
  mb_u32(m, 1);
  mb_u16(m, 4);
  mb_u32(m, 1);
}

static void (*const bad_seeds[])(struct mb *) = {bad_counts, bad_counts_huge,
                                                 bad_rdata_past_end, bad_pointer_loop,
                                                 bad_pointer_past_end};
#define NBAD (sizeof bad_seeds / sizeof bad_seeds[0])

static void test_parse_big_malformed(void) {
  for (size_t i = 0; i < NBAD; i++) {
    struct mb m;
    bad_seeds[i](&m);
    ASSERT_EQ(parse_exact(&m), SP_E_DNS_FORMAT);
    ASSERT(ans == NULL);
  }
  /* The same TXT record, its last string claiming one byte more than is left. */
  struct mb m;
  seed_big_txt(&m);
  m.b[m.n - 251] = 251;
  ASSERT_EQ(parse_exact(&m), SP_E_DNS_FORMAT);
}

/* Writes one message as the fuzz seed dir/<prefix><i>. */
static int write_seed(const char *dir, const char *prefix, size_t i,
                      void (*build)(struct mb *)) {
  static struct mb m;
  char path[4096];
  build(&m);
  snprintf(path, sizeof path, "%s/%s%zu", dir, prefix, i);
  FILE *f = fopen(path, "wb");
  if (!f)
    return 1;
  size_t n = fwrite(m.b, 1, m.n, f);
  return fclose(f) != 0 || n != m.n;
}

static int write_corpus(const char *dir) {
  for (size_t i = 0; i < NSEEDS; i++)
    if (write_seed(dir, "seed", i, seeds[i]) != 0)
      return 1;
  for (size_t i = 0; i < NBAD; i++)
    if (write_seed(dir, "bad", i, bad_seeds[i]) != 0)
      return 1;
  return 0;
}

/* ---- fake DNS server --------------------------------------------------------------
 */

enum fake_act { FA_ANSWER, FA_DROP, FA_SERVFAIL, FA_NXDOMAIN };

struct fake_entry {
  const char *qname;
  uint16_t qtype;
  enum fake_act act;
  bool ad;
  struct rec recs[24];
};

struct fake { /* owns udp; closed by fake_stop */
  uv_udp_t udp;
  struct sockaddr_in addr;
  const struct fake_entry *table;
  size_t n;
  unsigned queries;
  uint8_t rbuf[2048];
};

static void fake_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  struct fake *f = h->data;
  (void)hint;
  *buf = uv_buf_init((char *)f->rbuf, sizeof f->rbuf);
}

/* Reads the uncompressed question name of a query into out; returns the offset
 * after QTYPE/QCLASS, or 0. */
static size_t fake_question(const uint8_t *q, size_t n, char *out, uint16_t *qtype) {
  size_t off = 12, o = 0;
  while (off < n && q[off] != 0) {
    size_t l = q[off];
    if (off + 1 + l >= n || o + l + 2 > 256)
      return 0;
    if (o)
      out[o++] = '.';
    for (size_t i = 0; i < l; i++) {
      char c = (char)q[off + 1 + i];
      out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    off += 1 + l;
  }
  out[o] = '\0';
  if (off + 5 > n)
    return 0;
  *qtype = (uint16_t)((q[off + 1] << 8) | q[off + 2]);
  return off + 5;
}

static void fake_recv(uv_udp_t *udp, ssize_t nread, const uv_buf_t *buf,
                      const struct sockaddr *from, unsigned flags) {
  struct fake *f = udp->data;
  (void)flags;
  char qname[256];
  uint16_t qtype = 0;
  if (nread <= 0 || !from)
    return;
  size_t qend = fake_question((const uint8_t *)buf->base, (size_t)nread, qname, &qtype);
  ASSERT(qend > 0);
  f->queries++;
  const struct fake_entry *e = NULL;
  for (size_t i = 0; i < f->n && !e; i++)
    if (strcmp(f->table[i].qname, qname) == 0 && f->table[i].qtype == qtype)
      e = &f->table[i];
  if (e && e->act == FA_DROP)
    return;
  unsigned flags16 = F_RESP | (e && e->ad ? F_AD : 0);
  if (e && e->act == FA_SERVFAIL)
    flags16 |= DNS_R_SERVFAIL;
  if (e && e->act == FA_NXDOMAIN)
    flags16 |= DNS_R_NXDOMAIN;
  const uint8_t *qb = (const uint8_t *)buf->base;
  struct mb m;
  unsigned an = 0;
  while (e && e->act == FA_ANSWER && e->recs[an].type)
    an++;
  mb_hdr(&m, (unsigned)((qb[0] << 8) | qb[1]), flags16, 1, an, 0, 1);
  mb_raw(&m, qb + 12, qend - 12); /* echo the question as asked */
  for (unsigned i = 0; i < an; i++)
    mb_rec(&m, &e->recs[i], qname);
  mb_opt(&m);
  uv_buf_t out = uv_buf_init((char *)m.b, (unsigned)m.n);
  ASSERT_EQ(uv_udp_try_send(udp, &out, 1, from), (long long)m.n);
}

static void fake_start(uv_loop_t *loop, struct fake *f, const struct fake_entry *t,
                       size_t n) {
  memset(f, 0, sizeof *f);
  f->table = t;
  f->n = n;
  ASSERT_EQ(uv_udp_init(loop, &f->udp), 0);
  f->udp.data = f;
  struct sockaddr_in a;
  ASSERT_EQ(uv_ip4_addr("127.0.0.1", 0, &a), 0);
  ASSERT_EQ(uv_udp_bind(&f->udp, (const struct sockaddr *)&a, 0), 0);
  int len = sizeof f->addr;
  ASSERT_EQ(uv_udp_getsockname(&f->udp, (struct sockaddr *)&f->addr, &len), 0);
  ASSERT_EQ(uv_udp_recv_start(&f->udp, fake_alloc, fake_recv), 0);
}

/* ---- loop tests ---------------------------------------------------------------------
 */

#define NODATA_ANSWER                                                                  \
  {                                                                                    \
    { 0, NULL, 0, NULL }                                                               \
  }

static const struct fake_entry table[] = {
    {"example.test",
     DNS_T_MX,
     FA_ANSWER,
     true,
     {{DNS_T_MX, NULL, 20, "mx3.example.test"},
      {DNS_T_MX, NULL, 10, "MX1.example.test"},
      {DNS_T_MX, NULL, 10, "mx2.example.test"},
      {DNS_T_MX, NULL, 30,
       "mx1.example.test"},      /* duplicate: the lower preference wins */
      {DNS_T_MX, NULL, 0, ""}}}, /* null MX next to real ones: ignored */
    {"mx1.example.test",
     DNS_T_A,
     FA_ANSWER,
     true,
     {{DNS_T_A, NULL, 0, "192.0.2.1"}, {DNS_T_A, NULL, 0, "192.0.2.2"}}},
    {"mx1.example.test",
     DNS_T_AAAA,
     FA_ANSWER,
     true,
     {{DNS_T_AAAA, NULL, 0, "2001:db8::1"}}},
    {"mx2.example.test", DNS_T_A, FA_ANSWER, true, {{DNS_T_A, NULL, 0, "192.0.2.3"}}},
    {"plain.test", DNS_T_A, FA_ANSWER, false, {{DNS_T_A, NULL, 0, "203.0.113.5"}}},
    {"alias.test",
     DNS_T_MX,
     FA_ANSWER,
     false,
     {{DNS_T_CNAME, NULL, 0, "real.test"}, {DNS_T_MX, "real.test", 5, "mx.real.test"}}},
    {"mx.real.test", DNS_T_A, FA_ANSWER, false, {{DNS_T_A, NULL, 0, "198.51.100.1"}}},
    {"nomail.test", DNS_T_MX, FA_ANSWER, true, {{DNS_T_MX, NULL, 0, ""}}},
    {"gone.test", DNS_T_MX, FA_NXDOMAIN, false, NODATA_ANSWER},
    {"broken.test", DNS_T_MX, FA_SERVFAIL, false, NODATA_ANSWER},
    {"slow.test", DNS_T_MX, FA_DROP, false, NODATA_ANSWER},
    {"slow.test", DNS_T_TXT, FA_DROP, false, NODATA_ANSWER},
    {"hosts.test",
     DNS_T_MX,
     FA_ANSWER,
     false,
     {{DNS_T_MX, NULL, 10, "noaddr.hosts.test"},
      {DNS_T_MX, NULL, 20, "gone.hosts.test"},
      {DNS_T_MX, NULL, 30, "fail.hosts.test"}}},
    {"gone.hosts.test", DNS_T_A, FA_NXDOMAIN, false, NODATA_ANSWER},
    {"gone.hosts.test", DNS_T_AAAA, FA_NXDOMAIN, false, NODATA_ANSWER},
    {"fail.hosts.test", DNS_T_A, FA_SERVFAIL, false, NODATA_ANSWER},
    {"fam.test",
     DNS_T_MX,
     FA_ANSWER,
     true,
     {{DNS_T_MX, NULL, 10, "v4.fam.test"},
      {DNS_T_MX, NULL, 20, "mixed.fam.test"},
      {DNS_T_MX, NULL, 30, "cn.fam.test"},
      {DNS_T_MX, NULL, 40, "insecure.fam.test"}}},
    {"v4.fam.test", DNS_T_A, FA_ANSWER, true, {{DNS_T_A, NULL, 0, "192.0.2.10"}}},
    {"v4.fam.test", DNS_T_AAAA, FA_SERVFAIL, false, NODATA_ANSWER},
    {"mixed.fam.test", DNS_T_A, FA_ANSWER, false, {{DNS_T_A, NULL, 0, "192.0.2.11"}}},
    {"mixed.fam.test",
     DNS_T_AAAA,
     FA_ANSWER,
     true,
     {{DNS_T_AAAA, NULL, 0, "2001:db8::11"}}},
    {"cn.fam.test",
     DNS_T_A,
     FA_ANSWER,
     true,
     {{DNS_T_CNAME, NULL, 0, "real.fam.test"},
      {DNS_T_A, "real.fam.test", 0, "192.0.2.12"}}},
    {"insecure.fam.test",
     DNS_T_A,
     FA_ANSWER,
     false,
     {{DNS_T_A, NULL, 0, "192.0.2.13"}}},
    {"insecure.fam.test",
     DNS_T_AAAA,
     FA_ANSWER,
     false,
     {{DNS_T_AAAA, NULL, 0, "2001:db8::13"}}},
    {"_25._tcp.mx.test",
     DNS_T_TLSA,
     FA_ANSWER,
     true,
     {{DNS_T_TLSA, NULL, 0, "3 1 1 abcd"}}},
    {"many.test",
     DNS_T_MX,
     FA_ANSWER,
     false,
     {{DNS_T_MX, NULL, 20, "h20.many.test"}, {DNS_T_MX, NULL, 19, "h19.many.test"},
      {DNS_T_MX, NULL, 18, "h18.many.test"}, {DNS_T_MX, NULL, 17, "h17.many.test"},
      {DNS_T_MX, NULL, 16, "h16.many.test"}, {DNS_T_MX, NULL, 15, "h15.many.test"},
      {DNS_T_MX, NULL, 14, "h14.many.test"}, {DNS_T_MX, NULL, 13, "h13.many.test"},
      {DNS_T_MX, NULL, 12, "h12.many.test"}, {DNS_T_MX, NULL, 11, "h11.many.test"},
      {DNS_T_MX, NULL, 10, "h10.many.test"}, {DNS_T_MX, NULL, 9, "h9.many.test"},
      {DNS_T_MX, NULL, 8, "h8.many.test"},   {DNS_T_MX, NULL, 7, "h7.many.test"},
      {DNS_T_MX, NULL, 6, "h6.many.test"},   {DNS_T_MX, NULL, 5, "h5.many.test"},
      {DNS_T_MX, NULL, 4, "h4.many.test"},   {DNS_T_MX, NULL, 3, "h3.many.test"},
      {DNS_T_MX, NULL, 2, "h2.many.test"},   {DNS_T_MX, NULL, 1, "h1.many.test"}}},
};

struct harness {
  uv_loop_t loop;
  struct fake fake;
  struct config cfg;
  struct config_addr srv;
  struct dns *dns;
  uv_timer_t timer;
  int outstanding; /* callbacks to see before shutting down */
  int ncb, nclosed, first_mx1, raw_status;
  bool in_call, raw_ad;
  size_t raw_nrrs;
  uint8_t raw_rcode;
  struct dns_mx_result res;
};

static struct harness H;

/* cache_size 0: no answer kept (identical concurrent lookups are still coalesced). */
static void h_start_cache(struct harness *h, size_t cache_size) {
  memset(h, 0, sizeof *h);
  ASSERT_EQ(uv_loop_init(&h->loop), 0);
  fake_start(&h->loop, &h->fake, table, sizeof table / sizeof table[0]);
  memcpy(&h->srv.sa, &h->fake.addr, sizeof h->fake.addr);
  h->srv.salen = sizeof h->fake.addr;
  h->cfg.dns_servers = &h->srv;
  h->cfg.ndns_servers = 1;
  h->cfg.dns_timeout_ms = 200;
  h->cfg.dns_tries = 1;
  h->cfg.dns_cache_size = cache_size;
  h->cfg.dns_cache_max_ttl = 3600;
  h->cfg.dns_cache_negative_ttl = 60;
  struct dns_settings ds = config_dns_settings(&h->cfg);
  ASSERT_EQ(dns_new(&h->loop, &ds, &h->dns), 0);
}

static void h_start(struct harness *h) {
  h_start_cache(h, 0);
}

static void on_dns_closed(void *arg) {
  struct harness *h = arg;
  h->nclosed++;
}

static void h_shutdown(struct harness *h) {
  dns_close(h->dns, on_dns_closed, h);
  uv_close((uv_handle_t *)&h->fake.udp, NULL);
}

static void h_finish(struct harness *h) {
  ASSERT_EQ(uv_run(&h->loop, UV_RUN_DEFAULT), 0);
  ASSERT_EQ(h->nclosed, 1);
  ASSERT_EQ(uv_loop_close(&h->loop), 0);
}

static void on_mx(void *arg, const struct dns_mx_result *res) {
  struct harness *h = arg;
  ASSERT(!h->in_call); /* never synchronously from dns_resolve_mx */
  h->ncb++;
  memcpy(&h->res, res, sizeof *res);
  if (res->nhosts > 0 && strcmp(res->hosts[0].name, "mx1.example.test") == 0)
    h->first_mx1++;
  if (--h->outstanding == 0)
    h_shutdown(h);
}

static struct dns_query *resolve(struct harness *h, const char *domain) {
  h->outstanding++;
  h->in_call = true;
  struct dns_query *q = dns_resolve_mx(h->dns, domain, on_mx, h);
  h->in_call = false;
  ASSERT(q != NULL);
  return q;
}

static const struct dns_mx_result *mx_run(const char *domain) {
  h_start(&H);
  resolve(&H, domain);
  h_finish(&H);
  ASSERT_EQ(H.ncb, 1);
  return &H.res;
}

static void addr_check(const struct sockaddr_storage *ss, int family,
                       const char *want) {
  char buf[64];
  const void *p = family == AF_INET
                      ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
                      : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
  ASSERT_EQ(ss->ss_family, family);
  ASSERT(inet_ntop(family, p, buf, sizeof buf) != NULL);
  ASSERT_STR_EQ(buf, want);
}

static void test_mx_order(void) {
  const struct dns_mx_result *r = mx_run("Example.Test.");
  ASSERT_EQ(r->status, 0);
  ASSERT(r->mx_secure && !r->implicit);
  ASSERT_EQ(r->nhosts, 3);
  const struct dns_mx_host *mx1 = &r->hosts[0], *mx2 = &r->hosts[1];
  if (strcmp(mx1->name, "mx1.example.test") != 0) {
    mx1 = &r->hosts[1];
    mx2 = &r->hosts[0];
  }
  ASSERT_STR_EQ(mx1->name, "mx1.example.test");
  ASSERT_STR_EQ(mx2->name, "mx2.example.test");
  ASSERT_EQ(mx1->pref, 10);
  ASSERT_EQ(mx2->pref, 10);
  ASSERT_EQ(mx1->status, 0);
  ASSERT_EQ(mx1->naddrs, 3);
  addr_check(&mx1->addrs[0], AF_INET, "192.0.2.1");
  addr_check(&mx1->addrs[1], AF_INET, "192.0.2.2");
  addr_check(&mx1->addrs[2], AF_INET6, "2001:db8::1");
  ASSERT(mx1->addr_secure);
  ASSERT_EQ(mx2->naddrs, 1);
  /* Its A answer was validated: secure, although its (empty) AAAA answer was not. */
  ASSERT(mx2->addr_secure);
  ASSERT_STR_EQ(mx2->cname, "");
  ASSERT_STR_EQ(r->hosts[2].name, "mx3.example.test");
  ASSERT_EQ(r->hosts[2].pref, 20);
  ASSERT_EQ(r->hosts[2].status, SP_E_DNS_NODATA);
  ASSERT_EQ(r->hosts[2].naddrs, 0);
}

/* DNSSEC per address RRset: a failed or insecure family never makes a validated one
 * insecure; only validated addresses are kept next to a validated family. */
static void test_mx_address_families(void) {
  const struct dns_mx_result *r = mx_run("fam.test");
  ASSERT_EQ(r->status, 0);
  ASSERT_EQ(r->nhosts, 4);
  const struct dns_mx_host *v4 = &r->hosts[0], *mixed = &r->hosts[1],
                           *cn = &r->hosts[2], *insecure = &r->hosts[3];
  ASSERT_STR_EQ(v4->name, "v4.fam.test");
  ASSERT_EQ(v4->status, 0);
  ASSERT(v4->addr_secure); /* AAAA SERVFAIL: the validated A still counts */
  ASSERT_EQ(v4->naddrs, 1);
  addr_check(&v4->addrs[0], AF_INET, "192.0.2.10");
  ASSERT_STR_EQ(mixed->name, "mixed.fam.test");
  ASSERT(mixed->addr_secure);
  ASSERT_EQ(mixed->naddrs, 1); /* the insecure A address is not dialled */
  addr_check(&mixed->addrs[0], AF_INET6, "2001:db8::11");
  ASSERT_STR_EQ(cn->name, "cn.fam.test");
  ASSERT(cn->addr_secure);
  ASSERT_STR_EQ(cn->cname, "real.fam.test");
  ASSERT_EQ(cn->naddrs, 1);
  addr_check(&cn->addrs[0], AF_INET, "192.0.2.12");
  ASSERT_STR_EQ(insecure->name, "insecure.fam.test");
  ASSERT(!insecure->addr_secure); /* nothing validated: every address, insecure */
  ASSERT_EQ(insecure->naddrs, 2);
}

static void test_mx_shuffle(void) {
  h_start(&H);
  for (int i = 0; i < 40; i++)
    resolve(&H, "example.test");
  h_finish(&H);
  ASSERT_EQ(H.ncb, 40);
  ASSERT(H.first_mx1 > 0 && H.first_mx1 < 40); /* both orders: fails with p = 2^-39 */
}

static void test_mx_implicit_cname_many(void) {
  const struct dns_mx_result *r = mx_run("Plain.Test");
  ASSERT_EQ(r->status, 0);
  ASSERT(r->implicit && !r->mx_secure);
  ASSERT_EQ(r->nhosts, 1);
  ASSERT_STR_EQ(r->hosts[0].name, "plain.test");
  ASSERT_EQ(r->hosts[0].pref, 0);
  ASSERT_EQ(r->hosts[0].naddrs, 1);
  addr_check(&r->hosts[0].addrs[0], AF_INET, "203.0.113.5");
  r = mx_run("alias.test");
  ASSERT_EQ(r->status, 0);
  ASSERT(!r->implicit);
  ASSERT_EQ(r->nhosts, 1);
  ASSERT_STR_EQ(r->hosts[0].name, "mx.real.test");
  ASSERT_EQ(r->hosts[0].pref, 5);
  ASSERT_EQ(r->hosts[0].naddrs, 1);
  r = mx_run("many.test"); /* > 512 bytes: needs EDNS */
  ASSERT_EQ(r->status, 0);
  ASSERT_EQ(r->nhosts, DNS_MAX_MX);
  for (size_t i = 0; i < DNS_MAX_MX; i++)
    ASSERT_EQ(r->hosts[i].pref, i + 1);
  ASSERT_STR_EQ(r->hosts[15].name, "h16.many.test");
}

static void test_mx_failures(void) {
  const struct dns_mx_result *r = mx_run("nomail.test");
  ASSERT_EQ(r->status, SP_E_DNS_NULLMX);
  ASSERT_EQ(r->nhosts, 0);
  r = mx_run("gone.test");
  ASSERT_EQ(r->status, SP_E_DNS_NXDOMAIN);
  ASSERT_STR_EQ(r->reason, "NXDOMAIN");
  r = mx_run("broken.test");
  ASSERT_EQ(r->status, SP_E_DNS_TEMP);
  ASSERT_STR_EQ(r->reason, "SERVFAIL");
  r = mx_run("slow.test");
  ASSERT_EQ(r->status, SP_E_DNS_TEMP);
  ASSERT_STR_EQ(r->reason, "timeout");
  r = mx_run("bad..name");
  ASSERT_EQ(r->status, SP_E_DNS_NXDOMAIN);
  ASSERT_EQ(H.fake.queries, 0);
}

static void test_mx_hosts(void) {
  const struct dns_mx_result *r = mx_run("hosts.test");
  ASSERT_EQ(r->status, 0);
  ASSERT_EQ(r->nhosts, 3);
  ASSERT_STR_EQ(r->hosts[0].name, "noaddr.hosts.test");
  ASSERT_EQ(r->hosts[0].status, SP_E_DNS_NODATA);
  ASSERT_EQ(r->hosts[1].status, SP_E_DNS_NXDOMAIN);
  ASSERT_EQ(r->hosts[2].status, SP_E_DNS_TEMP);
  for (int i = 0; i < 3; i++)
    ASSERT_EQ(r->hosts[i].naddrs, 0);
}

static void on_raw(void *arg, int status, const struct dns_answer *a) {
  struct harness *h = arg;
  ASSERT(!h->in_call);
  h->ncb++;
  h->raw_status = status;
  ASSERT((status == 0) == (a != NULL));
  if (a) {
    h->raw_ad = a->ad;
    h->raw_nrrs = a->nrrs;
    h->raw_rcode = a->rcode;
    if (a->nrrs > 0 && a->rrs[0].type == DNS_T_TLSA)
      ASSERT_EQ(a->rrs[0].u.tlsa.dlen, 2);
  }
  if (--h->outstanding == 0)
    h_shutdown(h);
}

static void raw_run(const char *name, uint16_t type) {
  h_start(&H);
  H.outstanding = 1;
  H.in_call = true;
  ASSERT(dns_query_raw(H.dns, name, type, on_raw, &H) != NULL);
  H.in_call = false;
  h_finish(&H);
  ASSERT_EQ(H.ncb, 1);
}

static void test_raw(void) {
  raw_run("_25._tcp.MX.test", DNS_T_TLSA);
  ASSERT_EQ(H.raw_status, 0);
  ASSERT(H.raw_ad);
  ASSERT_EQ(H.raw_nrrs, 1);
  raw_run("gone.test", DNS_T_MX);
  ASSERT_EQ(H.raw_status, 0);
  ASSERT_EQ(H.raw_rcode, DNS_R_NXDOMAIN);
  raw_run("broken.test", DNS_T_MX);
  ASSERT_EQ(H.raw_status, SP_E_DNS_TEMP);
  raw_run("slow.test", DNS_T_TXT);
  ASSERT_EQ(H.raw_status, SP_E_DNS_TEMP);
  raw_run("a..b", DNS_T_TXT);
  ASSERT(H.raw_status < 0);
}

static void on_never(void *arg, const struct dns_mx_result *res) {
  (void)arg;
  (void)res;
  TEST_FAIL_("callback after dns_cancel/dns_close");
}

static void on_never_raw(void *arg, int status, const struct dns_answer *a) {
  (void)arg;
  (void)status;
  (void)a;
  TEST_FAIL_("raw callback after dns_cancel/dns_close");
}

static void on_shutdown_timer(uv_timer_t *t) {
  struct harness *h = t->data;
  h_shutdown(h);
  uv_close((uv_handle_t *)t, NULL);
}

static void shutdown_after(struct harness *h, uint64_t ms) {
  ASSERT_EQ(uv_timer_init(&h->loop, &h->timer), 0);
  h->timer.data = h;
  ASSERT_EQ(uv_timer_start(&h->timer, on_shutdown_timer, ms, 0), 0);
}

static void test_cancel(void) {
  /* Answered, dropped (times out at 200 ms), and not even sendable: the late
   * completions of all three must find their query cancelled. */
  h_start(&H);
  dns_cancel(dns_resolve_mx(H.dns, "example.test", on_never, &H));
  dns_cancel(dns_resolve_mx(H.dns, "slow.test", on_never, &H));
  dns_cancel(dns_resolve_mx(H.dns, "bad..name", on_never, &H));
  dns_cancel(dns_query_raw(H.dns, "_25._tcp.mx.test", DNS_T_TLSA, on_never_raw, &H));
  shutdown_after(&H, 300);
  h_finish(&H);
  ASSERT_EQ(H.fake.queries, 3);
}

static void test_close_in_flight(void) {
  /* Closed before the loop ever ran. */
  h_start(&H);
  dns_resolve_mx(H.dns, "example.test", on_never, &H);
  dns_resolve_mx(H.dns, "bad..name", on_never, &H);
  dns_query_raw(H.dns, "slow.test", DNS_T_TXT, on_never_raw, &H);
  h_shutdown(&H);
  h_finish(&H);
  /* Closed from a timer while queries wait on the network. */
  h_start(&H);
  dns_resolve_mx(H.dns, "slow.test", on_never, &H);
  dns_query_raw(H.dns, "slow.test", DNS_T_TXT, on_never_raw, &H);
  shutdown_after(&H, 50);
  h_finish(&H);
  ASSERT_EQ(H.fake.queries, 2);
  /* Closed from inside a callback while another query (and a finished one) wait. */
  h_start(&H);
  resolve(&H, "gone.test");
  dns_resolve_mx(H.dns, "slow.test", on_never, &H);
  h_finish(&H);
  ASSERT_EQ(H.ncb, 1);
  ASSERT_EQ(H.res.status, SP_E_DNS_NXDOMAIN);
}

/* The first two lookups: the second one starts once both answers are in. */
static void on_mx_then_again(void *arg, const struct dns_mx_result *res) {
  struct harness *h = arg;
  h->ncb++;
  memcpy(&h->res, res, sizeof *res);
  if (h->ncb == 2) {
    h->raw_status = (int)h->fake.queries; /* what the wire saw for the first round */
    resolve(h, "fam.test");
  }
}

/* With the cache on: two concurrent lookups of a domain and a third cancelled one put
 * each query on the wire once and both get the answer; a later lookup is answered
 * from the cache with the same DNSSEC status per RRset, except the SERVFAIL, which is
 * asked again. */
static void test_cache(void) {
  h_start_cache(&H, 100);
  dns_resolve_mx(H.dns, "fam.test", on_mx_then_again, &H);
  dns_cancel(dns_resolve_mx(H.dns, "fam.test", on_never, &H));
  dns_resolve_mx(H.dns, "fam.test", on_mx_then_again, &H);
  h_finish(&H);
  ASSERT_EQ(H.ncb, 3);
  ASSERT_EQ(H.raw_status, 9);    /* MX, and A and AAAA of four hosts */
  ASSERT_EQ(H.fake.queries, 10); /* v4.fam.test AAAA (SERVFAIL) again */
  const struct dns_mx_result *r = &H.res;
  ASSERT_EQ(r->status, 0);
  ASSERT(r->mx_secure);
  ASSERT_EQ(r->nhosts, 4);
  for (size_t i = 0; i < r->nhosts; i++) {
    bool insecure = strcmp(r->hosts[i].name, "insecure.fam.test") == 0;
    ASSERT_EQ(r->hosts[i].addr_secure, !insecure);
  }
}

static void run_loop_tests(void) {
  RUN_TEST(test_mx_order);
  RUN_TEST(test_mx_address_families);
  RUN_TEST(test_mx_shuffle);
  RUN_TEST(test_mx_implicit_cname_many);
  RUN_TEST(test_mx_failures);
  RUN_TEST(test_mx_hosts);
  RUN_TEST(test_raw);
  RUN_TEST(test_cancel);
  RUN_TEST(test_close_in_flight);
  RUN_TEST(test_cache);
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
    return write_corpus(argv[2]);
  RUN_TEST(test_build_query);
  RUN_TEST(test_parse_mx);
  RUN_TEST(test_parse_addr_cname);
  RUN_TEST(test_parse_txt_tlsa_nullmx);
  RUN_TEST(test_parse_tlsa_short);
  RUN_TEST(test_parse_flags);
  RUN_TEST(test_parse_soa);
  RUN_TEST(test_parse_malformed);
  RUN_TEST(test_parse_rdata_lies);
  RUN_TEST(test_parse_many_records);
  RUN_TEST(test_parse_big_rdata);
  RUN_TEST(test_parse_expansion_bomb);
  RUN_TEST(test_parse_big_malformed);
  run_loop_tests();
  return 0;
}
