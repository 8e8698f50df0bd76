/* libcurl's multi_socket interface on the libuv loop: GETs of MTA-STS policies, POSTs
 * of TLS reports.
 *
 * Ownership: struct http owns the CURLM, the timer and one struct http_sock per
 * socket curl asked us to watch (found again through curl_multi_assign; freed in
 * on_sock_closed). A struct http_fetch owns its CURL easy handle (in the multi from
 * http_get until it completes) and its body buffer; the http frees the fetch after
 * its callback ran, in http_cancel() or in http_close(). struct http itself is freed
 * in the last close callback (pending_closes).
 *
 * User callbacks run only from on_timer/on_poll once curl_multi_socket_action has
 * returned: curl must not be re-entered from its own callbacks, and a user callback
 * may call http_get, http_cancel or http_close. */
#include "proxy/net/http.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "certs/trust.h"
#include "policy/netaddr.h"
#include "proxy/core/error.h"
#include "proxy/core/obj.h"

#define HTTP_MAGIC 0x68747470u  /* "http" */
#define FETCH_MAGIC 0x68747466u /* "httf" */
#define SOCK_MAGIC 0x68747473u  /* "https" */
#define HTTP_ERR_MAX (CURL_ERROR_SIZE + 64)
#define HTTP_TYPE_SHOWN 64 /* bytes of a bad Content-Type quoted in err */

struct http_sock {
  uint32_t magic;
  uv_poll_t poll; /* owned by this http_sock; freed in on_sock_closed */
  struct http *h;
  curl_socket_t fd;
  struct http_sock *prev, *next; /* h->socks: sockets curl still watches */
};

struct fetch_list {
  struct http_fetch *head, *tail;
};

struct http_fetch {
  uint32_t magic;
  struct http *h;
  CURL *easy; /* owned; NULL once the transfer completed */
  http_cb cb;
  void *arg;
  size_t max_bytes;
  bool require_text_plain;
  bool allow_private_addresses;   /* the request's */
  char refused[INET6_ADDRSTRLEN]; /* the last address refused as non-global, or "" */
  bool post;                      /* a POST: any 2xx succeeds, the body is discarded */
  struct curl_slist *headers;     /* owned; POST: Content-Type, no Expect */
  bool checked;               /* status and type were checked at the first body byte */
  bool delivering;            /* its callback is running; freed right after */
  struct curl_slist *resolve; /* owned; the CURLOPT_RESOLVE entry */
  char *body;                 /* owned; never more than max_bytes */
  size_t len, cap;
  int status; /* 0, or the SP_E_* set by the first failure */
  char err[HTTP_ERR_MAX];
  char curl_err[CURL_ERROR_SIZE];
  struct http_fetch *prev, *next; /* on h->running, then h->done */
};

