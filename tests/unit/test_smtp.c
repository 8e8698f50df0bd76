/* Unit tests of proxy/smtp.c: line framing, commands, replies, EHLO capabilities and,
 * above all, the DATA scanner (every chunk split, every bare CR/LF shape). */
#include <stdbool.h>
#include <stdint.h>

#include "proxy/core/error.h"
#include "proxy/wire/smtp.h"
#include "tests/smtp_data_ref.h"
#include "tests/unit/test.h"

#define S(lit) lit, sizeof(lit) - 1

/* ---- Line framing ------------------------------------------------------------------
 */

static int find(const char *buf, size_t len, size_t max, size_t *ll, size_t *used) {
  *ll = *used = 9999;
  return smtp_find_line(buf, len, max, ll, used);
}

static void test_find_line(void) {
  size_t ll, used;
  ASSERT_EQ(find(S("HELO x\r\n"), 100, &ll, &used), 1);
  ASSERT_EQ(ll, 6);
  ASSERT_EQ(used, 8);
  ASSERT_EQ(find(S("HELO x\n"), 100, &ll, &used), 1); /* bare LF tolerated */
  ASSERT_EQ(ll, 6);
  ASSERT_EQ(used, 7);
  ASSERT_EQ(find(S("a\r\nb\r\n"), 100, &ll, &used), 1); /* only the first line */
  ASSERT_EQ(ll, 1);
  ASSERT_EQ(used, 3);
  ASSERT_EQ(find(S("\r\n"), 100, &ll, &used), 1);
  ASSERT_EQ(ll, 0);
  ASSERT_EQ(used, 2);
  ASSERT_EQ(find(S("a\r\r\n"), 100, &ll, &used), 1); /* only the CR before LF goes */
  ASSERT_EQ(ll, 2);
  ASSERT_EQ(find(S("a\0b\r\n"), 100, &ll, &used), 1); /* NUL is the parser's job */
  ASSERT_EQ(ll, 3);
  ASSERT_EQ(find(S("HELO"), 100, &ll, &used), 0);
  ASSERT_EQ(find(S("HELO\r"), 100, &ll, &used), 0);
  ASSERT_EQ(find(NULL, 0, 100, &ll, &used), 0);
}

static void test_find_line_limits(void) {
  size_t ll, used;
  ASSERT_EQ(find(S("abcd\r\n"), 4, &ll, &used), 1);
  ASSERT_EQ(ll, 4);
  ASSERT_EQ(find(S("abcd\n"), 4, &ll, &used), 1);
  ASSERT_EQ(find(S("abcd"), 4, &ll, &used), 0);
  ASSERT_EQ(find(S("abcd\r"), 4, &ll, &used), 0); /* max+1 bytes ending in CR: wait */
  ASSERT_EQ(find(S("abcde"), 4, &ll, &used), SP_E_TOOLONG);
  ASSERT_EQ(find(S("abcde\r\n"), 4, &ll, &used), SP_E_TOOLONG);
  ASSERT_EQ(find(S("abcde\n"), 4, &ll, &used), SP_E_TOOLONG); /* LF at max+1 */
  ASSERT_EQ(find(S("abcd\rX"), 4, &ll, &used), SP_E_TOOLONG);
  ASSERT_EQ(find(S("abcdefghijklmnop"), 4, &ll, &used), SP_E_TOOLONG);
  ASSERT_EQ(find(S("\r\n"), 0, &ll, &used), 1);
  ASSERT_EQ(find(S("x\n"), 0, &ll, &used), SP_E_TOOLONG);
  ASSERT_EQ(find(S("\r"), 0, &ll, &used), 0);
  ASSERT_EQ(find(NULL, 0, SIZE_MAX, &ll, &used), 0); /* no max + 1 wrap-around */
  ASSERT_EQ(find(S("abc"), SIZE_MAX, &ll, &used), 0);
  ASSERT_EQ(find(S("abc\n"), SIZE_MAX, &ll, &used), 1);
  ASSERT_EQ(find(S("abc"), SIZE_MAX - 1, &ll, &used), 0);

  static char big[SMTP_COMMAND_LINE_MAX + 10];
  memset(big, 'a', sizeof big);
  big[SMTP_COMMAND_LINE_MAX] = '\r';
  big[SMTP_COMMAND_LINE_MAX + 1] = '\n';
  ASSERT_EQ(find(big, SMTP_COMMAND_LINE_MAX + 2, SMTP_COMMAND_LINE_MAX, &ll, &used), 1);
  ASSERT_EQ(ll, SMTP_COMMAND_LINE_MAX);
  big[SMTP_COMMAND_LINE_MAX] = 'a';
  ASSERT_EQ(find(big, sizeof big, SMTP_COMMAND_LINE_MAX, &ll, &used), SP_E_TOOLONG);
  ASSERT_EQ(find(big, SMTP_COMMAND_LINE_MAX, SMTP_COMMAND_LINE_MAX, &ll, &used), 0);
}

/* ---- Commands ----------------------------------------------------------------------
 */

static struct smtp_command cmd;

static int parse(const char *line) {
  return smtp_parse_command(line, strlen(line), &cmd);
}

static void assert_arg(const char *want) {
  ASSERT_MEM_EQ(cmd.arg, cmd.arg_len, want, strlen(want));
}

static void test_command_verbs(void) {
  ASSERT_EQ(parse("EHLO mx.example.com"), 0);
  ASSERT_EQ(cmd.verb, SMTP_VERB_EHLO);
  assert_arg("mx.example.com");
  ASSERT_EQ(parse("ehlo [192.0.2.1]  "), 0); /* case-insensitive, trailing spaces */
  ASSERT_EQ(cmd.verb, SMTP_VERB_EHLO);
  assert_arg("[192.0.2.1]");
  ASSERT_EQ(parse("HeLo x"), 0);
  ASSERT_EQ(cmd.verb, SMTP_VERB_HELO);
  ASSERT_EQ(parse("LHLO x"), 0);
  ASSERT_EQ(cmd.verb, SMTP_VERB_LHLO);
  ASSERT_EQ(parse("DATA"), 0);
  ASSERT_EQ(cmd.verb, SMTP_VERB_DATA);
  ASSERT_EQ(parse("data  "), 0);
  ASSERT_EQ(parse("RSET"), 0);
  ASSERT_EQ(cmd.verb, SMTP_VERB_RSET);
  ASSERT_EQ(parse("QUIT"), 0);
  ASSERT_EQ(cmd.verb, SMTP_VERB_QUIT);
  ASSERT_EQ(parse("StartTLS"), 0);
  ASSERT_EQ(cmd.verb, SMTP_VERB_STARTTLS);
  ASSERT_EQ(parse("NOOP"), 0);
  ASSERT_EQ(cmd.verb, SMTP_VERB_NOOP);
  ASSERT_EQ(cmd.arg_len, 0);
  ASSERT_EQ(parse("NOOP  hello there\t "), 0);
  assert_arg("hello there");
  ASSERT_EQ(parse("HELP"), 0);
  ASSERT_EQ(cmd.verb, SMTP_VERB_HELP);
  ASSERT_EQ(parse("HELP mail"), 0);
  assert_arg("mail");
  ASSERT_EQ(parse("VRFY root"), 0);
  ASSERT_EQ(cmd.verb, SMTP_VERB_VRFY);
  ASSERT_EQ(parse("EXPN list"), 0);
  ASSERT_EQ(cmd.verb, SMTP_VERB_EXPN);
  ASSERT_EQ(parse("AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q="), 0);
  ASSERT_EQ(cmd.verb, SMTP_VERB_AUTH);
  assert_arg("PLAIN dGVzdAB0ZXN0AHRlc3Q=");
}

static void test_command_bad_verbs(void) {
  ASSERT_EQ(parse(""), SP_E_UNKNOWN_CMD);
  ASSERT_EQ(parse("FOO"), SP_E_UNKNOWN_CMD);
  ASSERT_EQ(cmd.verb, SMTP_VERB_UNKNOWN);
  ASSERT_EQ(parse("MAILFROM:<a@b>"), SP_E_UNKNOWN_CMD);
  ASSERT_EQ(parse(" HELO x"), SP_E_UNKNOWN_CMD);
  ASSERT_EQ(parse("HELO\tx"), SP_E_UNKNOWN_CMD);
  ASSERT_EQ(parse("STARTTLSX"), SP_E_UNKNOWN_CMD);
  ASSERT_EQ(parse("DAT"), SP_E_UNKNOWN_CMD);
  /* Arguments where none are allowed, and missing where one is needed. */
  ASSERT_EQ(parse("DATA x"), SP_E_SYNTAX);
  ASSERT_EQ(parse("RSET x"), SP_E_SYNTAX);
  ASSERT_EQ(parse("QUIT now"), SP_E_SYNTAX);
  ASSERT_EQ(parse("STARTTLS x"), SP_E_SYNTAX);
  ASSERT_EQ(parse("HELO"), SP_E_SYNTAX);
  ASSERT_EQ(parse("EHLO "), SP_E_SYNTAX);
  ASSERT_EQ(parse("LHLO"), SP_E_SYNTAX);
  ASSERT_EQ(parse("VRFY"), SP_E_SYNTAX);
  ASSERT_EQ(parse("EXPN  "), SP_E_SYNTAX);
  ASSERT_EQ(parse("AUTH"), SP_E_SYNTAX);
  ASSERT_EQ(parse("MAIL"), SP_E_SYNTAX);
  ASSERT_EQ(parse("RCPT"), SP_E_SYNTAX);
  ASSERT_EQ(smtp_parse_command(NULL, 0, &cmd), SP_E_UNKNOWN_CMD);
}

