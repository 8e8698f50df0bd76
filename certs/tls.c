/* The in-memory TLS engine; see tls.h for the contract.
 *
 * Ownership: struct tls owns ssl and the two ciphertext buffers; ssl owns rbio and
 * wbio after SSL_set_bio. Both BIOs are ours (not BIO_s_mem) and point back at struct
 * tls (borrowed), as does the SSL's ex_data for the info callback.
 *
 * Why not BIO_s_mem: a memory BIO keeps the largest buffer it ever held for the life
 * of the connection (64 KiB per idle connection after one large message), and its
 * output had to be copied once more into a buffer of our own for the socket write.
 * Here OpenSSL writes its records straight into the buffer that is handed to the
 * socket, and the input buffer is released once drained. */
#include "certs/tls.h"

#include <arpa/inet.h>
#include <limits.h>
#include <openssl/err.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/core/error.h"
#include "proxy/core/obj.h"

#define TLS_MAGIC 0x544c5345u /* "TLSE" */

/* Handed back by OpenSSL as the data of both BIOs and the SSL's ex_data. */
struct tls {
  uint32_t magic;
  SSL *ssl;
  BIO *rbio; /* borrowed from ssl */
  BIO *wbio; /* borrowed from ssl */
  char *in;  /* ciphertext fed and not yet read by OpenSSL: in[in_off..in_len) */
  size_t in_off, in_len, in_cap;
  bool in_eof; /* the transport reported EOF */
  char *out;   /* ciphertext produced and not yet taken: out[0..out_len) */
  size_t out_len, out_cap;
  int handshakes;     /* SSL_CB_HANDSHAKE_START count */
  bool renegotiation; /* the peer started a second handshake */
  int failed;         /* sticky SP_E_TLS / SP_E_EOF once seen; 0 before */
  char err[256];
};

static CRYPTO_ONCE index_once = CRYPTO_ONCE_STATIC_INIT;
static int tls_idx = -1;
static BIO_METHOD *in_method, *out_method; /* made once, never freed (process-wide) */

static int out_reserve(struct tls *t, size_t more) {
  if (more <= t->out_cap - t->out_len)
    return 0;
  size_t cap = t->out_cap ? t->out_cap : 4096;
  while (cap - t->out_len < more)
    cap *= 2;
  char *p = realloc(t->out, cap);
  if (!p)
    return SP_E_NOMEM;
  t->out = p;
  t->out_cap = cap;
  return 0;
}

static int bio_out_write(BIO *b, const char *data, int len) {
  struct tls *t;
  CAST_OBJ_NOTNULL(t, BIO_get_data(b), TLS_MAGIC);
  BIO_clear_retry_flags(b);
  if (len <= 0)
    return 0;
  if (out_reserve(t, (size_t)len) < 0)
    return -1;
  memcpy(t->out + t->out_len, data, (size_t)len);
  t->out_len += (size_t)len;
  return len;
}

static int bio_in_read(BIO *b, char *data, int len) {
  struct tls *t;
  CAST_OBJ_NOTNULL(t, BIO_get_data(b), TLS_MAGIC);
  BIO_clear_retry_flags(b);
  size_t avail = t->in_len - t->in_off;
  if (avail == 0) {
    if (t->in_eof)
      return 0;
    BIO_set_retry_read(b); /* "wait for more", until tls_feed() reports EOF */
    return -1;
  }
  size_t n = len < 0 ? 0 : (size_t)len;
  if (n > avail)
    n = avail;
  memcpy(data, t->in + t->in_off, n);
  t->in_off += n;
  if (t->in_off == t->in_len) { /* drained: an idle connection holds no buffer */
    free(t->in);
    t->in = NULL;
    t->in_off = t->in_len = t->in_cap = 0;
  }
  return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)num;
  (void)ptr;
  struct tls *t;
  CAST_OBJ_NOTNULL(t, BIO_get_data(b), TLS_MAGIC);
  switch (cmd) {
  case BIO_CTRL_FLUSH:
    return 1;
  case BIO_CTRL_PENDING:
    return b == t->rbio ? (long)(t->in_len - t->in_off) : 0;
  case BIO_CTRL_WPENDING:
    return b == t->wbio ? (long)t->out_len : 0;
  case BIO_CTRL_EOF:
    return b == t->rbio && t->in_eof && t->in_len == t->in_off;
  default:
    return 0;
  }
}

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static void init_once(void) {
  tls_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  in_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sp tls in");
  out_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sp tls out");
  if (!in_method || !out_method || !BIO_meth_set_read(in_method, bio_in_read) ||
      !BIO_meth_set_ctrl(in_method, bio_ctrl) ||
      !BIO_meth_set_create(in_method, bio_create) ||
      !BIO_meth_set_write(out_method, bio_out_write) ||
      !BIO_meth_set_ctrl(out_method, bio_ctrl) ||
      !BIO_meth_set_create(out_method, bio_create))
    tls_idx = -1;
}

