#include "proxy/core/log_syslog.h"

#include <pthread.h>
#include <syslog.h>

/* openlog(3)'s ident is process-wide: the lock keeps each line's ident and the line
 * together when several threads log. */
static pthread_mutex_t syslog_lock = PTHREAD_MUTEX_INITIALIZER;

void log__syslog_open(void) {
  pthread_mutex_lock(&syslog_lock);
  openlog("starttls-proxy", LOG_PID | LOG_NDELAY, LOG_MAIL);
  pthread_mutex_unlock(&syslog_lock);
}

void log__syslog(int level, const char *ident, const char *text) {
  static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
  pthread_mutex_lock(&syslog_lock);
  /* Already connected (LOG_NDELAY): this only swaps the tag, with no reconnect. */
  openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
  syslog(prio[level >= 0 && level < 4 ? level : 2], "%s", text);
  pthread_mutex_unlock(&syslog_lock);
}