struct http {
  uint32_t magic;
  uv_loop_t *loop;
  CURLM *multi;     /* owned; cleaned up in http_close */
  uv_timer_t timer; /* owned; curl's one timeout */
  char *ca_file;    /* owned; CURLOPT_CAINFO, NULL = none */
  char *ca_path;    /* owned; CURLOPT_CAPATH, NULL = none */
  struct http_sock *socks;
  struct fetch_list running; /* easy handle in the multi */
  struct fetch_list done;    /* finished, callback not yet run */
  bool closing;
  unsigned pending_closes;
  void (*on_closed)(void *arg);
  void *on_closed_arg;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init_once(void) {
  curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void list_push(struct fetch_list *l, struct http_fetch *f) {
  f->next = NULL;
  f->prev = l->tail;
  if (l->tail)
    l->tail->next = f;
  else
    l->head = f;
  l->tail = f;
}

static void list_remove(struct fetch_list *l, struct http_fetch *f) {
  if (f->prev)
    f->prev->next = f->next;
  else
    l->head = f->next;
  if (f->next)
    f->next->prev = f->prev;
  else
    l->tail = f->prev;
  f->prev = f->next = NULL;
}

static void maybe_free(struct http *h) {
  if (!h->closing || h->pending_closes > 0)
    return;
  void (*cb)(void *) = h->on_closed;
  void *arg = h->on_closed_arg;
  h->magic = 0;
  free(h->ca_file);
  free(h->ca_path);
  free(h);
  if (cb)
    cb(arg);
}

/* ---- sockets and the timer ------------------------------------------------- */

static void on_sock_closed(uv_handle_t *handle) {
  struct http_sock *s = handle->data;
  CHECK_OBJ_NOTNULL(s, SOCK_MAGIC);
  struct http *h = s->h;
  s->magic = 0;
  free(s);
  h->pending_closes--;
  maybe_free(h);
}

/* uv_close stops the watcher at once, so curl may close the fd, and a new socket may
 * get the same number and a new uv_poll, while this one only waits for its close
 * callback: never two active polls on one fd. */
static void sock_close(struct http_sock *s) {
  struct http *h = s->h;
  if (s->prev)
    s->prev->next = s->next;
  else
    h->socks = s->next;
  if (s->next)
    s->next->prev = s->prev;
  s->prev = s->next = NULL;
  h->pending_closes++;
  uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void process_done(struct http *h);

static void on_poll(uv_poll_t *handle, int status, int events) {
  struct http_sock *s = handle->data;
  CHECK_OBJ_NOTNULL(s, SOCK_MAGIC);
  struct http *h = s->h;
  int flags = 0, running = 0;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE)
    flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE)
    flags |= CURL_CSELECT_OUT;
  curl_multi_socket_action(h->multi, s->fd, flags, &running);
  process_done(h); /* s may be closing now; only h is used */
}

static void on_timer(uv_timer_t *handle) {
  struct http *h = handle->data;
  CHECK_OBJ_NOTNULL(h, HTTP_MAGIC);
  int running = 0;
  curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  process_done(h);
}

static struct http_sock *sock_new(struct http *h, curl_socket_t fd) {
  struct http_sock *s = calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
    free(s);
    return NULL;
  }
  s->magic = SOCK_MAGIC;
  s->h = h;
  s->fd = fd;
  s->poll.data = s;
  s->next = h->socks;
  if (h->socks)
    h->socks->prev = s;
  h->socks = s;
  return s;
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                          void *socketp) {
  struct http *h = userp;
  struct http_sock *s = socketp;
  (void)easy;
  if (!OBJ_VALID(h, HTTP_MAGIC) || (s && !OBJ_VALID(s, SOCK_MAGIC)))
    return -1;
  if (what == CURL_POLL_REMOVE) {
    if (s) /* curl forgets its socketp after REMOVE */
      sock_close(s);
    return 0;
  }
  if (h->closing)
    return 0;
  if (!s) {
    s = sock_new(h, fd);
    if (!s)
      return -1;
    curl_multi_assign(h->multi, fd, s);
  }
  int events = 0;
  if (what & CURL_POLL_IN)
    events |= UV_READABLE;
  if (what & CURL_POLL_OUT)
    events |= UV_WRITABLE;
  if (events == 0)
    return uv_poll_stop(&s->poll) == 0 ? 0 : -1;
  return uv_poll_start(&s->poll, events, on_poll) == 0 ? 0 : -1;
}

/* Only arms the uv timer: curl forbids calling socket_action from here, and this is
 * how a transfer added in http_get starts later, from the loop. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
  struct http *h = userp;
  (void)multi;
  if (!OBJ_VALID(h, HTTP_MAGIC))
    return -1;
  if (h->closing)
    return 0;
  if (timeout_ms < 0)
    return uv_timer_stop(&h->timer) == 0 ? 0 : -1;
  return uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0) == 0 ? 0 : -1;
}

/* ---- one fetch --------------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static int
fetch_fail(struct http_fetch *f, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->err, sizeof(f->err), fmt, ap);
  va_end(ap);
  f->status = status;
  return status;
}

/* "text/plain" with optional parameters (RFC 8461 section 3.3). */
static bool is_text_plain(const char *ct) {
  while (*ct == ' ' || *ct == '\t')
    ct++;
  if (strncasecmp(ct, "text/plain", 10) != 0)
    return false;
  ct += 10;
  while (*ct == ' ' || *ct == '\t')
    ct++;
  return *ct == '\0' || *ct == ';';
}

