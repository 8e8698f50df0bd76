/* What every transaction does with its MX connection, SMTP or LMTP: the MAIL and
 * RCPT lines it sends, letting the connection go (pooled or closed), and keeping it
 * with the session between transactions (SMTP). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "proxy/core/obj.h"
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
  struct pool *pool = s->ctx ? s->ctx->pool : NULL;
  if (!open_txn && !reset && pool)
    pool_put(pool, up); /* closes it politely itself when it is not idle */
  else
    upstream_close(up, !reset);
}

struct upstream *session__upstream_pooled(struct session *s, const char *domain,
                                          const struct upstream_events *ev, void *arg) {
  struct pool *pool = s->ctx ? s->ctx->pool : NULL;
  struct upstream *up = pool ? pool_take(pool, domain, s->rt) : NULL;
  if (!up)
    return NULL;
  upstream_set_owner(up, ev, arg, NULL, s->id);
  observe_mx_connection(true);
  return up;
}

/* ---- kept between transactions ---------------------------------------------------- */

static struct session *kept_owner(void *arg) {
  struct session *s;
  CAST_OBJ_NOTNULL(s, arg, SESSION_MAGIC);
  return s;
}

static void kept_drop(struct session *s, bool graceful) {
  upstream_close(s->kept, graceful);
  s->kept = NULL;
  s->rset_owed = 0;
}

static void on_kept_other(void *arg) {
  kept_owner(arg);
}

static void on_kept_failed(void *arg, const char *reasons, bool policy) {
  (void)reasons;
  (void)policy;
  kept_drop(kept_owner(arg), false); /* a kept connection was ready: not expected */
}

static void on_kept_reply(void *arg, const struct smtp_reply *r) {
  struct session *s = kept_owner(arg);
  if (s->rset_owed > 0 && r->code / 100 == 2) {
    s->rset_owed--;
    return;
  }
  kept_drop(s, false); /* RSET refused, or a reply nobody asked for */
}

static void on_kept_lost(void *arg, const char *reason) {
  (void)reason;
  kept_drop(kept_owner(arg), false);
}

static const struct upstream_events kept_events = {
    .on_ready = on_kept_other,
    .on_failed = on_kept_failed,
    .on_reply = on_kept_reply,
    .on_drain = on_kept_other,
    .on_lost = on_kept_lost,
};

struct upstream *session__mx_take(struct session *s, const char *domain,
                                  const struct upstream_events *ev, void *arg,
                                  unsigned *rset_owed) {
  struct upstream *up = s->kept;
  unsigned owed = s->rset_owed;
  if (!up)
    return NULL;
  s->kept = NULL;
  s->rset_owed = 0;
  if (strcmp(upstream_domain(up), domain) != 0) {
    session__upstream_release(s, up, false, false);
    return NULL;
  }
  upstream_set_owner(up, ev, arg, NULL, NULL);
  *rset_owed = owed;
  return up;
}

void session__mx_keep(struct session *s, struct upstream *up, bool open_txn,
                      unsigned owed) {
  if (s->kept)
    session__upstream_release(s, s->kept, false, false);
  s->kept = up;
  s->rset_owed = owed;
  upstream_set_owner(up, &kept_events, s, NULL, NULL);
  if (!open_txn)
    return;
  if (upstream_command(up, "RSET") < 0)
    kept_drop(s, false);
  else
    s->rset_owed++;
}
