#include "proxy/config/config_value.h"
#include "policy/chars.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

const char *config__parse_u64(const char *s, uint64_t *v) {
  uint64_t n = 0;
  if (!*s)
    return "must be a decimal integer";
  for (const char *p = s; *p; p++) {
    unsigned d = (unsigned)(*p - '0');
    if (*p < '0' || *p > '9')
      return "must be a decimal integer";
    if (n > (UINT64_MAX - d) / 10)
      return "number too large";
    n = n * 10 + d;
  }
  /* YAML 1.1 reads 010 as octal: refuse rather than guess. */
  if (s[0] == '0' && s[1])
    return "must be a decimal integer without leading zeros";
  *v = n;
  return NULL;
}

const char *config__parse_port(const char *s, uint16_t *port) {
  uint64_t v;
  if (config__parse_u64(s, &v) || v < 1 || v > 65535)
    return "port must be a number from 1 to 65535";
  *port = (uint16_t)v;
  return NULL;
}

/* Splits s into an address text (host, cap 64) and a port text (NULL if none). */
static const char *split_host_port(const char *s, bool need_port, char host[64],
                                   int *family, const char **port) {
  const char *end, *colon = strchr(s, ':');
  size_t hlen;
  *port = NULL;
  if (s[0] == '[') {
    if (!(end = strchr(s, ']')))
      return "missing ']' after an IPv6 address";
    if (end[1] == ':')
      *port = end + 2;
    else if (end[1])
      return "expected ':port' after ']'";
    s++;
    hlen = (size_t)(end - s);
    *family = AF_INET6;
  } else if (colon && strchr(colon + 1, ':')) {
    if (need_port)
      return "an IPv6 address with a port is written [address]:port";
    hlen = strlen(s);
    *family = AF_INET6;
  } else {
    hlen = colon ? (size_t)(colon - s) : strlen(s);
    *port = colon ? colon + 1 : NULL;
    *family = AF_INET;
  }
  if (need_port && !*port)
    return *family == AF_INET6 ? "port required: [address]:port"
                               : "port required: address:port";
  if (hlen >= 64)
    return "address too long";
  memcpy(host, s, hlen);
  host[hlen] = '\0';
  return NULL;
}

static const char *parse_addr(const char *s, bool need_port, uint16_t default_port,
                              struct config_addr *out) {
  struct config_addr a;
  const char *reason, *port_text;
  char host[64];
  int family;
  uint16_t port = default_port;

  memset(&a, 0, sizeof a);
  if (strlen(s) >= 64) /* "[v6 address]:port" fits easily */
    return "address too long";
  if ((reason = split_host_port(s, need_port, host, &family, &port_text)) != NULL)
    return reason;
  if (port_text && (reason = config__parse_port(port_text, &port)) != NULL)
    return reason;
  if (family == AF_INET) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&a.sa;
    if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
      return "not an IPv4 address (IPv6 is written [address]:port)";
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    a.salen = sizeof *sin;
  } else {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.sa;
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
      return "not an IPv6 address";
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    a.salen = sizeof *sin6;
  }
  snprintf(a.text, sizeof a.text, "%s", s);
  *out = a;
  return NULL;
}

const char *config__parse_listen(const char *s, void *dst, char *buf, size_t cap) {
  (void)buf;
  (void)cap;
  return parse_addr(s, true, 0, dst);
}

const char *config__parse_unix_path(const char *s, void *dst, char *buf, size_t cap) {
  (void)buf;
  (void)cap;
  struct config_addr a;
  struct sockaddr_un *sun = (struct sockaddr_un *)&a.sa;
  size_t len = strlen(s);
  memset(&a, 0, sizeof a);
  if (s[0] != '/')
    return "a unix socket path must be absolute";
  if (len >= sizeof sun->sun_path || len >= sizeof a.text)
    return "path too long for a unix socket";
  sun->sun_family = AF_UNIX;
  memcpy(sun->sun_path, s, len + 1);
  a.salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
  memcpy(a.text, s, len + 1);
  memcpy(dst, &a, sizeof a);
  return NULL;
}

const char *config__parse_mode(const char *s, unsigned *mode) {
  unsigned v = 0;
  size_t len = strlen(s);
  if (len < 3 || len > 4)
    return "must be an octal file mode such as \"0660\"";
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '7')
      return "must be an octal file mode such as \"0660\"";
    v = v * 8 + (unsigned)(*p - '0');
  }
  if (v > 0777)
    return "must be at most 0777";
  *mode = v;
  return NULL;
}

const char *config__parse_workers(const char *s, void *dst, char *buf, size_t cap) {
  (void)buf;
  (void)cap;
  uint64_t v = 0;
  if (strcmp(s, "auto") != 0 && (config__parse_u64(s, &v) || v < 1 || v > 256))
    return "must be auto or a number from 1 to 256";
  *(unsigned *)dst = (unsigned)v;
  return NULL;
}

