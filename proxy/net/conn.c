#include "proxy/net/conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy/core/error.h"
#include "proxy/core/obj.h"

#define CONN_MAGIC 0x636f6e6eu  /* "conn" */
#define WRITE_MAGIC 0x63777271u /* "cwrq" */

/* One write in flight: the request and its bytes (a copy, or the TLS engine's output
 * buffer handed over), freed in on_write_done. */
struct conn_write_req {
  uv_write_t req; /* first: on_write_done gets its address back */
  uint32_t magic;
  struct conn *conn;
  size_t len; /* bytes handed to libuv: data[off..off+len) */
  size_t off; /* bytes the socket took at once (uv_try_write) */
  char *data; /* inline_data, or a handed-over buffer (owned) */
  char inline_data[];
};

/* Above this much ciphertext held back, it is written at once (see conn_write). */
#define CONN_COALESCE_MAX (64 * 1024)

/* Reads are handled synchronously, so one buffer per thread serves every connection
 * and idle connections hold no read buffer at all; TLS plaintext gets its own, so
 * the ciphertext need not be moved out of the way first. */
static _Thread_local char read_buffer[64 * 1024];
static _Thread_local char plain_buffer[64 * 1024];

static void conn_fail(struct conn *c, int err, const char *reason) {
  if (c->closing)
    return;
  if (reason)
    snprintf(c->error, sizeof c->error, "%s", reason);
  c->ev->on_error(c, err);
}

static void on_write_done(uv_write_t *req, int status);

/* write_pending: bytes handed to libuv and not yet written, plus ciphertext held back
 * (what the owners' backpressure looks at). */
static void conn_account(struct conn *c) {
  c->write_pending = c->in_flight + (c->tls ? tls_output_pending(c->tls) : 0);
}

static void conn_req_free(struct conn_write_req *w) {
  if (w->data != w->inline_data)
    free(w->data);
  w->magic = 0;
  free(w);
}

static int conn_submit(struct conn *c, struct conn_write_req *w) {
  uv_buf_t b = uv_buf_init(w->data + w->off, (unsigned)w->len);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write_done);
  if (rc < 0) {
    conn_req_free(w);
    snprintf(c->error, sizeof c->error, "%s", uv_strerror(rc));
    return SP_E_IO;
  }
  c->in_flight += w->len;
  conn_account(c);
  return 0;
}

/* Writes what the socket takes now, without a request: a uv_write that completes at
 * once still re-arms the socket in epoll (an epoll_ctl per write) and reports back
 * only on the next loop turn. Returns the bytes written: all, some or none (0 also
 * when libuv still has writes queued, so the order holds, and on an error, which the
 * uv_write of the rest then reports from the loop as before). */
static size_t conn_try_write(struct conn *c, const char *data, size_t len) {
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  return n > 0 ? (size_t)n : 0;
}

/* Sends whatever ciphertext OpenSSL produced, in the buffer it was written into. */
static int conn_flush_tls(struct conn *c) {
  char *out;
  ssize_t n = tls_take_output(c->tls, &out);
  if (n <= 0)
    return (int)n;
  size_t done = conn_try_write(c, out, (size_t)n);
  if (done == (size_t)n) {
    free(out);
    conn_account(c);
    return 0;
  }
  struct conn_write_req *w = malloc(sizeof *w);
  if (!w) {
    free(out);
    return SP_E_NOMEM;
  }
  w->magic = WRITE_MAGIC;
  w->conn = c;
  w->off = done;
  w->len = (size_t)n - done;
  w->data = out;
  return conn_submit(c, w);
}

static void on_write_done(uv_write_t *req, int status) {
  struct conn_write_req *w;
  CAST_OBJ_NOTNULL(w, (struct conn_write_req *)req, WRITE_MAGIC);
  struct conn *c = w->conn;
  CHECK_OBJ_NOTNULL(c, CONN_MAGIC);
  c->in_flight -= w->len;
  conn_account(c);
  conn_req_free(w);
  if (c->closing)
    return;
  if (status < 0) {
    conn_fail(c, SP_E_IO, uv_strerror(status));
    return;
  }
  if (c->write_pending == 0 && c->ev->on_drain)
    c->ev->on_drain(c);
}

