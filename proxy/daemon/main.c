/* starttls-proxy: command line, signals, and the event loop. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "proxy/config/config.h"
#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/core/obj.h"
#include "proxy/core/observe.h"
#include "proxy/daemon/check.h"
#include "proxy/daemon/metrics.h"
#include "proxy/daemon/privileges.h"
#include "proxy/daemon/workers.h"
#include "proxy/inbound/listener.h"
#include "proxy/mtasts/store.h"
#include "proxy/mtasts/sts.h"
#include "proxy/outbound/pool.h"
#include "proxy/outbound/runtime.h"
#include "proxy/tlsrpt/tlsrpt.h"

#define DRAIN_DEADLINE_MS 30000 /* SIGTERM: how long open transactions may finish */

#define DAEMON_MAGIC 0x444d4f4eu /* "DMON" */

/* On run()'s stack while the loop runs; its handles and the main loop point back at
 * it. Never freed: its magic is never zeroed. */
struct daemon {
  uint32_t magic;
  uv_loop_t *loop;
  const char *config_path;
  struct listener listener;
  uv_signal_t sig_term, sig_int, sig_hup;
  uv_timer_t deadline;
  struct metrics *metrics; /* owned; NULL when metrics.listen is unset */
  struct tlsrpt *tlsrpt;   /* owned; NULL when tlsrpt.enabled is no */
  struct workers *workers; /* owned; NULL with one event loop */
  bool stopping, stopped, main_idle;
};

static void usage(FILE *out) {
  fprintf(out,
          "usage: starttls-proxy [-c FILE]          run the proxy\n"
          "       starttls-proxy --check-config FILE check a configuration file\n"
          "       starttls-proxy [-c FILE] check DOMAIN [--json]\n"
          "                                         policy, DNS and a live probe of "
          "each MX\n"
          "       starttls-proxy [-c FILE] tlsrpt send   send pending TLS reports now\n"
          "       starttls-proxy [-c FILE] policy show|purge DOMAIN\n"
          "                                         the cached MTA-STS policy\n"
          "       starttls-proxy --config-keys     list every configuration key\n"
          "       starttls-proxy --version | --help\n"
          "FILE defaults to /etc/starttls-proxy/proxy.yaml.\n");
}

static void print_key(const char *key, void *arg) {
  (void)arg;
  printf("%s\n", key);
}

static int load_config(const char *path, struct config **cfg) {
  char *errors = NULL;
  int rc = config_load(path, cfg, &errors);
  if (rc < 0) {
    fprintf(stderr, "%s", errors ? errors : "cannot load configuration\n");
    free(errors);
  }
  return rc;
}

static int check_config(const char *path) {
  struct config *cfg;
  if (load_config(path, &cfg) < 0)
    return 1;
  char err[512];
  int rc = runtime_check_tls(cfg, err, sizeof err);
  if (rc < 0)
    fprintf(stderr, "%s: outbound.tls: %s\n", path, err);
  else if ((rc = tlsrpt_check(cfg, err, sizeof err)) < 0)
    fprintf(stderr, "%s: %s\n", path, err);
  else
    printf("configuration OK\n");
  if (rc == 0 && cfg->tlsrpt_enabled && !cfg->tlsrpt_dkim_key)
    fprintf(stderr,
            "%s: warning: tlsrpt.dkim is not set: reports to mailto: rua will not be "
            "sent (RFC 8460 section 3: they MUST be DKIM-signed)\n",
            path);
  config_unref(cfg);
  return rc < 0 ? 1 : 0;
}

/* `policy show DOMAIN` and `policy purge DOMAIN`: the persisted MTA-STS cache. */
static int policy_command(const char *path, const char *verb, const char *domain) {
  struct config *cfg;
  if (load_config(path, &cfg) < 0)
    return 1;
  char file[STORE_PATH_MAX], err[512];
  store_path(cfg->state_dir, file, sizeof file);
  struct store *st;
  int rc = 1;
  if (store_open(file, &st, err, sizeof err) < 0) {
    fprintf(stderr, "%s: %s\n", file, err);
    config_unref(cfg);
    return 1;
  }
  struct store_policy p;
  if (!strcmp(verb, "purge")) {
    int n = store_delete_policy(st, domain);
    if (n == 1)
      printf("purged the MTA-STS policy of %s\n", domain);
    else
      fprintf(stderr, "no cached MTA-STS policy for %s\n", domain);
    rc = n == 1 ? 0 : 1;
  } else if (store_get_policy(st, domain, &p) == 1) {
    char fetched[64], expires[64];
    time_t f = (time_t)p.fetched_at, e = (time_t)p.expires_at;
    strftime(fetched, sizeof fetched, "%Y-%m-%dT%H:%M:%SZ", gmtime(&f));
    strftime(expires, sizeof expires, "%Y-%m-%dT%H:%M:%SZ", gmtime(&e));
    printf("domain: %s\nid: %s\nfetched: %s\nexpires: %s\n\n%s", p.domain, p.id,
           fetched, expires, p.text);
    store_policy_free(&p);
    rc = 0;
  } else {
    fprintf(stderr, "no cached MTA-STS policy for %s\n", domain);
  }
  store_close(st);
  config_unref(cfg);
  return rc;
}