static int check_response(struct http_fetch *f) {
  long code = 0;
  curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &code);
  if (code >= 300 && code < 400) /* RFC 8461 section 3.3: no redirects */
    return fetch_fail(f, SP_E_PROTOCOL, "redirect refused");
  if (f->post) /* RFC 8460 section 5.4: any 2xx is a successful submission */
    return code >= 200 && code < 300 ? 0
                                     : fetch_fail(f, SP_E_PROTOCOL, "HTTP %ld", code);
  if (code != 200)
    return fetch_fail(f, SP_E_PROTOCOL, "HTTP %ld", code);
  if (!f->require_text_plain)
    return 0;
  char *ct = NULL;
  curl_easy_getinfo(f->easy, CURLINFO_CONTENT_TYPE, &ct);
  if (!ct)
    return fetch_fail(f, SP_E_PROTOCOL, "Content-Type missing");
  if (is_text_plain(ct))
    return 0;
  char shown[HTTP_TYPE_SHOWN + 1]; /* the peer's bytes go to logs: printable only */
  size_t i;
  for (i = 0; i < HTTP_TYPE_SHOWN && ct[i]; i++)
    shown[i] = (ct[i] >= 0x20 && ct[i] < 0x7f) ? ct[i] : '?';
  shown[i] = '\0';
  return fetch_fail(f, SP_E_PROTOCOL, "Content-Type %s", shown);
}

static size_t on_curl_write(char *data, size_t size, size_t n, void *userp) {
  struct http_fetch *f = userp;
  size_t add = size * n;
  if (!OBJ_VALID(f, FETCH_MAGIC))
    return 0;
  if (!f->checked) { /* refuse a 404 or a redirect before storing its body */
    f->checked = true;
    if (check_response(f) != 0)
      return 0;
  }
  if (f->post)
    return add;
  if (add > f->max_bytes - f->len) {
    fetch_fail(f, SP_E_PROTOCOL, "body exceeds %zu bytes", f->max_bytes);
    return 0;
  }
  if (f->len + add > f->cap) {
    size_t cap = f->cap ? f->cap * 2 : 4096;
    if (cap < f->len + add)
      cap = f->len + add;
    if (cap > f->max_bytes)
      cap = f->max_bytes;
    char *p = realloc(f->body, cap);
    if (!p) {
      fetch_fail(f, SP_E_NOMEM, "out of memory");
      return 0;
    }
    f->body = p;
    f->cap = cap;
  }
  memcpy(f->body + f->len, data, add);
  f->len += add;
  return add;
}

static bool is_tls_error(CURLcode rc) {
  switch (rc) {
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_SHUTDOWN_FAILED:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_USE_SSL_FAILED:
#if LIBCURL_VERSION_NUM >= 0x074d00
  case CURLE_SSL_CLIENTCERT:
#endif
    return true;
  default:
    return false;
  }
}

/* Sets f->status and f->err from the transfer's result; the easy is still valid. */
static void fetch_classify(struct http_fetch *f, CURLcode rc) {
  if (f->status != 0) /* the write callback refused the response */
    return;
  if (rc == CURLE_COULDNT_CONNECT && f->refused[0]) {
    fetch_fail(f, SP_E_ADDRESS, "refused non-global address %s", f->refused);
    return;
  }
  if (rc == CURLE_OK || rc == CURLE_FILESIZE_EXCEEDED) {
    if (check_response(f) != 0) /* a bad status wins over the size */
      return;
    if (rc == CURLE_FILESIZE_EXCEEDED)
      fetch_fail(f, SP_E_PROTOCOL, "body exceeds %zu bytes", f->max_bytes);
    return;
  }
  const char *detail = f->curl_err[0] ? f->curl_err : curl_easy_strerror(rc);
  if (rc == CURLE_OPERATION_TIMEDOUT)
    fetch_fail(f, SP_E_TIMEOUT, "timeout");
  else if (rc == CURLE_PEER_FAILED_VERIFICATION) /* also CURLE_SSL_CACERT's value */
    fetch_fail(f, SP_E_CERTIFICATE, "TLS: %s", detail);
  else if (is_tls_error(rc))
    fetch_fail(f, SP_E_TLS, "TLS: %s", detail);
  else if (rc == CURLE_OUT_OF_MEMORY)
    fetch_fail(f, SP_E_NOMEM, "out of memory");
  else if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL)
    fetch_fail(f, SP_E_INVAL, "%s", detail);
  else
    fetch_fail(f, SP_E_IO, "%s", detail);
}