static int conn_send_raw(struct conn *c, const char *data, size_t len) {
  size_t done = conn_try_write(c, data, len);
  if (done == len)
    return 0;
  data += done;
  len -= done;
  struct conn_write_req *w = malloc(sizeof *w + len);
  if (!w)
    return SP_E_NOMEM;
  w->magic = WRITE_MAGIC;
  w->conn = c;
  w->off = 0;
  w->len = len;
  w->data = w->inline_data;
  memcpy(w->data, data, len);
  return conn_submit(c, w);
}

/* Set while on_flush runs: a write made from there (an owner reacting to a failed
 * flush) goes out at once, as a prepare handle started now would only run after the
 * loop's next wait for I/O. */
static _Thread_local bool in_flush;

static void on_flush(uv_prepare_t *h) {
  struct conn *c;
  CAST_OBJ_NOTNULL(c, h->data, CONN_MAGIC);
  uv_prepare_stop(h);
  in_flush = true;
  size_t before = c->write_pending;
  if (!c->closing && c->tls && conn_flush_tls(c) < 0)
    conn_fail(c, SP_E_IO, c->error[0] ? c->error : "write failed");
  /* The held records went out at once (uv_try_write): no write callback will say the
   * queue drained, and an owner that paused for it (its peer's reads stopped while
   * this side was above its high-water mark) would wait for ever. */
  else if (!c->closing && before > 0 && c->write_pending == 0 && c->ev->on_drain)
    c->ev->on_drain(c);
  in_flush = false;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)h;
  (void)suggested;
  *b = uv_buf_init(read_buffer, sizeof read_buffer);
}

/* Feeds ciphertext to TLS, advances the handshake, hands out plaintext. */
static void conn_on_ciphertext(struct conn *c, const char *data, size_t len) {
  if (tls_feed(c->tls, data, len) < 0) {
    conn_fail(c, SP_E_TLS, "out of memory");
    return;
  }
  if (c->handshaking) {
    int rc = tls_handshake(c->tls);
    if (conn_flush_tls(c) < 0 && rc >= 0)
      rc = SP_E_IO;
    if (rc == 0)
      return;
    c->handshaking = false;
    if (rc < 0)
      snprintf(c->error, sizeof c->error, "%s", tls_error(c->tls));
    c->ev->on_handshake(c, rc < 0 ? SP_E_TLS : 0);
    if (rc < 0 || c->closing)
      return;
  }
  for (;;) {
    ssize_t n = tls_read(c->tls, plain_buffer, sizeof plain_buffer);
    /* TLS 1.3 tickets and alerts may have produced output to send. */
    conn_flush_tls(c);
    if (n == 0)
      return;
    if (n < 0) {
      conn_fail(c, (int)n == SP_E_EOF ? SP_E_EOF : SP_E_TLS, tls_error(c->tls));
      return;
    }
    c->ev->on_data(c, plain_buffer, (size_t)n);
    if (c->closing)
      return;
  }
}

/* Bytes (or an error) read from the socket go to the owner. */
static void conn_on_input(struct conn *c, const char *data, ssize_t nread) {
  if (nread < 0) {
    conn_fail(c, nread == UV_EOF ? SP_E_EOF : SP_E_IO,
              nread == UV_EOF ? "connection closed by peer" : uv_strerror((int)nread));
    return;
  }
  if (c->tls) {
    conn_on_ciphertext(c, data, (size_t)nread);
    return;
  }
  c->ev->on_data(c, data, (size_t)nread);
}

/* conn_read_stop() does not stop libuv at once: stopping and restarting a read costs
 * two epoll_ctl calls, and an owner pausing while it waits for the other side (the
 * session, for each reply from the MX) is usually sent nothing meanwhile. What does
 * arrive while paused is kept here (one read at most: libuv is stopped then) and
 * handed over from the idle handle once reading resumes. */
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  struct conn *c;
  CAST_OBJ_NOTNULL(c, s->data, CONN_MAGIC);
  if (c->closing || nread == 0)
    return;
  if (!c->reading) {
    uv_read_stop(s);
    c->uv_reading = false;
    if (nread < 0) {
      c->held_err = (int)nread;
      return;
    }
    c->held = malloc((size_t)nread);
    if (!c->held) {
      conn_fail(c, SP_E_IO, "out of memory");
      return;
    }
    memcpy(c->held, b->base, (size_t)nread);
    c->held_len = (size_t)nread;
    return;
  }
  conn_on_input(c, b->base, nread);
}

