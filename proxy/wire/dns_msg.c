/* DNS wire format (RFC 1035 §4) for the queries we send and the answers we get.
 *
 * Every read is checked against the message length. Names are decoded into
 * lower-case presentation form; a label byte that is '.', '\\' or not printable ASCII
 * (0x21..0x7e) is escaped as \DDD (RFC 4343 §2.1) rather than rejected, so one odd
 * record does not make a whole answer unusable. A name whose escaped form does not
 * fit DNS_NAME_MAX characters is treated as malformed. dns_msg_build_query() accepts
 * only plain names (no escapes), so an escaped name can never be queried.
 *
 * The parsed answer is one allocation sized by a first, measuring walk over the
 * message, so memory follows what the message carries (a few hundred bytes for a
 * usual answer) instead of fixed worst-case arrays. */
#include "proxy/wire/dns_msg.h"

#include <arpa/inet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/error.h"

#define HDR_LEN 12
#define FLAG_QR 0x8000u
#define FLAG_TC 0x0200u
#define FLAG_RD 0x0100u
#define FLAG_AD 0x0020u
#define CLASS_IN 1
#define TYPE_OPT 41
#define EDNS_PAYLOAD 1232 /* RFC 9715 / DNS flag day 2020 */
#define EDNS_DO 0x8000u
#define MAX_POINTERS 32
#define MAX_WIRE_NAME 255
#define MAX_CNAME_STEPS 8
#define MIN_RR_LEN 11 /* a root or pointer-free 1-byte owner, then 10 fixed bytes */
#define MIN_QUESTION_LEN 5 /* root name, QTYPE, QCLASS */