static void daemon_close_handles(struct daemon *d) {
  if (d->stopped)
    return;
  d->stopped = true;
  uv_close((uv_handle_t *)&d->sig_term, NULL);
  uv_close((uv_handle_t *)&d->sig_int, NULL);
  uv_close((uv_handle_t *)&d->sig_hup, NULL);
  uv_close((uv_handle_t *)&d->deadline, NULL);
  metrics_close(d->metrics);
  d->metrics = NULL;
  pool_close(d->listener.ctx.pool);
  d->listener.ctx.pool = NULL;
  tlsrpt_close(d->tlsrpt);
  d->tlsrpt = NULL;
  listener_close(&d->listener);
  workers_free(d->workers);
  d->workers = NULL;
}

/* Draining ends when the main loop's sessions and every worker are done. */
static void daemon_maybe_done(struct daemon *d) {
  if (!d->main_idle || !workers_done(d->workers))
    return;
  log_msg(LOG_INFO, NULL, "all sessions closed, exiting");
  daemon_close_handles(d);
}

static void on_idle(struct listener *l) {
  struct daemon *d;
  CAST_OBJ_NOTNULL(d, l->loop->data, DAEMON_MAGIC);
  d->main_idle = true;
  daemon_maybe_done(d);
}

static void on_workers_done(void *arg) {
  struct daemon *d;
  CAST_OBJ_NOTNULL(d, arg, DAEMON_MAGIC);
  daemon_maybe_done(d);
}

static void on_deadline(uv_timer_t *t) {
  struct daemon *d;
  CAST_OBJ_NOTNULL(d, t->data, DAEMON_MAGIC);
  log_msg(LOG_WARNING, NULL, "shutdown deadline reached: aborting %zu sessions",
          d->listener.nsessions);
  listener_abort(&d->listener);
  workers_abort(d->workers);
}

static void on_stop_signal(uv_signal_t *h, int signum) {
  struct daemon *d;
  CAST_OBJ_NOTNULL(d, h->data, DAEMON_MAGIC);
  if (d->stopping)
    return;
  d->stopping = true;
  log_msg(LOG_INFO, NULL, "%s: stopping, %zu sessions open", strsignal(signum),
          d->listener.nsessions);
  uv_timer_start(&d->deadline, on_deadline, DRAIN_DEADLINE_MS, 0);
  workers_drain(d->workers);
  listener_drain(&d->listener);
}

/* A bad new configuration is reported and the running one kept. Listen addresses
 * are bound at start and need a restart to change. */
static void on_reload_signal(uv_signal_t *h, int signum) {
  (void)signum;
  struct daemon *d;
  CAST_OBJ_NOTNULL(d, h->data, DAEMON_MAGIC);
  struct config *cfg;
  if (load_config(d->config_path, &cfg) < 0) {
    log_msg(LOG_ERROR, NULL, "reload of %s failed: keeping the running configuration",
            d->config_path);
    return;
  }
  struct runtime *rt;
  char err[512];
  if (runtime_new(d->loop, cfg, &rt, err, sizeof err) < 0) {
    log_msg(LOG_ERROR, NULL,
            "reload of %s failed: %s: keeping the running configuration",
            d->config_path, err);
    config_unref(cfg);
    return;
  }
  log_configure(cfg->log_format, cfg->log_level, cfg->hostname);
  log_set_output(cfg->log_output);
  listener_set_runtime(&d->listener, rt);
  tlsrpt_close(d->tlsrpt);
  d->tlsrpt = NULL;
  if (tlsrpt_start(d->loop, rt, &d->tlsrpt, err, sizeof err) < 0)
    log_msg(LOG_ERROR, NULL, "TLS reporting not restarted: %s", err);
  runtime_unref(rt);
  config_unref(cfg);
  workers_reload(d->workers); /* each worker reads the file again itself */
  log_msg(LOG_INFO, NULL, "configuration reloaded from %s", d->config_path);
}

