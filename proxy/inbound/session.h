/* The SMTP (or LMTP) server side: one MTA connection, one explicit state machine.
 *
 * Ownership: the listener creates a session for each accepted connection and keeps it
 * on its list; the session owns its conn, its timer, its transaction (whose legs own
 * their router queries and MX connections) and the MX connection it keeps between
 * transactions, and frees itself after its last handle closed, then tells the
 * listener through on_session_freed. */
#ifndef SP_SESSION_H
#define SP_SESSION_H

#include <uv.h>

#include "proxy/outbound/runtime.h"

struct session;
struct listener;

/* Accepts the pending connection on server (a TCP or, with unix_socket, a pipe
 * server) and starts a session speaking SMTP or, with lmtp, LMTP (greeting, or a
 * refusal when the client is not allowed or limit is reached). */
int session_start(struct listener *l, uv_stream_t *server, struct runtime *rt,
                  bool unix_socket, bool lmtp, bool over_limit);

/* SIGTERM: close at once when idle between transactions; otherwise finish the
 * current transaction, then close with 421. */
void session_drain(struct session *s);

/* The deadline passed: abort whatever is running (4xx to the MTA, no final dot to the
 * MX) and close. */
void session_abort(struct session *s);

#endif