static void fetch_free(struct http_fetch *f) {
  if (f->easy) {
    curl_multi_remove_handle(f->h->multi, f->easy);
    curl_easy_cleanup(f->easy);
  }
  f->magic = 0;
  curl_slist_free_all(f->resolve);
  curl_slist_free_all(f->headers);
  free(f->body);
  free(f);
}

static void deliver(struct http *h) {
  while (!h->closing && h->done.head) {
    struct http_fetch *f = h->done.head;
    list_remove(&h->done, f); /* off every list: http_close will not free it */
    f->delivering = true;
    if (f->status == 0)
      f->cb(f->arg, 0, f->body ? f->body : "", f->len, NULL);
    else
      f->cb(f->arg, f->status, NULL, 0, f->err);
    fetch_free(f);
  }
}

static void process_done(struct http *h) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(h->multi, &left))) {
    if (m->msg != CURLMSG_DONE)
      continue;
    CURL *easy = m->easy_handle;
    CURLcode rc = m->data.result; /* m dies with curl_multi_remove_handle */
    struct http_fetch *f = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&f);
    CHECK_OBJ_NOTNULL(f, FETCH_MAGIC);
    if (f->easy != easy)
      abort();
    fetch_classify(f, rc);
    curl_multi_remove_handle(h->multi, easy);
    curl_easy_cleanup(easy);
    f->easy = NULL;
    list_remove(&h->running, f);
    list_push(&h->done, f);
  }
  deliver(h);
}

/* The address of a connection curl is about to open, as bytes and as text; false for
 * a family other than IPv4 and IPv6. */
static bool sockaddr_bytes(const struct curl_sockaddr *sa, const uint8_t **bytes,
                           size_t *len, char *text, size_t cap) {
  const void *a;
  if (sa->family == AF_INET && sa->addrlen >= sizeof(struct sockaddr_in)) {
    a = &((const struct sockaddr_in *)(const void *)&sa->addr)->sin_addr;
    *len = 4;
  } else if (sa->family == AF_INET6 && sa->addrlen >= sizeof(struct sockaddr_in6)) {
    a = &((const struct sockaddr_in6 *)(const void *)&sa->addr)->sin6_addr;
    *len = 16;
  } else {
    return false;
  }
  *bytes = a;
  return inet_ntop(sa->family, a, text, (socklen_t)cap) != NULL;
}

/* Every connection's address passes here after resolution (ours pinned with
 * CURLOPT_RESOLVE, or curl's for a literal), right before connect: the one place a
 * destination's DNS cannot steer around, whatever name or literal it published. */
static curl_socket_t on_curl_opensocket(void *clientp, curlsocktype purpose,
                                        struct curl_sockaddr *sa) {
  struct http_fetch *f = clientp;
  if (!OBJ_VALID(f, FETCH_MAGIC) || purpose != CURLSOCKTYPE_IPCXN)
    return CURL_SOCKET_BAD;
  const uint8_t *bytes = NULL;
  size_t len = 0;
  char text[INET6_ADDRSTRLEN] = "?";
  bool known = sockaddr_bytes(sa, &bytes, &len, text, sizeof text);
  if (!f->allow_private_addresses && (!known || !netaddr_is_global(bytes, len))) {
    snprintf(f->refused, sizeof f->refused, "%s", text);
    return CURL_SOCKET_BAD;
  }
  return socket(sa->family, sa->socktype | SOCK_CLOEXEC, sa->protocol);
}

