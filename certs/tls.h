/* OpenSSL over a libuv stream, through in-memory BIOs: the owner of the socket feeds
 * ciphertext in with tls_feed() and sends what tls_take_output() hands out. This file
 * knows nothing of sockets or the loop, so it is tested in memory.
 *
 * Ownership: struct tls owns its SSL* (and through it both BIOs); tls_free() frees
 * them. Every call clears the OpenSSL error queue first and checks SSL_get_error()
 * straight after. */
#ifndef SP_TLS_H
#define SP_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct tls;

/* Client side: sni (NULL for none) is sent as server name. */
int tls_new_client(SSL_CTX *ctx, const char *sni, struct tls **out);
int tls_new_server(SSL_CTX *ctx, struct tls **out);
void tls_free(struct tls *t);
SSL *tls_ssl(struct tls *t);

/* Appends ciphertext received from the peer. len == 0 reports the transport's EOF:
 * once the buffered input is used up, reads and handshakes fail with SP_E_TLS
 * ("unexpected eof while reading") instead of waiting for more. */
int tls_feed(struct tls *t, const char *data, size_t len);

/* Advances the handshake. Returns 1 when complete, 0 when it needs more input (send
 * pending output first), SP_E_TLS on failure (reason via tls_error()). */
int tls_handshake(struct tls *t);

/* Decrypts into buf. Returns the byte count (> 0), 0 when more input is needed,
 * SP_E_EOF on close_notify, SP_E_TLS on error (including an unexpected EOF and any
 * renegotiation attempt by the peer). */
ssize_t tls_read(struct tls *t, char *buf, size_t cap);

/* Encrypts all of data (output then pending). Returns 0 or SP_E_TLS. */
int tls_write(struct tls *t, const char *data, size_t len);

/* Queues a close_notify alert. A connection freed without it (or after a TLS error)
 * leaves its session unresumable, as RFC 5246 section 7.2.1 asks. */
void tls_shutdown(struct tls *t);

/* Hands out all pending ciphertext as one malloc'd buffer, the very one OpenSSL wrote
 * its records into (the caller owns it and frees it), or returns 0 with *data NULL when
 * there is none. Returns the length. */
ssize_t tls_take_output(struct tls *t, char **data);
/* Bytes of ciphertext waiting for tls_take_output(). */
size_t tls_output_pending(const struct tls *t);
/* Bytes our ciphertext buffers hold allocated (input not yet read by OpenSSL, output
 * not yet taken): 0 on an idle connection. */
size_t tls_buffered(const struct tls *t);

/* The last error as text ("handshake failure: sslv3 alert handshake failure"), valid
 * until the next call on t. */
const char *tls_error(const struct tls *t);

#endif