static void test_command_control_chars(void) {
  ASSERT_EQ(smtp_parse_command(S("HELO a\0b"), &cmd), SP_E_SYNTAX);
  ASSERT_EQ(smtp_parse_command(S("\0"), &cmd), SP_E_SYNTAX);
  ASSERT_EQ(smtp_parse_command(S("DATA\0"), &cmd), SP_E_SYNTAX);
  ASSERT_EQ(smtp_parse_command(S("FOO\0"), &cmd), SP_E_SYNTAX);
  ASSERT_EQ(parse("NOOP a\rb"), SP_E_SYNTAX);
  ASSERT_EQ(parse("QUIT\r"), SP_E_SYNTAX);
  ASSERT_EQ(parse("NOOP a\nb"), SP_E_SYNTAX);
  ASSERT_EQ(parse("NOOP \x1b[0m"), SP_E_SYNTAX);
  ASSERT_EQ(parse("NOOP \x7f"), SP_E_SYNTAX);
  ASSERT_EQ(parse("NOOP a\tb"), 0); /* HTAB is allowed */
  ASSERT_EQ(parse("MAIL FROM:<a\tb@c>"), SP_E_SYNTAX);
  /* A NUL inside an address must not shorten the stored path. */
  ASSERT_EQ(smtp_parse_command(S("MAIL FROM:<a\0@evil>"), &cmd), SP_E_SYNTAX);
  ASSERT_STR_EQ(cmd.path, "");
}

static void test_command_mail(void) {
  ASSERT_EQ(parse("MAIL FROM:<alice@example.com>"), 0);
  ASSERT_EQ(cmd.verb, SMTP_VERB_MAIL);
  ASSERT_STR_EQ(cmd.path, "alice@example.com");
  ASSERT_EQ(cmd.nparams, 0);
  ASSERT_EQ(parse("mail from:<Alice@Example.COM>"), 0);
  ASSERT_STR_EQ(cmd.path, "Alice@Example.COM");
  ASSERT_EQ(parse("MAIL FROM: <a@b.example>"), 0); /* space after the colon */
  ASSERT_STR_EQ(cmd.path, "a@b.example");
  ASSERT_EQ(parse("MAIL FROM:<>"), 0);
  ASSERT_STR_EQ(cmd.path, "");
  ASSERT_EQ(parse("MAIL FROM:<> SIZE=100"), 0);
  ASSERT_EQ(cmd.nparams, 1);
  ASSERT_EQ(parse("MAIL FROM:<@a.example,@b.example:u@c.example>"), 0); /* route */
  ASSERT_STR_EQ(cmd.path, "u@c.example");
  ASSERT_EQ(parse("MAIL FROM:<first.last+tag@sub.example.org>"), 0);
  ASSERT_STR_EQ(cmd.path, "first.last+tag@sub.example.org");
  ASSERT_EQ(parse("MAIL FROM:<\"john doe\"@example.com>"), 0);
  ASSERT_STR_EQ(cmd.path, "\"john doe\"@example.com");
  ASSERT_EQ(parse("MAIL FROM:<\"a\\\"b>c\"@example.com>"), 0);
  ASSERT_STR_EQ(cmd.path, "\"a\\\"b>c\"@example.com");
  ASSERT_EQ(parse("MAIL FROM:<u@[192.0.2.1]>"), 0);
  ASSERT_STR_EQ(cmd.path, "u@[192.0.2.1]");
  ASSERT_EQ(parse("MAIL FROM:<u@[IPv6:2001:db8::1]>"), 0);
  ASSERT_EQ(parse("MAIL FROM:<u@[x-tag:anything]>"), 0);
  ASSERT_EQ(
      parse("MAIL FROM:<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.example>"),
      0); /* SMTPUTF8 */
}

static void test_command_mail_bad(void) {
  static const char *bad[] = {
      "MAIL FROM:alice@example.com",    /* missing <> */
      "MAIL FROM:<alice@example.com",   /* missing > */
      "MAIL FROM:alice@example.com>",   /* missing < */
      "MAIL FROM <alice@example.com>",  /* no colon */
      "MAIL FROM<alice@example.com>",   /* no colon */
      "MAIL TO:<alice@example.com>",    /* wrong keyword */
      "MAIL FROMX:<a@b>",               /* wrong keyword */
      "MAIL FROM:<alice @example.com>", /* space in the path */
      "MAIL FROM:<alice@ example.com>", /* space in the path */
      "MAIL FROM:< alice@example.com>", /* space in the path */
      "MAIL FROM:<a@b>SIZE=1",          /* no space before params */
      "MAIL FROM:<a@b><c@d>",           /* two paths */
      "MAIL FROM:<alice>",              /* no domain */
      "MAIL FROM:<postmaster>",         /* only RCPT may omit the domain */
      "MAIL FROM:<@example.com>",       /* empty local part */
      "MAIL FROM:<a@>",                 /* empty domain */
      "MAIL FROM:<a@b@c>",              /* two @ */
      "MAIL FROM:<.a@b>",               /* leading dot */
      "MAIL FROM:<a.@b>",               /* trailing dot */
      "MAIL FROM:<a..b@c>",             /* double dot */
      "MAIL FROM:<a@-b.example>",       /* label starts with - */
      "MAIL FROM:<a@b-.example>",       /* label ends with - */
      "MAIL FROM:<a@b..example>",       /* empty label */
      "MAIL FROM:<a@b.example.>",       /* trailing dot */
      "MAIL FROM:<a@b_c.example>",      /* underscore */
      "MAIL FROM:<\"unterminated@b>",   /* open quote */
      "MAIL FROM:<\"a\"b@c>",           /* quoted string then text */
      "MAIL FROM:<a@[999.1.1.1]>",      /* not an IPv4 address */
      "MAIL FROM:<a@[1.2.3]>",          /* not an IPv4 address */
      "MAIL FROM:<a@[IPv6:zz::1]>",     /* not an IPv6 address */
      "MAIL FROM:<a@[]>",               /* empty literal */
      "MAIL FROM:<a@[1.2.3.4>",         /* open literal */
      "MAIL FROM:<a@[:x]>",             /* empty tag */
      "MAIL FROM:<a@[tag:]>",           /* empty general literal */
      "MAIL FROM:<@a:>",                /* route without mailbox */
      "MAIL FROM:<@:a@b>",              /* empty route domain */
      "MAIL FROM:<@a,b:c@d>",           /* route domain without @ */
      "MAIL FROM:<@a c@d>",             /* route without colon */
      "MAIL FROM:",                     /* nothing */
      "MAIL FROM:<",                    /* nothing */
      "MAIL FROM:<>>",                  /* junk after path */
      "MAIL FROM:<> <>",                /* bad param */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (parse(bad[i]) != SP_E_SYNTAX)
      TEST_FAIL_("accepted: %s", bad[i]);
    ASSERT_STR_EQ(cmd.path, "");
    ASSERT_EQ(cmd.nparams, 0);
  }
}

static void test_command_rcpt(void) {
  ASSERT_EQ(parse("RCPT TO:<bob@example.net>"), 0);
  ASSERT_EQ(cmd.verb, SMTP_VERB_RCPT);
  ASSERT_STR_EQ(cmd.path, "bob@example.net");
  ASSERT_EQ(
      parse("rcpt to: <bob@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+40x"), 0);
  ASSERT_EQ(cmd.nparams, 2);
  ASSERT_STR_EQ(cmd.params[0].key, "NOTIFY");
  ASSERT_STR_EQ(cmd.params[1].value, "rfc822;b+40x");
  ASSERT_EQ(parse("RCPT TO:<postmaster>"), 0);
  ASSERT_STR_EQ(cmd.path, "postmaster");
  ASSERT_EQ(parse("RCPT TO:<PostMaster>"), 0);
  ASSERT_STR_EQ(cmd.path, "postmaster");
  ASSERT_EQ(parse("RCPT TO:<Postmaster@example.net>"), 0);
  ASSERT_STR_EQ(cmd.path, "Postmaster@example.net");
  ASSERT_EQ(parse("RCPT TO:<>"), SP_E_SYNTAX); /* <> is MAIL only */
  ASSERT_EQ(parse("RCPT TO:<> "), SP_E_SYNTAX);
  ASSERT_EQ(parse("RCPT TO:<admin>"), SP_E_SYNTAX);
  ASSERT_EQ(parse("RCPT TO:<\"postmaster\">"), SP_E_SYNTAX);
  ASSERT_EQ(parse("RCPT FROM:<a@b>"), SP_E_SYNTAX);
  ASSERT_EQ(parse("RCPT TO:bob@example.net"), SP_E_SYNTAX);
  ASSERT_EQ(parse("RCPT TO <bob@example.net>"), SP_E_SYNTAX);
  ASSERT_EQ(parse("RCPT TO:<bob@example.net"), SP_E_SYNTAX);
}

