/* TLS reports over HTTPS (RFC 8460 §5.4): the gzipped report POSTed as
 * application/tlsrpt+gzip. The endpoint's host is resolved through the proxy's own
 * resolver (as every other name) and handed to libcurl with CURLOPT_RESOLVE.
 *
 * Ownership: struct tlsrpt__post owns a copy of the body and its DNS query or HTTP
 * request in flight; it is freed right before its callback runs, or by cancel. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "policy/tlsrpt.h"
#include "proxy/core/error.h"
#include "proxy/core/obj.h"
#include "proxy/net/dns.h"
#include "proxy/net/http.h"
#include "proxy/tlsrpt/tlsrpt_internal.h"

#define POST_MAGIC 0x74706f73u /* "tpos" */
#define POST_TOTAL_MS 60000    /* the whole request */
#define TLSRPT_CONTENT_TYPE "application/tlsrpt+gzip"
#define POST_WHY_MAX 200 /* a failure reason with the switch named */

struct tlsrpt__post {
  uint32_t magic;
  struct tlsrpt *t;
  tlsrpt__done_cb cb;
  void *arg;
  char url[TLSRPT_URI_MAX + 1];
  char host[256]; /* as in the URL; IPv6 literals with brackets */
  long port;
  uint16_t qtype; /* A, then AAAA */
  struct dns_query *dq;
  struct http_fetch *hf;
  unsigned char *body; /* owned copy */
  size_t len;
};

int tlsrpt__gzip(const void *in, size_t len, unsigned char **out, size_t *outlen) {
  z_stream z;
  memset(&z, 0, sizeof z);
  *out = NULL;
  /* windowBits 15 + 16: a gzip member (RFC 1952) rather than a zlib stream. */
  if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK)
    return SP_E_NOMEM;
  uLong cap = deflateBound(&z, (uLong)len) + 32;
  unsigned char *buf = malloc(cap);
  if (!buf) {
    deflateEnd(&z);
    return SP_E_NOMEM;
  }
  z.next_in = (Bytef *)(uintptr_t)in;
  z.avail_in = (uInt)len;
  z.next_out = buf;
  z.avail_out = (uInt)cap;
  int rc = deflate(&z, Z_FINISH);
  size_t n = (size_t)z.total_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) {
    free(buf);
    return SP_E_IO;
  }
  *out = buf;
  *outlen = n;
  return 0;
}

static void post_free(struct tlsrpt__post *p) {
  p->magic = 0;
  free(p->body);
  free(p);
}

/* Ends p: its callback runs after p is gone, so it may start another delivery. */
static void post_done(struct tlsrpt__post *p, bool ok, const char *why) {
  tlsrpt__done_cb cb = p->cb;
  void *arg = p->arg;
  post_free(p);
  cb(arg, ok, why);
}

static void on_posted(void *arg, int status, const char *body, size_t len,
                      const char *err) {
  struct tlsrpt__post *p = arg;
  (void)body, (void)len;
  CHECK_OBJ_NOTNULL(p, POST_MAGIC);
  p->hf = NULL;
  char why[POST_WHY_MAX];
  if (status == SP_E_ADDRESS) /* tell the admin which switch decides */
    snprintf(why, sizeof why, "%s (tlsrpt.allow_private_addresses: no)", err);
  post_done(p, status == 0, status == SP_E_ADDRESS ? why : err);
}

/* ip: NULL to let curl connect to a literal address in the URL. */
static bool post_http(struct tlsrpt__post *p, const char *ip) {
  char resolve[400];
  if (ip)
    snprintf(resolve, sizeof resolve, "%s:%ld:%s", p->host, p->port, ip);
  unsigned connect_ms = (unsigned)p->t->cfg->timeout_connect;
  struct http_request req = {
      .url = p->url,
      .connect_timeout_ms = connect_ms < POST_TOTAL_MS ? connect_ms : POST_TOTAL_MS,
      .total_timeout_ms = POST_TOTAL_MS,
      .resolve = ip ? resolve : NULL,
      .allow_private_addresses = p->t->cfg->tlsrpt_allow_private != 0,
  };
  p->hf =
      http_post(p->t->http, &req, p->body, p->len, TLSRPT_CONTENT_TYPE, on_posted, p);
  return p->hf != NULL;
}

static void post_resolve(struct tlsrpt__post *p, uint16_t qtype);

static void on_host(void *arg, int status, const struct dns_answer *ans) {
  struct tlsrpt__post *p = arg;
  CHECK_OBJ_NOTNULL(p, POST_MAGIC);
  p->dq = NULL;
  char ip[INET6_ADDRSTRLEN + 2];
  if (status == 0 && ans && dns_answer_first_addr(ans, ip, sizeof ip)) {
    if (!post_http(p, ip))
      post_done(p, false, "cannot start the HTTPS request");
    return;
  }
  if (p->qtype == DNS_T_A && status == 0 && ans && ans->rcode != DNS_R_NXDOMAIN)
    post_resolve(p, DNS_T_AAAA);
  else
    post_done(p, false, "cannot resolve the report host");
}

static void post_resolve(struct tlsrpt__post *p, uint16_t qtype) {
  p->qtype = qtype;
  p->dq = dns_query_raw(p->t->rt->dns, p->host, qtype, on_host, p);
  if (!p->dq)
    post_done(p, false, "cannot resolve the report host");
}

/* Host and port of an https: URL, through libcurl's own URL parser. */
static bool parse_url(struct tlsrpt__post *p, char *err, size_t errlen) {
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL, *port = NULL;
  bool ok = u && curl_url_set(u, CURLUPART_URL, p->url, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
            !strcmp(scheme, "https") && strlen(host) < sizeof p->host;
  if (ok) {
    snprintf(p->host, sizeof p->host, "%s", host);
    p->port = strtol(port, NULL, 10);
  } else {
    snprintf(err, errlen, "not a usable https: URL");
  }
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(u);
  return ok;
}

static bool is_ip_literal(const char *host) {
  unsigned char buf[16];
  return host[0] == '[' || inet_pton(AF_INET, host, buf) == 1;
}

struct tlsrpt__post *tlsrpt__post_start(struct tlsrpt *t, const char *url,
                                        const void *body, size_t len,
                                        tlsrpt__done_cb cb, void *arg, char *err,
                                        size_t errlen) {
  struct tlsrpt__post *p = calloc(1, sizeof *p);
  if (!p || !(p->body = malloc(len ? len : 1))) {
    free(p);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  p->magic = POST_MAGIC;
  p->t = t;
  p->cb = cb;
  p->arg = arg;
  p->len = len;
  memcpy(p->body, body, len);
  snprintf(p->url, sizeof p->url, "%s", url);
  if (!parse_url(p, err, errlen)) {
    post_free(p);
    return NULL;
  }
  bool started;
  if (is_ip_literal(p->host)) {
    started = post_http(p, NULL);
  } else {
    p->qtype = DNS_T_A;
    p->dq = dns_query_raw(t->rt->dns, p->host, DNS_T_A, on_host, p);
    started = p->dq != NULL;
  }
  if (started)
    return p;
  snprintf(err, errlen, "cannot start the request");
  post_free(p);
  return NULL;
}

void tlsrpt__post_cancel(struct tlsrpt__post *p) {
  if (!OBJ_VALID(p, POST_MAGIC))
    return;
  if (p->dq)
    dns_cancel(p->dq);
  if (p->hf)
    http_cancel(p->hf);
  post_free(p);
}
