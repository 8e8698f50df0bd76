/* One error space for the proxy: functions return 0 (or a count) on success and a
 * negative SP_E_* code on failure. The table gives each code a name and a message. */
#ifndef SP_ERROR_H
#define SP_ERROR_H

#define SP_ERROR_MAP(X)                                                                \
  X(NOMEM, "out of memory")                                                            \
  X(INVAL, "invalid argument")                                                         \
  X(SYNTAX, "syntax error")                                                            \
  X(UNKNOWN_CMD, "command not recognized")                                             \
  X(TOOLONG, "line too long")                                                          \
  X(TRUNCATED, "truncated input")                                                      \
  X(OVERFLOW, "too many items")                                                        \
  X(TIMEOUT, "timed out")                                                              \
  X(EOF, "connection closed")                                                          \
  X(IO, "I/O error")                                                                   \
  X(TLS, "TLS error")                                                                  \
  X(PROTOCOL, "protocol error")                                                        \
  X(DNS_TEMP, "temporary DNS failure")                                                 \
  X(DNS_NXDOMAIN, "domain does not exist")                                             \
  X(DNS_NODATA, "no records of that type")                                             \
  X(DNS_NULLMX, "domain accepts no mail (null MX)")                                    \
  X(DNS_FORMAT, "malformed DNS message")                                               \
  X(CANCELED, "canceled")                                                              \
  X(CONFIG, "configuration error")                                                     \
  X(CERTIFICATE, "certificate not verified")                                           \
  X(ADDRESS, "address not allowed")                                                    \
  X(DKIM, "DKIM signing failed")

enum sp_error {
  SP_OK = 0,
#define SP_ERROR_ENUM(name, msg) SP_E_##name##__INDEX,
  SP_E__BASE = 0,
  SP_ERROR_MAP(SP_ERROR_ENUM)
#undef SP_ERROR_ENUM
};

/* SP_E_NOMEM == -1, SP_E_INVAL == -2, ... in table order. */
#define SP_ERROR_VALUE(name, msg) SP_E_##name = -(SP_E_##name##__INDEX),
enum sp_error_value { SP_ERROR_MAP(SP_ERROR_VALUE) };
#undef SP_ERROR_VALUE

/* "out of memory" for SP_E_NOMEM; "unknown error" outside the table. Static strings. */
const char *sp_strerror(int err);

#endif
