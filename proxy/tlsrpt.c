/* stub: being written */
#include "tlsrpt.h"

int tlsrpt_start(uv_loop_t *loop, struct runtime *rt, struct tlsrpt **out, char *err,
                 size_t errlen) {
  (void)loop, (void)rt, (void)err, (void)errlen;
  *out = NULL;
  return 0;
}
void tlsrpt_close(struct tlsrpt *t) {
  (void)t;
}
void tlsrpt_record(const struct observe_tls *t) {
  (void)t;
}
int tlsrpt_send_now(const char *config_path) {
  (void)config_path;
  return 1;
}
