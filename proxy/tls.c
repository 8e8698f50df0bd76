/* The memory-BIO TLS engine; see tls.h for the contract.
 *
 * Ownership: struct tls owns ssl; ssl owns rbio (ciphertext in) and wbio (ciphertext
 * out) after SSL_set_bio. The SSL's ex_data points back at struct tls (borrowed) for
 * the info callback. */
#include "proxy/tls.h"

#include <arpa/inet.h>
#include <limits.h>
#include <openssl/err.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/error.h"

struct tls {
  SSL *ssl;
  BIO *rbio;          /* borrowed from ssl */
  BIO *wbio;          /* borrowed from ssl */
  int handshakes;     /* SSL_CB_HANDSHAKE_START count */
  bool renegotiation; /* the peer started a second handshake */
  int failed;         /* sticky SP_E_TLS / SP_E_EOF once seen; 0 before */
  char err[256];
};

static CRYPTO_ONCE index_once = CRYPTO_ONCE_STATIC_INIT;
static int tls_idx = -1;

static void init_index(void) {
  tls_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* OpenSSL reports no SSL_CB_HANDSHAKE_START for TLS 1.3 post-handshake messages
 * (tickets, key updates), so a second start below TLS 1.3 is a renegotiation: we
 * refuse it, as a new handshake could swap the certificate we already judged. */
static void on_info(const SSL *ssl, int where, int ret) {
  (void)ret;
  if (!(where & SSL_CB_HANDSHAKE_START))
    return;
  struct tls *t = SSL_get_ex_data(ssl, tls_idx);
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
  if (!CRYPTO_THREAD_run_once(&index_once, init_index) || tls_idx < 0)
    return SP_E_NOMEM;
  struct tls *t = calloc(1, sizeof *t);
  if (!t)
    return SP_E_NOMEM;
  ERR_clear_error();
  t->ssl = SSL_new(ctx);
  BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
  if (!t->ssl || !rbio || !wbio) {
    BIO_free(rbio);
    BIO_free(wbio);
    tls_free(t);
    ERR_clear_error();
    return SP_E_NOMEM;
  }
  /* An empty input BIO means "wait for more", until tls_feed() reports EOF. */
  BIO_set_mem_eof_return(rbio, -1);
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
  SSL_free(t->ssl);
  free(t);
}

SSL *tls_ssl(struct tls *t) {
  return t->ssl;
}

int tls_feed(struct tls *t, const char *data, size_t len) {
  if (len == 0) {
    BIO_set_mem_eof_return(t->rbio, 0);
    return 0;
  }
  while (len > 0) {
    int chunk = len > INT_MAX ? INT_MAX : (int)len;
    int n = BIO_write(t->rbio, data, chunk);
    if (n <= 0) {
      ERR_clear_error();
      return SP_E_NOMEM;
    }
    data += n;
    len -= (size_t)n;
  }
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
  size_t pending = BIO_ctrl_pending(t->wbio);
  if (pending == 0)
    return 0;
  if (pending > SSIZE_MAX)
    pending = SSIZE_MAX;
  char *p = malloc(pending);
  if (!p)
    return SP_E_NOMEM;
  size_t got = 0;
  while (got < pending) {
    size_t want = pending - got;
    int n = BIO_read(t->wbio, p + got, want > INT_MAX ? INT_MAX : (int)want);
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  if (got == 0) {
    free(p);
    return 0;
  }
  *data = p;
  return (ssize_t)got;
}

const char *tls_error(const struct tls *t) {
  return t->err;
}