/* OpenSSL reports no SSL_CB_HANDSHAKE_START for TLS 1.3 post-handshake messages
 * (tickets, key updates), so a second start below TLS 1.3 is a renegotiation: we
 * refuse it, as a new handshake could swap the certificate we already judged. */
static void on_info(const SSL *ssl, int where, int ret) {
  (void)ret;
  if (!(where & SSL_CB_HANDSHAKE_START))
    return;
  struct tls *t = SSL_get_ex_data(ssl, tls_idx);
  CHECK_OBJ_ORNULL(t, TLS_MAGIC);
  if (!t || t->ssl != ssl)
    return;
  if (t->handshakes++ > 0 && SSL_version(ssl) < TLS1_3_VERSION)
    t->renegotiation = true;
}

/* Records "what: reason" from the error queue and returns the SP code. */
static int tls_fail(struct tls *t, const char *what, int ssl_error) {
  unsigned long e = ERR_peek_error();
  char reason[200];
  if (ssl_error == SSL_ERROR_ZERO_RETURN) {
    snprintf(t->err, sizeof t->err, "peer sent close_notify");
    t->failed = SP_E_EOF;
    ERR_clear_error();
    return SP_E_EOF;
  }
  if (e != 0 && ERR_reason_error_string(e))
    snprintf(reason, sizeof reason, "%s", ERR_reason_error_string(e));
  else if (e != 0)
    ERR_error_string_n(e, reason, sizeof reason);
  else if (ssl_error == SSL_ERROR_SYSCALL)
    snprintf(reason, sizeof reason, "unexpected EOF");
  else
    snprintf(reason, sizeof reason, "SSL error %d", ssl_error);
  snprintf(t->err, sizeof t->err, "%s: %s", what, reason);
  t->failed = SP_E_TLS;
  ERR_clear_error();
  return SP_E_TLS;
}

static bool is_ip_literal(const char *name) {
  unsigned char addr[16];
  return name[0] == '[' || inet_pton(AF_INET, name, addr) == 1 ||
         inet_pton(AF_INET6, name, addr) == 1;
}

static int tls_new(SSL_CTX *ctx, struct tls **out) {
  *out = NULL;
  if (!CRYPTO_THREAD_run_once(&index_once, init_once) || tls_idx < 0)
    return SP_E_NOMEM;
  struct tls *t = calloc(1, sizeof *t);
  if (!t)
    return SP_E_NOMEM;
  t->magic = TLS_MAGIC;
  ERR_clear_error();
  t->ssl = SSL_new(ctx);
  BIO *rbio = BIO_new(in_method), *wbio = BIO_new(out_method);
  if (!t->ssl || !rbio || !wbio) {
    BIO_free(rbio);
    BIO_free(wbio);
    tls_free(t);
    ERR_clear_error();
    return SP_E_NOMEM;
  }
  BIO_set_data(rbio, t);
  BIO_set_data(wbio, t);
  SSL_set_bio(t->ssl, rbio, wbio);
  t->rbio = rbio;
  t->wbio = wbio;
  if (!SSL_set_ex_data(t->ssl, tls_idx, t)) {
    tls_free(t);
    ERR_clear_error();
    return SP_E_NOMEM;
  }
  SSL_set_info_callback(t->ssl, on_info);
  *out = t;
  return 0;
}

int tls_new_client(SSL_CTX *ctx, const char *sni, struct tls **out) {
  int rc = tls_new(ctx, out);
  if (rc < 0)
    return rc;
  struct tls *t = *out;
  SSL_set_connect_state(t->ssl);
  /* RFC 6066 section 3: literal IP addresses are not permitted in server_name. */
  if (sni && *sni && !is_ip_literal(sni)) {
    ERR_clear_error();
    if (SSL_set_tlsext_host_name(t->ssl, sni) != 1) {
      tls_free(t);
      *out = NULL;
      ERR_clear_error();
      return SP_E_INVAL;
    }
  }
  return 0;
}

int tls_new_server(SSL_CTX *ctx, struct tls **out) {
  int rc = tls_new(ctx, out);
  if (rc < 0)
    return rc;
  SSL_set_accept_state((*out)->ssl);
  return 0;
}

