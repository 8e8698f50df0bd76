/* `starttls-proxy check DOMAIN`: what the proxy would do for a destination, and a live
 * STARTTLS probe of each MX (no message is sent). */
#ifndef SP_CHECK_H
#define SP_CHECK_H

#include <stdbool.h>

/* Returns the exit code: 0 when mail to domain would be delivered under its policy. */
int check_main(const char *config_path, const char *domain, bool json);

#endif
