/* syslog(3) for log.c, in a file of its own: <syslog.h> defines LOG_INFO and friends
 * as macros, which would shadow log.h's enum log_level. */
#ifndef SP_LOG_SYSLOG_H
#define SP_LOG_SYSLOG_H

void log__syslog_open(void);
/* level: enum log_level's value (error, warning, info, debug). ident: the line's
 * program name, a string that lives as long as the process (syslog keeps the pointer). */
void log__syslog(int level, const char *ident, const char *text);

#endif