static void on_deliver(uv_idle_t *h) {
  struct conn *c;
  CAST_OBJ_NOTNULL(c, h->data, CONN_MAGIC);
  uv_idle_stop(h);
  if (c->closing || !c->reading)
    return;
  if (c->held) {
    char *held = c->held;
    size_t len = c->held_len;
    c->held = NULL;
    c->held_len = 0;
    conn_on_input(c, held, (ssize_t)len);
    free(held);
    if (c->closing || !c->reading)
      return; /* a held error waits for the next conn_read_start() */
  }
  if (c->held_err) {
    int err = c->held_err;
    c->held_err = 0;
    conn_on_input(c, NULL, err);
    return;
  }
  if (!c->uv_reading) {
    c->uv_reading = true;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  }
}

/* The stream handle (TCP, or a unix socket's pipe) and the two helpers every
 * connection closes with it: the write flush and the delivery of held input. */
static int conn_init_stream(uv_loop_t *loop, struct conn *c,
                            const struct conn_events *ev, void *owner, bool pipe) {
  memset(c, 0, sizeof *c);
  c->ev = ev;
  c->owner = owner;
  c->is_pipe = pipe;
  int rc = pipe ? uv_pipe_init(loop, &c->pipe, 0) : uv_tcp_init(loop, &c->tcp);
  if (rc < 0)
    return SP_E_IO;
  c->tcp.data = c; /* the union's members share their first fields */
  if (!pipe)
    uv_tcp_nodelay(&c->tcp, 1);
  uv_prepare_init(loop, &c->flush);
  c->flush.data = c;
  uv_idle_init(loop, &c->deliver);
  c->deliver.data = c;
  uv_timer_init(loop, &c->linger);
  c->linger.data = c;
  c->linger_ms = CONN_CLOSE_DEADLINE_MS;
  c->magic = CONN_MAGIC;
  return 0;
}

void conn_set_close_deadline(struct conn *c, uint64_t ms) {
  c->linger_ms = ms > 0 ? ms : CONN_CLOSE_DEADLINE_MS;
}

int conn_init(uv_loop_t *loop, struct conn *c, const struct conn_events *ev,
              void *owner) {
  return conn_init_stream(loop, c, ev, owner, false);
}

int conn_init_pipe(uv_loop_t *loop, struct conn *c, const struct conn_events *ev,
                   void *owner) {
  return conn_init_stream(loop, c, ev, owner, true);
}

int conn_accept(uv_stream_t *server, struct conn *c) {
  int rc = uv_accept(server, (uv_stream_t *)&c->tcp);
  if (rc < 0) {
    snprintf(c->error, sizeof c->error, "%s", uv_strerror(rc));
    return SP_E_IO;
  }
  if (!c->is_pipe)
    uv_tcp_nodelay(&c->tcp, 1);
  return 0;
}

static void on_connect(uv_connect_t *req, int status) {
  struct conn *c;
  CAST_OBJ_NOTNULL(c, req->handle->data, CONN_MAGIC);
  if (c->closing)
    return;
  if (status < 0)
    snprintf(c->error, sizeof c->error, "%s", uv_strerror(status));
  c->ev->on_connect(c, status);
}

int conn_connect(struct conn *c, const struct sockaddr *addr) {
  int rc = uv_tcp_connect(&c->connect_req, &c->tcp, addr, on_connect);
  if (rc < 0) {
    snprintf(c->error, sizeof c->error, "%s", uv_strerror(rc));
    return SP_E_IO;
  }
  return 0;
}

void conn_read_start(struct conn *c) {
  if (c->reading || c->closing)
    return;
  c->reading = true;
  if (c->held || c->held_err)
    uv_idle_start(&c->deliver, on_deliver); /* not from here: the owner is mid-call */
  else if (!c->uv_reading) {
    c->uv_reading = true;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  }
}

void conn_read_stop(struct conn *c) {
  c->reading = false; /* libuv goes on reading until something arrives: on_read */
}