static void test_command_params(void) {
  ASSERT_EQ(parse("MAIL FROM:<a@b> SIZE=1000  body=8BITMIME smtputf8 "), 0);
  ASSERT_EQ(cmd.nparams, 3);
  ASSERT_STR_EQ(cmd.params[0].key, "SIZE");
  ASSERT_STR_EQ(cmd.params[0].value, "1000");
  ASSERT(cmd.params[0].has_value);
  ASSERT_STR_EQ(cmd.params[1].key, "BODY"); /* keys upper-cased, values as sent */
  ASSERT_STR_EQ(cmd.params[1].value, "8BITMIME");
  ASSERT_STR_EQ(cmd.params[2].key, "SMTPUTF8");
  ASSERT_STR_EQ(cmd.params[2].value, "");
  ASSERT(!cmd.params[2].has_value);
  const struct smtp_param *p = smtp_command_param(&cmd, "size");
  ASSERT(p == &cmd.params[0]);
  ASSERT(smtp_command_param(&cmd, "SmtpUtf8") == &cmd.params[2]);
  ASSERT(smtp_command_param(&cmd, "RET") == NULL);
  ASSERT(smtp_command_param(&cmd, "SIZ") == NULL);
  ASSERT(smtp_command_param(&cmd, "") == NULL);
  ASSERT_EQ(parse("MAIL FROM:<a@b> AUTH=<>"), 0);
  ASSERT_STR_EQ(cmd.params[0].value, "<>");
  ASSERT_EQ(parse("MAIL FROM:<a@b> X-SOME-EXT=v"), 0);

  ASSERT_EQ(parse("MAIL FROM:<a@b> SIZE="), SP_E_SYNTAX);
  ASSERT_EQ(parse("MAIL FROM:<a@b> =100"), SP_E_SYNTAX);
  ASSERT_EQ(parse("MAIL FROM:<a@b> K=V=W"), SP_E_SYNTAX);
  ASSERT_EQ(parse("MAIL FROM:<a@b> -K"), SP_E_SYNTAX);
  ASSERT_EQ(parse("MAIL FROM:<a@b> K_X"), SP_E_SYNTAX);
  ASSERT_EQ(parse("MAIL FROM:<a@b> SIZE=1\t2"), SP_E_SYNTAX);
}

static void test_command_param_limits(void) {
  char line[2 * SMTP_COMMAND_LINE_MAX];
  char key[40], val[300];
  /* 16 params fit, 17 do not. */
  strcpy(line, "MAIL FROM:<a@b>");
  for (int i = 0; i < SMTP_MAX_PARAMS; i++)
    sprintf(line + strlen(line), " P%d=%d", i, i);
  ASSERT_EQ(parse(line), 0);
  ASSERT_EQ(cmd.nparams, SMTP_MAX_PARAMS);
  ASSERT_STR_EQ(cmd.params[15].key, "P15");
  strcat(line, " P16");
  ASSERT_EQ(parse(line), SP_E_SYNTAX);
  ASSERT_EQ(cmd.nparams, 0);
  /* Keys up to 31 characters, values up to 255. */
  memset(key, 'K', 31);
  key[31] = '\0';
  snprintf(line, sizeof line, "RCPT TO:<a@b> %s=v", key);
  ASSERT_EQ(parse(line), 0);
  ASSERT_STR_EQ(cmd.params[0].key, key);
  snprintf(line, sizeof line, "RCPT TO:<a@b> %sK=v", key);
  ASSERT_EQ(parse(line), SP_E_SYNTAX);
  snprintf(line, sizeof line, "RCPT TO:<a@b> %sK", key);
  ASSERT_EQ(parse(line), SP_E_SYNTAX);
  memset(val, 'v', 255);
  val[255] = '\0';
  snprintf(line, sizeof line, "MAIL FROM:<a@b> K=%s", val);
  ASSERT_EQ(parse(line), 0);
  ASSERT_STR_EQ(cmd.params[0].value, val);
  snprintf(line, sizeof line, "MAIL FROM:<a@b> K=%sv", val);
  ASSERT_EQ(parse(line), SP_E_SYNTAX);
}

/* The value of the one parameter of line (a MAIL or RCPT) is valid. */
static bool param_ok(const char *line) {
  if (parse(line) != 0 || cmd.nparams != 1)
    TEST_FAIL_("did not parse to one parameter: %s", line);
  return smtp_param_valid(&cmd.params[0]);
}

static void test_param_values(void) {
  static const char *const good[] = {
      "MAIL FROM:<a@b> SIZE=0",
      "MAIL FROM:<a@b> SIZE=12345678901234567890", /* 20 digits */
      "MAIL FROM:<a@b> BODY=7BIT",
      "MAIL FROM:<a@b> body=8bitmime", /* values are case-insensitive */
      "MAIL FROM:<a@b> SMTPUTF8",
      "MAIL FROM:<a@b> RET=FULL",
      "MAIL FROM:<a@b> ret=hdrs",
      "MAIL FROM:<a@b> ENVID=QQ314159",
      "MAIL FROM:<a@b> ENVID=a+2Bb+3dc", /* hexchars, either case */
      "RCPT TO:<a@b> NOTIFY=NEVER",
      "RCPT TO:<a@b> NOTIFY=SUCCESS",
      "RCPT TO:<a@b> notify=success,failure,delay",
      "RCPT TO:<a@b> ORCPT=rfc822;Bob+40example.net",
      "RCPT TO:<a@b> ORCPT=RFC822;x",
      "RCPT TO:<a@b> ORCPT=utf-8;\xe7\x94\xa8@example.net", /* RFC 6533: not xtext */
      "RCPT TO:<a@b> ORCPT=x-other;anything",
      "MAIL FROM:<a@b> X-UNKNOWN=whatever", /* not ours to judge */
      "MAIL FROM:<a@b> AUTH=<>",
  };
  static const char *const bad[] = {
      "MAIL FROM:<a@b> SIZE",
      "MAIL FROM:<a@b> SIZE=abc",
      "MAIL FROM:<a@b> SIZE=12x",
      "MAIL FROM:<a@b> SIZE=-1",
      "MAIL FROM:<a@b> SIZE=123456789012345678901", /* 21 digits */
      "MAIL FROM:<a@b> BODY",
      "MAIL FROM:<a@b> BODY=9BIT",
      "MAIL FROM:<a@b> BODY=BINARYMIME", /* BINARYMIME is not offered */
      "MAIL FROM:<a@b> SMTPUTF8=yes",
      "MAIL FROM:<a@b> RET",
      "MAIL FROM:<a@b> RET=ALL",
      "MAIL FROM:<a@b> RET=FULLER",
      "MAIL FROM:<a@b> ENVID",
      "MAIL FROM:<a@b> ENVID=a+zz",      /* not a hexchar */
      "MAIL FROM:<a@b> ENVID=a+4",       /* short */
      "MAIL FROM:<a@b> ENVID=a\xc3\xa9", /* xtext is ASCII */
      "RCPT TO:<a@b> NOTIFY",
      "RCPT TO:<a@b> NOTIFY=SOMETIMES",
      "RCPT TO:<a@b> NOTIFY=NEVER,SUCCESS", /* NEVER stands alone */
      "RCPT TO:<a@b> NOTIFY=SUCCESS,",
      "RCPT TO:<a@b> NOTIFY=,SUCCESS",
      "RCPT TO:<a@b> NOTIFY=SUCCESS,,DELAY",
      "RCPT TO:<a@b> ORCPT",
      "RCPT TO:<a@b> ORCPT=rfc822",
      "RCPT TO:<a@b> ORCPT=;a@b",
      "RCPT TO:<a@b> ORCPT=rfc822;",
      "RCPT TO:<a@b> ORCPT=rfc822;a+4",
      "RCPT TO:<a@b> ORCPT=x-other;\xc3\xa9", /* only utf-8 takes UTF-8 */
  };
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    if (!param_ok(good[i]))
      TEST_FAIL_("refused: %s", good[i]);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (param_ok(bad[i]))
      TEST_FAIL_("accepted: %s", bad[i]);
  /* ENVID: at most 100 characters (RFC 3461 4.4). */
  char line[300], val[120];
  memset(val, 'e', 100);
  val[100] = '\0';
  snprintf(line, sizeof line, "MAIL FROM:<a@b> ENVID=%s", val);
  ASSERT(param_ok(line));
  snprintf(line, sizeof line, "MAIL FROM:<a@b> ENVID=%se", val);
  ASSERT(!param_ok(line));
}

