/* What the proxy saw, fanned out to whoever counts it: the counters (metrics.c) and
 * TLS reporting (tlsrpt.c), each registered at start-up, before any worker thread
 * starts. The relay code calls these at fixed points and knows nothing of the
 * consumers: nothing here includes a layer above. Each call is cheap and never blocks,
 * and may come from any worker's thread (metrics.c locks its counters; TLS results
 * are forwarded). Without a registered consumer a call does nothing. */
#ifndef SP_OBSERVE_H
#define SP_OBSERVE_H

#include <stdbool.h>
#include <stddef.h>

#include "policy/dane.h"
#include "policy/mtasts.h"

enum observe_failure {
  OBSERVE_OK = 0,
  OBSERVE_NO_STARTTLS,   /* TLS required, not offered or refused */
  OBSERVE_HANDSHAKE,     /* the TLS handshake failed */
  OBSERVE_CERTIFICATE,   /* handshake done, certificate rejected (verify_error) */
  OBSERVE_MX_NOT_LISTED, /* MTA-STS enforce: host not in the policy */
  OBSERVE_TLSA_LOOKUP,   /* TLSA lookup failed / bogus */
  OBSERVE_DNSSEC,        /* DNSSEC required (dane-only) but the answers were insecure */
};

/* Why the domain's MTA-STS policy could not be had: it publishes an _mta-sts record
 * (v=STSv1), the policy fetch failed and no cached policy was in force, so delivery
 * went on without MTA-STS (RFC 8461 §5). */
enum observe_sts_failure {
  OBSERVE_STS_OK = 0,  /* a policy was had, or none is published */
  OBSERVE_STS_FETCH,   /* HTTP error, non-200, wrong Content-Type, timeout, DNS */
  OBSERVE_STS_INVALID, /* the body did not parse as a policy */
  OBSERVE_STS_WEBPKI,  /* the policy host's certificate did not validate */
};

/* One TLS session attempt to one MX host, judged under its policy. */
struct observe_tls {
  const char *domain;   /* the policy domain (recipient domain) */
  const char *mx_host;  /* receiving MX host name */
  const char *ip;       /* receiving IP, "" when not connected */
  const char *local_ip; /* our address on that connection, "" when not connected */
  const char *policy;   /* "mta-sts/enforce", "dane", "table/secure", "default/may" */
  enum observe_failure failure;
  long verify_error;            /* X509_V_ERR_* when failure is CERTIFICATE, else 0 */
  const char *detail;           /* human reason for failures */
  const struct sts_policy *sts; /* the MTA-STS policy in force, or NULL */
  const struct dane_tlsa *tlsa; /* the TLSA RRset in force, or NULL */
  size_t ntlsa;
  enum observe_sts_failure sts_failure; /* set on every attempt to such a domain */
  const char *sts_detail;               /* its reason ("HTTP 404"), or NULL */
};

/* Counts t in the metrics, then hands it to this thread's forwarder if one is set,
 * else to the TLS sink. t and what it points to are only borrowed for the call. */
void observe_tls_result(const struct observe_tls *t);

/* Where TLS results are consumed (TLS reporting: tlsrpt_record). Set once at start-up
 * by the daemon, before any worker thread starts; the sink runs on the main loop's
 * thread only. None set (the default, and in `check`): results are only counted. The
 * layers below never name the consumer. */
typedef void observe_tls_sink(const struct observe_tls *t);
void observe_set_tls_sink(observe_tls_sink *fn);
/* For worker threads (workers.c): TLS results go to fn, which must hand a copy to the
 * main loop, instead of to the sink. Per thread. */
void observe_set_tls_forward(observe_tls_sink *fn);
/* The main loop's side of forwarding: t (already counted in its worker) goes to the
 * sink alone. Main loop's thread only. */
void observe_tls_forwarded(const struct observe_tls *t);

/* A final outcome for one recipient ("sent", "deferred", "bounced"). */
/* The counters' consumer (metrics.c): one function per fact below, any may be NULL. */
struct observe_counters {
  void (*tls_result)(const struct observe_tls *t);
  void (*delivery)(const char *status, const char *verdict, const char *policy,
                   double seconds);
  void (*mx_connection)(bool reused);
  void (*handshake)(double seconds);
  void (*dns_failure)(void);
  void (*dns_query)(void);
  void (*dns_cache_hit)(bool inflight);
  void (*sts_fetch)(bool ok);
  void (*session)(bool opened);
  void (*cache_clients)(int dclients, int dup);
  void (*cache_error)(void);
};
/* Registers c (static storage); set once before any worker thread starts. */
void observe_set_counters(const struct observe_counters *c);

void observe_delivery(const char *status, const char *verdict, const char *policy,
                      double seconds);
/* An MX connection was opened (reused = false) or reused (true). */
void observe_mx_connection(bool reused);
/* A TLS handshake took this long. */
void observe_handshake(double seconds);
/* A DNS lookup failed (timeout, SERVFAIL). */
void observe_dns_failure(void);
/* A DNS query went to the resolver; a lookup was answered by the cache (inflight:
 * by joining an identical query already on the wire). */
void observe_dns_query(void);
void observe_dns_cache_hit(bool inflight);
/* An MTA-STS policy fetch ended. */
void observe_sts_fetch(bool ok);
/* Inbound sessions opened / closed, transactions by outcome. */
void observe_session(bool opened);
/* The shared cache's client (redis.c): dclients +1/-1 as a client is made or closed,
 * dup +1/-1 as its connection comes up or goes down. */
void observe_cache_clients(int dclients, int dup);
/* A shared cache operation failed (no reply, an error reply, Redis down). */
void observe_cache_error(void);

#endif
