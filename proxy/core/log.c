#include "proxy/core/log.h"
#include "proxy/core/log_syslog.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Set by the main thread (start, SIGHUP), read by every worker's: atomics, and the
 * host name under its lock. */
static _Atomic(enum log_format) log_format = LOG_FORMAT_POSTFIX;
static _Atomic(enum log_level) log_level = LOG_INFO;
static pthread_mutex_t hostname_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_hostname[256] = "localhost";
static _Atomic(enum log_output) log_output = LOG_OUTPUT_STDERR;

void log_set_output(enum log_output output) {
  if (output == LOG_OUTPUT_SYSLOG && log_output != LOG_OUTPUT_SYSLOG)
    log__syslog_open();
  log_output = output;
}

void log_configure(enum log_format format, enum log_level level, const char *hostname) {
  log_format = format;
  log_level = level;
  pthread_mutex_lock(&hostname_lock);
  snprintf(log_hostname, sizeof log_hostname, "%s", hostname);
  pthread_mutex_unlock(&hostname_lock);
}

bool log_enabled(enum log_level level) {
  return level <= log_level;
}

static const char *const level_names[] = {"error", "warning", "info", "debug"};

/* Appends s to out as a JSON string body (without quotes). */
static size_t json_escape(char *out, size_t cap, size_t pos, const char *s) {
  for (; *s && pos + 7 < cap; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      out[pos++] = '\\';
      out[pos++] = (char)ch;
    } else if (ch < 0x20 || ch == 0x7f) {
      pos += (size_t)snprintf(out + pos, cap - pos, "\\u%04x", ch);
    } else {
      out[pos++] = (char)ch;
    }
  }
  out[pos] = '\0';
  return pos;
}

/* Postfix's program names under ours: pflogsumm --syslog-name=starttls-proxy wants
 * "starttls-proxy/smtpd" and friends. Static: syslog keeps the pointer. */
static const char *const prog_names[] = {
    [LOG_PROG_MAIN] = "starttls-proxy",
    [LOG_PROG_SMTPD] = "starttls-proxy/smtpd",
    [LOG_PROG_QMGR] = "starttls-proxy/qmgr",
    [LOG_PROG_SMTP] = "starttls-proxy/smtp",
};

/* Writes one finished line with a single write(2) so concurrent writers don't mix;
 * for syslog, without the first skip bytes (our own date/host/program prefix). */
static void log_emit(char *line, size_t len, size_t cap, size_t skip, enum log_level lv,
                     enum log_prog prog) {
  if (len >= cap - 1)
    len = cap - 2;
  if (log_output == LOG_OUTPUT_SYSLOG) {
    line[len] = '\0';
    log__syslog((int)lv, prog_names[prog], line + (skip < len ? skip : len));
    return;
  }
  line[len++] = '\n';
  ssize_t rc = write(STDERR_FILENO, line, len);
  (void)rc;
}

static size_t postfix_prefix(char *out, size_t cap, enum log_prog prog) {
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  size_t n = strftime(out, cap, "%b %e %H:%M:%S ", &tm);
  pthread_mutex_lock(&hostname_lock);
  n += (size_t)snprintf(out + n, cap - n, "%s %s[%d]: ", log_hostname, prog_names[prog],
                        (int)getpid());
  pthread_mutex_unlock(&hostname_lock);
  return n;
}

static size_t json_prefix(char *out, size_t cap, enum log_level level) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  size_t n = strftime(out, cap, "{\"time\":\"%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(out + n, cap - n, ".%03dZ\",\"level\":\"%s\"",
                        (int)(tv.tv_usec / 1000), level_names[level]);
  return n;
}