static int run(const char *path) {
  /* Before the runtime (its Redis client counts itself) and any worker thread:
   * observe reads the counters without a lock. */
  observe_set_counters(&metrics_counters);
  struct config *cfg;
  if (load_config(path, &cfg) < 0)
    return 1;
  log_configure(cfg->log_format, cfg->log_level, cfg->hostname);
  log_set_output(cfg->log_output);
  struct daemon d = {
      .magic = DAEMON_MAGIC, .loop = uv_default_loop(), .config_path = path};
  d.loop->data = &d;
  struct runtime *rt;
  char err[512];
  if (runtime_new(d.loop, cfg, &rt, err, sizeof err) < 0) {
    fprintf(stderr, "%s: %s\n", path, err);
    config_unref(cfg);
    return 1;
  }
  config_unref(cfg);
  observe_set_tls_sink(tlsrpt_record); /* before any worker thread starts */
  /* Signals first: a supervisor may signal as soon as the port accepts. */
  uv_signal_init(d.loop, &d.sig_term);
  uv_signal_init(d.loop, &d.sig_int);
  uv_signal_init(d.loop, &d.sig_hup);
  uv_timer_init(d.loop, &d.deadline);
  d.sig_term.data = d.sig_int.data = d.sig_hup.data = d.deadline.data = &d;
  uv_signal_start(&d.sig_term, on_stop_signal, SIGTERM);
  uv_signal_start(&d.sig_int, on_stop_signal, SIGINT);
  uv_signal_start(&d.sig_hup, on_reload_signal, SIGHUP);
  signal(SIGPIPE, SIG_IGN);
  int rc = 0;
  unsigned nloops = workers_count(rt->cfg);
  uv_os_sock_t *fds = NULL;
  if (nloops > 1 && (rc = workers_start(d.loop, rt->cfg, path, nloops, on_workers_done,
                                        &d, &d.workers, err, sizeof err)) == 0)
    fds = workers_take_main_fds(d.workers);
  if (rc == 0)
    rc = listener_start_fds(&d.listener, d.loop, rt, fds, err, sizeof err);
  free(fds);
  d.listener.on_idle = on_idle; /* listener_start zeroes the listener */
  struct pool_limits lim = pool_limits_of(rt->cfg);
  d.listener.ctx.pool = pool_new(d.loop, &lim);
  /* Bound to the ports: root is not needed any more. */
  if (rc == 0 && (rc = privileges_drop(d.listener.rt->cfg, err, sizeof err)) < 0)
    rc = SP_E_CONFIG;
  const struct config *live = d.listener.rt->cfg;
  if (rc == 0)
    rc = metrics_start(d.loop, live->metrics_enabled ? &live->metrics_listen : NULL,
                       &d.metrics, err, sizeof err);
  if (rc == 0)
    rc = tlsrpt_start(d.loop, rt, &d.tlsrpt, err, sizeof err);
  runtime_unref(rt);
  if (rc < 0) {
    log_msg(LOG_ERROR, NULL, "%s", err);
    daemon_close_handles(&d);
    uv_run(d.loop, UV_RUN_DEFAULT);
    uv_loop_close(d.loop);
    return 1;
  }
  log_msg(LOG_INFO, NULL, "starttls-proxy %s ready", SP_VERSION);
  uv_run(d.loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(d.loop);
  if (rc != 0)
    log_msg(LOG_ERROR, NULL, "event loop closed with handles open: %s",
            uv_strerror(rc));
  return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  const char *config = "/etc/starttls-proxy/proxy.yaml";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--version")) {
      printf("starttls-proxy %s\n", SP_VERSION);
      return 0;
    } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--config-keys")) {
      config_keys(print_key, NULL);
      return 0;
    } else if (!strcmp(a, "--check-config")) {
      return check_config(i + 1 < argc ? argv[i + 1] : config);
    } else if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && i + 1 < argc) {
      config = argv[++i];
    } else if (!strcmp(a, "check") && i + 1 < argc) {
      bool json = i + 2 < argc && !strcmp(argv[i + 2], "--json");
      return check_main(config, argv[i + 1], json);
    } else if (!strcmp(a, "tlsrpt") && i + 1 < argc && !strcmp(argv[i + 1], "send")) {
      return tlsrpt_send_now(config);
    } else if (!strcmp(a, "policy") && i + 2 < argc &&
               (!strcmp(argv[i + 1], "show") || !strcmp(argv[i + 1], "purge"))) {
      return policy_command(config, argv[i + 1], argv[i + 2]);
    } else {
      usage(stderr);
      return 2;
    }
  }
  return run(config);
}
