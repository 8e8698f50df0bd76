/* http against a real HTTPS server on 127.0.0.1 (tests/fixtures/https_fixture.py), with
 * a CA and server certificate made by the openssl CLI in a temporary directory. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "proxy/core/error.h"
#include "proxy/net/http.h"
#include "tests/unit/test.h"

#define OK_BODY "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n"
#define MAX_BYTES 65536
#define FIXTURE SP_SOURCE_DIR "/tests/fixtures/https_fixture.py"

static char dir[64];
static char ca_file[128], other_ca[128];
static pid_t fixture_pid = -1;
static int fixture_in = -1, fixture_out = -1; /* its stdin (EOF ends it), its stdout */
static int port;
static bool in_get; /* set around http_get: no callback may run inside it */

struct ctx {
  struct http *h;
  int pending;                     /* fetches whose callback is still due */
  bool close_when_done;            /* http_close from the last callback */
  struct http_fetch *cancel_later; /* cancelled from the next callback */
  int closed;
  int chain_left; /* further /ok fetches started one from another's callback */
};

struct result {
  struct ctx *ctx;
  int calls;
  int status;
  char *body;
  size_t len;
  char err[256];
};

static const char CA_CNF[] = "[req]\ndistinguished_name = dn\nprompt = no\n"
                             "x509_extensions = v3ca\n[dn]\nCN = sp-test-ca\n"
                             "[v3ca]\nbasicConstraints = critical,CA:TRUE\n"
                             "keyUsage = critical,keyCertSign,cRLSign\n"
                             "subjectKeyIdentifier = hash\n";
static const char SRV_EXT[] = "subjectAltName = DNS:localhost,IP:127.0.0.1\n"
                              "basicConstraints = CA:FALSE\n"
                              "keyUsage = critical,digitalSignature\n"
                              "extendedKeyUsage = serverAuth\n"
                              "authorityKeyIdentifier = keyid\n";
static const char *const TEMP_FILES[] = {
    "ca.cnf",    "srv.ext", "ca.key",  "ca.pem",  "other.key",
    "other.pem", "srv.key", "srv.csr", "srv.pem", "openssl.log"};

static void write_file(const char *name, const char *text) {
  char path[128];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *fp = fopen(path, "w");
  ASSERT(fp != NULL);
  ASSERT_EQ(fputs(text, fp) >= 0, 1);
  ASSERT_EQ(fclose(fp), 0);
}

static void run(const char *cmd) {
  char line[1024];
  snprintf(line, sizeof(line), "cd '%s' && %s 2>>openssl.log", dir, cmd);
  if (system(line) != 0) {
    snprintf(line, sizeof(line), "cat '%s/openssl.log' >&2", dir);
    if (system(line) != 0)
      fprintf(stderr, "no openssl.log\n");
    TEST_FAIL_("command failed: %s", cmd);
  }
}

#define EC_KEY "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"

static void make_pki(void) {
  snprintf(dir, sizeof(dir), "/tmp/sp-test-http-XXXXXX");
  ASSERT(mkdtemp(dir) != NULL);
  write_file("ca.cnf", CA_CNF);
  write_file("srv.ext", SRV_EXT);
  run("openssl req -x509 " EC_KEY " -config ca.cnf -keyout ca.key -out ca.pem -days 2");
  run("openssl req -x509 " EC_KEY " -config ca.cnf -keyout other.key -out other.pem"
      " -days 2");
  run("openssl req -new " EC_KEY " -config ca.cnf -subj /CN=localhost -keyout srv.key"
      " -out srv.csr");
  run("openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 2"
      " -extfile srv.ext -out srv.pem");
  snprintf(ca_file, sizeof(ca_file), "%s/ca.pem", dir);
  snprintf(other_ca, sizeof(other_ca), "%s/other.pem", dir);
}