static void test_command_path_limit(void) {
  char line[600], local[300];
  /* local@b.c: 256 characters fit SMTP_PATH_MAX, 257 do not. */
  memset(local, 'x', 252);
  local[252] = '\0';
  snprintf(line, sizeof line, "RCPT TO:<%s@b.c>", local);
  ASSERT_EQ(parse(line), 0);
  ASSERT_EQ(strlen(cmd.path), SMTP_PATH_MAX);
  snprintf(line, sizeof line, "RCPT TO:<%sx@b.c>", local);
  ASSERT_EQ(parse(line), SP_E_SYNTAX);
  ASSERT_STR_EQ(cmd.path, "");
  /* The source route does not count. */
  snprintf(line, sizeof line, "RCPT TO:<@relay.example:%s@b.c>", local);
  ASSERT_EQ(parse(line), 0);
}

static void test_command_bdat(void) {
  ASSERT_EQ(parse("BDAT 100"), 0);
  ASSERT_EQ(cmd.verb, SMTP_VERB_BDAT);
  assert_arg("100");
  ASSERT_EQ(parse("bdat 0 last"), 0);
  ASSERT_EQ(parse("BDAT 100  LAST "), 0);
  ASSERT_EQ(parse("BDAT 12345678901234567890"), 0);
  ASSERT_EQ(parse("BDAT 123456789012345678901"), SP_E_SYNTAX);
  ASSERT_EQ(parse("BDAT"), SP_E_SYNTAX);
  ASSERT_EQ(parse("BDAT x"), SP_E_SYNTAX);
  ASSERT_EQ(parse("BDAT -1"), SP_E_SYNTAX);
  ASSERT_EQ(parse("BDAT 100LAST"), SP_E_SYNTAX);
  ASSERT_EQ(parse("BDAT 100 MORE"), SP_E_SYNTAX);
  ASSERT_EQ(parse("BDAT 100 LAST x"), SP_E_SYNTAX);
}

static void test_path_domain(void) {
  const char *d = NULL;
  size_t n = 0;
  ASSERT_EQ(smtp_path_domain("user@Example.COM", &d, &n), 0);
  ASSERT_MEM_EQ(d, n, "Example.COM", 11);
  ASSERT_EQ(smtp_path_domain("\"a@b\"@c.example", &d, &n), 0);
  ASSERT_MEM_EQ(d, n, "c.example", 9);
  ASSERT_EQ(smtp_path_domain("u@[192.0.2.1]", &d, &n), 0);
  ASSERT_MEM_EQ(d, n, "[192.0.2.1]", 11);
  ASSERT_EQ(smtp_path_domain("postmaster", &d, &n), SP_E_SYNTAX);
  ASSERT_EQ(smtp_path_domain("", &d, &n), SP_E_SYNTAX);
  ASSERT_EQ(smtp_path_domain("a@", &d, &n), SP_E_SYNTAX);
  ASSERT_EQ(smtp_path_domain("@b", &d, &n), SP_E_SYNTAX);
  ASSERT_EQ(smtp_path_domain("\"a@b\"", &d, &n), SP_E_SYNTAX);
  ASSERT_EQ(smtp_path_domain(NULL, &d, &n), SP_E_SYNTAX);
  /* Every path the parser accepts with a domain gives it back. */
  ASSERT_EQ(parse("RCPT TO:<@r.example:\"x y\"@dest.example>"), 0);
  ASSERT_EQ(smtp_path_domain(cmd.path, &d, &n), 0);
  ASSERT_MEM_EQ(d, n, "dest.example", 12);
}

/* ---- Replies -----------------------------------------------------------------------
 */

static struct smtp_reply_parser rp;
static struct smtp_reply reply;

static int feed(const char *line) {
  return smtp_reply_feed_line(&rp, line, strlen(line), &reply);
}

static void test_reply_single(void) {
  smtp_reply_parser_init(&rp);
  ASSERT_EQ(feed("220 mx.example.com ESMTP ready"), 1);
  ASSERT_EQ(reply.code, 220);
  ASSERT_EQ(reply.nlines, 1);
  ASSERT_STR_EQ(reply.lines[0], "mx.example.com ESMTP ready");
  ASSERT_STR_EQ(reply.enhanced, "");
  ASSERT_EQ(feed("250"), 1); /* bare code */
  ASSERT_EQ(reply.code, 250);
  ASSERT_EQ(reply.nlines, 1);
  ASSERT_STR_EQ(reply.lines[0], "");
  ASSERT_EQ(feed("354 "), 1);
  ASSERT_STR_EQ(reply.lines[0], "");
  ASSERT_EQ(feed("599 x\ty"), 1); /* HTAB allowed */
  ASSERT_EQ(feed("200 x"), 1);
}

static void test_reply_multiline(void) {
  smtp_reply_parser_init(&rp);
  ASSERT_EQ(feed("250-mx.example.com"), 0);
  ASSERT_EQ(feed("250-PIPELINING"), 0);
  ASSERT_EQ(feed("250-"), 0);
  ASSERT_EQ(feed("250 SIZE 1000"), 1);
  ASSERT_EQ(reply.nlines, 4);
  ASSERT_STR_EQ(reply.lines[0], "mx.example.com");
  ASSERT_STR_EQ(reply.lines[2], "");
  ASSERT_STR_EQ(reply.lines[3], "SIZE 1000");
  /* The parser starts afresh after a complete reply. */
  ASSERT_EQ(feed("221 bye"), 1);
  ASSERT_EQ(reply.code, 221);
  ASSERT_EQ(reply.nlines, 1);
  /* Continuation with a different code: protocol error, parser reset. */
  ASSERT_EQ(feed("250-a"), 0);
  ASSERT_EQ(feed("251 b"), SP_E_PROTOCOL);
  ASSERT_EQ(feed("220 fresh"), 1);
  ASSERT_EQ(reply.code, 220);
  ASSERT_EQ(reply.nlines, 1);
  ASSERT_EQ(feed("250-a"), 0);
  ASSERT_EQ(feed("550 b"), SP_E_PROTOCOL);
  /* A bad line in the middle also resets. */
  ASSERT_EQ(feed("250-a"), 0);
  ASSERT_EQ(feed("garbage"), SP_E_PROTOCOL);
  ASSERT_EQ(feed("250 x"), 1);
  ASSERT_EQ(reply.nlines, 1);
}

static void test_reply_malformed(void) {
  static const char *bad[] = {"",
                              "2",
                              "25",
                              "199 x",
                              "600 x",
                              "099 x",
                              "100 x",
                              "699",
                              "2500 x",
                              "250x",
                              "250_x",
                              "25a x",
                              "abc",
                              " 250 x",
                              "-250 x",
                              "2 50 x",
                              ("\xff"
                               "50 x")};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    smtp_reply_parser_init(&rp);
    if (feed(bad[i]) != SP_E_PROTOCOL)
      TEST_FAIL_("accepted reply line \"%s\"", bad[i]);
  }
  smtp_reply_parser_init(&rp);
  ASSERT_EQ(smtp_reply_feed_line(&rp, S("250 a\0b"), &reply), SP_E_PROTOCOL);
  ASSERT_EQ(smtp_reply_feed_line(&rp, S("250\0"), &reply), SP_E_PROTOCOL);
  ASSERT_EQ(feed("250 a\rb"), SP_E_PROTOCOL);
  ASSERT_EQ(feed("250 a\r"), SP_E_PROTOCOL);
  ASSERT_EQ(feed("250 a\nb"), SP_E_PROTOCOL);
  ASSERT_EQ(smtp_reply_feed_line(&rp, NULL, 0, &reply), SP_E_PROTOCOL);
}

