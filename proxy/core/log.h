/* Logging to stderr or syslog, one line per event: Postfix's wording and program names
 * (so pflogsumm and existing greps keep working) or one JSON object per line. Every
 * line carries the session's hex id when there is one, which also stands in for
 * Postfix's queue id. Not thread-safe beyond one line per write(2). */
#ifndef SP_LOG_H
#define SP_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/core/log_types.h"

/* Sets format, level and the host name used in Postfix-style line prefixes. */
void log_configure(enum log_format format, enum log_level level, const char *hostname);
bool log_enabled(enum log_level level);
/* stderr (default), or syslog(3) with facility mail: each line then goes without our
 * date/host/program prefix, which syslog adds itself, tagged with the line's program
 * (enum log_prog). */
void log_set_output(enum log_output output);

/* The Postfix program a line is logged as ("starttls-proxy/smtpd[pid]"): pflogsumm
 * and its kin read a line by its program, so each goes under the one whose lines it
 * copies. SMTPD: the client side (connect, client=, reject:); QMGR: a message's
 * summary (from=, size=, nrcpt=; removed); SMTP: the MX side (TLS, deliveries).
 * MAIN ("starttls-proxy[pid]") is everything else, which such tools skip. */
enum log_prog { LOG_PROG_MAIN, LOG_PROG_SMTPD, LOG_PROG_QMGR, LOG_PROG_SMTP };

/* A free-form line: "<id>: <text>" (or {"id":..,"msg":..}). id may be NULL. */
void log_msg(enum log_level level, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* log_msg under program prog (the JSON format has no program and ignores it). */
void log_as(enum log_prog prog, enum log_level level, const char *id, const char *fmt,
            ...) __attribute__((format(printf, 4, 5)));

/* One delivery outcome for one recipient, Postfix's smtp(8) line with our facts after
 * the reply (pflogsumm reads the fields from to= to status= in Postfix's order):
 * "ID: to=<rcpt>, relay=host[ip]:port, delay=1.2, dsn=2.0.0,
 *  status=sent (250 2.0.0 Ok), tls=TLSv1.3/Verified, policy=dane". */
struct log_delivery {
  const char *id;
  const char *from;
  const char *to;
  const char *relay;   /* "host[ip]:port" or "none" */
  double delay;        /* seconds since the transaction began */
  const char *tls;     /* "TLSv1.3" or "none" */
  const char *verdict; /* "Untrusted", ... or NULL */
  const char *policy;  /* "may", ... */
  const char *dsn;     /* "2.0.0" */
  const char *status;  /* sent, deferred, bounced */
  const char *reply;   /* "250 2.0.0 Ok" (first line) */
};
void log_delivery(const struct log_delivery *d);

#endif