#define SETOPT(opt, val)                                                               \
  do {                                                                                 \
    if ((rc = curl_easy_setopt(e, opt, val)) != CURLE_OK)                              \
      return rc;                                                                       \
  } while (0)

static CURLcode fetch_setopts(struct http_fetch *f, const struct http_request *req) {
  CURL *e = f->easy;
  CURLcode rc;
  SETOPT(CURLOPT_URL, req->url);
#if LIBCURL_VERSION_NUM >= 0x075500
  SETOPT(CURLOPT_PROTOCOLS_STR, "https");
#else
  SETOPT(CURLOPT_PROTOCOLS, (long)CURLPROTO_HTTPS);
#endif
  SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
  SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
  SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
  SETOPT(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
  /* Always both: NULL replaces libcurl's compiled-in bundle, so the anchors are
   * exactly those picked (see certs/trust.h). */
  SETOPT(CURLOPT_CAINFO, f->h->ca_file);
  SETOPT(CURLOPT_CAPATH, f->h->ca_path);
  SETOPT(CURLOPT_PROXY, ""); /* no proxy from the environment */
  SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)req->connect_timeout_ms);
  SETOPT(CURLOPT_TIMEOUT_MS, (long)req->total_timeout_ms);
  SETOPT(CURLOPT_NOSIGNAL, 1L);
  SETOPT(CURLOPT_USERAGENT, "starttls-proxy");
  if (req->max_bytes > 0 && !f->post) /* 0 would mean "no limit" to curl */
    SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)req->max_bytes);
  SETOPT(CURLOPT_WRITEFUNCTION, on_curl_write);
  SETOPT(CURLOPT_WRITEDATA, f);
  SETOPT(CURLOPT_ERRORBUFFER, f->curl_err);
  SETOPT(CURLOPT_PRIVATE, (char *)f);
  SETOPT(CURLOPT_OPENSOCKETFUNCTION, on_curl_opensocket);
  SETOPT(CURLOPT_OPENSOCKETDATA, f);
  if (req->resolve) {
    if (!(f->resolve = curl_slist_append(NULL, req->resolve)))
      return CURLE_OUT_OF_MEMORY;
    SETOPT(CURLOPT_RESOLVE, f->resolve);
  }
  return CURLE_OK;
}

/* The body is copied by curl; no "Expect: 100-continue" round trip. */
static CURLcode fetch_setopts_post(struct http_fetch *f, const void *body, size_t len,
                                   const char *content_type) {
  CURL *e = f->easy;
  CURLcode rc;
  char ct[256];
  snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
  struct curl_slist *h = curl_slist_append(NULL, ct);
  if (!h || !(f->headers = curl_slist_append(h, "Expect:"))) {
    curl_slist_free_all(h);
    return CURLE_OUT_OF_MEMORY;
  }
  SETOPT(CURLOPT_HTTPHEADER, f->headers);
  SETOPT(CURLOPT_POST, 1L);
  SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
  SETOPT(CURLOPT_COPYPOSTFIELDS, len ? body : "");
  return CURLE_OK;
}

#undef SETOPT

/* ---- public ---------------------------------------------------------------- */

/* libcurl does not read $SSL_CERT_FILE and, built with a CA bundle (Debian's is),
 * never falls back to OpenSSL's default paths: the defaults are spelled out here. */
static int http_set_trust(struct http *h, const struct tls_trust *trust) {
  struct tls_trust t =
      trust && (trust->file || trust->path) ? *trust : tls_trust_default();
  if (t.file && !(h->ca_file = strdup(t.file)))
    return SP_E_NOMEM;
  if (t.path && !(h->ca_path = strdup(t.path)))
    return SP_E_NOMEM;
  return 0;
}

static void http_free_unstarted(struct http *h) {
  free(h->ca_file);
  free(h->ca_path);
  free(h);
}

