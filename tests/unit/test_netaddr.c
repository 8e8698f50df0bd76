/* netaddr_is_global: every non-global IPv4 block at its edges, the IPv6 blocks, and
 * the IPv6 forms that carry an IPv4 address (mapped, compatible, SIIT, NAT64, 6to4). */
#include <arpa/inet.h>
#include <stdbool.h>

#include "policy/netaddr.h"
#include "tests/unit/test.h"

struct addr_case {
  const char *text;
  bool expect; /* what the function under test says */
};

static const struct addr_case CASES[] = {
    /* IPv4: each block, its first and last address, and a neighbour outside */
    {"0.0.0.0", false},
    {"0.255.255.255", false},
    {"1.0.0.0", true},
    {"9.255.255.255", true},
    {"10.0.0.0", false},
    {"10.0.0.5", false},
    {"10.255.255.255", false},
    {"11.0.0.0", true},
    {"100.63.255.255", true},
    {"100.64.0.0", false},
    {"100.127.255.255", false},
    {"100.128.0.0", true},
    {"126.255.255.255", true},
    {"127.0.0.1", false},
    {"127.255.255.255", false},
    {"128.0.0.0", true},
    {"169.253.255.255", true},
    {"169.254.169.254", false},
    {"169.255.0.0", true},
    {"172.15.255.255", true},
    {"172.16.0.0", false},
    {"172.31.255.255", false},
    {"172.32.0.0", true},
    {"192.0.0.0", false},
    {"192.0.0.255", false},
    {"192.0.1.0", true},
    {"192.0.2.1", false},
    {"192.0.3.0", true},
    {"192.88.99.1", false},
    {"192.167.255.255", true},
    {"192.168.0.0", false},
    {"192.168.255.255", false},
    {"192.169.0.0", true},
    {"198.17.255.255", true},
    {"198.18.0.0", false},
    {"198.19.255.255", false},
    {"198.20.0.0", true},
    {"198.51.100.7", false},
    {"203.0.113.9", false},
    {"203.0.114.0", true},
    {"223.255.255.255", true},
    {"224.0.0.1", false},
    {"239.255.255.255", false},
    {"240.0.0.0", false},
    {"255.255.255.255", false},
    {"8.8.8.8", true},
    {"93.184.216.34", true},
    /* IPv6 */
    {"::", false},
    {"::1", false},
    {"fe80::1", false},
    {"febf:ffff::1", false},
    {"fec0::1", false},
    {"fc00::1", false},
    {"fd12:3456::1", false},
    {"ff02::1", false},
    {"ff0e::1", false},
    {"100::1", false},
    {"64:ff9b:1::1", false},
    {"5f00::1", false},
    {"4000::1", false},
    {"1fff:ffff::1", false},
    {"2001::1", false},
    {"2001:1ff::1", false},
    {"2001:200::1", true},
    {"2001:db8::1", false},
    {"2001:db9::1", true},
    {"3fff::1", false},
    {"3fff:0fff::1", false},
    {"3fff:1000::1", true},
    {"2606:4700::1111", true},
    {"2a00:1450:4001::1", true},
    /* IPv4-mapped, -compatible, SIIT: judged by the IPv4 address */
    {"::ffff:127.0.0.1", false},
    {"::ffff:10.0.0.5", false},
    {"::ffff:169.254.169.254", false},
    {"::ffff:192.168.1.1", false},
    {"::ffff:0.0.0.0", false},
    {"::ffff:8.8.8.8", true},
    {"::127.0.0.1", false},
    {"::10.1.2.3", false},
    {"::8.8.8.8", true},
    {"::ffff:0:127.0.0.1", false},
    {"::ffff:0:8.8.8.8", true},
    /* NAT64 well-known prefix and 6to4 */
    {"64:ff9b::127.0.0.1", false},
    {"64:ff9b::10.0.0.1", false},
    {"64:ff9b::8.8.8.8", true},
    {"2002:7f00:1::", false},
    {"2002:a9fe:a9fe::1", false},
    {"2002:c0a8:101::", false},
    {"2002:808:808::1", true},
};

static void parse(const char *text, uint8_t out[16], size_t *len) {
  if (inet_pton(AF_INET, text, out) == 1) {
    *len = 4;
    return;
  }
  if (inet_pton(AF_INET6, text, out) == 1) {
    *len = 16;
    return;
  }
  TEST_FAIL_("not an address: %s", text);
}

/* Each case through classify, which must say what it expects ("what" names a yes). */
static void check_cases(const struct addr_case *cases, size_t n,
                        bool (*classify)(const uint8_t *, size_t), const char *what) {
  for (size_t i = 0; i < n; i++) {
    uint8_t a[16];
    size_t len;
    parse(cases[i].text, a, &len);
    if (classify(a, len) != cases[i].expect)
      TEST_FAIL_("%s: expected %s%s", cases[i].text, cases[i].expect ? "" : "not ",
                 what);
  }
}

static void test_cases(void) {
  check_cases(CASES, sizeof CASES / sizeof CASES[0], netaddr_is_global, "global");
}

static void test_bad_length(void) {
  static const uint8_t a[16] = {8, 8, 8, 8};
  ASSERT_EQ(netaddr_is_global(a, 0), false);
  ASSERT_EQ(netaddr_is_global(a, 5), false);
  ASSERT_EQ(netaddr_is_global(NULL, 4), false);
  ASSERT_EQ(netaddr_is_global(a, 4), true);
}

/* Which MX addresses are dialled at all: never this host's wildcard, multicast or the
 * reserved IPv4 block; loopback and private addresses are. */
static void test_dialable(void) {
  static const struct addr_case dial[] = {
      {"0.0.0.0", false},
      {"0.1.2.3", false},
      {"1.0.0.0", true},
      {"127.0.0.1", true},
      {"10.0.0.1", true},
      {"223.255.255.255", true},
      {"224.0.0.1", false},
      {"239.1.1.1", false},
      {"240.0.0.1", false},
      {"255.255.255.255", false},
      {"::", false},
      {"::1", true},
      {"ff02::1", false},
      {"2001:db8::1", true},
      {"fe80::1", true},
      {"::ffff:0.0.0.0", false},
      {"::ffff:224.0.0.1", false},
      {"::ffff:192.0.2.1", true},
  };
  check_cases(dial, sizeof dial / sizeof dial[0], netaddr_is_dialable, "dialable");
  ASSERT_EQ(netaddr_is_dialable(NULL, 4), false);
  static const uint8_t one[16] = {1, 2, 3, 4};
  ASSERT_EQ(netaddr_is_dialable(one, 5), false);
  ASSERT_EQ(netaddr_is_dialable(one, 4), true);
}

int main(void) {
  RUN_TEST(test_cases);
  RUN_TEST(test_dialable);
  RUN_TEST(test_bad_length);
  return 0;
}