static void test_reply_enhanced(void) {
  static const struct {
    const char *line, *enhanced;
  } cases[] = {
      {"250 2.1.0 Ok", "2.1.0"},
      {"550 5.1.1 <x@y>: user unknown", "5.1.1"},
      {"421 4.4.2 timeout", "4.4.2"},
      {"250 2.0.0", "2.0.0"},
      {"250 2.123.456 x", "2.123.456"},
      {"250 5.1.1 x", ""},      /* class differs from the code */
      {"550 2.0.0 x", ""},      /* class differs from the code */
      {"354 3.0.0 go", ""},     /* no class 3 */
      {"250 2.1.0x", ""},       /* not followed by SP */
      {"250 2.1.0. x", ""},     /* four parts */
      {"250 2.1000.0 x", ""},   /* subject too long */
      {"250 2.1.1000 x", ""},   /* detail too long */
      {"250 2..0 x", ""},       /* empty subject */
      {"250 2.1. x", ""},       /* empty detail */
      {"250 2.1 x", ""},        /* two parts */
      {"250 x 2.1.0", ""},      /* not first */
      {"250  2.1.0 x", ""},     /* not first */
      {"250-2.1.0 x", "2.1.0"}, /* first line of a multi-line reply */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    smtp_reply_parser_init(&rp);
    int rc = feed(cases[i].line);
    if (rc == 0)
      rc = feed("250 end");
    ASSERT_EQ(rc, 1);
    ASSERT_STR_EQ(reply.enhanced, cases[i].enhanced);
  }
  /* The enhanced code stays in the line text; later lines do not set it. */
  smtp_reply_parser_init(&rp);
  ASSERT_EQ(feed("550 5.7.1 denied"), 1);
  ASSERT_STR_EQ(reply.lines[0], "5.7.1 denied");
  ASSERT_EQ(feed("250-first"), 0);
  ASSERT_EQ(feed("250 2.0.0 second"), 1);
  ASSERT_STR_EQ(reply.enhanced, "");
}

static void test_reply_limits(void) {
  static char line[SMTP_REPLY_LINE_MAX + 200];
  memcpy(line, "250 ", 4);
  memset(line + 4, 'x', sizeof line - 5);
  line[sizeof line - 1] = '\0';
  smtp_reply_parser_init(&rp);
  ASSERT_EQ(feed(line), 1);
  ASSERT_EQ(strlen(reply.lines[0]), SMTP_REPLY_LINE_MAX); /* cut */
  /* 40 lines: the first 31 and the last are kept. */
  char buf[32];
  for (int i = 0; i < 39; i++) {
    snprintf(buf, sizeof buf, "250-l%d", i);
    ASSERT_EQ(feed(buf), 0);
  }
  ASSERT_EQ(feed("250 last"), 1);
  ASSERT_EQ(reply.nlines, SMTP_REPLY_MAX_LINES);
  ASSERT_STR_EQ(reply.lines[0], "l0");
  ASSERT_STR_EQ(reply.lines[30], "l30");
  ASSERT_STR_EQ(reply.lines[31], "last");
}

static void test_reply_format(void) {
  char out[256];
  smtp_reply_parser_init(&rp);
  feed("250-mx.example.com");
  feed("250-PIPELINING");
  ASSERT_EQ(feed("250 2.0.0 SIZE 1000"), 1);
  const char *want = "250-mx.example.com\r\n250-PIPELINING\r\n250 2.0.0 SIZE 1000\r\n";
  ASSERT_EQ(smtp_reply_format(&reply, 0, out, sizeof out), (int)strlen(want));
  ASSERT_STR_EQ(out, want);
  ASSERT_EQ(smtp_reply_format(&reply, 421, out, sizeof out), (int)strlen(want));
  ASSERT_STR_EQ(out, "421-mx.example.com\r\n421-PIPELINING\r\n421 2.0.0 SIZE 1000\r\n");
  /* Exactly fitting needs room for the NUL. */
  int len = (int)strlen(want);
  ASSERT_EQ(smtp_reply_format(&reply, 0, out, (size_t)len + 1), len);
  ASSERT_EQ(smtp_reply_format(&reply, 0, out, (size_t)len), SP_E_OVERFLOW);
  ASSERT_STR_EQ(out, "");
  ASSERT_EQ(smtp_reply_format(&reply, 0, out, 5), SP_E_OVERFLOW);
  ASSERT_EQ(smtp_reply_format(&reply, 0, NULL, 0), SP_E_OVERFLOW);
  /* Empty last line: "250" alone; an empty reply reads as one. */
  ASSERT_EQ(feed("250"), 1);
  ASSERT_EQ(smtp_reply_format(&reply, 0, out, sizeof out), 5);
  ASSERT_STR_EQ(out, "250\r\n");
  reply.nlines = 0;
  ASSERT_EQ(smtp_reply_format(&reply, 0, out, sizeof out), 5);
  ASSERT_EQ(feed("250-"), 0);
  ASSERT_EQ(feed("250 x"), 1);
  ASSERT_EQ(smtp_reply_format(&reply, 0, out, sizeof out), 13);
  ASSERT_STR_EQ(out, "250-\r\n250 x\r\n");
  /* Bad codes or lines that would inject wire text. */
  ASSERT_EQ(smtp_reply_format(&reply, 199, out, sizeof out), SP_E_INVAL);
  ASSERT_EQ(smtp_reply_format(&reply, 600, out, sizeof out), SP_E_INVAL);
  strcpy(reply.lines[0], "a\r\n250 injected");
  ASSERT_EQ(smtp_reply_format(&reply, 0, out, sizeof out), SP_E_INVAL);
  reply.nlines = SMTP_REPLY_MAX_LINES + 1;
  ASSERT_EQ(smtp_reply_format(&reply, 0, out, sizeof out), SP_E_INVAL);
}

/* A reply without enhanced codes gets one before each line's text; an empty line gets
 * the code alone; a malformed code, or one of another class, is refused. */
static void test_reply_format_enhanced(void) {
  char out[256];
  smtp_reply_parser_init(&rp);
  feed("451-try");
  feed("451-");
  ASSERT_EQ(feed("451 later"), 1);
  ASSERT_EQ(smtp_reply_format_enhanced(&reply, 0, "4.0.0", out, sizeof out), 43);
  ASSERT_STR_EQ(out, "451-4.0.0 try\r\n451-4.0.0\r\n451 4.0.0 later\r\n");
  ASSERT_EQ(smtp_reply_format_enhanced(&reply, 0, "", out, sizeof out), 26);
  ASSERT_STR_EQ(out, "451-try\r\n451-\r\n451 later\r\n");
  ASSERT_EQ(smtp_reply_format_enhanced(&reply, 0, "5.0.0", out, sizeof out),
            SP_E_INVAL);
  ASSERT_EQ(smtp_reply_format_enhanced(&reply, 0, "4.x", out, sizeof out), SP_E_INVAL);
  ASSERT_EQ(smtp_reply_format_enhanced(&reply, 0, "4.0.0", out, 20), SP_E_OVERFLOW);
}

static void test_reply_format_roundtrip(void) {
  static char wire[SMTP_REPLY_MAX_LINES * (SMTP_REPLY_LINE_MAX + 6) + 1];
  static struct smtp_reply first;
  char line[SMTP_REPLY_LINE_MAX + 8];
  smtp_reply_parser_init(&rp);
  for (int i = 0; i < 40; i++) {
    int n = snprintf(line, sizeof line, "451%c4.3.0 line %d ", i == 39 ? ' ' : '-', i);
    if (i == 5) { /* one line at the cap */
      memset(line + n, 'z', sizeof line - (size_t)n - 1);
      line[sizeof line - 1] = '\0';
    }
    ASSERT_EQ(feed(line), i == 39 ? 1 : 0);
  }
  first = reply;
  int len = smtp_reply_format(&first, 0, wire, sizeof wire);
  ASSERT(len > 0);
  ASSERT_EQ(strlen(wire), len);
  /* Parse it back line by line: the same reply. */
  size_t pos = 0, ll, used;
  int rc = 0;
  while (smtp_find_line(wire + pos, (size_t)len - pos, SMTP_REPLY_LINE_MAX + 4, &ll,
                        &used) == 1) {
    rc = smtp_reply_feed_line(&rp, wire + pos, ll, &reply);
    pos += used;
  }
  ASSERT_EQ(rc, 1);
  ASSERT_EQ(pos, len);
  ASSERT_EQ(reply.code, first.code);
  ASSERT_STR_EQ(reply.enhanced, first.enhanced);
  ASSERT_EQ(reply.nlines, first.nlines);
  for (size_t i = 0; i < reply.nlines; i++)
    ASSERT_STR_EQ(reply.lines[i], first.lines[i]);
}

