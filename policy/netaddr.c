#include "policy/netaddr.h"

#include <string.h>

struct prefix {
  uint8_t bytes[16];
  unsigned bits;
};

/* IANA IPv4 Special-Purpose Address Registry (RFC 6890 and updates): the blocks an
 * HTTPS fetch chosen by outside DNS must not reach. 192.88.99.0/24 (the deprecated
 * 6to4 relay anycast, RFC 7526) is listed too: nothing legitimate is served there. */
static const struct prefix V4_NOT_GLOBAL[] = {
    {{0}, 8},             /* "this network" */
    {{10}, 8},            /* RFC 1918 */
    {{100, 64}, 10},      /* shared address space (CGNAT), RFC 6598 */
    {{127}, 8},           /* loopback */
    {{169, 254}, 16},     /* link-local, cloud metadata */
    {{172, 16}, 12},      /* RFC 1918 */
    {{192, 0, 0}, 24},    /* IETF protocol assignments */
    {{192, 0, 2}, 24},    /* TEST-NET-1 */
    {{192, 88, 99}, 24},  /* 6to4 relay anycast */
    {{192, 168}, 16},     /* RFC 1918 */
    {{198, 18}, 15},      /* benchmarking */
    {{198, 51, 100}, 24}, /* TEST-NET-2 */
    {{203, 0, 113}, 24},  /* TEST-NET-3 */
    {{224}, 4},           /* multicast */
    {{240}, 4},           /* reserved, and 255.255.255.255 broadcast */
};

/* Inside global unicast 2000::/3, the blocks that are not globally reachable. */
static const struct prefix V6_NOT_GLOBAL[] = {
    {{0x20, 0x01, 0x00, 0x00}, 23}, /* IETF protocol assignments, Teredo */
    {{0x20, 0x01, 0x0d, 0xb8}, 32}, /* documentation */
    {{0x3f, 0xff}, 20},             /* documentation, RFC 9637 */
};

static bool in_prefix(const uint8_t *addr, const struct prefix *p) {
  unsigned whole = p->bits / 8, rest = p->bits % 8;
  if (memcmp(addr, p->bytes, whole) != 0)
    return false;
  if (rest == 0)
    return true;
  uint8_t mask = (uint8_t)(0xff << (8 - rest));
  return (addr[whole] & mask) == (p->bytes[whole] & mask);
}

static bool in_any(const uint8_t *addr, const struct prefix *list, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (in_prefix(addr, &list[i]))
      return true;
  return false;
}

static bool v4_is_global(const uint8_t *a) {
  return !in_any(a, V4_NOT_GLOBAL, sizeof V4_NOT_GLOBAL / sizeof V4_NOT_GLOBAL[0]);
}

/* The IPv4 address an IPv6 address stands for, when it is one of the forms that
 * reach (or are translated to) that IPv4 host; NULL otherwise. */
static const uint8_t *v6_embedded_v4(const uint8_t *a) {
  static const uint8_t zero[10] = {0};
  static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
  if (memcmp(a, zero, 10) == 0 &&
      ((a[10] == 0xff && a[11] == 0xff) || (a[10] == 0 && a[11] == 0)))
    return a + 12; /* ::ffff:a.b.c.d mapped, ::a.b.c.d compatible (also :: and ::1) */
  if (memcmp(a, zero, 8) == 0 && a[8] == 0xff && a[9] == 0xff && a[10] == 0 &&
      a[11] == 0)
    return a + 12; /* ::ffff:0:a.b.c.d, SIIT (RFC 2765) */
  if (memcmp(a, nat64, 12) == 0)
    return a + 12; /* 64:ff9b::a.b.c.d, NAT64 well-known prefix (RFC 6052) */
  if (a[0] == 0x20 && a[1] == 0x02)
    return a + 2; /* 2002:aabb:ccdd::, 6to4 (RFC 3056) */
  return NULL;
}

static bool v6_is_global(const uint8_t *a) {
  const uint8_t *v4 = v6_embedded_v4(a);
  if (v4)
    return v4_is_global(v4);
  /* Only 2000::/3 is allocated as global unicast; the rest (ULA, link-local,
   * site-local, multicast, discard 100::/64, local NAT64 64:ff9b:1::/48, SRv6
   * 5f00::/16) is not reachable from the Internet. */
  if ((a[0] & 0xe0) != 0x20)
    return false;
  return !in_any(a, V6_NOT_GLOBAL, sizeof V6_NOT_GLOBAL / sizeof V6_NOT_GLOBAL[0]);
}

bool netaddr_is_global(const uint8_t *addr, size_t len) {
  if (!addr)
    return false;
  if (len == 4)
    return v4_is_global(addr);
  if (len == 16)
    return v6_is_global(addr);
  return false;
}

static bool v4_is_dialable(const uint8_t *a) {
  return a[0] != 0 && a[0] < 224; /* not 0/8, multicast 224/4 or 240/4 */
}

bool netaddr_is_dialable(const uint8_t *addr, size_t len) {
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static const uint8_t unspecified[16] = {0};
  if (!addr)
    return false;
  if (len == 4)
    return v4_is_dialable(addr);
  if (len != 16 || memcmp(addr, unspecified, 16) == 0 || addr[0] == 0xff)
    return false;
  return memcmp(addr, mapped, 12) != 0 || v4_is_dialable(addr + 12);
}
