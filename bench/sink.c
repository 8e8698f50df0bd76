/* A STARTTLS SMTP sink for the benchmark: one process, one epoll loop, non-blocking
 * OpenSSL on the sockets. Accepts everything, discards message data, counts
 * connections, TLS handshakes (full and resumed) and messages.
 *
 *   sink -a ADDR -p PORT -c CERT -k KEY [-s STATSFILE]
 *
 * SIGUSR1 writes the counters to STATSFILE (atomically: tmp + rename), SIGTERM/SIGINT
 * write them and exit. Format, one line:
 *   connections=N handshakes=N resumed=N messages=N messages_plain=N bytes=N open=N
 * EHLO offers PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES and (before TLS)
 * STARTTLS. Commands are answered in order, pipelined or not. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define LINE_MAX_LEN 2048

struct conn {
  int fd;
  SSL *ssl;
  int handshaking;      /* TLS handshake in progress */
  int starttls_pending; /* 220 queued: start TLS once it is flushed */
  int closing;          /* QUIT answered: close once flushed */
  int in_data;          /* between 354 and the final dot */
  int dstate;           /* end-of-data scanner state, see scan_data() */
  int want_write;       /* the last SSL call wanted to write */
  uint32_t events;      /* current epoll interest */
  size_t inlen;
  char in[LINE_MAX_LEN + 2];
  char *out;
  size_t outlen, outoff, outcap;
};

static struct {
  unsigned long long connections, handshakes, resumed, messages, messages_plain, bytes,
      open;
} st;

static SSL_CTX *ctx;
static int epfd;
static const char *stats_path;
static const char *hostname = "sink.bench.test";
static int listen_tag; /* address used as the listener's epoll tag */
static int signal_tag;

static void write_stats(void) {
  char line[512];
  int n = snprintf(line, sizeof line,
                   "connections=%llu handshakes=%llu resumed=%llu messages=%llu "
                   "messages_plain=%llu bytes=%llu open=%llu\n",
                   st.connections, st.handshakes, st.resumed, st.messages,
                   st.messages_plain, st.bytes, st.open);
  if (!stats_path) {
    fputs(line, stdout);
    fflush(stdout);
    return;
  }
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", stats_path);
  FILE *f = fopen(tmp, "w");
  if (!f)
    return;
  fwrite(line, 1, (size_t)n, f);
  fclose(f);
  rename(tmp, stats_path);
}

static void out_add(struct conn *c, const char *s, size_t n) {
  if (c->outlen + n > c->outcap) {
    size_t cap = c->outcap ? c->outcap * 2 : 1024;
    while (cap < c->outlen + n)
      cap *= 2;
    c->out = realloc(c->out, cap);
    if (!c->out)
      abort();
    c->outcap = cap;
  }
  memcpy(c->out + c->outlen, s, n);
  c->outlen += n;
}
#define OUT(c, lit) out_add((c), (lit), sizeof(lit) - 1)

static void conn_close(struct conn *c) {
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  if (c->ssl)
    SSL_free(c->ssl);
  close(c->fd);
  free(c->out);
  free(c);
  st.open--;
}

