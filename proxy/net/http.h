/* HTTPS requests with libcurl's multi_socket interface on the libuv loop (uv_poll per
 * socket, one uv_timer): GETs of MTA-STS policies, POSTs of TLS-RPT reports.
 *
 * Ownership: struct http owns the CURLM, every easy handle, poll handle and the
 * timer; http_close() frees it after the last close callback. A fetch belongs to the
 * http until its callback ran, http_cancel() or http_close(); after either call the
 * callback never runs. Callbacks never run from inside http_get() or http_post(). */
#ifndef SP_HTTP_H
#define SP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "certs/trust.h"

struct http;
struct http_fetch;

struct http_request {
  const char *url;  /* https:// only */
  size_t max_bytes; /* body larger than this: failure (no truncation) */
  unsigned connect_timeout_ms;
  unsigned total_timeout_ms;
  bool require_text_plain; /* Content-Type must be text/plain (parameters allowed) */
  /* "host:port:address" (address as "192.0.2.1" or "[2001:db8::1]"): connect there
   * instead of resolving host, so every name goes through our resolver; NULL = let
   * libcurl resolve. */
  const char *resolve;
  /* false: connect only to globally reachable addresses (policy/netaddr.h), checked
   * on each address actually connected to (after any resolve pin, so DNS rebinding
   * cannot slip past); any other fails with SP_E_ADDRESS and err
   * "refused non-global address 127.0.0.1". true: any address (tests, internal
   * deployments). */
  bool allow_private_addresses;
};

/* status 0: body[0..len) (valid only during the call) of a 200 response. Otherwise
 * a negative SP_E_* and err: "HTTP 404", "redirect refused", "Content-Type text/html",
 * "body exceeds 65536 bytes", "TLS: certificate verify failed", "timeout", ...
 * SP_E_CERTIFICATE when the server's certificate did not validate (untrusted chain,
 * wrong name, expired), SP_E_TLS for other TLS failures, SP_E_ADDRESS when every
 * address was refused (see allow_private_addresses). */
typedef void (*http_cb)(void *arg, int status, const char *body, size_t len,
                        const char *err);

/* trust: the anchors for PKIX validation, copied (NULL or neither set = the defaults of
 * certs/trust.h: $SSL_CERT_FILE/$SSL_CERT_DIR, else the system store, as OpenSSL
 * finds them; never libcurl's own compiled-in bundle). Redirects are never followed;
 * only HTTP 200 succeeds; TLS 1.2+, peer and host verified. */
int http_new(uv_loop_t *loop, const struct tls_trust *trust, struct http **out);
/* NULL (and no callback) when out of memory, on bad arguments or once closing. */
struct http_fetch *http_get(struct http *h, const struct http_request *req, http_cb cb,
                            void *arg);
/* POSTs body[0..len) (copied before returning) with the given Content-Type. Any 2xx
 * succeeds (status 0, the response body discarded: body "" and len 0); 3xx is
 * "redirect refused", others "HTTP 500"; TLS and resolve rules as for http_get;
 * max_bytes and require_text_plain do not apply. NULL as for http_get. */
struct http_fetch *http_post(struct http *h, const struct http_request *req,
                             const void *body, size_t len, const char *content_type,
                             http_cb cb, void *arg);
void http_cancel(struct http_fetch *f);
void http_close(struct http *h, void (*on_closed)(void *arg), void *arg);

#endif