static void test_reply_build(void) {
  char out[256];
  ASSERT_EQ(smtp_reply_build(out, sizeof out, 250, "2.0.0", "Ok"), 14);
  ASSERT_STR_EQ(out, "250 2.0.0 Ok\r\n");
  ASSERT_EQ(smtp_reply_build(out, sizeof out, 220, "", "mx ESMTP"), 14);
  ASSERT_STR_EQ(out, "220 mx ESMTP\r\n");
  smtp_reply_build(out, sizeof out, 550, "5.7.1", "line one\nline two");
  ASSERT_STR_EQ(out, "550-5.7.1 line one\r\n550 5.7.1 line two\r\n");
  smtp_reply_build(out, sizeof out, 250, NULL, "a\n\nb");
  ASSERT_STR_EQ(out, "250-a\r\n250-\r\n250 b\r\n");
  smtp_reply_build(out, sizeof out, 250, "", "one line\n"); /* final newline */
  ASSERT_STR_EQ(out, "250 one line\r\n");
  smtp_reply_build(out, sizeof out, 250, "", "");
  ASSERT_STR_EQ(out, "250\r\n");
  smtp_reply_build(out, sizeof out, 250, "", NULL);
  ASSERT_STR_EQ(out, "250\r\n");
  smtp_reply_build(out, sizeof out, 250, "2.0.0", "");
  ASSERT_STR_EQ(out, "250 2.0.0\r\n");
  smtp_reply_build(out, sizeof out, 500, "5.5.2", "line\ttoo long");
  ASSERT_STR_EQ(out, "500 5.5.2 line\ttoo long\r\n");
  /* Overflow: the NUL needs its byte too. */
  ASSERT_EQ(smtp_reply_build(out, 14, 250, "2.0.0", "Ok"), SP_E_OVERFLOW);
  ASSERT_STR_EQ(out, "");
  ASSERT_EQ(smtp_reply_build(out, 15, 250, "2.0.0", "Ok"), 14);
  ASSERT_EQ(smtp_reply_build(NULL, 0, 250, "2.0.0", "Ok"), SP_E_OVERFLOW);
  /* Bad input. */
  ASSERT_EQ(smtp_reply_build(out, sizeof out, 700, "", "x"), SP_E_INVAL);
  ASSERT_EQ(smtp_reply_build(out, sizeof out, 99, "", "x"), SP_E_INVAL);
  ASSERT_EQ(smtp_reply_build(out, sizeof out, 250, "5.0.0", "x"), SP_E_INVAL);
  ASSERT_EQ(smtp_reply_build(out, sizeof out, 250, "2.0", "x"), SP_E_INVAL);
  ASSERT_EQ(smtp_reply_build(out, sizeof out, 250, "2.0.0 ", "x"), SP_E_INVAL);
  ASSERT_EQ(smtp_reply_build(out, sizeof out, 250, "", "a\r\n250 b"), SP_E_INVAL);
  ASSERT_EQ(smtp_reply_build(out, sizeof out, 250, "", "a\rb"), SP_E_INVAL);
  /* What it builds parses back. */
  smtp_reply_build(out, sizeof out, 451, "4.7.0", "try\nagain later");
  smtp_reply_parser_init(&rp);
  ASSERT_EQ(feed("451-4.7.0 try"), 0);
  ASSERT_EQ(feed("451 4.7.0 again later"), 1);
  ASSERT_STR_EQ(reply.enhanced, "4.7.0");
}

/* ---- EHLO capabilities -------------------------------------------------------------
 */

static void ehlo(const char *const *lines, size_t n, struct smtp_caps *caps) {
  char buf[128];
  smtp_reply_parser_init(&rp);
  for (size_t i = 0; i < n; i++) {
    snprintf(buf, sizeof buf, "250%c%s", i + 1 == n ? ' ' : '-', lines[i]);
    ASSERT_EQ(feed(buf), i + 1 == n ? 1 : 0);
  }
  caps->flags = 0xdead;
  caps->size_max = 77;
  smtp_ehlo_caps(&reply, caps);
}

static void test_ehlo_caps(void) {
  struct smtp_caps caps;
  static const char *const all[] = {"mx.example.com Hello [192.0.2.1]",
                                    "PIPELINING",
                                    "SIZE 1000",
                                    "starttls",
                                    "8bitmime",
                                    "EnhancedStatusCodes",
                                    "SMTPUTF8",
                                    "DSN",
                                    "X-UNKNOWN foo",
                                    "AUTH PLAIN",
                                    "CHUNKING"};
  ehlo(all, sizeof all / sizeof all[0], &caps);
  ASSERT_EQ(caps.flags, SMTP_CAP_STARTTLS | SMTP_CAP_PIPELINING | SMTP_CAP_SIZE |
                            SMTP_CAP_8BITMIME | SMTP_CAP_SMTPUTF8 | SMTP_CAP_DSN |
                            SMTP_CAP_ENHANCEDSTATUSCODES | SMTP_CAP_CHUNKING);
  ASSERT_EQ(caps.size_max, 1000);

  static const char *const greeting_only[] = {"STARTTLS"}; /* line 1 is the domain */
  ehlo(greeting_only, 1, &caps);
  ASSERT_EQ(caps.flags, 0);
  ASSERT_EQ(caps.size_max, 0);

  static const char *const size_bare[] = {"mx", "SIZE"};
  ehlo(size_bare, 2, &caps);
  ASSERT_EQ(caps.flags, SMTP_CAP_SIZE);
  ASSERT_EQ(caps.size_max, 0);

  static const char *const size_huge[] = {"mx", "SIZE 99999999999999999999999"};
  ehlo(size_huge, 2, &caps);
  ASSERT_EQ(caps.flags, SMTP_CAP_SIZE);
  ASSERT(caps.size_max == UINT64_MAX);

  static const char *const size_max64[] = {"mx", "size  18446744073709551615"};
  ehlo(size_max64, 2, &caps);
  ASSERT(caps.size_max == UINT64_MAX);

  static const char *const size_junk[] = {"mx", "SIZE abc"};
  ehlo(size_junk, 2, &caps);
  ASSERT_EQ(caps.flags, SMTP_CAP_SIZE);
  ASSERT_EQ(caps.size_max, 0);

  static const char *const near[] = {
      "mx", "STARTTLSX", "SIZE=1000", "XSIZE 5", " PIPELINING", "PIPELINING2", "DS"};
  ehlo(near, sizeof near / sizeof near[0], &caps);
  ASSERT_EQ(caps.flags, 0);
  ASSERT_EQ(caps.size_max, 0);

  static const char *const trailing[] = {"mx", "STARTTLS ", "CHUNKING extra"};
  ehlo(trailing, 3, &caps);
  ASSERT_EQ(caps.flags, SMTP_CAP_STARTTLS | SMTP_CAP_CHUNKING);
}

/* ---- DATA scanner ------------------------------------------------------------------
 */

struct scan_result {
  char out[1024];
  size_t out_len, consumed;
  bool done, bare;
  uint64_t bytes;
};

/* Scans in[0..len) in chunks: split at `split` when step is 0, else step bytes at a
 * time. Each call gets exactly the documented out_cap, 2 * len + 4. */
static void scan(enum smtp_data_mode mode, const char *in, size_t len, size_t split,
                 size_t step, struct scan_result *r) {
  struct smtp_data_scanner s;
  char tmp[2 * 1024 + 4];
  smtp_data_init(&s, mode);
  memset(r, 0, sizeof *r);
  size_t pos = 0;
  while (pos < len && !s.done) {
    size_t chunk = step ? step : (pos < split ? split - pos : len - pos);
    if (chunk > len - pos)
      chunk = len - pos;
    size_t out_len = 9999;
    size_t used = smtp_data_scan(&s, in + pos, chunk, tmp, 2 * chunk + 4, &out_len);
    ASSERT(out_len <= 2 * chunk + 4);
    ASSERT(used <= chunk);
    ASSERT(used == chunk || s.done);
    ASSERT(r->out_len + out_len <= sizeof r->out);
    memcpy(r->out + r->out_len, tmp, out_len);
    r->out_len += out_len;
    pos += used;
  }
  r->consumed = pos;
  r->done = s.done;
  r->bare = s.bare;
  r->bytes = s.bytes;
}

static void check_scan_all_splits(enum smtp_data_mode mode, const char *in, size_t len,
                                  const char *want, size_t want_len, size_t consumed,
                                  bool done, bool bare) {
  struct scan_result r;
  for (size_t split = 0; split <= len + 1; split++) {
    /* split == len + 1: one byte at a time. */
    scan(mode, in, len, split, split == len + 1 ? 1 : 0, &r);
    if (r.out_len != want_len || memcmp(r.out, want, want_len) != 0 ||
        r.consumed != consumed || r.done != done || r.bare != bare)
      TEST_FAIL_("mode %d input \"%.*s\" split %zu: out \"%.*s\" consumed %zu done %d "
                 "bare %d",
                 (int)mode, (int)len, in, split, (int)r.out_len, r.out, r.consumed,
                 r.done, r.bare);
    ASSERT_EQ(r.bytes, done ? consumed - 3 : consumed);
  }
}

