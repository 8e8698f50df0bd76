/* DNS wire format (RFC 1035 §4) for the queries we send and the answers we get.
 *
 * Every read is checked against the message length. Names are decoded into
 * lower-case presentation form; a label byte that is '.', '\\' or not printable ASCII
 * (0x21..0x7e) is escaped as \DDD (RFC 4343 §2.1) rather than rejected, so one odd
 * record does not make a whole answer unusable. A name whose escaped form does not
 * fit DNS_NAME_MAX characters is treated as malformed. dns_msg_build_query() accepts
 * only plain names (no escapes), so an escaped name can never be queried.
 *
 * rcode_valid is set as soon as the header was read as a response, even when the
 * rest of the message turns out malformed. */
#include "dns_msg.h"

#include <arpa/inet.h>

#include <stdio.h>
#include <string.h>

#include "error.h"

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

/* TXT: one or more <length, bytes> character-strings filling the rdata exactly. */
static int txt_parse(const uint8_t *msg, size_t pos, size_t end, struct dns_rr *rr) {
  size_t total = 0;
  int over = 0;
  while (pos < end) {
    size_t n = msg[pos++];
    if (n > end - pos)
      return SP_E_DNS_FORMAT;
    if (total + n > DNS_RDATA_MAX)
      over = SP_E_OVERFLOW;
    else
      memcpy(rr->u.txt.text + total, msg + pos, n);
    total += n;
    pos += n;
  }
  if (over)
    return over;
  rr->u.txt.len = (uint16_t)total;
  rr->u.txt.text[total] = '\0';
  return 0;
}

static int rdata_parse(const uint8_t *msg, size_t len, size_t pos, size_t end,
                       struct dns_rr *rr) {
  size_t rdlen = end - pos, p = pos;
  switch (rr->type) {
  case DNS_T_A:
    if (rdlen != 4)
      return SP_E_DNS_FORMAT;
    memcpy(rr->u.a, msg + pos, 4);
    return 0;
  case DNS_T_AAAA:
    if (rdlen != 16)
      return SP_E_DNS_FORMAT;
    memcpy(rr->u.aaaa, msg + pos, 16);
    return 0;
  case DNS_T_CNAME:
    if (name_read(msg, len, end, &p, rr->u.cname) != 0 || p != end)
      return SP_E_DNS_FORMAT;
    return 0;
  case DNS_T_MX:
    if (rdlen < 3)
      return SP_E_DNS_FORMAT;
    rr->u.mx.pref = get16(msg + pos);
    p += 2;
    if (name_read(msg, len, end, &p, rr->u.mx.host) != 0 || p != end)
      return SP_E_DNS_FORMAT;
    return 0;
  case DNS_T_TXT:
    return txt_parse(msg, pos, end, rr);
  case DNS_T_TLSA:
    if (rdlen < 3)
      return SP_E_DNS_FORMAT;
    if (rdlen - 3 > DNS_RDATA_MAX)
      return SP_E_OVERFLOW;
    rr->u.tlsa.usage = msg[pos];
    rr->u.tlsa.selector = msg[pos + 1];
    rr->u.tlsa.mtype = msg[pos + 2];
    rr->u.tlsa.dlen = (uint16_t)(rdlen - 3);
    memcpy(rr->u.tlsa.data, msg + pos + 3, rdlen - 3);
    return 0;
  }
  return SP_E_DNS_FORMAT;
}

/* One resource record at *off. When out is non-NULL (answer section) records of kept
 * types in class IN are stored. Returns 0, SP_E_DNS_FORMAT, or SP_E_OVERFLOW after
 * having walked the record (so the caller can still check the rest of the message). */
static int rr_parse(const uint8_t *msg, size_t len, size_t *off,
                    struct dns_answer *out) {
  char owner[DNS_NAME_MAX + 1];
  size_t pos = *off;
  if (name_read(msg, len, len, &pos, out ? owner : NULL) != 0 || len - pos < 10)
    return SP_E_DNS_FORMAT;
  uint16_t type = get16(msg + pos), klass = get16(msg + pos + 2);
  uint32_t ttl = get32(msg + pos + 4);
  size_t rdlen = get16(msg + pos + 8);
  pos += 10;
  if (rdlen > len - pos)
    return SP_E_DNS_FORMAT;
  *off = pos + rdlen;
  if (!out || klass != CLASS_IN || !type_kept(type))
    return 0;
  if (out->nrrs >= DNS_MAX_RRS) {
    struct dns_rr *scratch = &out->rrs[DNS_MAX_RRS - 1]; /* overwritten, then dropped */
    scratch->type = type;
    int rc = rdata_parse(msg, len, pos, pos + rdlen, scratch);
    return rc == SP_E_DNS_FORMAT ? rc : SP_E_OVERFLOW;
  }
  struct dns_rr *rr = &out->rrs[out->nrrs];
  rr->type = type;
  rr->klass = klass;
  rr->ttl = ttl;
  int rc = rdata_parse(msg, len, pos, pos + rdlen, rr);
  if (rc != 0)
    return rc;
  memcpy(rr->owner, owner, strlen(owner) + 1);
  out->nrrs++;
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
  out->rcode_valid = true;
  return 0;
}

int dns_msg_parse(const uint8_t *msg, size_t len, struct dns_answer *out) {
  if (!out)
    return SP_E_INVAL;
  out->id = 0;
  out->ad = out->tc = out->rcode_valid = false;
  out->rcode = 0;
  out->qname[0] = '\0';
  out->qtype = 0;
  out->nrrs = 0;
  if (!msg || header_parse(msg, len, out) != 0)
    return SP_E_DNS_FORMAT;
  unsigned qd = get16(msg + 4), an = get16(msg + 6);
  unsigned rest = (unsigned)get16(msg + 8) + get16(msg + 10);
  if (qd > 1)
    return SP_E_DNS_FORMAT;
  size_t off = HDR_LEN;
  if (qd == 1) {
    if (name_read(msg, len, len, &off, out->qname) != 0 || len - off < 4)
      return SP_E_DNS_FORMAT;
    out->qtype = get16(msg + off);
    off += 4;
  }
  int over = 0;
  for (unsigned i = 0; i < an + rest; i++) {
    int rc = rr_parse(msg, len, &off, i < an ? out : NULL);
    if (rc == SP_E_OVERFLOW)
      over = rc;
    else if (rc != 0)
      return rc;
  }
  if (over)
    out->nrrs = 0;
  return over;
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
    for (size_t i = 0; i < ans->nrrs && i < DNS_MAX_RRS; i++) {
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

size_t dns_answer_texts(const struct dns_answer *ans, const char **texts, size_t *lens,
                        size_t cap) {
  const char *owner = dns_answer_target(ans, ans->qname);
  size_t n = 0;
  for (size_t i = 0; i < ans->nrrs && n < cap; i++) {
    if (ans->rrs[i].type != DNS_T_TXT || strcmp(ans->rrs[i].owner, owner) != 0)
      continue;
    texts[n] = ans->rrs[i].u.txt.text;
    lens[n++] = ans->rrs[i].u.txt.len;
  }
  return n;
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