int conn_write(struct conn *c, const char *data, size_t len) {
  if (c->closing)
    return SP_E_IO;
  if (!c->tls)
    return conn_send_raw(c, data, len);
  if (tls_write(c->tls, data, len) < 0) {
    snprintf(c->error, sizeof c->error, "%s", tls_error(c->tls));
    return SP_E_TLS;
  }
  conn_account(c);
  /* The records are held back until the loop has run every callback of this turn,
   * then written at once: a reply's MAIL and RCPT, or a message's body and final dot,
   * go out in one write, not one each. A prepare handle runs right before the loop
   * next waits for I/O, whichever phase the write was made in (I/O, timer, close
   * callbacks), so nothing waits on a held record. */
  if (in_flush || tls_output_pending(c->tls) >= CONN_COALESCE_MAX)
    return conn_flush_tls(c);
  if (!uv_is_active((uv_handle_t *)&c->flush))
    uv_prepare_start(&c->flush, on_flush);
  return 0;
}

int conn_start_tls(struct conn *c, struct tls *t) {
  c->tls = t;
  c->handshaking = true;
  int rc = tls_handshake(t);
  if (rc < 0) {
    snprintf(c->error, sizeof c->error, "%s", tls_error(t));
    return SP_E_TLS;
  }
  return conn_flush_tls(c);
}

/* Runs for the socket and the flush handle; the last one frees the TLS state. */
static void on_close(uv_handle_t *h) {
  struct conn *c;
  CAST_OBJ_NOTNULL(c, h->data, CONN_MAGIC);
  if (--c->closes_pending > 0)
    return;
  tls_free(c->tls);
  c->tls = NULL;
  free(c->held);
  c->held = NULL;
  c->magic = 0; /* the owner may free c from on_closed */
  c->ev->on_closed(c);
}

/* Closes the stream and the linger timer, once. With reset the peer gets an RST
 * (SO_LINGER 0) and unsent bytes are dropped: no FIN that could pass for a clean end. */
static void conn_close_stream(struct conn *c, bool reset) {
  if (c->stream_closing)
    return;
  c->stream_closing = true;
  uv_close((uv_handle_t *)&c->linger, on_close);
  uv_os_fd_t fd;
  if (reset && !c->is_pipe && uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* Also runs, with UV_ECANCELED, when the linger timer closed the stream first. */
static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  struct conn *c;
  CAST_OBJ_NOTNULL(c, req->handle->data, CONN_MAGIC);
  free(req);
  conn_close_stream(c, false);
}

/* A peer that does not read keeps the shutdown pending for ever, and the owner's
 * memory with it: past the deadline the connection is reset. */
static void on_linger(uv_timer_t *t) {
  struct conn *c;
  CAST_OBJ_NOTNULL(c, t->data, CONN_MAGIC);
  c->close_timed_out = true;
  conn_close_stream(c, true);
}

void conn_close(struct conn *c, bool graceful) {
  if (c->closing)
    return;
  c->closing = true;
  conn_read_stop(c);
  c->closes_pending = 4;
  uv_close((uv_handle_t *)&c->flush, on_close);
  uv_close((uv_handle_t *)&c->deliver, on_close);
  if (c->uv_reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->uv_reading = false;
  }
  if (graceful) {
    if (c->tls && !c->handshaking) {
      tls_shutdown(c->tls);
      conn_flush_tls(c);
    }
    uv_shutdown_t *req = malloc(sizeof *req);
    if (req && uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) == 0) {
      uv_timer_start(&c->linger, on_linger, c->linger_ms, 0);
      return;
    }
    free(req);
    conn_close_stream(c, false);
    return;
  }
  conn_close_stream(c, true);
}

const char *conn_error(const struct conn *c) {
  return c->error;
}

/* The address of one end (peer: the other one) as text. */
static void conn_ip(const struct conn *c, bool peer, char *out, size_t cap) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  out[0] = '\0';
  if (c->is_pipe) {
    snprintf(out, cap, "%s", "unix");
    return;
  }
  if ((peer ? uv_tcp_getpeername : uv_tcp_getsockname)(&c->tcp, (struct sockaddr *)&ss,
                                                       &len) < 0)
    return;
  if (ss.ss_family == AF_INET)
    uv_ip4_name((struct sockaddr_in *)&ss, out, cap);
  else if (ss.ss_family == AF_INET6)
    uv_ip6_name((struct sockaddr_in6 *)&ss, out, cap);
}

void conn_peer_ip(const struct conn *c, char *out, size_t cap) {
  conn_ip(c, true, out, cap);
}

void conn_local_ip(const struct conn *c, char *out, size_t cap) {
  conn_ip(c, false, out, cap);
}
