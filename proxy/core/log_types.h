/* The settings of logging (log.level, log.format and log.output in the YAML), as
 * types alone: the pure configuration (config.h) stores them without reaching the
 * logging code, and logging (log.h) takes them without the configuration. */
#ifndef SP_LOG_TYPES_H
#define SP_LOG_TYPES_H

enum log_level { LOG_ERROR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
enum log_format { LOG_FORMAT_POSTFIX, LOG_FORMAT_JSON };
enum log_output { LOG_OUTPUT_STDERR, LOG_OUTPUT_SYSLOG };

#endif