static const struct data_case {
  enum smtp_data_mode mode;
  const char *in;
  size_t in_len;
  const char *out;
  size_t out_len;
  size_t consumed;
  bool done, bare;
} data_cases[] = {
#define R SMTP_DATA_REFUSE
#define N SMTP_DATA_NORMALIZE
#define C(mode, in, out, consumed, done, bare)                                         \
  { mode, in, sizeof(in) - 1, out, sizeof(out) - 1, consumed, done, bare }
    /* Clean data, both modes: forwarded as is, terminator excluded. */
    C(R, "abc\r\n.\r\n", "abc\r\n", 8, true, false),
    C(N, "abc\r\n.\r\n", "abc\r\n", 8, true, false),
    C(R, ".\r\n", "", 3, true, false), /* empty message */
    C(N, ".\r\n", "", 3, true, false),
    C(R, "\r\n.\r\n", "\r\n", 5, true, false), /* one empty line */
    C(R, "\r\n\r\n.\r\n", "\r\n\r\n", 7, true, false),
    C(R, "..x\r\n.\r\n", "..x\r\n", 8, true, false), /* dot-stuffing kept */
    C(R, "..\r\n.\r\n", "..\r\n", 7, true, false),
    C(N, "..\r\n.\r\n", "..\r\n", 7, true, false),
    C(R, ". \r\n.\r\n", ". \r\n", 7, true, false),
    C(R, "a\r\n..\r\n.\r\nMAIL FROM:<x@y>\r\n", "a\r\n..\r\n", 10, true, false),
    C(R, "a\0b\r\n.\r\n", "a\0b\r\n", 8, true, false), /* NUL is data */
    C(R, "x.\r\n.\r\n", "x.\r\n", 7, true, false),
    C(R, "x\r\n.x\r\n.\r\n", "x\r\n.x\r\n", 10, true, false),
    /* Held bytes at the end of input: not output yet, not bare yet. */
    C(R, "a\r", "a", 2, false, false),
    C(R, "x\r\n.", "x\r\n", 4, false, false),
    C(R, "x\r\n.\r", "x\r\n", 5, false, false),
    C(R, "x\r\n", "x\r\n", 3, false, false),
    /* Bare LF / CR, REFUSE: nothing from the first bare byte on; the end still found.
     */
    C(R, "abc\n.\r\n", "abc", 7, false, true),
    C(R, "abc\n.\r\n.\r\n", "abc", 10, true, true),
    C(R, "a\nb\r\n.\r\nQUIT\r\n", "a", 8, true, true),
    C(R, "\n", "", 1, false, true),
    C(R, "\r", "", 1, false, false),
    C(R, "\rx", "", 2, false, true),
    C(R, "\r\r\n", "", 3, false, true),
    C(R, "\n.\n", "", 3, false, true),
    C(R, "\r.\r", "", 3, false, true),
    C(R, "\r\n.\n", "\r\n", 4, false, true),
    C(R, "\n.\r\n", "", 4, false, true),
    C(R, "ok\r\n.\n", "ok\r\n", 6, false, true),
    C(R, "ok\r\n.\rx", "ok\r\n", 7, false, true),
    C(R, ".\n\r\n.\r\n", "", 7, true, true),
    /* NORMALIZE: bare CR/LF become CRLF; a leading '.' the client cannot have meant
     * as stuffing (a lone ".", or after a bare line end one not followed by a second
     * '.') gets a second '.', so the MX stores the text received. */
    C(N, "abc\n.\r\n", "abc\r\n..\r\n", 7, false, true),
    C(N, "abc\n.\r\n.\r\n", "abc\r\n..\r\n", 10, true, true),
    C(N, "a\nb\r\n.\r\nQUIT\r\n", "a\r\nb\r\n", 8, true, true),
    C(N, "\n", "\r\n", 1, false, true),
    C(N, "\rx", "\r\nx", 2, false, true),
    C(N, "a\rb\r\n.\r\n", "a\r\nb\r\n", 8, true, true),
    C(N, "\r\r\n", "\r\n\r\n", 3, false, true),
    C(N, "\n.\n", "\r\n..\r\n", 3, false, true),
    C(N, "\r.\r", "\r\n..", 3, false, true), /* last CR held */
    C(N, "\r.\r\n", "\r\n..\r\n", 4, false, true),
    C(N, "\r\n.\n", "\r\n..\r\n", 4, false, true),
    C(N, "\n.\r\n", "\r\n..\r\n", 4, false, true),
    C(N, ".\n", "..\r\n", 2, false, true),
    C(N, ".\rx", "..\r\nx", 3, false, true),
    C(N, ".\r.\r\n", "..\r\n..\r\n", 5, false, true),
    C(N, ".\n.\r\n", "..\r\n..\r\n", 5, false, true),
    C(N, ".\r\r\n.\r\n", "..\r\n\r\n", 7, true, true),
    C(N, "\n..x\r\n.\r\n", "\r\n..x\r\n", 9, true, true),
    /* The security issue's cases: the dot of a lone "." ended by a bare LF or CR is
     * kept (the MX stores "."), and a client-stuffed ".." after a bare line end is
     * passed on as after a CRLF (the MX stores "."). */
    C(N, "A\r\n.\nB\r\n.\r\n", "A\r\n..\r\nB\r\n", 11, true, true),
    C(N, "A\r\n.\rB\r\n.\r\n", "A\r\n..\r\nB\r\n", 11, true, true),
    C(N, "A\n..\nB\r\n.\r\n", "A\r\n..\r\nB\r\n", 11, true, true),
    C(N, "A\r\n..\r\nB\r\n.\r\n", "A\r\n..\r\nB\r\n", 13, true, false),
    C(N, "A\r..\rB\r\n.\r\n", "A\r\n..\r\nB\r\n", 11, true, true),
    C(N, "A\n.x\r\n.\r\n", "A\r\n..x\r\n", 9, true, true),
    C(N, "A\r\n.x\nB\r\n.\r\n", "A\r\n.x\r\nB\r\n", 12, true, true),
    C(N, "A\n.\r\n.\r\n", "A\r\n..\r\n", 8, true, true),
    C(N, "A\n...\nB\r\n.\r\n", "A\r\n...\r\nB\r\n", 12, true, true),
    /* REFUSE still refuses them: nothing past the first bare byte, the end found. */
    C(R, "A\r\n.\nB\r\n.\r\n", "A\r\n", 11, true, true),
    C(R, "A\r\n.\rB\r\n.\r\n", "A\r\n", 11, true, true),
    C(R, "A\n..\nB\r\n.\r\n", "A", 11, true, true),
    C(N, "\nx\n.y\n", "\r\nx\r\n..y\r\n", 6, false, true),
    C(N, "a\n\n\nb", "a\r\n\r\n\r\nb", 5, false, true),
    C(N, "\n\r\n.\r\n", "\r\n\r\n", 6, true, true),
#undef C
#undef N
#undef R
};

static void test_data_cases(void) {
  for (size_t i = 0; i < sizeof data_cases / sizeof data_cases[0]; i++) {
    const struct data_case *c = &data_cases[i];
    check_scan_all_splits(c->mode, c->in, c->in_len, c->out, c->out_len, c->consumed,
                          c->done, c->bare);
  }
}

/* Scans in[0..len) cut at a and b (a <= b), three calls at most. */
static void scan_cut2(const char *in, size_t len, size_t a, size_t b,
                      struct scan_result *r) {
  struct smtp_data_scanner s;
  size_t cuts[] = {a, b, len};
  char tmp[2 * 1024 + 4];
  smtp_data_init(&s, SMTP_DATA_NORMALIZE);
  memset(r, 0, sizeof *r);
  for (size_t k = 0, pos = 0; k < 3 && !s.done; k++) {
    size_t chunk = cuts[k] - pos, out_len;
    size_t used = smtp_data_scan(&s, in + pos, chunk, tmp, 2 * chunk + 4, &out_len);
    ASSERT(used == chunk || s.done);
    memcpy(r->out + r->out_len, tmp, out_len);
    r->out_len += out_len;
    pos += used;
    r->consumed = pos;
  }
  r->done = s.done;
  r->bare = s.bare;
}

/* Split-everywhere property: for every NORMALIZE case that ends, every pair of cut
 * points (between CR and LF, between a line break and the dot, around the
 * terminator...) gives the same output, and that output is the rule's
 * (ref_normalize). */
static void test_data_normalize_cuts(void) {
  char want[2 * 1024 + 2];
  struct scan_result r;
  for (size_t i = 0; i < sizeof data_cases / sizeof data_cases[0]; i++) {
    const struct data_case *c = &data_cases[i];
    if (c->mode != SMTP_DATA_NORMALIZE || !c->done)
      continue;
    size_t want_len = ref_normalize(c->in, c->consumed - 3, want);
    ASSERT_MEM_EQ(c->out, c->out_len, want, want_len);
    for (size_t a = 0; a <= c->in_len; a++)
      for (size_t b = a; b <= c->in_len; b++) {
        scan_cut2(c->in, c->in_len, a, b, &r);
        if (r.out_len != want_len || memcmp(r.out, want, want_len) != 0 || !r.done ||
            r.consumed != c->consumed)
          TEST_FAIL_("input \"%.*s\" cut at %zu and %zu: out \"%.*s\"", (int)c->in_len,
                     c->in, a, b, (int)r.out_len, r.out);
      }
  }
}