static uint16_t get16(const uint8_t *p) {
  return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put16(uint8_t *p, unsigned v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

/* Appends one label to out (capacity DNS_NAME_MAX + 1) at *o, escaped and lower-cased.
 */
static int label_append(const uint8_t *lab, size_t n, char *out, size_t *o) {
  if (*o > 0) {
    if (*o + 1 > DNS_NAME_MAX)
      return SP_E_DNS_FORMAT;
    out[(*o)++] = '.';
  }
  for (size_t i = 0; i < n; i++) {
    uint8_t c = lab[i];
    if (c == '.' || c == '\\' || c < 0x21 || c > 0x7e) {
      if (*o + 4 > DNS_NAME_MAX)
        return SP_E_DNS_FORMAT;
      out[(*o)++] = '\\';
      out[(*o)++] = (char)('0' + c / 100);
      out[(*o)++] = (char)('0' + (c / 10) % 10);
      out[(*o)++] = (char)('0' + c % 10);
      continue;
    }
    if (*o + 1 > DNS_NAME_MAX)
      return SP_E_DNS_FORMAT;
    out[(*o)++] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
  }
  return 0;
}

/* Reads the name at *off. Its in-line labels must end before limit (the end of the
 * rdata or of the message); labels reached through a pointer only before len. A
 * pointer must point before the start of the label run it ends, so every jump goes
 * strictly backwards and the walk terminates. out may be NULL (validate only). On
 * success *off is just past the name's in-line part. */
static int name_read(const uint8_t *msg, size_t len, size_t limit, size_t *off,
                     char *out) {
  size_t pos = *off, seg = *off, end = 0, wire = 0, o = 0;
  unsigned jumps = 0;
  for (;;) {
    if (pos >= limit)
      return SP_E_DNS_FORMAT;
    uint8_t b = msg[pos];
    if ((b & 0xc0) == 0xc0) {
      if (pos + 1 >= limit)
        return SP_E_DNS_FORMAT;
      size_t ptr = ((size_t)(b & 0x3f) << 8) | msg[pos + 1];
      if (ptr >= seg || ++jumps > MAX_POINTERS)
        return SP_E_DNS_FORMAT;
      if (jumps == 1)
        end = pos + 2;
      pos = seg = ptr;
      limit = len;
      continue;
    }
    if (b & 0xc0) /* 0x40 and 0x80 label types are obsolete or unassigned */
      return SP_E_DNS_FORMAT;
    wire += (size_t)b + 1;
    if (wire > MAX_WIRE_NAME)
      return SP_E_DNS_FORMAT;
    if (b == 0) {
      if (jumps == 0)
        end = pos + 1;
      break;
    }
    if (b > limit - pos - 1)
      return SP_E_DNS_FORMAT;
    if (out && label_append(msg + pos + 1, b, out, &o) != 0)
      return SP_E_DNS_FORMAT;
    pos += 1 + (size_t)b;
  }
  if (out)
    out[o] = '\0';
  *off = end;
  return 0;
}

static bool type_kept(uint16_t type) {
  return type == DNS_T_A || type == DNS_T_AAAA || type == DNS_T_CNAME ||
         type == DNS_T_MX || type == DNS_T_TXT || type == DNS_T_TLSA;
}

/* The record walk runs twice over the same message: first to measure (ans NULL: how
 * many records are kept and how many bytes their strings need), then to fill the
 * allocation sized from that. Both passes take the same decisions, so the second
 * never needs more than the first measured. */
struct walk {
  const uint8_t *msg;
  size_t len;
  struct dns_answer *ans; /* NULL while measuring */
  char *arena;            /* strings and TLSA data, after ans->rrs[] */
  size_t used, cap;       /* arena bytes taken, and (filling) its size */
  size_t nrrs, max_rrs;   /* records kept, and (filling) the slots in ans->rrs */
  const char *last_owner; /* the last stored owner (filling) */
  char last_text[DNS_NAME_MAX + 1]; /* and its text (both passes) */
  bool soa;                         /* an authority-section SOA was seen */
  uint32_t neg_ttl;                 /* its min(TTL, MINIMUM) */
};

/* n bytes of the arena: where to write them, or NULL while measuring. Should the
 * passes ever disagree, nothing is written past the end and used != cap tells. */
static char *arena_take(struct walk *w, size_t n) {
  bool fits = w->used <= w->cap && n <= w->cap - w->used;
  char *at = w->ans && fits ? w->arena + w->used : NULL;
  w->used += n;
  return at;
}

static const char *arena_string(struct walk *w, const char *s) {
  size_t n = strlen(s) + 1;
  char *at = arena_take(w, n);
  if (at)
    memcpy(at, s, n);
  return at;
}

/* Consecutive records usually share their owner: store its text once. */
static const char *owner_store(struct walk *w, const char *owner) {
  if (w->nrrs > 0 && strcmp(owner, w->last_text) == 0)
    return w->last_owner;
  snprintf(w->last_text, sizeof w->last_text, "%s", owner);
  w->last_owner = arena_string(w, owner);
  return w->last_owner;
}

/* TXT: one or more <length, bytes> character-strings filling the rdata exactly. */
static int txt_parse(struct walk *w, size_t pos, size_t end, struct dns_rr *rr) {
  size_t total = 0;
  for (size_t p = pos; p < end; p += w->msg[p] + 1u) {
    if (w->msg[p] > end - p - 1)
      return SP_E_DNS_FORMAT;
    total += w->msg[p];
  }
  char *text = arena_take(w, total + 1);
  rr->u.txt.len = (uint16_t)total; /* < rdlength <= 65535 */
  rr->u.txt.text = text;
  if (!text)
    return 0;
  for (size_t p = pos, o = 0; p < end; p += w->msg[p] + 1u) {
    memcpy(text + o, w->msg + p + 1, w->msg[p]);
    o += w->msg[p];
  }
  text[total] = '\0';
  return 0;
}

/* TLSA: usage, selector, matching type, association data. RDATA too short for the
 * three fields is one unusable record, not a broken answer: the record is kept,
 * marked malformed, its bytes as data; the RRset's other records still count. */
static int tlsa_parse(struct walk *w, size_t pos, size_t end, struct dns_rr *rr) {
  bool malformed = end - pos < 3;
  size_t head = malformed ? 0 : 3, dlen = end - pos - head;
  rr->u.tlsa.malformed = malformed;
  rr->u.tlsa.usage = malformed ? 0 : w->msg[pos];
  rr->u.tlsa.selector = malformed ? 0 : w->msg[pos + 1];
  rr->u.tlsa.mtype = malformed ? 0 : w->msg[pos + 2];
  rr->u.tlsa.dlen = (uint16_t)dlen;
  uint8_t *data = dlen ? (uint8_t *)arena_take(w, dlen) : NULL;
  if (data)
    memcpy(data, w->msg + pos + head, dlen);
  rr->u.tlsa.data = data;
  return 0;
}

/* A host name inside rdata, which it must end exactly at end. */
static int rdata_name(struct walk *w, size_t pos, size_t end, const char **out) {
  char name[DNS_NAME_MAX + 1];
  if (name_read(w->msg, w->len, end, &pos, name) != 0 || pos != end)
    return SP_E_DNS_FORMAT;
  *out = arena_string(w, name);
  return 0;
}

static int rdata_parse(struct walk *w, size_t pos, size_t end, struct dns_rr *rr) {
  size_t rdlen = end - pos;
  switch (rr->type) {
  case DNS_T_A:
    if (rdlen != 4)
      return SP_E_DNS_FORMAT;
    memcpy(rr->u.a, w->msg + pos, 4);
    return 0;
  case DNS_T_AAAA:
    if (rdlen != 16)
      return SP_E_DNS_FORMAT;
    memcpy(rr->u.aaaa, w->msg + pos, 16);
    return 0;
  case DNS_T_CNAME:
    return rdata_name(w, pos, end, &rr->u.cname);
  case DNS_T_MX:
    if (rdlen < 3)
      return SP_E_DNS_FORMAT;
    rr->u.mx.pref = get16(w->msg + pos);
    return rdata_name(w, pos + 2, end, &rr->u.mx.host);
  case DNS_T_TXT:
    return txt_parse(w, pos, end, rr);
  case DNS_T_TLSA:
    return tlsa_parse(w, pos, end, rr);
  }
  return SP_E_DNS_FORMAT;
}

/* RFC 2308 §5: a negative answer may be cached for the smaller of the SOA record's
 * TTL and its MINIMUM field (the last 32 bits of the RDATA). */
static void soa_note(struct walk *w, uint32_t ttl, size_t pos, size_t rdlen) {
  if (rdlen < 22 || w->soa) /* two one-byte names and five 32-bit fields at least */
    return;
  uint32_t minimum = get32(w->msg + pos + rdlen - 4);
  w->soa = true;
  w->neg_ttl = ttl < minimum ? ttl : minimum;
}

/* One resource record at *off. In the answer section (keep) records of kept types in
 * class IN are stored (or, while measuring, counted); in the authority section
 * (authority) the first SOA is noted. */
static int rr_parse(struct walk *w, size_t *off, bool keep, bool authority) {
  const uint8_t *msg = w->msg;
  size_t len = w->len, pos = *off;
  char owner[DNS_NAME_MAX + 1];
  if (name_read(msg, len, len, &pos, keep ? owner : NULL) != 0 || len - pos < 10)
    return SP_E_DNS_FORMAT;
  uint16_t type = get16(msg + pos), klass = get16(msg + pos + 2);
  uint32_t ttl = get32(msg + pos + 4);
  size_t rdlen = get16(msg + pos + 8);
  pos += 10;
  if (rdlen > len - pos)
    return SP_E_DNS_FORMAT;
  *off = pos + rdlen;
  if (authority && klass == CLASS_IN && type == DNS_T_SOA)
    soa_note(w, ttl, pos, rdlen);
  if (!keep || klass != CLASS_IN || !type_kept(type))
    return 0;
  /* Only a kept record has a slot: rrs[] was sized by the measuring walk. */
  struct dns_rr scratch,
      *rr = w->ans && w->nrrs < w->max_rrs ? &w->ans->rrs[w->nrrs] : &scratch;
  rr->ttl = ttl;
  rr->type = type;
  rr->klass = klass;
  rr->owner = owner_store(w, owner);
  int rc = rdata_parse(w, pos, pos + rdlen, rr);
  if (rc != 0)
    return rc;
  w->nrrs++;
  return 0;
}

static int records_walk(struct walk *w, size_t off, unsigned an, unsigned ns,
                        unsigned ar) {
  for (unsigned i = 0; i < an + ns + ar; i++) {
    int rc = rr_parse(w, &off, i < an, i >= an && i < an + ns);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static int header_parse(const uint8_t *msg, size_t len, struct dns_answer *out) {
  if (len < HDR_LEN)
    return SP_E_DNS_FORMAT;
  unsigned flags = get16(msg + 2);
  if (!(flags & FLAG_QR) || ((flags >> 11) & 0xf) != 0) /* a response to QUERY */
    return SP_E_DNS_FORMAT;
  out->id = get16(msg);
  out->ad = (flags & FLAG_AD) != 0;
  out->tc = (flags & FLAG_TC) != 0;
  out->rcode = (uint8_t)(flags & 0xf);
  return 0;
}

/* The header and question into hdr; *off just past the question. Counts are checked
 * against what is left of the message first, so a lying header is refused before
 * anything is sized from it. */
static int question_parse(const uint8_t *msg, size_t len, struct dns_answer *hdr,
                          size_t *off) {
  if (header_parse(msg, len, hdr) != 0)
    return SP_E_DNS_FORMAT;
  unsigned qd = get16(msg + 4);
  size_t rrs = (size_t)get16(msg + 6) + get16(msg + 8) + get16(msg + 10);
  if (qd > 1 || rrs * MIN_RR_LEN + qd * MIN_QUESTION_LEN > len - HDR_LEN)
    return SP_E_DNS_FORMAT;
  *off = HDR_LEN;
  if (qd == 1) {
    if (name_read(msg, len, len, off, hdr->qname) != 0 || len - *off < 4)
      return SP_E_DNS_FORMAT;
    hdr->qtype = get16(msg + *off);
    *off += 4;
  }
  return 0;
}

int dns_msg_parse(const uint8_t *msg, size_t len, struct dns_answer **out) {
  if (!out)
    return SP_E_INVAL;
  *out = NULL;
  struct dns_answer hdr = {0};
  size_t off;
  if (!msg || question_parse(msg, len, &hdr, &off) != 0)
    return SP_E_DNS_FORMAT;
  unsigned an = get16(msg + 6), ns = get16(msg + 8), ar = get16(msg + 10);
  struct walk w = {.msg = msg, .len = len};
  int rc = records_walk(&w, off, an, ns, ar);
  if (rc != 0)
    return rc;
  size_t head = sizeof hdr + w.nrrs * sizeof(struct dns_rr);
  /* Compressed names expand up to ~60 times (a 4-byte pointer to a 253-byte name):
   * a crafted 64 KB answer would take megabytes. No real answer comes near this. */
  if (head + w.used > DNS_ANSWER_MAX)
    return SP_E_OVERFLOW;
  struct dns_answer *ans = malloc(head + w.used);
  if (!ans)
    return SP_E_NOMEM;
  *ans = hdr;
  ans->size = head + w.used;
  struct walk fill = {.msg = msg,
                      .len = len,
                      .ans = ans,
                      .arena = (char *)ans + head,
                      .cap = w.used,
                      .max_rrs = w.nrrs};
  rc = records_walk(&fill, off, an, ns, ar);
  if (rc != 0 || fill.nrrs != w.nrrs || fill.used != w.used) { /* cannot happen */
    free(ans);
    return rc != 0 ? rc : SP_E_DNS_FORMAT;
  }
  ans->nrrs = fill.nrrs;
  ans->soa = w.soa;
  ans->neg_ttl = w.neg_ttl;
  *out = ans;
  return 0;
}

/* Checks the name for dns_msg_build_query and returns its length without a trailing
 * dot, or SP_E_INVAL. */
static int query_name_check(const char *name) {
  size_t n = strlen(name);
  if (n > 0 && name[n - 1] == '.')
    n--;
  if (n == 0 || n > DNS_NAME_MAX - 2)
    return SP_E_INVAL;
  size_t lab = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c == '.') {
      if (lab == 0)
        return SP_E_INVAL;
      lab = 0;
      continue;
    }
    if (c == '\\' || c < 0x21 || c > 0x7e || ++lab > 63)
      return SP_E_INVAL;
  }
  return lab == 0 ? SP_E_INVAL : (int)n;
}

int dns_msg_build_query(uint16_t id, const char *name, uint16_t type, uint8_t *out,
                        size_t cap) {
  if (!name || !out)
    return SP_E_INVAL;
  int n = query_name_check(name);
  if (n < 0)
    return n;
  size_t need = HDR_LEN + (size_t)n + 2 + 4 + 11;
  if (cap < need)
    return SP_E_OVERFLOW;
  memset(out, 0, HDR_LEN);
  put16(out, id);
  put16(out + 2, FLAG_RD | FLAG_AD);
  put16(out + 4, 1);  /* QDCOUNT */
  put16(out + 10, 1); /* ARCOUNT: the OPT record */
  size_t o = HDR_LEN;
  for (int i = 0; i < n;) {
    int j = i;
    while (j < n && name[j] != '.')
      j++;
    out[o++] = (uint8_t)(j - i);
    memcpy(out + o, name + i, (size_t)(j - i));
    o += (size_t)(j - i);
    i = j + 1;
  }
  out[o++] = 0;
  put16(out + o, type);
  put16(out + o + 2, CLASS_IN);
  o += 4;
  /* OPT (RFC 6891): root owner, payload size in CLASS, DO bit in the TTL's flags. */
  out[o++] = 0;
  put16(out + o, TYPE_OPT);
  put16(out + o + 2, EDNS_PAYLOAD);
  put16(out + o + 4, 0);
  put16(out + o + 6, EDNS_DO);
  put16(out + o + 8, 0);
  o += 10;
  return (int)o;
}

/* Compares two presentation names ignoring ASCII case and one trailing dot. */
static bool name_eq(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 0 && a[la - 1] == '.')
    la--;
  if (lb > 0 && b[lb - 1] == '.')
    lb--;
  if (la != lb)
    return false;
  for (size_t i = 0; i < la; i++) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z')
      x = (char)(x + ('a' - 'A'));
    if (y >= 'A' && y <= 'Z')
      y = (char)(y + ('a' - 'A'));
    if (x != y)
      return false;
  }
  return true;
}

