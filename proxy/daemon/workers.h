/* More than one event loop: `workers: N` (or auto, one per CPU but one) runs the main loop
 * and N-1 worker threads, each with its own loop, its own listening sockets on every
 * listen address (SO_REUSEPORT: the kernel spreads new connections over them), its
 * own runtime (configuration, outbound TLS context and session cache, resolver,
 * MTA-STS cache) and its own MX connection pool. Nothing of a session crosses loops.
 *
 * The main loop keeps what is process-wide: signals, the metrics listener (counters
 * are locked in metrics.c), TLS reporting (a worker's TLS results are copied to the
 * main loop, see observe.h). SIGHUP reaches every worker (each rebuilds its runtime
 * from the file); SIGTERM drains every worker.
 *
 * Ownership: struct workers owns the threads, their loops and the sockets it bound
 * until a listener takes them; workers_free() joins the threads. Every function is
 * for the main thread. */
#ifndef SP_WORKERS_H
#define SP_WORKERS_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "proxy/config/config.h"

struct workers;

/* The number of loops cfg asks for (auto: one per CPU this process may use but one,
 * and at least one: 1 on up to 2 CPUs). */
unsigned workers_count(const struct config *cfg);

/* Binds n sets of SO_REUSEPORT sockets for cfg's listen addresses, and starts n-1
 * worker threads on sets 1..n-1 (loading config_path themselves); set 0 is for the
 * main loop's listener (workers_take_main_fds). Returns 0, or an error with the reason in
 * err (nothing left running). on_done(arg) runs on the main loop once every worker
 * has finished after workers_drain(). */
int workers_start(uv_loop_t *main_loop, const struct config *cfg,
                  const char *config_path, unsigned n, void (*on_done)(void *arg),
                  void *arg, struct workers **out, char *err, size_t errlen);
/* Hands set 0 (malloc'd, cfg->nlisten sockets) to the caller, for
 * listener_start_fds(); the caller frees the array, the listener owns the sockets. */
uv_os_sock_t *workers_take_main_fds(struct workers *w);
void workers_reload(struct workers *w);
void workers_drain(struct workers *w);
void workers_abort(struct workers *w);
bool workers_done(const struct workers *w);
/* Joins the threads (drains them first if needed) and frees; NULL is a no-op. */
void workers_free(struct workers *w);

#endif