int http_new(uv_loop_t *loop, const struct tls_trust *trust, struct http **out) {
  *out = NULL;
  pthread_once(&curl_once, curl_init_once);
  if (curl_init_rc != CURLE_OK)
    return SP_E_IO;
  struct http *h = calloc(1, sizeof(*h));
  if (!h)
    return SP_E_NOMEM;
  h->loop = loop;
  if (http_set_trust(h, trust) < 0 || !(h->multi = curl_multi_init())) {
    http_free_unstarted(h);
    return SP_E_NOMEM;
  }
  if (curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) ||
      curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h) ||
      curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) ||
      curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h) ||
      uv_timer_init(loop, &h->timer) != 0) {
    curl_multi_cleanup(h->multi);
    http_free_unstarted(h);
    return SP_E_IO;
  }
  h->timer.data = h;
  h->magic = HTTP_MAGIC;
  *out = h;
  return 0;
}

static struct http_fetch *fetch_start(struct http *h, const struct http_request *req,
                                      const void *body, size_t len,
                                      const char *content_type, http_cb cb, void *arg) {
  if (!OBJ_VALID(h, HTTP_MAGIC) || h->closing || !req || !req->url || !cb)
    return NULL;
  struct http_fetch *f = calloc(1, sizeof(*f));
  if (!f)
    return NULL;
  f->magic = FETCH_MAGIC;
  f->h = h;
  f->cb = cb;
  f->arg = arg;
  f->max_bytes = req->max_bytes;
  f->post = content_type != NULL;
  f->require_text_plain = req->require_text_plain && !f->post;
  f->allow_private_addresses = req->allow_private_addresses;
  if (!(f->easy = curl_easy_init()) || fetch_setopts(f, req) != CURLE_OK ||
      (f->post && fetch_setopts_post(f, body, len, content_type) != CURLE_OK))
    goto fail;
  if (curl_multi_add_handle(h->multi, f->easy) != CURLM_OK)
    goto fail; /* the timer callback, not this call, will start the transfer */
  list_push(&h->running, f);
  return f;
fail:
  if (f->easy)
    curl_easy_cleanup(f->easy);
  f->easy = NULL;
  fetch_free(f);
  return NULL;
}

struct http_fetch *http_get(struct http *h, const struct http_request *req, http_cb cb,
                            void *arg) {
  return fetch_start(h, req, NULL, 0, NULL, cb, arg);
}

struct http_fetch *http_post(struct http *h, const struct http_request *req,
                             const void *body, size_t len, const char *content_type,
                             http_cb cb, void *arg) {
  if (!content_type || (len > 0 && !body))
    return NULL;
  return fetch_start(h, req, body, len, content_type, cb, arg);
}

void http_cancel(struct http_fetch *f) {
  if (!OBJ_VALID(f, FETCH_MAGIC) || f->delivering)
    return;
  struct http *h = f->h;
  list_remove(f->easy ? &h->running : &h->done, f);
  fetch_free(f);
}

static void on_timer_closed(uv_handle_t *handle) {
  struct http *h = handle->data;
  CHECK_OBJ_NOTNULL(h, HTTP_MAGIC);
  h->pending_closes--;
  maybe_free(h);
}

void http_close(struct http *h, void (*on_closed)(void *arg), void *arg) {
  if (!OBJ_VALID(h, HTTP_MAGIC) || h->closing)
    return;
  h->closing = true;
  h->on_closed = on_closed;
  h->on_closed_arg = arg;
  struct http_fetch *f;
  while ((f = h->running.head)) {
    list_remove(&h->running, f);
    fetch_free(f); /* removes the easy: curl may close sockets through on_curl_socket */
  }
  while ((f = h->done.head)) {
    list_remove(&h->done, f);
    fetch_free(f);
  }
  curl_multi_cleanup(h->multi); /* closes cached connections, may call on_curl_socket */
  h->multi = NULL;
  while (h->socks)
    sock_close(h->socks);
  h->pending_closes++;
  uv_close((uv_handle_t *)&h->timer, on_timer_closed);
}