static void test_data_after_end(void) {
  struct smtp_data_scanner s;
  char out[64];
  size_t out_len;
  smtp_data_init(&s, SMTP_DATA_REFUSE);
  ASSERT_EQ(smtp_data_scan(&s, S("hi\r\n.\r\nQUIT\r\n"), out, sizeof out, &out_len), 7);
  ASSERT(s.done);
  ASSERT_EQ(s.bytes, 4);
  ASSERT_MEM_EQ(out, out_len, "hi\r\n", 4);
  /* Once done, nothing more is consumed. */
  ASSERT_EQ(smtp_data_scan(&s, S("QUIT\r\n"), out, sizeof out, &out_len), 0);
  ASSERT_EQ(out_len, 0);
  ASSERT_EQ(s.bytes, 4);
  /* The terminator split over three calls. */
  smtp_data_init(&s, SMTP_DATA_NORMALIZE);
  ASSERT_EQ(smtp_data_scan(&s, S("x\r\n."), out, sizeof out, &out_len), 4);
  ASSERT_MEM_EQ(out, out_len, "x\r\n", 3);
  ASSERT_EQ(smtp_data_scan(&s, S("\r"), out, sizeof out, &out_len), 1);
  ASSERT_EQ(out_len, 0);
  ASSERT_EQ(smtp_data_scan(&s, S("\nRSET"), out, sizeof out, &out_len), 1);
  ASSERT_EQ(out_len, 0);
  ASSERT(s.done);
  ASSERT_EQ(s.bytes, 3);
  /* Empty input is fine. */
  smtp_data_init(&s, SMTP_DATA_REFUSE);
  ASSERT_EQ(smtp_data_scan(&s, NULL, 0, NULL, 0, &out_len), 0);
  ASSERT_EQ(out_len, 0);
}

static void test_data_small_out_cap(void) {
  struct smtp_data_scanner s;
  char out[16];
  size_t out_len;
  memset(out, '#', sizeof out);
  smtp_data_init(&s, SMTP_DATA_NORMALIZE);
  /* Below the documented bound: stops before overflowing, not done. */
  size_t used = smtp_data_scan(&s, S("\n\n\n\n\n\n"), out, 5, &out_len);
  ASSERT_EQ(used, 2);
  ASSERT_EQ(out_len, 4);
  ASSERT(!s.done);
  ASSERT_EQ(out[5], '#');
  /* Continuing with room gives the rest. */
  used = smtp_data_scan(&s, S("\n\n\n\n"), out, sizeof out, &out_len);
  ASSERT_EQ(used, 4);
  ASSERT_EQ(out_len, 8);
  smtp_data_init(&s, SMTP_DATA_REFUSE);
  used = smtp_data_scan(&s, S("abcdefgh"), out, 3, &out_len);
  ASSERT_EQ(used, 3);
  ASSERT_MEM_EQ(out, out_len, "abc", 3);
  ASSERT_EQ(s.bytes, 3);
}

static bool has_bare_or_lone_dot(const char *out, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (out[i] == '\r' && (i + 1 >= len || out[i + 1] != '\n'))
      return true;
    if (out[i] == '\n' && (i == 0 || out[i - 1] != '\r'))
      return true;
    if (out[i] == '.' && (i == 0 || out[i - 1] == '\n') && i + 1 < len &&
        out[i + 1] == '\r')
      return true;
  }
  return false;
}

/* Every string of up to 7 bytes over {CR, LF, '.', 'a'}, both modes, every split:
 * against a reference for the end and bare detection, and the output invariants. */
static void test_data_exhaustive(void) {
  static const char alphabet[] = "\r\n.a";
  char in[8];
  struct scan_result whole, part;
  for (size_t len = 0; len <= 7; len++) {
    size_t total = 1;
    for (size_t i = 0; i < len; i++)
      total *= 4;
    for (size_t n = 0; n < total; n++) {
      size_t v = n;
      for (size_t i = 0; i < len; i++, v /= 4)
        in[i] = alphabet[v % 4];
      size_t end = ref_end(in, len), consumed = end ? end : len;
      for (int m = 0; m < 2; m++) {
        enum smtp_data_mode mode = m ? SMTP_DATA_NORMALIZE : SMTP_DATA_REFUSE;
        scan(mode, in, len, len, 0, &whole);
        ASSERT_EQ(whole.done, end != 0);
        ASSERT_EQ(whole.consumed, consumed);
        ASSERT_EQ(whole.bare, ref_bare(in, consumed));
        ASSERT(!has_bare_or_lone_dot(whole.out, whole.out_len));
        if (mode == SMTP_DATA_REFUSE) {
          /* A prefix of the input; when clean, all of it but the terminator or the
           * held-back bytes ("\r", "." or ".\r"). */
          ASSERT(whole.out_len <= consumed);
          ASSERT(memcmp(whole.out, in, whole.out_len) == 0);
          if (!whole.bare && end)
            ASSERT_EQ(whole.out_len, end - 3);
          if (!whole.bare && !end) {
            const char *held = in + whole.out_len;
            size_t nheld = consumed - whole.out_len;
            ASSERT(nheld == 0 || (nheld == 1 && (held[0] == '\r' || held[0] == '.')) ||
                   (nheld == 2 && held[0] == '.' && held[1] == '\r'));
          }
        } else if (!whole.bare) {
          /* Clean input: NORMALIZE forwards exactly what REFUSE does. */
          scan(SMTP_DATA_REFUSE, in, len, len, 0, &part);
          ASSERT_MEM_EQ(whole.out, whole.out_len, part.out, part.out_len);
        }
        if (mode == SMTP_DATA_NORMALIZE && end) {
          char want[2 * 8 + 2];
          size_t want_len = ref_normalize(in, end - 3, want);
          ASSERT_MEM_EQ(whole.out, whole.out_len, want, want_len);
        }
        for (size_t split = 0; split <= len + 1; split++) {
          scan(mode, in, len, split, split == len + 1 ? 1 : 0, &part);
          ASSERT_MEM_EQ(part.out, part.out_len, whole.out, whole.out_len);
          ASSERT_EQ(part.consumed, whole.consumed);
          ASSERT_EQ(part.bare, whole.bare);
          ASSERT_EQ(part.bytes, whole.bytes);
        }
      }
    }
  }
}

static void test_data_long_lines(void) {
  /* A large clean message through the fast path, in uneven chunks. */
  static char msg[900];
  size_t len = 0;
  for (int line = 0; line < 20; line++) {
    for (int i = 0; i < 40; i++)
      msg[len++] = (char)('a' + (line + i) % 26);
    msg[len++] = '\r';
    msg[len++] = '\n';
  }
  memcpy(msg + len, ".\r\n", 3);
  len += 3;
  struct scan_result r;
  for (size_t step = 1; step < 50; step += 7) {
    scan(SMTP_DATA_REFUSE, msg, len, 0, step, &r);
    ASSERT(r.done);
    ASSERT_MEM_EQ(r.out, r.out_len, msg, len - 3);
    ASSERT_EQ(r.bytes, len - 3);
  }
}

int main(void) {
  RUN_TEST(test_find_line);
  RUN_TEST(test_find_line_limits);
  RUN_TEST(test_command_verbs);
  RUN_TEST(test_command_bad_verbs);
  RUN_TEST(test_command_control_chars);
  RUN_TEST(test_command_mail);
  RUN_TEST(test_command_mail_bad);
  RUN_TEST(test_command_rcpt);
  RUN_TEST(test_command_params);
  RUN_TEST(test_command_param_limits);
  RUN_TEST(test_param_values);
  RUN_TEST(test_command_path_limit);
  RUN_TEST(test_command_bdat);
  RUN_TEST(test_path_domain);
  RUN_TEST(test_reply_single);
  RUN_TEST(test_reply_multiline);
  RUN_TEST(test_reply_malformed);
  RUN_TEST(test_reply_enhanced);
  RUN_TEST(test_reply_limits);
  RUN_TEST(test_reply_format);
  RUN_TEST(test_reply_format_enhanced);
  RUN_TEST(test_reply_format_roundtrip);
  RUN_TEST(test_reply_build);
  RUN_TEST(test_ehlo_caps);
  RUN_TEST(test_data_cases);
  RUN_TEST(test_data_normalize_cuts);
  RUN_TEST(test_data_after_end);
  RUN_TEST(test_data_small_out_cap);
  RUN_TEST(test_data_exhaustive);
  RUN_TEST(test_data_long_lines);
  return 0;
}
