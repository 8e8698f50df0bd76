/* What every transaction does with its MX connection, SMTP or LMTP: the MAIL and
 * RCPT lines it sends, and letting the connection go (pooled or closed). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "proxy/core/observe.h"
#include "proxy/inbound/session_internal.h"
#include "proxy/outbound/pool.h"

void session__mail_line(struct session *s, struct upstream *up, char *out, size_t cap) {
  unsigned caps = upstream_caps(up)->flags;
  size_t n = (size_t)snprintf(out, cap, "MAIL FROM:<%s>", s->txn.from);
  char params[sizeof s->txn.mail_params];
  snprintf(params, sizeof params, "%s", s->txn.mail_params);
  for (char *save, *p = strtok_r(params, " ", &save); p;
       p = strtok_r(NULL, " ", &save)) {
    bool keep = (!strncasecmp(p, "SIZE=", 5) && (caps & SMTP_CAP_SIZE)) ||
                (!strncasecmp(p, "BODY=", 5) && (caps & SMTP_CAP_8BITMIME)) ||
                (!strcasecmp(p, "SMTPUTF8") && (caps & SMTP_CAP_SMTPUTF8)) ||
                ((!strncasecmp(p, "RET=", 4) || !strncasecmp(p, "ENVID=", 6)) &&
                 (caps & SMTP_CAP_DSN));
    if (keep && n < cap)
      n += (size_t)snprintf(out + n, cap - n, " %s", p);
  }
}

void session__rcpt_line(const struct upstream *up, const char *addr, const char *params,
                        char *out, size_t cap) {
  /* RFC 3461's NOTIFY and ORCPT only where the MX offers DSN; we advertised it. */
  bool dsn = upstream_caps(up)->flags & SMTP_CAP_DSN;
  snprintf(out, cap, "RCPT TO:<%s>%s%s", addr, dsn && params[0] ? " " : "",
           dsn ? params : "");
}

void session__upstream_release(struct session *s, struct upstream *up, bool open_txn,
                               bool reset) {
  if (!up)
    return;
  struct pool *pool = s->l ? s->l->pool : NULL;
  if (!open_txn && !reset && pool)
    pool_put(pool, up); /* closes it politely itself when it is not idle */
  else
    upstream_close(up, !reset);
}

struct upstream *session__upstream_pooled(struct session *s, const char *domain,
                                          const struct upstream_events *ev, void *arg) {
  struct pool *pool = s->l ? s->l->pool : NULL;
  struct upstream *up = pool ? pool_take(pool, domain, s->rt) : NULL;
  if (!up)
    return NULL;
  upstream_set_owner(up, ev, arg, NULL, s->id);
  observe_mx_connection(true);
  return up;
}
