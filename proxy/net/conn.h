/* One TCP connection on the loop, plain or TLS (through struct tls), used by both
 * sides: the session (the MTA's connection) and the upstream (the MX's).
 *
 * Ownership: the embedding object (session or upstream) owns the struct conn; the
 * conn owns its uv_tcp_t, uv_prepare_t, uv_idle_t and uv_timer_t, its struct tls, held
 * input and every pending write. conn_close() closes the four handles; on_closed runs
 * once libuv is done with them, and only then may the owner free the memory. No
 * callback runs after conn_close() except on_closed. */
#ifndef SP_CONN_H
#define SP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "certs/tls.h"

struct conn;

struct conn_events {
  /* Plaintext bytes from the peer. Valid only during the call. */
  void (*on_data)(struct conn *c, const char *data, size_t len);
  /* The peer closed, or a read/write/TLS error: err is SP_E_EOF, SP_E_IO or SP_E_TLS
   * (reason in conn_error()). No further on_data follows. */
  void (*on_error)(struct conn *c, int err);
  /* The write queue fell to zero bytes after having been non-empty. May be NULL. */
  void (*on_drain)(struct conn *c);
  /* TLS handshake finished (err 0) or failed (SP_E_TLS, reason in conn_error()). */
  void (*on_handshake)(struct conn *c, int err);
  /* Connect finished (status 0 or a libuv error). */
  void (*on_connect)(struct conn *c, int status);
  void (*on_closed)(struct conn *c);
};

struct conn {
  uint32_t magic; /* set by conn_init, zeroed before on_closed (core/obj.h) */
  /* A TCP connection, or (conn_init_pipe) a unix-socket one accepted by a listener. */
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  };
  bool is_pipe;
  uv_connect_t connect_req;
  const struct conn_events *ev;
  void *owner;
  struct tls *tls; /* NULL until conn_start_tls() */
  bool handshaking;
  bool reading;    /* the owner wants data */
  bool uv_reading; /* libuv reads the socket (stopped lazily, see conn.c) */
  char *held;      /* what arrived after conn_read_stop(): handed over on start */
  size_t held_len;
  int held_err;      /* a read error (UV_EOF...) that arrived after conn_read_stop() */
  uv_idle_t deliver; /* hands held input over after conn_read_start() */
  bool closing;
  size_t write_pending; /* bytes not yet written: in_flight + ciphertext held back */
  size_t in_flight;     /* bytes handed to libuv and not yet written */
  uv_prepare_t flush;   /* armed while TLS records wait for the end of the loop turn */
  int closes_pending;   /* handles (tcp, flush, deliver, linger) not closed yet */
  uv_timer_t linger;    /* bounds a graceful close (conn_set_close_deadline) */
  uint64_t linger_ms;
  bool stream_closing; /* uv_close() called on the stream and the linger timer */
  /* A graceful close ran out of time: the peer had not taken our last bytes and the
   * connection was reset. Read by the owner in on_closed (for its log). */
  bool close_timed_out;
  char error[256];
};

/* Initializes c with a new uv_tcp_t on loop. */
int conn_init(uv_loop_t *loop, struct conn *c, const struct conn_events *ev,
              void *owner);
/* Same with a uv_pipe_t, for a connection accepted on a unix socket. */
int conn_init_pipe(uv_loop_t *loop, struct conn *c, const struct conn_events *ev,
                   void *owner);
/* For the listener: accepts a pending connection of server into c. */
int conn_accept(uv_stream_t *server, struct conn *c);
int conn_connect(struct conn *c, const struct sockaddr *addr);

/* After conn_read_stop() no on_data or read error reaches the owner until
 * conn_read_start(); what arrives meanwhile is held (one read) and handed over from
 * the loop, never from inside conn_read_start(). */
void conn_read_start(struct conn *c);
void conn_read_stop(struct conn *c);

/* Copies data (encrypting it when TLS is on) and queues it. Returns 0 or an error.
 * With TLS the records are held back (up to 64 KiB) until the loop has run the
 * callbacks of this turn, then written together: fewer, larger writes. */
int conn_write(struct conn *c, const char *data, size_t len);

/* Switches to TLS: from now on incoming bytes go through t; the handshake starts at
 * once (client) or on the first bytes (server). The conn takes ownership of t. */
int conn_start_tls(struct conn *c, struct tls *t);

/* Queues close_notify when TLS is on, then closes. Pending writes are flushed only when
 * graceful is true (uv_shutdown); otherwise the socket is reset (SO_LINGER 0) so the
 * peer sees an abort, e.g. no final dot. A graceful close waits for the peer to take
 * the pending writes for at most the close deadline; then the socket is reset as well
 * and close_timed_out is set: a peer that stops reading cannot keep it open. */
void conn_close(struct conn *c, bool graceful);

/* The close deadline in milliseconds (> 0); CONN_CLOSE_DEADLINE_MS unless set. */
#define CONN_CLOSE_DEADLINE_MS 30000
void conn_set_close_deadline(struct conn *c, uint64_t ms);

const char *conn_error(const struct conn *c);

/* "192.0.2.1" for the peer; "unix" on a unix socket; "" when unknown. */
void conn_peer_ip(const struct conn *c, char *out, size_t cap);
/* The same for our end of the connection. */
void conn_local_ip(const struct conn *c, char *out, size_t cap);

#endif