static void command(struct conn *c, char *line, size_t len) {
  if (len >= 4) {
    if (!strncasecmp(line, "EHLO", 4)) {
      char buf[256];
      int n = snprintf(buf, sizeof buf,
                       "250-%s\r\n250-PIPELINING\r\n250-SIZE 0\r\n250-8BITMIME\r\n",
                       hostname);
      out_add(c, buf, (size_t)n);
      if (!c->ssl)
        OUT(c, "250-STARTTLS\r\n");
      OUT(c, "250 ENHANCEDSTATUSCODES\r\n");
      return;
    }
    if (!strncasecmp(line, "HELO", 4)) {
      OUT(c, "250 sink.bench.test\r\n");
      return;
    }
    if (!strncasecmp(line, "MAIL", 4)) {
      OUT(c, "250 2.1.0 Ok\r\n");
      return;
    }
    if (!strncasecmp(line, "RCPT", 4)) {
      OUT(c, "250 2.1.5 Ok\r\n");
      return;
    }
    if (!strncasecmp(line, "DATA", 4)) {
      OUT(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
      c->in_data = 1;
      c->dstate = 2; /* at the start of a line */
      return;
    }
    if (!strncasecmp(line, "RSET", 4) || !strncasecmp(line, "NOOP", 4)) {
      OUT(c, "250 2.0.0 Ok\r\n");
      return;
    }
    if (!strncasecmp(line, "QUIT", 4)) {
      OUT(c, "221 2.0.0 Bye\r\n");
      c->closing = 1;
      return;
    }
    if (len >= 8 && !strncasecmp(line, "STARTTLS", 8)) {
      if (c->ssl) {
        OUT(c, "503 5.5.1 TLS already active\r\n");
        return;
      }
      OUT(c, "220 2.0.0 Ready to start TLS\r\n");
      c->starttls_pending = 1;
      return;
    }
  }
  OUT(c, "502 5.5.2 Error: command not recognized\r\n");
}

/* End-of-data scanner over CR LF . CR LF. States: 0 mid-line, 1 saw CR, 2 at the
 * start of a line (saw CR LF), 3 saw CR LF ".", 4 saw CR LF "." CR. Returns the
 * number of bytes consumed; clears in_data when the final dot was seen. */
static size_t scan_data(struct conn *c, const char *p, size_t n) {
  size_t i = 0;
  int s = c->dstate;
  while (i < n) {
    if (s == 0) {
      const char *cr = memchr(p + i, '\r', n - i);
      if (!cr) {
        i = n;
        break;
      }
      i = (size_t)(cr - p);
    }
    char ch = p[i++];
    if (ch == '\r')
      s = (s == 3) ? 4 : 1;
    else if (ch == '\n') {
      if (s == 4) {
        c->in_data = 0;
        c->dstate = 0;
        st.messages++;
        if (!c->ssl)
          st.messages_plain++;
        OUT(c, "250 2.0.0 Ok: queued\r\n");
        return i;
      }
      s = (s == 1) ? 2 : 0;
    } else if (ch == '.')
      s = (s == 2) ? 3 : 0;
    else
      s = 0;
  }
  c->dstate = s;
  return i;
}

/* Consumes input; stops early (returns) at STARTTLS or QUIT: the rest is discarded. */
static void process(struct conn *c, const char *p, size_t n) {
  st.bytes += n;
  size_t i = 0;
  while (i < n && !c->starttls_pending && !c->closing) {
    if (c->in_data) {
      i += scan_data(c, p + i, n - i);
      continue;
    }
    const char *nl = memchr(p + i, '\n', n - i);
    size_t take = nl ? (size_t)(nl - (p + i)) + 1 : n - i;
    if (c->inlen + take > LINE_MAX_LEN) {
      /* over-long line: drop it */
      c->inlen = 0;
      i += take;
      if (nl)
        OUT(c, "500 5.5.2 Line too long\r\n");
      continue;
    }
    memcpy(c->in + c->inlen, p + i, take);
    c->inlen += take;
    i += take;
    if (nl) {
      size_t len = c->inlen;
      while (len && (c->in[len - 1] == '\n' || c->in[len - 1] == '\r'))
        len--;
      c->in[len] = 0;
      c->inlen = 0;
      command(c, c->in, len);
    }
  }
}

static void set_events(struct conn *c, uint32_t ev) {
  if (ev == c->events)
    return;
  struct epoll_event e = {.events = ev, .data.ptr = c};
  epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e);
  c->events = ev;
}

/* Returns -1 when the connection must be closed. */
static int ssl_err(struct conn *c, int r) {
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ)
    return 0;
  if (e == SSL_ERROR_WANT_WRITE) {
    c->want_write = 1;
    return 0;
  }
  ERR_clear_error();
  return -1;
}

/* Writes what is queued; returns -1 on a fatal error, else 0. */
static int flush_out(struct conn *c) {
  while (c->outoff < c->outlen) {
    if (c->ssl) {
      int r = SSL_write(c->ssl, c->out + c->outoff, (int)(c->outlen - c->outoff));
      if (r <= 0)
        return ssl_err(c, r);
      c->outoff += (size_t)r;
    } else {
      ssize_t r = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
      if (r < 0)
        return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
      c->outoff += (size_t)r;
    }
  }
  c->outoff = c->outlen = 0;
  return 0;
}

