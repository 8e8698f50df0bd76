#include "pool.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

struct pool_slot {
  struct upstream *up;
  uint64_t parked_ms;
};

struct pool {
  uv_loop_t *loop;
  uv_timer_t timer; /* owned: expires idle connections */
  uint64_t idle_ms;
  struct pool_slot slots[POOL_MAX_IDLE];
  size_t n;
  bool closing;
};

static void pool_remove(struct pool *p, size_t i) {
  p->slots[i] = p->slots[--p->n];
}

static size_t pool_find(struct pool *p, const struct upstream *up) {
  for (size_t i = 0; i < p->n; i++)
    if (p->slots[i].up == up)
      return i;
  return p->n;
}

/* A parked connection broke (the MX closed it, a timeout): forget it. */
static void on_parked_lost(void *arg, const char *reason) {
  struct upstream *up = arg;
  (void)reason;
  struct pool *p = upstream_pool(up);
  size_t i = pool_find(p, up);
  if (i < p->n)
    pool_remove(p, i);
  upstream_close(up, false);
}

static void on_parked_other(void *arg) {
  (void)arg;
}
static void on_parked_reply(void *arg, const struct smtp_reply *r) {
  (void)r;
  on_parked_lost(arg, "unexpected reply");
}
static void on_parked_failed(void *arg, const char *reasons, bool policy) {
  (void)reasons, (void)policy;
  on_parked_lost(arg, "failed");
}

static const struct upstream_events pool_events = {
    .on_ready = on_parked_other,
    .on_failed = on_parked_failed,
    .on_reply = on_parked_reply,
    .on_drain = on_parked_other,
    .on_lost = on_parked_lost,
};

static void on_expire(uv_timer_t *t) {
  struct pool *p = t->data;
  uint64_t now = uv_now(p->loop);
  for (size_t i = 0; i < p->n;) {
    if (now - p->slots[i].parked_ms >= p->idle_ms) {
      struct upstream *up = p->slots[i].up;
      pool_remove(p, i);
      upstream_close(up, true);
    } else {
      i++;
    }
  }
  if (p->n == 0)
    uv_timer_stop(t);
}

struct pool *pool_new(uv_loop_t *loop, uint64_t idle_ms) {
  struct pool *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->loop = loop;
  p->idle_ms = idle_ms;
  uv_timer_init(loop, &p->timer);
  p->timer.data = p;
  return p;
}

void pool_put(struct pool *p, struct upstream *up) {
  size_t same = 0;
  for (size_t i = 0; p && i < p->n; i++)
    same += strcmp(upstream_domain(p->slots[i].up), upstream_domain(up)) == 0;
  if (!p || p->closing || p->idle_ms == 0 || p->n == POOL_MAX_IDLE ||
      same >= POOL_MAX_PER_DOMAIN || upstream_messages(up) >= POOL_MAX_MESSAGES ||
      !upstream_idle(up)) {
    upstream_close(up, true);
    return;
  }
  upstream_set_owner(up, &pool_events, up, p, NULL);
  p->slots[p->n++] = (struct pool_slot){.up = up, .parked_ms = uv_now(p->loop)};
  if (!uv_is_active((uv_handle_t *)&p->timer))
    uv_timer_start(&p->timer, on_expire, p->idle_ms / 4 + 1, p->idle_ms / 4 + 1);
}

struct upstream *pool_take(struct pool *p, const char *domain,
                           const struct runtime *rt) {
  /* The most recently parked connection is the likeliest to be alive. */
  for (size_t i = p->n; p && i-- > 0;) {
    struct upstream *up = p->slots[i].up;
    if (strcmp(upstream_domain(up), domain) != 0 || upstream_runtime(up) != rt)
      continue;
    pool_remove(p, i);
    log_msg(LOG_DEBUG, NULL, "reusing the connection to %s for %s", upstream_relay(up),
            domain);
    return up;
  }
  return NULL;
}

static void on_timer_closed(uv_handle_t *h) {
  free(h->data);
}

void pool_close(struct pool *p) {
  if (!p)
    return;
  p->closing = true;
  while (p->n > 0) {
    struct upstream *up = p->slots[p->n - 1].up;
    p->n--;
    upstream_close(up, true);
  }
  uv_close((uv_handle_t *)&p->timer, on_timer_closed);
}