const char *config__parse_dns_server(const char *s, void *dst, char *buf, size_t cap) {
  (void)buf;
  (void)cap;
  return parse_addr(s, false, 53, dst);
}

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

const char *config__parse_cidr(const char *s, void *dst, char *buf, size_t cap) {
  struct config_cidr c;
  const char *slash = strchr(s, '/');
  size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
  unsigned max;
  char host[64];

  memset(&c, 0, sizeof c);
  if (hlen >= sizeof host)
    return "not an IP address";
  memcpy(host, s, hlen);
  host[hlen] = '\0';
  if (inet_pton(AF_INET, host, c.addr) == 1)
    c.family = AF_INET, max = 32;
  else if (inet_pton(AF_INET6, host, c.addr) == 1)
    c.family = AF_INET6, max = 128;
  else
    return "not an IP address";
  c.prefix = max;
  if (slash) {
    uint64_t v;
    if (config__parse_u64(slash + 1, &v) || v > max) {
      snprintf(buf, cap, "prefix length must be a number from 0 to %u", max);
      return buf;
    }
    c.prefix = (unsigned)v;
  }
  for (unsigned bit = c.prefix; bit < max; bit++)
    c.addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
  /* A v4-mapped network only ever matches v4 clients, which are compared as v4. */
  if (c.family == AF_INET6 && c.prefix >= 96 &&
      memcmp(c.addr, v4mapped_prefix, 12) == 0) {
    memmove(c.addr, c.addr + 12, 4);
    memset(c.addr + 4, 0, 12);
    c.family = AF_INET;
    c.prefix -= 96;
  }
  *(struct config_cidr *)dst = c;
  return NULL;
}

const char *config__check_dns_name(const char *s, char *buf, size_t cap) {
  if (strlen(s) > 253)
    return "not a DNS name: longer than 253 characters";
  for (const char *p = s;;) {
    size_t len = strcspn(p, ".");
    if (len == 0)
      return "not a DNS name: empty label";
    if (len > 63)
      return "not a DNS name: label longer than 63 characters";
    if (p[0] == '-' || p[len - 1] == '-')
      return "not a DNS name: label begins or ends with '-'";
    for (size_t i = 0; i < len; i++) {
      if (!chars_ldh(p[i])) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x7f)
          snprintf(buf, cap, "not a DNS name: '%c' is not allowed", c);
        else
          snprintf(buf, cap, "not a DNS name: byte 0x%02x is not allowed", c);
        return buf;
      }
    }
    if (!p[len])
      return NULL;
    p += len + 1;
  }
}

const char *config__check_groups(const char *s, char *buf, size_t cap) {
  for (const char *p = s; *p; p++) {
    if (!chars_ldh(*p) && *p != '_' && *p != ':') {
      unsigned char c = (unsigned char)*p;
      if (c < 0x7f)
        snprintf(buf, cap, "'%c' is not allowed in a group list", c);
      else
        snprintf(buf, cap, "byte 0x%02x is not allowed in a group list", c);
      return buf;
    }
    if (*p == ':' && (p == s || p[1] == ':' || !p[1]))
      return "empty group name in the list";
  }
  return NULL;
}

const char *config__check_file(const char *s, char *buf, size_t cap) {
  struct stat st;
  int fd;
  if (stat(s, &st) != 0) {
    snprintf(buf, cap, "cannot access: %s", strerror(errno));
    return buf;
  }
  if (!S_ISREG(st.st_mode))
    return "not a regular file";
  /* Opened rather than access(): the effective ids are what will read it. */
  if ((fd = open(s, O_RDONLY | O_CLOEXEC)) < 0) {
    snprintf(buf, cap, "cannot read: %s", strerror(errno));
    return buf;
  }
  close(fd);
  return NULL;
}

const char *config__check_dir(const char *s, char *buf, size_t cap) {
  struct stat st;
  if (stat(s, &st) != 0) {
    snprintf(buf, cap, "cannot access: %s", strerror(errno));
    return buf;
  }
  return S_ISDIR(st.st_mode) ? NULL : "not a directory";
}

bool config__sockaddr_bytes(const struct sockaddr *sa, int *family, uint8_t bytes[16]) {
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
    memcpy(bytes, &sin->sin_addr, 4);
    *family = AF_INET;
    return true;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
    const uint8_t *a = sin6->sin6_addr.s6_addr;
    if (memcmp(a, v4mapped_prefix, 12) == 0) {
      memcpy(bytes, a + 12, 4);
      *family = AF_INET;
    } else {
      memcpy(bytes, a, 16);
      *family = AF_INET6;
    }
    return true;
  }
  return false;
}

bool config__cidr_match(const struct config_cidr *c, int family, const uint8_t *bytes) {
  unsigned full = c->prefix / 8, rest = c->prefix % 8;
  if (c->family != family)
    return false;
  if (memcmp(c->addr, bytes, full) != 0)
    return false;
  if (rest) {
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    if ((bytes[full] & mask) != c->addr[full])
      return false;
  }
  return true;
}
