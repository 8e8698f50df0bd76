/* MTA-STS: TXT record sets, policy files, MX matching, cache rules. */
#include "policy/mtasts.h"

#include <stdlib.h>

#include "tests/unit/test.h"

/* ---- TXT ----------------------------------------------------------------------------- */

#define MAXREC 4
struct txt_case {
  const char *rec[MAXREC]; /* NULL-terminated */
  int want;
  const char *id; /* on STS_TXT_OK */
};

static const struct txt_case txt_cases[] = {
    /* RFC 8461 §3.1 example */
    {{"v=STSv1; id=20160831085700Z;"}, STS_TXT_OK, "20160831085700Z"},
    {{"v=STSv1; id=20160831085700Z"}, STS_TXT_OK, "20160831085700Z"},
    {{"v=STSv1;id=abc"}, STS_TXT_OK, "abc"},
    {{"v=STSv1;id=abc;"}, STS_TXT_OK, "abc"},
    {{"v=STSv1;\tid=abc\t;\t"}, STS_TXT_OK, "abc"},
    {{"v=STSv1;  id=abc  ;  "}, STS_TXT_OK, "abc"},
    {{"v=STSv1; id=abc "}, STS_TXT_OK, "abc"},
    {{"v=STSv1; id=x"}, STS_TXT_OK, "x"},
    {{"v=STSv1; id=0123456789abcdefABCDEF0123456789"},
     STS_TXT_OK,
     "0123456789abcdefABCDEF0123456789"},
    /* extensions, well-formed, any order */
    {{"v=STSv1; ext=foo.bar; id=abc"}, STS_TXT_OK, "abc"},
    {{"v=STSv1; id=abc; a_b-c.d=!\"#$%&'()*+,-./:<>?@[]^`{|}~"}, STS_TXT_OK, "abc"},
    {{"v=STSv1; ID=ABC; id=abc"}, STS_TXT_OK, "abc"}, /* "ID" is an extension */
    {{"v=STSv1; v=STSv2; id=abc"}, STS_TXT_OK, "abc"},
    {{"v=STSv1; abcdefghijklmnopqrstuvwxyz012345=1; id=abc"}, STS_TXT_OK, "abc"},
    /* other records are discarded */
    {{"v=spf1 -all", "v=STSv1; id=abc", "google-site-verification=xyz"},
     STS_TXT_OK,
     "abc"},
    {{"", "v=STSv1; id=abc"}, STS_TXT_OK, "abc"},
    {{"v=STSv1 ; id=abc"}, STS_TXT_NONE, NULL}, /* not "v=STSv1;" */
    {{"V=STSv1; id=abc"}, STS_TXT_NONE, NULL},
    {{"v=stsv1; id=abc"}, STS_TXT_NONE, NULL},
    {{" v=STSv1; id=abc"}, STS_TXT_NONE, NULL},
    {{"v=STSv10; id=abc"}, STS_TXT_NONE, NULL},
    {{"v=STSv1"}, STS_TXT_NONE, NULL},
    {{"v=spf1 -all"}, STS_TXT_NONE, NULL},
    {{NULL}, STS_TXT_NONE, NULL},
    /* more than one STSv1 record */
    {{"v=STSv1; id=abc", "v=STSv1; id=abc"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id=abc", "v=spf1", "v=STSv1; id=def"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id=abc", "v=STSv1;"}, STS_TXT_INVALID, NULL},
    /* bad id */
    {{"v=STSv1;"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1;   "}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; ext=1"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id="}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id=0123456789abcdefABCDEF0123456789X"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id=abc-def"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id=abc.def"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id=abc def"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id=\xc3\xa9t\xc3\xa9"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id=abc; id=def"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id =abc"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id= abc"}, STS_TXT_INVALID, NULL},
    /* malformed fields */
    {{"v=STSv1; id=abc;;"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1;; id=abc"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id=abc; ; ext=1"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id=abc; ext"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id=abc; ext="}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id=abc; ext=a=b"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id=abc; _ext=1"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id=abc; abcdefghijklmnopqrstuvwxyz0123456=1"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id=abc; ext=\x01"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id=abc; ext=caf\xc3\xa9"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id=abc ext=1"}, STS_TXT_INVALID, NULL},
    {{"v=STSv1; id=abc\r\n"}, STS_TXT_INVALID, NULL},
};

static void test_txt_table(void) {
  for (size_t t = 0; t < sizeof txt_cases / sizeof txt_cases[0]; t++) {
    const struct txt_case *c = &txt_cases[t];
    size_t n = 0, lens[MAXREC];
    while (n < MAXREC && c->rec[n]) {
      lens[n] = strlen(c->rec[n]);
      n++;
    }
    char id[STS_ID_MAX + 1] = "unchanged";
    int rc = sts_txt_parse(c->rec, lens, n, id);
    if (rc != c->want)
      fprintf(stderr, "case %zu: \"%s\"\n", t, c->rec[0] ? c->rec[0] : "(none)");
    ASSERT_EQ(rc, c->want);
    ASSERT_STR_EQ(id, c->want == STS_TXT_OK ? c->id : "unchanged");
  }
}

static void test_txt_lengths(void) {
  /* lens, not NUL, delimit the records; embedded NUL is not a valid character. */
  const char buf[] = "v=STSv1; id=abcXYZ";
  const char *recs[] = {buf};
  size_t lens[] = {15};
  char id[STS_ID_MAX + 1];
  ASSERT_EQ(sts_txt_parse(recs, lens, 1, id), STS_TXT_OK);
  ASSERT_STR_EQ(id, "abc");
  const char nul[] = "v=STSv1; id=ab\0c";
  const char *recs2[] = {nul};
  size_t lens2[] = {sizeof nul - 1};
  ASSERT_EQ(sts_txt_parse(recs2, lens2, 1, id), STS_TXT_INVALID);
  ASSERT_EQ(sts_txt_parse(NULL, NULL, 0, id), STS_TXT_NONE);
}

/* ---- policy file --------------------------------------------------------------------- */

static const char rfc_policy[] = "version: STSv1\n"
                                 "mode: enforce\n"
                                 "mx: mail.example.com\n"
                                 "mx: *.example.net\n"
                                 "mx: backupmx.example.com\n"
                                 "max_age: 604800\n";

/* The pattern blocks of policies parse() made, freed at the end: the tests reuse
 * their structs from one parse to the next. */
static char *parsed[64];
static size_t nparsed;

static int parse(const char *text, struct sts_policy *p) {
  char err[128] = "";
  int rc = sts_policy_parse(text, strlen(text), p, err, sizeof err);
  if (rc == 0)
    ASSERT_STR_EQ(err, "");
  else
    ASSERT(err[0] != '\0');
  if (p->mx) {
    ASSERT(nparsed < sizeof parsed / sizeof *parsed);
    parsed[nparsed++] = p->mx;
  }
  return rc;
}

static void free_parsed(void) {
  while (nparsed > 0)
    free(parsed[--nparsed]);
}

/* The i-th pattern of p, or "" past the last. */
static const char *mx_at(const struct sts_policy *p, size_t i) {
  const char *m = sts_mx_next(p, NULL);
  while (m && i-- > 0)
    m = sts_mx_next(p, m);
  return m ? m : "";
}

static void test_policy_rfc_example(void) {
  struct sts_policy p;
  ASSERT_EQ(parse(rfc_policy, &p), 0);
  ASSERT_EQ(p.mode, STS_MODE_ENFORCE);
  ASSERT_EQ(p.max_age, 604800);
  ASSERT_EQ(p.nmx, 3);
  ASSERT_STR_EQ(mx_at(&p, 0), "mail.example.com");
  ASSERT_STR_EQ(mx_at(&p, 1), "*.example.net");
  ASSERT_STR_EQ(mx_at(&p, 2), "backupmx.example.com");
}

static void test_policy_line_ends(void) {
  struct sts_policy p;
  ASSERT_EQ(
      parse("version: STSv1\r\nmode: testing\nmx: a.example\r\nmax_age: 86400", &p), 0);
  ASSERT_EQ(p.mode, STS_MODE_TESTING);
  ASSERT_EQ(p.max_age, 86400);
  ASSERT_EQ(p.nmx, 1);
  ASSERT_EQ(parse("version: STSv1\r\nmode: none\r\nmax_age: 1\r\n", &p), 0);
  ASSERT_EQ(parse("version: STSv1\r\nmode: none\r\nmax_age: 1\r\n\r\n\n", &p), 0);
  ASSERT_EQ(parse("\nversion: STSv1\n  \nmode: none\n\t\nmax_age: 1", &p), 0);
  /* a lone CR is not a line end */
  ASSERT_EQ(parse("version: STSv1\rmode: none\nmax_age: 1\n", &p), -1);
  ASSERT_EQ(parse("version: STSv1\nmode: none\r\rmax_age: 1\n", &p), -1);
  ASSERT_EQ(parse("version: STSv1\nmode: none\nmax_age: 1\r", &p), 0);
}

static void test_policy_whitespace(void) {
  struct sts_policy p;
  ASSERT_EQ(parse("version:STSv1\nmode:\tenforce \t\n  mx :  A.Example.COM.  \n"
                  "max_age:   300",
                  &p),
            0);
  ASSERT_EQ(p.mode, STS_MODE_ENFORCE);
  ASSERT_EQ(p.max_age, 300);
  ASSERT_STR_EQ(mx_at(&p, 0), "a.example.com");
}

static void test_policy_keys(void) {
  struct sts_policy p;
  /* duplicates: first wins; mx accumulates; unknown keys ignored */
  ASSERT_EQ(parse("version: STSv1\nmode: testing\nmode: enforce\nmax_age: 10\n"
                  "max_age: 20\nmx: a.example\nfoo_bar-1.x: any value, \xc3\xa9 ok\n"
                  "Mode: enforce\nmx: *.B.example\nversion: STSv2\n",
                  &p),
            0);
  ASSERT_EQ(p.mode, STS_MODE_TESTING);
  ASSERT_EQ(p.max_age, 10);
  ASSERT_EQ(p.nmx, 2);
  ASSERT_STR_EQ(mx_at(&p, 0), "a.example");
  ASSERT_STR_EQ(mx_at(&p, 1), "*.b.example");
  /* mode none needs no mx, and may have some */
  ASSERT_EQ(parse("mode: none\nmax_age: 0\nversion: STSv1\n", &p), 0);
  ASSERT_EQ(p.mode, STS_MODE_NONE);
  ASSERT_EQ(p.nmx, 0);
  ASSERT_EQ(parse("mode: none\nmax_age: 0\nversion: STSv1\nmx: a.example\n", &p), 0);
  ASSERT_EQ(p.nmx, 1);
}

static void test_policy_max_age(void) {
  static const struct {
    const char *v;
    long long want; /* -1: error */
  } cases[] = {
      {"0", 0},
      {"1", 1},
      {"0000000001", 1},
      {"31557600", 31557600},
      {"31557601", 31557600},
      {"4294967295", 31557600},
      {"9999999999", 31557600},
      {"99999999999", -1},
      {"00000000001", -1},
      {"+1", -1},
      {"-1", -1},
      {"1h", -1},
      {"1 000", -1},
      {"0x10", -1},
      {"1.5", -1},
      {"", -1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char buf[128];
    struct sts_policy p;
    snprintf(buf, sizeof buf, "version: STSv1\nmode: none\nmax_age: %s\n", cases[i].v);
    int rc = parse(buf, &p);
    if ((rc == 0) != (cases[i].want >= 0))
      fprintf(stderr, "max_age \"%s\"\n", cases[i].v);
    ASSERT_EQ(rc, cases[i].want >= 0 ? 0 : -1);
    if (rc == 0)
      ASSERT_EQ(p.max_age, cases[i].want);
  }
}

static void test_policy_mx_patterns(void) {
  static const struct {
    const char *v, *want; /* want NULL: error */
  } cases[] = {
      {"mx.example.com", "mx.example.com"},
      {"MX.Example.COM", "mx.example.com"},
      {"mx.example.com.", "mx.example.com"},
      {"*.example.com", "*.example.com"},
      {"*.Example.Com.", "*.example.com"},
      {"*.com", "*.com"},
      {"localhost", "localhost"},
      {"xn--bcher-kva.example", "xn--bcher-kva.example"},
      {"1.2.3.4", "1.2.3.4"},
      {"a-b.c0", "a-b.c0"},
      {"*", NULL},
      {"*.", NULL},
      {"*.*.example.com", NULL},
      {"mx.*.example.com", NULL},
      {"mx*.example.com", NULL},
      {"*mx.example.com", NULL},
      {"**.example.com", NULL},
      {".example.com", NULL},
      {"mx..example.com", NULL},
      {"mx.example.com..", NULL},
      {".", NULL},
      {"-mx.example.com", NULL},
      {"mx-.example.com", NULL},
      {"mx_1.example.com", NULL},
      {"mx example.com", NULL},
      {"b\xc3\xbc"
       "cher.example",
       NULL},
      {"mx.example.com:25", NULL},
      {"[192.0.2.1]", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char buf[512];
    struct sts_policy p;
    snprintf(buf, sizeof buf, "version: STSv1\nmode: enforce\nmax_age: 1\nmx: %s\n",
             cases[i].v);
    int rc = parse(buf, &p);
    if ((rc == 0) != (cases[i].want != NULL))
      fprintf(stderr, "mx \"%s\"\n", cases[i].v);
    ASSERT_EQ(rc, cases[i].want ? 0 : -1);
    if (rc == 0)
      ASSERT_STR_EQ(mx_at(&p, 0), cases[i].want);
  }
}

static void test_policy_name_lengths(void) {
  char label[70], name[300], buf[512];
  struct sts_policy p;
  memset(label, 'a', 63);
  label[63] = '\0';
  snprintf(buf, sizeof buf,
           "version: STSv1\nmode: enforce\nmax_age: 1\nmx: %s.example\n", label);
  ASSERT_EQ(parse(buf, &p), 0);
  label[63] = 'a';
  label[64] = '\0';
  snprintf(buf, sizeof buf,
           "version: STSv1\nmode: enforce\nmax_age: 1\nmx: %s.example\n", label);
  ASSERT_EQ(parse(buf, &p), -1);
  /* 253 characters: 63 + 1 + 63 + 1 + 63 + 1 + 61 */
  memset(name, 'b', 253);
  name[63] = name[127] = name[191] = '.';
  name[253] = '\0';
  snprintf(buf, sizeof buf, "version: STSv1\nmode: enforce\nmax_age: 1\nmx: %s.\n",
           name);
  ASSERT_EQ(parse(buf, &p), 0);
  ASSERT_EQ(strlen(mx_at(&p, 0)), 253);
  name[253] = 'b';
  name[254] = '\0';
  snprintf(buf, sizeof buf, "version: STSv1\nmode: enforce\nmax_age: 1\nmx: %s\n",
           name);
  ASSERT_EQ(parse(buf, &p), -1);
  name[253] = '\0';
  snprintf(buf, sizeof buf, "version: STSv1\nmode: enforce\nmax_age: 1\nmx: *.%s\n",
           name);
  ASSERT_EQ(parse(buf, &p), -1); /* pattern itself over 253 */
}

static void test_policy_missing_and_bad(void) {
  static const char *const bad[] = {
      "",
      "\n\n",
      "mode: none\nmax_age: 1\n",                           /* no version */
      "version: STSv1\nmax_age: 1\n",                       /* no mode */
      "version: STSv1\nmode: none\n",                       /* no max_age */
      "version: STSv1\nmode: enforce\nmax_age: 1\n",        /* no mx */
      "version: STSv1\nmode: testing\nmax_age: 1\n",        /* no mx */
      "version: STSv2\nmode: none\nmax_age: 1\n",           /* bad version */
      "version: stsv1\nmode: none\nmax_age: 1\n",           /* case-sensitive */
      "Version: STSv1\nmode: none\nmax_age: 1\n",           /* keys are too */
      "version: STSv1\nmode: Enforce\nmax_age: 1\nmx: a\n", /* and modes */
      "version: STSv1\nmode: reject\nmax_age: 1\n",
      "version: STSv1\nmode:\nmax_age: 1\n",     /* empty value */
      "version: STSv1\nmode none\nmax_age: 1\n", /* no colon */
      "version: STSv1\nmode: none\nmax_age: 1\nfoo\n",
      "version: STSv1\nmode: none\nmax_age: 1\n: x\n",   /* no key */
      "version: STSv1\nmode: none\nmax_age: 1\n_x: y\n", /* key starts with '_' */
      "version: STSv1\nmode: none\nmax_age: 1\nabcdefghijklmnopqrstuvwxyz0123456: x\n",
      "version: STSv1\nmode: none\nmax_age: 1\nfoo: a\x01z\n",
      "version: STSv1\nmode: none\nmax_age: 1\nfoo: a\x7fz\n",
      "version: STSv1\nmode: none\nmax_age: 1\nfoo: \xc3\n",     /* truncated UTF-8 */
      "version: STSv1\nmode: none\nmax_age: 1\nfoo: \xc0\xaf\n", /* overlong */
      "version: STSv1\nmode: none\nmax_age: 1\nfoo: \xed\xa0\x80\n", /* surrogate */
      "version: STSv1\nmode: none\nmax_age: 1\nfoo: \xf4\x90\x80\x80\n",
      "version: STSv1\nmode: none\nmax_age: 1\nf\xc3\xa9: x\n",
      "version: STSv1 extra\nmode: none\nmax_age: 1\n",
      "version: STSv1\nmode: enforce\nmax_age: 1\nmx: a.example b.example\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct sts_policy p;
    if (parse(bad[i], &p) != -1)
      fprintf(stderr, "accepted bad policy %zu: \"%s\"\n", i, bad[i]);
    ASSERT_EQ(parse(bad[i], &p), -1);
    ASSERT_EQ(p.nmx, 0); /* zeroed on failure */
  }
  /* the first of duplicate keys wins, so a bad first value is not rescued */
  struct sts_policy p;
  ASSERT_EQ(parse("version: STSv1\nmode: bogus\nmode: none\nmax_age: 1\n", &p), -1);
  ASSERT_EQ(parse("version: STSv2\nversion: STSv1\nmode: none\nmax_age: 1\n", &p), -1);
  /* and a bad mx fails the policy even when others are good */
  ASSERT_EQ(
      parse("version: STSv1\nmode: enforce\nmax_age: 1\nmx: a.example\nmx: *\n", &p),
      -1);
}

/* RFC 8461 sets no limit on the mx lines: 100 are kept, in order, and match. */
static void test_policy_many_mx(void) {
  static char buf[8192];
  char err[128];
  struct sts_policy p;
  size_t n =
      (size_t)snprintf(buf, sizeof buf, "version: STSv1\nmode: enforce\nmax_age: 1\n");
  for (int i = 0; i < 100; i++)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "mx: %smx%d.Example.\n",
                          i % 10 == 9 ? "*." : "", i);
  ASSERT_EQ(sts_policy_parse(buf, n, &p, err, sizeof err), 0);
  ASSERT_EQ(p.nmx, 100);
  ASSERT_STR_EQ(mx_at(&p, 0), "mx0.example");
  ASSERT_STR_EQ(mx_at(&p, 39), "*.mx39.example");
  ASSERT_STR_EQ(mx_at(&p, 99), "*.mx99.example");
  size_t count = 0, bytes = 0;
  for (const char *m = sts_mx_next(&p, NULL); m; m = sts_mx_next(&p, m)) {
    count++;
    bytes += strlen(m) + 1;
  }
  ASSERT_EQ(count, 100);
  ASSERT_EQ(bytes, p.mx_len); /* the block is cut to size */
  ASSERT(sts_mx_match(&p, "mx0.example"));
  ASSERT(sts_mx_match(&p, "MX98.example."));
  ASSERT(sts_mx_match(&p, "a.mx99.example"));
  ASSERT(!sts_mx_match(&p, "mx99.example"));
  ASSERT(!sts_mx_match(&p, "mx100.example"));
  /* a copy is independent of its source */
  struct sts_policy c;
  ASSERT_EQ(sts_policy_copy(&c, &p), 0);
  sts_policy_free(&p);
  ASSERT(p.mx == NULL && p.nmx == 0 && p.mx_len == 0);
  ASSERT_EQ(c.nmx, 100);
  ASSERT(sts_mx_match(&c, "mx50.example"));
  sts_policy_free(&c);
  sts_policy_free(&c); /* twice is harmless */
  sts_policy_free(NULL);
  struct sts_policy none = {.mode = STS_MODE_NONE};
  ASSERT_EQ(sts_policy_copy(&c, &none), 0);
  ASSERT(c.mx == NULL && sts_mx_next(&c, NULL) == NULL);
}

static void test_policy_limits(void) {
  static char buf[STS_POLICY_MAX_BYTES + 64];
  char err[128];
  struct sts_policy p;
  /* As many mx lines as the size limit allows (over 9,000): the block never holds
   * more than the file. */
  size_t n = (size_t)snprintf(buf, sizeof buf, "version: STSv1\nmode: enforce\n");
  size_t lines = 0;
  while (n + 16 <= STS_POLICY_MAX_BYTES - 16) {
    n += (size_t)snprintf(buf + n, sizeof buf - n, "mx:%zx\n", lines % 4096);
    lines++;
  }
  n += (size_t)snprintf(buf + n, sizeof buf - n, "max_age: 1\n");
  ASSERT(n <= STS_POLICY_MAX_BYTES && lines > 9000);
  ASSERT_EQ(sts_policy_parse(buf, n, &p, err, sizeof err), 0);
  ASSERT_EQ(p.nmx, lines);
  ASSERT(p.mx_len < n);
  ASSERT(sts_mx_match(&p, "fff"));
  ASSERT(!sts_mx_match(&p, "1000"));
  sts_policy_free(&p);

  /* exactly the size limit is fine; one byte more is not */
  n = (size_t)snprintf(buf, sizeof buf, "version: STSv1\nmode: none\nmax_age: 1\nx: ");
  memset(buf + n, 'y', STS_POLICY_MAX_BYTES - n);
  ASSERT_EQ(sts_policy_parse(buf, STS_POLICY_MAX_BYTES, &p, err, sizeof err), 0);
  buf[STS_POLICY_MAX_BYTES] = 'y';
  ASSERT_EQ(sts_policy_parse(buf, STS_POLICY_MAX_BYTES + 1, &p, err, sizeof err), -1);

  /* NUL anywhere, even in an ignored value */
  static const char nul[] = "version: STSv1\nmode: none\nmax_age: 1\nx: a\0b\n";
  ASSERT_EQ(sts_policy_parse(nul, sizeof nul - 1, &p, err, sizeof err), -1);
  ASSERT(strstr(err, "NUL") != NULL);
  /* len, not NUL, delimits the text */
  ASSERT_EQ(sts_policy_parse(rfc_policy, strlen(rfc_policy) - 5, &p, err, sizeof err),
            0);
  ASSERT_EQ(p.max_age, 60);
  sts_policy_free(&p);
}

static void test_policy_errors(void) {
  char err[128];
  struct sts_policy p;
  const char *t = "version: STSv1\nmode: enforce\nmax_age: 1\nmx: a..b\n";
  ASSERT_EQ(sts_policy_parse(t, strlen(t), &p, err, sizeof err), -1);
  ASSERT_STR_EQ(err, "line 4: mx: invalid host name pattern");
  t = "version: STSv1\nmax_age: 1\n";
  ASSERT_EQ(sts_policy_parse(t, strlen(t), &p, err, sizeof err), -1);
  ASSERT_STR_EQ(err, "mode: missing");
  /* a small or absent error buffer is fine */
  ASSERT_EQ(sts_policy_parse(t, strlen(t), &p, err, 4), -1);
  ASSERT_STR_EQ(err, "mod");
  ASSERT_EQ(sts_policy_parse(t, strlen(t), &p, NULL, 0), -1);
}

/* ---- MX matching --------------------------------------------------------------------- */

static void test_mx_match(void) {
  struct sts_policy p;
  ASSERT_EQ(parse(rfc_policy, &p), 0);
  static const struct {
    const char *host;
    bool want;
  } cases[] = {
      {"mail.example.com", true},
      {"MAIL.Example.COM", true},
      {"mail.example.com.", true},
      {"backupmx.example.com", true},
      {"mx.example.net", true},
      {"MX.EXAMPLE.NET.", true},
      {"x-1.example.net", true},
      {"example.net", false},
      {".example.net", false},
      {"a.b.example.net", false},
      {"mxexample.net", false},
      {"mx.example.net.evil", false},
      {"mail.example.com.evil", false},
      {"evil-mail.example.com", false},
      {"ail.example.com", false},
      {"mail.example.co", false},
      {"mx.example.com", false},
      {"*.example.net", true}, /* "*" is a label like any other here */
      {"mail.example.com..", false},
      {"", false},
      {".", false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (sts_mx_match(&p, cases[i].host) != cases[i].want)
      fprintf(stderr, "host \"%s\"\n", cases[i].host);
    ASSERT_EQ(sts_mx_match(&p, cases[i].host), cases[i].want);
  }
  ASSERT(!sts_mx_match(&p, NULL));
  ASSERT(!sts_mx_match(NULL, "mail.example.com"));
  struct sts_policy none;
  ASSERT_EQ(parse("version: STSv1\nmode: none\nmax_age: 1\n", &none), 0);
  ASSERT(!sts_mx_match(&none, "mail.example.com"));
  /* a 63-character wildcard label matches; 64 does not */
  struct sts_policy w;
  ASSERT_EQ(parse("version: STSv1\nmode: enforce\nmax_age: 1\nmx: *.e.x\n", &w), 0);
  char host[80];
  memset(host, 'h', 63);
  strcpy(host + 63, ".e.x");
  ASSERT(sts_mx_match(&w, host));
  memset(host, 'h', 64);
  strcpy(host + 64, ".e.x");
  ASSERT(!sts_mx_match(&w, host));
}

/* ---- cache --------------------------------------------------------------------------- */

static struct sts_cached cached(int64_t fetched, uint32_t max_age) {
  struct sts_cached c;
  memset(&c, 0, sizeof c);
  c.present = true;
  strcpy(c.id, "abc");
  c.policy.mode = STS_MODE_ENFORCE;
  c.policy.max_age = max_age;
  c.fetched_at = fetched;
  c.expires_at = fetched + max_age;
  return c;
}

enum cache_kind { NO_CACHE, STALE, FRESH };

static void test_cache_decide(void) {
  static const struct {
    enum cache_kind cache;
    enum sts_txt_state txt;
    const char *id;
    enum sts_action want;
  } cases[] = {
      {NO_CACHE, STS_DNS_FOUND, "abc", STS_ACT_FETCH},
      {NO_CACHE, STS_DNS_FOUND, "new", STS_ACT_FETCH},
      {NO_CACHE, STS_DNS_ABSENT, NULL, STS_ACT_NO_POLICY},
      {NO_CACHE, STS_DNS_TEMPFAIL, NULL, STS_ACT_NO_POLICY},
      {STALE, STS_DNS_FOUND, "abc", STS_ACT_FETCH},
      {STALE, STS_DNS_FOUND, "new", STS_ACT_FETCH},
      {STALE, STS_DNS_ABSENT, NULL, STS_ACT_NO_POLICY},
      {STALE, STS_DNS_TEMPFAIL, NULL, STS_ACT_NO_POLICY},
      {FRESH, STS_DNS_FOUND, "abc", STS_ACT_USE_CACHED},
      {FRESH, STS_DNS_FOUND, "new", STS_ACT_FETCH},
      {FRESH, STS_DNS_FOUND, "ABC", STS_ACT_FETCH}, /* ids compare exactly */
      {FRESH, STS_DNS_FOUND, NULL, STS_ACT_FETCH},
      {FRESH, STS_DNS_ABSENT, NULL, STS_ACT_USE_CACHED},
      {FRESH, STS_DNS_TEMPFAIL, NULL, STS_ACT_USE_CACHED},
  };
  const int64_t t0 = 1700000000;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct sts_cached c = cached(t0, 86400);
    int64_t now = t0 + 100;
    if (cases[i].cache == NO_CACHE)
      c.present = false;
    else if (cases[i].cache == STALE)
      now = c.expires_at; /* fresh means now < expires_at */
    if (sts_cache_decide(&c, cases[i].txt, cases[i].id, now) != cases[i].want)
      fprintf(stderr, "cache case %zu\n", i);
    ASSERT_EQ(sts_cache_decide(&c, cases[i].txt, cases[i].id, now), cases[i].want);
    if (cases[i].cache == NO_CACHE)
      ASSERT_EQ(sts_cache_decide(NULL, cases[i].txt, cases[i].id, now), cases[i].want);
  }
  struct sts_cached c = cached(t0, 86400);
  ASSERT_EQ(sts_cache_decide(&c, STS_DNS_ABSENT, NULL, c.expires_at - 1),
            STS_ACT_USE_CACHED);
  ASSERT_EQ(sts_cache_decide(&c, STS_DNS_ABSENT, NULL, c.expires_at),
            STS_ACT_NO_POLICY);
}

static void test_cache_refresh(void) {
  const int64_t t0 = 1700000000;
  /* one week: refresh from half (3.5 days) on */
  struct sts_cached c = cached(t0, 604800);
  ASSERT(!sts_cache_should_refresh(&c, t0));
  ASSERT(!sts_cache_should_refresh(&c, t0 + 302399));
  ASSERT(sts_cache_should_refresh(&c, t0 + 302400));
  ASSERT(sts_cache_should_refresh(&c, c.expires_at - 1));
  ASSERT(sts_cache_should_refresh(&c, c.expires_at + 1000));
  /* one year: the half comes first */
  c = cached(t0, STS_MAX_AGE_CAP);
  ASSERT(!sts_cache_should_refresh(&c, t0 + STS_MAX_AGE_CAP / 2 - 1));
  ASSERT(sts_cache_should_refresh(&c, t0 + STS_MAX_AGE_CAP / 2));
  /* a day or less: not on every use, only past half the lifetime */
  c = cached(t0, 86400);
  ASSERT(!sts_cache_should_refresh(&c, t0));
  ASSERT(!sts_cache_should_refresh(&c, t0 + 43199));
  ASSERT(sts_cache_should_refresh(&c, t0 + 43200));
  c = cached(t0, 3 * 86400);
  ASSERT(!sts_cache_should_refresh(&c, t0 + 86400));
  ASSERT(sts_cache_should_refresh(&c, t0 + 3 * 86400 / 2));
  /* odd spans: half is rounded down */
  c = cached(t0, 2 * 86400 + 3);
  ASSERT(!sts_cache_should_refresh(&c, t0 + 86400));
  ASSERT(sts_cache_should_refresh(&c, t0 + 86401));
  /* max_age 0, absent, and extreme stored times */
  c = cached(t0, 0);
  ASSERT(sts_cache_should_refresh(&c, t0));
  c.present = false;
  ASSERT(!sts_cache_should_refresh(&c, t0));
  ASSERT(!sts_cache_should_refresh(NULL, t0));
  c = cached(INT64_MIN, 0);
  c.expires_at = INT64_MAX;
  ASSERT(!sts_cache_should_refresh(&c, -2));
  ASSERT(sts_cache_should_refresh(&c, -1));
  ASSERT(sts_cache_should_refresh(&c, INT64_MAX));
}

int main(void) {
  RUN_TEST(test_txt_table);
  RUN_TEST(test_txt_lengths);
  RUN_TEST(test_policy_rfc_example);
  RUN_TEST(test_policy_line_ends);
  RUN_TEST(test_policy_whitespace);
  RUN_TEST(test_policy_keys);
  RUN_TEST(test_policy_max_age);
  RUN_TEST(test_policy_mx_patterns);
  RUN_TEST(test_policy_name_lengths);
  RUN_TEST(test_policy_missing_and_bad);
  RUN_TEST(test_policy_many_mx);
  RUN_TEST(test_policy_limits);
  RUN_TEST(test_policy_errors);
  RUN_TEST(test_mx_match);
  RUN_TEST(test_cache_decide);
  RUN_TEST(test_cache_refresh);
  free_parsed();
  return 0;
}
