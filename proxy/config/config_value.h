/* Internals of the config module: the syntax of single values (numbers, addresses,
 * networks, DNS names, paths). Not for use outside proxy/config*.c.
 *
 * A parse or check function gets a NUL-terminated text without control characters and
 * returns NULL when it is good, or the reason it is not: a static string or buf (cap
 * bytes, provided by the caller). It writes dst only when the text is good. */
#ifndef SP_CONFIG_VALUE_H
#define SP_CONFIG_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proxy/config/config.h"

typedef const char *(*config__parse_fn)(const char *s, void *dst, char *buf,
                                        size_t cap);
typedef const char *(*config__check_fn)(const char *s, char *buf, size_t cap);

/* Strict decimal: digits only, no sign, no leading zero, no overflow. */
const char *config__parse_u64(const char *s, uint64_t *v);
/* A TCP port, 1 to 65535, as config__parse_u64 reads numbers. NULL or the reason. */
const char *config__parse_port(const char *s, uint16_t *port);

/* dst is a struct config_addr. listen: "a.b.c.d:port" or "[v6]:port". DNS server: the
 * same, or a bare address ("192.0.2.1", "2001:db8::1", "[2001:db8::1]") for port 53. */
const char *config__parse_listen(const char *s, void *dst, char *buf, size_t cap);
/* dst is a struct config_addr: an absolute path for a unix socket (AF_UNIX). */
const char *config__parse_unix_path(const char *s, void *dst, char *buf, size_t cap);
/* A file mode in octal, e.g. "0660" or "660": at most 0777, owner read+write. */
const char *config__parse_mode(const char *s, unsigned *mode);
const char *config__parse_dns_server(const char *s, void *dst, char *buf, size_t cap);

/* dst is a struct config_cidr: "addr/prefix" or a bare address (full prefix). Host bits
 * are zeroed; a v4-mapped IPv6 network (::ffff:a.b.c.d/96+n) becomes a.b.c.d/n. */
const char *config__parse_cidr(const char *s, void *dst, char *buf, size_t cap);

/* dst is an unsigned: "auto" (0: one per CPU but one, see workers_count) or 1..256. */
const char *config__parse_workers(const char *s, void *dst, char *buf, size_t cap);

const char *config__check_dns_name(const char *s, char *buf, size_t cap);
const char *config__check_groups(const char *s, char *buf, size_t cap);
const char *config__check_file(const char *s, char *buf,
                               size_t cap);                          /* readable file */
const char *config__check_dir(const char *s, char *buf, size_t cap); /* a directory */

/* The address of an AF_INET/AF_INET6 sockaddr as network bytes; a v4-mapped IPv6
 * address comes out as AF_INET. False for other families. */
bool config__sockaddr_bytes(const struct sockaddr *sa, int *family, uint8_t bytes[16]);
bool config__cidr_match(const struct config_cidr *c, int family, const uint8_t *bytes);

#endif
