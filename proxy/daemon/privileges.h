/* Dropping root after the listeners are bound: setgid/initgroups/setuid to cfg->user
 * and a check that root cannot be regained. */
#ifndef SP_PRIVILEGES_H
#define SP_PRIVILEGES_H

#include <stddef.h>

#include "proxy/config/config.h"

/* No-op when cfg->user is "" or the process is not root. Returns 0, or -1 with the
 * reason in err (unknown user, set*id failure). */
int privileges_drop(const struct config *cfg, char *err, size_t errlen);

#endif
