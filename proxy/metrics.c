/* stub: being written */
#include "metrics.h"

int metrics_start(uv_loop_t *loop, const struct config *cfg, struct metrics **out,
                  char *err, size_t errlen) {
  (void)loop, (void)cfg, (void)err, (void)errlen;
  *out = NULL;
  return 0;
}
void metrics_close(struct metrics *m) {
  (void)m;
}
void metrics_tls_result(const struct observe_tls *t) {
  (void)t;
}
void metrics_delivery(const char *status, const char *verdict, const char *policy,
                      double seconds) {
  (void)status, (void)verdict, (void)policy, (void)seconds;
}
void metrics_mx_connection(bool reused) {
  (void)reused;
}
void metrics_handshake(double seconds) {
  (void)seconds;
}
void metrics_dns_failure(void) {}
void metrics_sts_fetch(bool ok) {
  (void)ok;
}
void metrics_session(bool opened) {
  (void)opened;
}