static void log_vas(enum log_prog prog, enum log_level level, const char *id,
                    const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

static void log_vas(enum log_prog prog, enum log_level level, const char *id,
                    const char *fmt, va_list ap) {
  char text[2048];
  vsnprintf(text, sizeof text, fmt, ap);

  char line[4096];
  size_t n, skip = 0;
  if (log_format == LOG_FORMAT_JSON) {
    n = json_prefix(line, sizeof line, level);
    if (id) {
      n += (size_t)snprintf(line + n, sizeof line - n, ",\"id\":\"");
      n = json_escape(line, sizeof line, n, id);
      n += (size_t)snprintf(line + n, sizeof line - n, "\"");
    }
    n += (size_t)snprintf(line + n, sizeof line - n, ",\"msg\":\"");
    n = json_escape(line, sizeof line, n, text);
    n += (size_t)snprintf(line + n, sizeof line - n, "\"}");
  } else {
    n = skip = postfix_prefix(line, sizeof line, prog);
    const char *tag = level == LOG_ERROR     ? "error: "
                      : level == LOG_WARNING ? "warning: "
                                             : "";
    n += (size_t)snprintf(line + n, sizeof line - n, "%s%s%s%s", tag, id ? id : "",
                          id ? ": " : "", text);
  }
  log_emit(line, n < sizeof line ? n : sizeof line - 1, sizeof line, skip, level, prog);
}

void log_msg(enum log_level level, const char *id, const char *fmt, ...) {
  if (!log_enabled(level))
    return;
  va_list ap;
  va_start(ap, fmt);
  log_vas(LOG_PROG_MAIN, level, id, fmt, ap);
  va_end(ap);
}

void log_as(enum log_prog prog, enum log_level level, const char *id, const char *fmt,
            ...) {
  if (!log_enabled(level))
    return;
  va_list ap;
  va_start(ap, fmt);
  log_vas(prog, level, id, fmt, ap);
  va_end(ap);
}

static size_t json_field(char *line, size_t cap, size_t n, const char *key,
                         const char *value) {
  if (!value || n >= cap)
    return n;
  n += (size_t)snprintf(line + n, cap - n, ",\"%s\":\"", key);
  if (n >= cap)
    return cap - 1;
  n = json_escape(line, cap, n, value);
  n += (size_t)snprintf(line + n, cap - n, "\"");
  return n < cap ? n : cap - 1;
}

void log_delivery(const struct log_delivery *d) {
  if (!log_enabled(LOG_INFO))
    return;
  char line[4096];
  size_t n, skip = 0;
  if (log_format == LOG_FORMAT_JSON) {
    n = json_prefix(line, sizeof line, LOG_INFO);
    n = json_field(line, sizeof line, n, "event", "delivery");
    n = json_field(line, sizeof line, n, "id", d->id);
    n = json_field(line, sizeof line, n, "from", d->from);
    n = json_field(line, sizeof line, n, "to", d->to);
    n = json_field(line, sizeof line, n, "relay", d->relay);
    n += (size_t)snprintf(line + n, sizeof line - n, ",\"delay\":%.2f", d->delay);
    n = json_field(line, sizeof line, n, "tls", d->tls);
    n = json_field(line, sizeof line, n, "verdict", d->verdict);
    n = json_field(line, sizeof line, n, "policy", d->policy);
    n = json_field(line, sizeof line, n, "dsn", d->dsn);
    n = json_field(line, sizeof line, n, "status", d->status);
    n = json_field(line, sizeof line, n, "reply", d->reply);
    n += (size_t)snprintf(line + n, sizeof line - n, "}");
  } else {
    /* pflogsumm parses to=, relay=, delay=, dsn= and status= in this order with
     * nothing between them; our own facts follow the reply. */
    n = skip = postfix_prefix(line, sizeof line, LOG_PROG_SMTP);
    n += (size_t)snprintf(line + n, sizeof line - n,
                          "%s: to=<%s>, relay=%s, delay=%.2f, dsn=%s, status=%s (%s), "
                          "tls=%s%s%s, policy=%s",
                          d->id, d->to, d->relay, d->delay, d->dsn, d->status, d->reply,
                          d->tls, d->verdict ? "/" : "", d->verdict ? d->verdict : "",
                          d->policy ? d->policy : "none");
  }
  log_emit(line, n < sizeof line ? n : sizeof line - 1, sizeof line, skip, LOG_INFO,
           LOG_PROG_SMTP);
}