static void conn_io(struct conn *c) {
  static char buf[256 * 1024];
  c->want_write = 0;
  for (;;) {
    if (c->handshaking) {
      int r = SSL_do_handshake(c->ssl);
      if (r != 1) {
        if (ssl_err(c, r) < 0)
          goto close;
        break;
      }
      c->handshaking = 0;
      if (SSL_session_reused(c->ssl))
        st.resumed++;
      else
        st.handshakes++;
    }
    /* read everything available */
    int eof = 0;
    while (!c->starttls_pending && !c->closing) {
      if (c->ssl) {
        int r = SSL_read(c->ssl, buf, sizeof buf);
        if (r <= 0) {
          int e = SSL_get_error(c->ssl, r);
          if (e == SSL_ERROR_WANT_READ)
            break;
          if (e == SSL_ERROR_WANT_WRITE) {
            c->want_write = 1;
            break;
          }
          ERR_clear_error();
          eof = 1;
          break;
        }
        process(c, buf, (size_t)r);
      } else {
        ssize_t r = recv(c->fd, buf, sizeof buf, 0);
        if (r < 0) {
          if (errno == EAGAIN || errno == EINTR)
            break;
          eof = 1;
          break;
        }
        if (r == 0) {
          eof = 1;
          break;
        }
        process(c, buf, (size_t)r);
      }
    }
    if (flush_out(c) < 0 || eof)
      goto close;
    if (c->outlen)
      break; /* wait for EPOLLOUT */
    if (c->closing) {
      if (c->ssl)
        SSL_shutdown(c->ssl);
      goto close;
    }
    if (c->starttls_pending) {
      /* the 220 is out: discard pipelined plaintext, start the handshake */
      c->starttls_pending = 0;
      c->inlen = 0;
      c->ssl = SSL_new(ctx);
      SSL_set_fd(c->ssl, c->fd);
      SSL_set_accept_state(c->ssl);
      c->handshaking = 1;
      continue;
    }
    break;
  }
  set_events(c, EPOLLIN | ((c->outlen || c->want_write) ? EPOLLOUT : 0));
  return;
close:
  conn_close(c);
}

static void do_accept(int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
      return;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
      abort();
    c->fd = fd;
    c->events = EPOLLIN;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e);
    st.connections++;
    st.open++;
    char g[128];
    int n = snprintf(g, sizeof g, "220 %s ESMTP bench sink\r\n", hostname);
    out_add(c, g, (size_t)n);
    if (flush_out(c) < 0) {
      conn_close(c);
      continue;
    }
    if (c->outlen)
      set_events(c, EPOLLIN | EPOLLOUT);
  }
}

static void usage(void) {
  fprintf(stderr,
          "usage: sink -a ADDR -p PORT -c CERT -k KEY [-s STATSFILE] [-n NAME]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *addr = "127.0.0.1", *cert = NULL, *key = NULL;
  int port = 0, opt;
  while ((opt = getopt(argc, argv, "a:p:c:k:s:n:")) != -1) {
    switch (opt) {
    case 'a':
      addr = optarg;
      break;
    case 'p':
      port = atoi(optarg);
      break;
    case 'c':
      cert = optarg;
      break;
    case 'k':
      key = optarg;
      break;
    case 's':
      stats_path = optarg;
      break;
    case 'n':
      hostname = optarg;
      break;
    default:
      usage();
    }
  }
  if (!port || !cert || !key)
    usage();

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx,
                   SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  static const unsigned char sid_ctx[] = "bench-sink";
  SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
  SSL_CTX_sess_set_cache_size(ctx, 100000);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
    ERR_print_errors_fp(stderr);
    return 1;
  }

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
    usage();
  if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4096) < 0) {
    perror("bind/listen");
    return 1;
  }

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigprocmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);

  epfd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event e = {.events = EPOLLIN, .data.ptr = &listen_tag};
  epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &e);
  e.data.ptr = &signal_tag;
  epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &e);

  write_stats();
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(epfd, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (p == &listen_tag)
        do_accept(lfd);
      else if (p == &signal_tag) {
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) == sizeof si) {
          write_stats();
          if (si.ssi_signo != SIGUSR1)
            return 0;
        }
      } else
        conn_io(p);
    }
  }
}