const char *dns_answer_target(const struct dns_answer *ans, const char *qname) {
  const char *cur = qname;
  if (!ans || !qname)
    return qname;
  for (int step = 0; step < MAX_CNAME_STEPS; step++) {
    const char *next = NULL;
    for (size_t i = 0; i < ans->nrrs; i++) {
      const struct dns_rr *rr = &ans->rrs[i];
      if (rr->type == DNS_T_CNAME && name_eq(rr->owner, cur)) {
        next = rr->u.cname;
        break;
      }
    }
    if (!next)
      break;
    cur = next;
  }
  return cur;
}

static bool is_text_of(const struct dns_rr *rr, const char *owner) {
  return rr->type == DNS_T_TXT && strcmp(rr->owner, owner) == 0;
}

int dns_answer_texts(const struct dns_answer *ans, struct dns_texts *out) {
  const char *owner = dns_answer_target(ans, ans->qname);
  size_t n = 0;
  *out = (struct dns_texts){0};
  for (size_t i = 0; i < ans->nrrs; i++)
    n += is_text_of(&ans->rrs[i], owner);
  if (n == 0)
    return 0;
  out->texts = malloc(n * sizeof *out->texts);
  out->lens = malloc(n * sizeof *out->lens);
  if (!out->texts || !out->lens) {
    dns_texts_free(out);
    return SP_E_NOMEM;
  }
  for (size_t i = 0; i < ans->nrrs; i++) {
    if (!is_text_of(&ans->rrs[i], owner))
      continue;
    out->texts[out->n] = ans->rrs[i].u.txt.text;
    out->lens[out->n++] = ans->rrs[i].u.txt.len;
  }
  return 0;
}

void dns_texts_free(struct dns_texts *t) {
  free(t->texts);
  free(t->lens);
  *t = (struct dns_texts){0};
}

bool dns_answer_first_addr(const struct dns_answer *ans, char *out, size_t cap) {
  const char *owner = dns_answer_target(ans, ans->qname);
  for (size_t i = 0; i < ans->nrrs; i++) {
    const struct dns_rr *rr = &ans->rrs[i];
    char ip[INET6_ADDRSTRLEN];
    if (strcmp(rr->owner, owner) != 0)
      continue;
    if (rr->type == DNS_T_A && inet_ntop(AF_INET, rr->u.a, ip, sizeof ip)) {
      snprintf(out, cap, "%s", ip);
      return true;
    }
    if (rr->type == DNS_T_AAAA && inet_ntop(AF_INET6, rr->u.aaaa, ip, sizeof ip)) {
      snprintf(out, cap, "[%s]", ip);
      return true;
    }
  }
  return false;
}