static void fixture_start(void) {
  int in[2], out[2];
  ASSERT_EQ(pipe2(in, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  char cert[128], key[128];
  snprintf(cert, sizeof(cert), "%s/srv.pem", dir);
  snprintf(key, sizeof(key), "%s/srv.key", dir);
  fixture_pid = fork();
  ASSERT(fixture_pid >= 0);
  if (fixture_pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    execl("/usr/bin/python3", "python3", FIXTURE, cert, key, "0", (char *)NULL);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  fixture_in = in[1];
  fixture_out = out[0];
  char line[16] = {0};
  size_t n = 0; /* the fixture prints its port only once it is listening */
  while (n < sizeof(line) - 1 && (n == 0 || line[n - 1] != '\n')) {
    ssize_t got = read(fixture_out, line + n, 1);
    if (got <= 0)
      TEST_FAIL_("fixture exited before printing its port");
    n += (size_t)got;
  }
  port = atoi(line);
  ASSERT(port > 0 && port < 65536);
}

static void fixture_stop(void) {
  close(fixture_in);
  kill(fixture_pid, SIGTERM);
  int st;
  ASSERT_EQ(waitpid(fixture_pid, &st, 0), fixture_pid);
  close(fixture_out);
  for (size_t i = 0; i < sizeof(TEMP_FILES) / sizeof(TEMP_FILES[0]); i++) {
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, TEMP_FILES[i]);
    unlink(path);
  }
  ASSERT_EQ(rmdir(dir), 0);
}

/* ---- fetch helpers -------------------------------------------------------- */

static void on_result(void *arg, int status, const char *body, size_t len,
                      const char *err);

static void on_closed(void *arg) {
  ((struct ctx *)arg)->closed++;
}

/* The fixture is on loopback: allowed here, except where a test checks the refusal. */
static bool allow_private = true;

static struct http_fetch *start_url(struct ctx *c, struct result *r, const char *url,
                                    unsigned timeout_ms, bool text_plain) {
  struct http_request req = {.url = url,
                             .max_bytes = MAX_BYTES,
                             .connect_timeout_ms = 5000,
                             .total_timeout_ms = timeout_ms,
                             .require_text_plain = text_plain,
                             .allow_private_addresses = allow_private};
  r->ctx = c;
  in_get = true;
  struct http_fetch *f = http_get(c->h, &req, on_result, r);
  in_get = false;
  ASSERT(f != NULL);
  c->pending++;
  return f;
}

static struct http_fetch *start(struct ctx *c, struct result *r, const char *path,
                                unsigned timeout_ms, bool text_plain) {
  char url[128];
  snprintf(url, sizeof(url), "https://localhost:%d%s", port, path);
  return start_url(c, r, url, timeout_ms, text_plain);
}

static void on_result(void *arg, int status, const char *body, size_t len,
                      const char *err) {
  struct result *r = arg;
  struct ctx *c = r->ctx;
  ASSERT(!in_get);
  r->calls++;
  r->status = status;
  if (status == 0) {
    ASSERT(body != NULL && err == NULL);
    r->body = malloc(len + 1);
    ASSERT(r->body != NULL);
    memcpy(r->body, body, len);
    r->len = len;
  } else {
    ASSERT(err != NULL);
    snprintf(r->err, sizeof(r->err), "%s", err);
  }
  if (c->cancel_later) {
    http_cancel(c->cancel_later);
    c->cancel_later = NULL;
    c->pending--;
  }
  if (c->chain_left > 0) { /* a keep-alive connection is reused by the next one */
    c->chain_left--;
    free(r->body);
    memset(r, 0, sizeof(*r));
    start(c, r, "/ok", 5000, true);
  }
  if (--c->pending == 0 && c->close_when_done)
    http_close(c->h, on_closed, c);
}

static void loop_begin(uv_loop_t *loop, struct ctx *c, const char *ca) {
  memset(c, 0, sizeof(*c));
  c->close_when_done = true;
  ASSERT_EQ(uv_loop_init(loop), 0);
  struct tls_trust trust = {ca, NULL};
  ASSERT_EQ(http_new(loop, &trust, &c->h), 0);
}

/* Runs until every handle is closed: a leaked handle fails uv_loop_close. */
static void loop_end(uv_loop_t *loop, struct ctx *c) {
  ASSERT_EQ(uv_run(loop, UV_RUN_DEFAULT), 0);
  ASSERT_EQ(c->closed, 1);
  ASSERT_EQ(uv_loop_close(loop), 0);
}

/* ---- cases ------------------------------------------------------------------ */

struct fetch_case {
  const char *path;
  bool text_plain;
  unsigned timeout_ms;
  int status;
  const char *err; /* when status != 0 */
  const char *body;
  size_t body_len;
};

static const struct fetch_case CASES[] = {
    {"/ok", true, 5000, 0, NULL, OK_BODY, sizeof(OK_BODY) - 1},
    {"/charset", true, 5000, 0, NULL, "charset ok\n", 11},
    {"/html", true, 5000, SP_E_PROTOCOL, "Content-Type text/html", NULL, 0},
    {"/html", false, 5000, 0, NULL, "<p>hello</p>\n", 13},
    {"/notype", true, 5000, SP_E_PROTOCOL, "Content-Type missing", NULL, 0},
    {"/404", true, 5000, SP_E_PROTOCOL, "HTTP 404", NULL, 0},
    {"/redirect", true, 5000, SP_E_PROTOCOL, "redirect refused", NULL, 0},
    {"/big", true, 5000, SP_E_PROTOCOL, "body exceeds 65536 bytes", NULL, 0},
    {"/big-stream", true, 5000, SP_E_PROTOCOL, "body exceeds 65536 bytes", NULL, 0},
    {"/empty", true, 5000, 0, NULL, "", 0},
    {"/slow", true, 400, SP_E_TIMEOUT, "timeout", NULL, 0},
};
#define NCASES (sizeof(CASES) / sizeof(CASES[0]))

static void check(const struct fetch_case *fc, struct result *r) {
  if (r->calls != 1 || r->status != fc->status)
    fprintf(stderr, "%s: status %d err \"%s\"\n", fc->path, r->status, r->err);
  ASSERT_EQ(r->calls, 1);
  ASSERT_EQ(r->status, fc->status);
  if (fc->status == 0)
    ASSERT_MEM_EQ(r->body, r->len, fc->body, fc->body_len);
  else
    ASSERT_STR_EQ(r->err, fc->err);
  free(r->body);
  r->body = NULL;
}

static void test_each_path(void) {
  for (size_t i = 0; i < NCASES; i++) {
    uv_loop_t loop;
    struct ctx c;
    struct result r = {0};
    loop_begin(&loop, &c, ca_file);
    start(&c, &r, CASES[i].path, CASES[i].timeout_ms, CASES[i].text_plain);
    loop_end(&loop, &c);
    check(&CASES[i], &r);
  }
}

static void test_concurrent(void) {
  uv_loop_t loop;
  struct ctx c;
  struct result r[NCASES * 2];
  memset(r, 0, sizeof(r));
  loop_begin(&loop, &c, ca_file);
  for (size_t i = 0; i < NCASES * 2; i++)
    start(&c, &r[i], CASES[i % NCASES].path, CASES[i % NCASES].timeout_ms,
          CASES[i % NCASES].text_plain);
  loop_end(&loop, &c);
  for (size_t i = 0; i < NCASES * 2; i++)
    check(&CASES[i % NCASES], &r[i]);
}

/* Each fetch starts the next from its callback, on the same keep-alive connection. */
static void test_chained_reuse(void) {
  uv_loop_t loop;
  struct ctx c;
  struct result r = {0};
  loop_begin(&loop, &c, ca_file);
  c.chain_left = 5;
  start(&c, &r, "/ok", 5000, true);
  loop_end(&loop, &c);
  ASSERT_EQ(c.chain_left, 0);
  check(&CASES[0], &r);
}

static void expect_error(const char *ca, const char *url, int status, const char *err) {
  uv_loop_t loop;
  struct ctx c;
  struct result r = {0};
  loop_begin(&loop, &c, ca);
  start_url(&c, &r, url, 5000, true);
  loop_end(&loop, &c);
  ASSERT_EQ(r.calls, 1);
  if (r.status != status)
    fprintf(stderr, "%s: err \"%s\"\n", url, r.err);
  ASSERT_EQ(r.status, status);
  ASSERT(strncmp(r.err, err, strlen(err)) == 0);
}

static void test_errors(void) {
  char url[128];
  snprintf(url, sizeof(url), "https://localhost:%d/ok", port);
  expect_error(other_ca, url, SP_E_CERTIFICATE, "TLS: ");
  expect_error(NULL, url, SP_E_CERTIFICATE,
               "TLS: "); /* system store: our CA is unknown */
  snprintf(url, sizeof(url), "http://localhost:%d/ok", port);
  expect_error(ca_file, url, SP_E_INVAL, "");

  int fd = socket(AF_INET, SOCK_STREAM, 0); /* a port nobody listens on */
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t salen = sizeof(sa);
  ASSERT_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  ASSERT_EQ(getsockname(fd, (struct sockaddr *)&sa, &salen), 0);
  close(fd);
  snprintf(url, sizeof(url), "https://127.0.0.1:%d/ok", ntohs(sa.sin_port));
  expect_error(ca_file, url, SP_E_IO, "");
}

/* Without allow_private_addresses no connection to the loopback fixture is made,
 * whether the URL names the address, a name curl resolves, or a name pinned to it
 * (how the proxy hands over its own resolver's answer). */
static void test_non_global_refused(void) {
  char url[128], pin[128];
  allow_private = false;
  snprintf(url, sizeof(url), "https://127.0.0.1:%d/ok", port);
  expect_error(ca_file, url, SP_E_ADDRESS, "refused non-global address 127.0.0.1");
  snprintf(url, sizeof(url), "https://[::ffff:127.0.0.1]:%d/ok", port);
  expect_error(ca_file, url, SP_E_ADDRESS, "refused non-global address ");
  snprintf(url, sizeof(url), "https://localhost:%d/ok", port);
  expect_error(ca_file, url, SP_E_ADDRESS, "refused non-global address ");

  uv_loop_t loop;
  struct ctx c;
  struct result r = {0};
  snprintf(url, sizeof(url), "https://policy.example:%d/ok", port);
  snprintf(pin, sizeof(pin), "policy.example:%d:127.0.0.1", port);
  loop_begin(&loop, &c, ca_file);
  r.ctx = &c;
  struct http_request req = {.url = url,
                             .max_bytes = MAX_BYTES,
                             .connect_timeout_ms = 5000,
                             .total_timeout_ms = 5000,
                             .resolve = pin};
  ASSERT(http_get(c.h, &req, on_result, &r) != NULL);
  c.pending++;
  loop_end(&loop, &c);
  ASSERT_EQ(r.calls, 1);
  ASSERT_EQ(r.status, SP_E_ADDRESS);
  ASSERT_STR_EQ(r.err, "refused non-global address 127.0.0.1");
  allow_private = true;
}

/* A proxy named by the environment is never used (RFC 8461 §3.3: the policy comes
 * from the policy host itself, over TLS validated for its name): here one that
 * nobody serves would fail every fetch through it. */
static void test_env_proxy_ignored(void) {
  static const char *const vars[] = {"https_proxy", "HTTPS_PROXY", "all_proxy",
                                     "ALL_PROXY"};
  for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
    ASSERT_EQ(setenv(vars[i], "http://127.0.0.1:9", 1), 0);
  uv_loop_t loop;
  struct ctx c;
  struct result r = {0};
  loop_begin(&loop, &c, ca_file);
  start(&c, &r, "/ok", 5000, true);
  loop_end(&loop, &c);
  for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
    ASSERT_EQ(unsetenv(vars[i]), 0);
  check(&CASES[0], &r);
}

/* Cancelled before the loop ran, and cancelled while waiting on the server: neither
 * callback runs, and the slow one does not hold the loop up. */
static void test_cancel(void) {
  uv_loop_t loop;
  struct ctx c;
  struct result slow = {0}, never = {0}, quick = {0};
  loop_begin(&loop, &c, ca_file);
  c.cancel_later = start(&c, &slow, "/slow", 10000, true);
  struct http_fetch *f = start(&c, &never, "/ok", 5000, true);
  http_cancel(f);
  c.pending--;
  start(&c, &quick, "/ok", 5000, true);
  uint64_t t0 = uv_hrtime();
  loop_end(&loop, &c);
  ASSERT(uv_hrtime() - t0 < 3000 * (uint64_t)1000000); /* /slow answers after 5 s */
  ASSERT_EQ(slow.calls, 0);
  ASSERT_EQ(never.calls, 0);
  check(&CASES[0], &quick);
}

static void on_close_timer(uv_timer_t *t) {
  struct ctx *c = t->data;
  http_close(c->h, on_closed, c);
  uv_close((uv_handle_t *)t, NULL);
}

static void test_close_in_flight(void) {
  uv_loop_t loop;
  struct ctx c;
  struct result slow[3];
  memset(slow, 0, sizeof(slow));
  loop_begin(&loop, &c, ca_file);
  c.close_when_done = false;
  for (int i = 0; i < 3; i++)
    start(&c, &slow[i], "/slow", 10000, true);
  uv_timer_t t;
  ASSERT_EQ(uv_timer_init(&loop, &t), 0);
  t.data = &c;
  ASSERT_EQ(uv_timer_start(&t, on_close_timer, 300, 0), 0);
  loop_end(&loop, &c);
  for (int i = 0; i < 3; i++)
    ASSERT_EQ(slow[i].calls, 0);

  /* Closed before the loop ever ran: no callback, on_closed from the loop. */
  struct result r = {0};
  loop_begin(&loop, &c, ca_file);
  start(&c, &r, "/ok", 5000, true);
  http_close(c.h, on_closed, &c);
  ASSERT_EQ(c.closed, 0);
  ASSERT(http_get(c.h, &(struct http_request){.url = "https://localhost/"}, on_result,
                  &r) == NULL);
  loop_end(&loop, &c);
  ASSERT_EQ(r.calls, 0);
}

int main(void) {
  alarm(120); /* a hung loop fails the test instead of the ctest timeout */
  signal(SIGPIPE, SIG_IGN);
  make_pki();
  fixture_start();
  RUN_TEST(test_each_path);
  RUN_TEST(test_concurrent);
  RUN_TEST(test_chained_reuse);
  RUN_TEST(test_errors);
  RUN_TEST(test_non_global_refused);
  RUN_TEST(test_env_proxy_ignored);
  RUN_TEST(test_cancel);
  RUN_TEST(test_close_in_flight);
  fixture_stop();
  return 0;
}