void tls_free(struct tls *t) {
  if (!t)
    return;
  SSL_free(t->ssl); /* may still call the BIOs back */
  free(t->in);
  free(t->out);
  t->magic = 0;
  free(t);
}

SSL *tls_ssl(struct tls *t) {
  return t->ssl;
}

int tls_feed(struct tls *t, const char *data, size_t len) {
  if (len == 0) {
    t->in_eof = true;
    return 0;
  }
  if (t->in_off > 0) { /* only a partial record is left: move it to the front */
    memmove(t->in, t->in + t->in_off, t->in_len - t->in_off);
    t->in_len -= t->in_off;
    t->in_off = 0;
  }
  if (len > t->in_cap - t->in_len) {
    size_t cap = t->in_len + len;
    char *p = realloc(t->in, cap);
    if (!p)
      return SP_E_NOMEM;
    t->in = p;
    t->in_cap = cap;
  }
  memcpy(t->in + t->in_len, data, len);
  t->in_len += len;
  return 0;
}

int tls_handshake(struct tls *t) {
  if (t->failed)
    return SP_E_TLS;
  if (SSL_is_init_finished(t->ssl))
    return 1;
  ERR_clear_error();
  int r = SSL_do_handshake(t->ssl);
  int e = SSL_get_error(t->ssl, r);
  if (r == 1)
    return 1;
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
    return 0;
  if (e == SSL_ERROR_ZERO_RETURN) {
    /* A close_notify in the middle of the handshake is a failure, not an EOF. */
    snprintf(t->err, sizeof t->err, "handshake failure: peer sent close_notify");
    t->failed = SP_E_TLS;
    ERR_clear_error();
    return SP_E_TLS;
  }
  return tls_fail(t, "handshake failure", e);
}

ssize_t tls_read(struct tls *t, char *buf, size_t cap) {
  size_t got = 0;
  while (!t->failed && got < cap) {
    size_t n = 0;
    ERR_clear_error();
    int r = SSL_read_ex(t->ssl, buf + got, cap - got, &n);
    int e = SSL_get_error(t->ssl, r);
    if (t->renegotiation) {
      snprintf(t->err, sizeof t->err, "read failure: peer attempted renegotiation");
      t->failed = SP_E_TLS;
      ERR_clear_error();
      break;
    }
    if (r == 1) {
      got += n;
      continue;
    }
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
      break;
    tls_fail(t, "read failure", e);
  }
  /* Plaintext that arrived before an error or close_notify is handed out first;
   * the sticky failure is reported by the next call. */
  if (got > 0)
    return (ssize_t)got;
  return t->failed;
}

int tls_write(struct tls *t, const char *data, size_t len) {
  if (t->failed == SP_E_TLS)
    return SP_E_TLS;
  if (!SSL_is_init_finished(t->ssl)) {
    snprintf(t->err, sizeof t->err, "write failure: handshake not complete");
    return SP_E_TLS;
  }
  /* Room for the records at once (5-byte header, up to 256 bytes of tag, padding and
   * content type per 16 KiB record in any suite we allow), rather than doubling. */
  if (out_reserve(t, len + (len / 16384 + 1) * 256) < 0)
    return tls_fail(t, "write failure", SSL_ERROR_SYSCALL);
  while (len > 0) {
    size_t n = 0;
    ERR_clear_error();
    int r = SSL_write_ex(t->ssl, data, len, &n);
    int e = SSL_get_error(t->ssl, r);
    if (r != 1)
      return tls_fail(t, "write failure",
                      e == SSL_ERROR_ZERO_RETURN ? SSL_ERROR_SSL : e);
    data += n;
    len -= n;
  }
  return 0;
}

void tls_shutdown(struct tls *t) {
  if (!SSL_is_init_finished(t->ssl) || t->failed == SP_E_TLS)
    return;
  ERR_clear_error();
  int r = SSL_shutdown(t->ssl);
  (void)SSL_get_error(t->ssl, r);
  ERR_clear_error();
}

ssize_t tls_take_output(struct tls *t, char **data) {
  *data = NULL;
  if (t->out_len == 0)
    return 0;
  ssize_t n = t->out_len > SSIZE_MAX ? SSIZE_MAX : (ssize_t)t->out_len;
  *data = t->out; /* handed over as it is: no copy */
  t->out = NULL;
  t->out_len = t->out_cap = 0;
  return n;
}

size_t tls_output_pending(const struct tls *t) {
  return t->out_len;
}

size_t tls_buffered(const struct tls *t) {
  return t->in_cap + t->out_cap;
}

const char *tls_error(const struct tls *t) {
  return t->err;
}
