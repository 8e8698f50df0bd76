#include "log_syslog.h"

#include <syslog.h>

void log__syslog_open(void) {
  openlog("starttls-proxy", LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log__syslog(int level, const char *text) {
  static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
  syslog(prio[level >= 0 && level < 4 ? level : 2], "%s", text);
}
