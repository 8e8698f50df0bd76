/* policy/tlsrpt: the _smtp._tls TXT record (RFC 8460 §3), result types (§4.3),
 * policy strings and the JSON report (§4.4). */
#include <stdlib.h>

#include "policy/tlsrpt.h"
#include "tests/unit/test.h"

/* Parses records given as NUL-terminated strings. */
static int parse(struct tlsrpt_record *r, const char *const *recs, size_t n) {
  size_t lens[16];
  char err[200];
  for (size_t i = 0; i < n; i++)
    lens[i] = strlen(recs[i]);
  return tlsrpt_txt_parse(recs, lens, n, r, err, sizeof err);
}

static int parse1(struct tlsrpt_record *r, const char *rec) {
  return parse(r, &rec, 1);
}

static void test_txt_rfc_examples(void) {
  struct tlsrpt_record r;
  ASSERT_EQ(parse1(&r, "v=TLSRPTv1; rua=mailto:reports@example.com"), TLSRPT_TXT_OK);
  ASSERT_EQ(r.nrua, 1);
  ASSERT_EQ(r.rua[0].kind, TLSRPT_URI_MAILTO);
  ASSERT_STR_EQ(r.rua[0].uri, "mailto:reports@example.com");
  ASSERT_STR_EQ(r.rua[0].addr, "reports@example.com");
  ASSERT_EQ(parse1(&r, "v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt"),
            TLSRPT_TXT_OK);
  ASSERT_EQ(r.nrua, 1);
  ASSERT_EQ(r.rua[0].kind, TLSRPT_URI_HTTPS);
  ASSERT_STR_EQ(r.rua[0].uri, "https://reporting.example.com/v1/tlsrpt");
  ASSERT_EQ(r.nskipped, 0);
}

static void test_txt_several_uris_and_whitespace(void) {
  struct tlsrpt_record r;
  ASSERT_EQ(parse1(&r, "v=TLSRPTv1 ;  rua = mailto:a@example.com ,\t"
                       "https://r.example.net:8443/x ; "),
            TLSRPT_TXT_OK);
  ASSERT_EQ(r.nrua, 2);
  ASSERT_STR_EQ(r.rua[0].addr, "a@example.com");
  ASSERT_STR_EQ(r.rua[1].uri, "https://r.example.net:8443/x");
  ASSERT_EQ(parse1(&r, "v=TLSRPTv1;;rua=mailto:a@b.example;;"), TLSRPT_TXT_OK);
  ASSERT_EQ(r.nrua, 1);
  ASSERT_EQ(parse1(&r, "v=TLSRPTv1;rua=MAILTO:a@b.example,HTTPS://h.example/"),
            TLSRPT_TXT_OK);
  ASSERT_EQ(r.nrua, 2);
}

static void test_txt_record_selection(void) {
  struct tlsrpt_record r;
  const char *mixed[] = {"v=spf1 -all", "v=TLSRPTv1; rua=mailto:a@b.example",
                         "something else"};
  ASSERT_EQ(parse(&r, mixed, 3), TLSRPT_TXT_OK);
  ASSERT_STR_EQ(r.rua[0].addr, "a@b.example");
  const char *two[] = {"v=TLSRPTv1; rua=mailto:a@b.example",
                       "v=TLSRPTv1; rua=mailto:c@d.example"};
  ASSERT_EQ(parse(&r, two, 2), TLSRPT_TXT_INVALID);
  ASSERT_EQ(r.nrua, 0);
  const char *none[] = {"v=spf1 -all"};
  ASSERT_EQ(parse(&r, none, 1), TLSRPT_TXT_NONE);
  ASSERT_EQ(parse(&r, none, 0), TLSRPT_TXT_NONE);
  ASSERT_EQ(parse1(&r, "v=TLSRPTv10; rua=mailto:a@b.example"), TLSRPT_TXT_NONE);
  ASSERT_EQ(parse1(&r, "V=TLSRPTv1; rua=mailto:a@b.example"), TLSRPT_TXT_NONE);
  ASSERT_EQ(parse1(&r, " v=TLSRPTv1; rua=mailto:a@b.example"), TLSRPT_TXT_NONE);
}

static void test_txt_malformed(void) {
  struct tlsrpt_record r;
  static const char *const bad[] = {
      "v=TLSRPTv1",                                   /* no rua */
      "v=TLSRPTv1;",                                  /* no rua */
      "v=TLSRPTv1; rua=",                             /* empty value */
      "v=TLSRPTv1 rua=mailto:a@b.example",            /* no ";" */
      "v=TLSRPTv1; rua=mailto:a@b.example; x=a=b",    /* "=" in a value */
      "v=TLSRPTv1; rua=mailto:a@b.example; =x",       /* no key */
      "v=TLSRPTv1; rua=mailto:a@b.example; junk",     /* no "=" */
      "v=TLSRPTv1; rua=ftp://x.example/",             /* no usable URI */
      "v=TLSRPTv1; rua=mailto:nobody",                /* no "@" */
      "v=TLSRPTv1; rua=mailto:a@b@c.example",         /* two "@" */
      "v=TLSRPTv1; rua=mailto:<a@b.example>",         /* brackets */
      "v=TLSRPTv1; rua=mailto:a%2Cb@c.example",       /* encoded "," */
      "v=TLSRPTv1; rua=mailto:a@b..example",          /* empty label */
      "v=TLSRPTv1; rua=mailto:a%0D%0ARCPT@b.example", /* encoded CRLF */
      "v=TLSRPTv1; rua=mailto:a%2@b.example",         /* bad %-escape */
      "v=TLSRPTv1; rua=https://",                     /* no host */
      "v=TLSRPTv1; rua=https:///path",                /* no host */
      "v=TLSRPTv1; rua=mailto:a@b.example; aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (parse1(&r, bad[i]) != TLSRPT_TXT_INVALID)
      TEST_FAIL_("accepted: %s", bad[i]);
    ASSERT_EQ(r.nrua, 0);
  }
  /* A NUL inside a record. */
  const char nul[] = "v=TLSRPTv1; rua=mailto:a@b.example; x\0=1";
  const char *recs[] = {nul};
  size_t lens[] = {sizeof nul - 1};
  ASSERT_EQ(tlsrpt_txt_parse(recs, lens, 1, &r, NULL, 0), TLSRPT_TXT_INVALID);
}

static void test_txt_uris(void) {
  struct tlsrpt_record r;
  ASSERT_EQ(parse1(&r, "v=TLSRPTv1; ext=yes; rua=mailto:tls%2Drpt@Example.COM"
                       "?subject=hi,ftp://x,mailto:bad"),
            TLSRPT_TXT_OK);
  ASSERT_EQ(r.nrua, 1);
  ASSERT_STR_EQ(r.rua[0].addr, "tls-rpt@Example.COM");
  ASSERT_EQ(r.nskipped, 2);
  /* "!" is no size limit here (that is DMARC's rua): RFC 8460 §3 wants it %-encoded,
   * so a bare one leaves no address; encoded, it is part of the local part. */
  ASSERT_EQ(parse1(&r, "v=TLSRPTv1; rua=mailto:a@b.example!10m,mailto:c%21d@e.example"),
            TLSRPT_TXT_OK);
  ASSERT_EQ(r.nrua, 1);
  ASSERT_EQ(r.nskipped, 1);
  ASSERT_STR_EQ(r.rua[0].addr, "c!d@e.example");
  /* The first rua wins. */
  ASSERT_EQ(parse1(&r, "v=TLSRPTv1; rua=mailto:a@b.example; rua=mailto:c@d.example"),
            TLSRPT_TXT_OK);
  ASSERT_EQ(r.nrua, 1);
  ASSERT_STR_EQ(r.rua[0].addr, "a@b.example");
  /* At most TLSRPT_MAX_RUA are kept. */
  char rec[1024] = "v=TLSRPTv1; rua=";
  for (int i = 0; i < 10; i++) {
    char one[64];
    snprintf(one, sizeof one, "%smailto:r%d@b.example", i ? "," : "", i);
    strcat(rec, one);
  }
  ASSERT_EQ(parse1(&r, rec), TLSRPT_TXT_OK);
  ASSERT_EQ(r.nrua, TLSRPT_MAX_RUA);
  ASSERT_EQ(r.nskipped, 2);
  ASSERT_STR_EQ(r.rua[7].addr, "r7@b.example");
  /* Too long a URI is skipped. */
  char longrec[1200] = "v=TLSRPTv1; rua=https://h.example/";
  memset(longrec + strlen(longrec), 'a', 600);
  strcat(longrec, ",mailto:x@y.example");
  ASSERT_EQ(parse1(&r, longrec), TLSRPT_TXT_OK);
  ASSERT_EQ(r.nrua, 1);
  ASSERT_EQ(r.nskipped, 1);
}

static void test_result_names(void) {
  ASSERT_STR_EQ(tlsrpt_result_name(TLSRPT_SUCCESS), "");
  ASSERT_STR_EQ(tlsrpt_result_name(TLSRPT_STARTTLS_NOT_SUPPORTED),
                "starttls-not-supported");
  ASSERT_STR_EQ(tlsrpt_result_name(TLSRPT_STS_WEBPKI_INVALID), "sts-webpki-invalid");
  ASSERT_STR_EQ(tlsrpt_policy_type_name(TLSRPT_POLICY_STS), "sts");
  ASSERT_STR_EQ(tlsrpt_policy_type_name(TLSRPT_POLICY_TLSA), "tlsa");
  ASSERT_STR_EQ(tlsrpt_policy_type_name(TLSRPT_POLICY_NONE), "no-policy-found");
  enum tlsrpt_policy_type t;
  ASSERT(tlsrpt_policy_type_parse("tlsa", &t) && t == TLSRPT_POLICY_TLSA);
  ASSERT(!tlsrpt_policy_type_parse("TLSA", &t));
  ASSERT(!tlsrpt_policy_type_parse(NULL, &t));
}

static void test_policy_type_of(void) {
  ASSERT_EQ(tlsrpt_policy_type_of("mta-sts/enforce", true, 0, TLSRPT_EV_OK),
            TLSRPT_POLICY_STS);
  ASSERT_EQ(tlsrpt_policy_type_of("mta-sts/testing", true, 0, TLSRPT_EV_CERTIFICATE),
            TLSRPT_POLICY_STS);
  ASSERT_EQ(tlsrpt_policy_type_of("mta-sts/enforce", false, 0, TLSRPT_EV_OK),
            TLSRPT_POLICY_NONE);
  ASSERT_EQ(tlsrpt_policy_type_of("dane", false, 1, TLSRPT_EV_OK), TLSRPT_POLICY_TLSA);
  ASSERT_EQ(tlsrpt_policy_type_of("dane", true, 0, TLSRPT_EV_OK), TLSRPT_POLICY_TLSA);
  ASSERT_EQ(tlsrpt_policy_type_of("table/dane-only", false, 0, TLSRPT_EV_TLSA_LOOKUP),
            TLSRPT_POLICY_TLSA);
  ASSERT_EQ(tlsrpt_policy_type_of("table/dane-only", false, 0, TLSRPT_EV_DNSSEC),
            TLSRPT_POLICY_TLSA);
  ASSERT_EQ(tlsrpt_policy_type_of("table/secure", true, 0, TLSRPT_EV_OK),
            TLSRPT_POLICY_NONE);
  ASSERT_EQ(tlsrpt_policy_type_of("default/may", false, 0, TLSRPT_EV_OK),
            TLSRPT_POLICY_NONE);
  ASSERT_EQ(tlsrpt_policy_type_of(NULL, false, 0, TLSRPT_EV_STS_FETCH),
            TLSRPT_POLICY_STS);
}

static void test_session_event(void) {
  /* No policy in force: the failure to get the domain's policy replaces the session's
   * own result, success or not. */
  ASSERT_EQ(
      tlsrpt_session_event(TLSRPT_EV_OK, TLSRPT_EV_STS_FETCH, "default/may", false, 0),
      TLSRPT_EV_STS_FETCH);
  ASSERT_EQ(tlsrpt_session_event(TLSRPT_EV_HANDSHAKE, TLSRPT_EV_STS_INVALID,
                                 "default/encrypt", false, 0),
            TLSRPT_EV_STS_INVALID);
  ASSERT_EQ(tlsrpt_session_event(TLSRPT_EV_OK, TLSRPT_EV_STS_WEBPKI, NULL, false, 0),
            TLSRPT_EV_STS_WEBPKI);
  /* ... and is counted under policy-type sts with its result type. */
  enum tlsrpt_event ev =
      tlsrpt_session_event(TLSRPT_EV_OK, TLSRPT_EV_STS_FETCH, "default/may", false, 0);
  enum tlsrpt_policy_type t = tlsrpt_policy_type_of("default/may", false, 0, ev);
  ASSERT_EQ(t, TLSRPT_POLICY_STS);
  ASSERT_EQ(tlsrpt_classify(t, ev, TLSRPT_CERT_UNKNOWN), TLSRPT_STS_POLICY_FETCH_ERROR);
  /* No failure: the session's own result. */
  ASSERT_EQ(tlsrpt_session_event(TLSRPT_EV_OK, TLSRPT_EV_OK, "default/may", false, 0),
            TLSRPT_EV_OK);
  ASSERT_EQ(tlsrpt_session_event(TLSRPT_EV_NO_STARTTLS, TLSRPT_EV_OK, "default/may",
                                 false, 0),
            TLSRPT_EV_NO_STARTTLS);
  /* Not an STS failure event: ignored. */
  ASSERT_EQ(tlsrpt_session_event(TLSRPT_EV_OK, TLSRPT_EV_CERTIFICATE, "default/may",
                                 false, 0),
            TLSRPT_EV_OK);
  /* Another policy judged the session: DANE, a cached MTA-STS policy, a table entry. */
  ASSERT_EQ(tlsrpt_session_event(TLSRPT_EV_OK, TLSRPT_EV_STS_FETCH, "dane", false, 2),
            TLSRPT_EV_OK);
  ASSERT_EQ(tlsrpt_session_event(TLSRPT_EV_CERTIFICATE, TLSRPT_EV_STS_FETCH, "dane",
                                 false, 0),
            TLSRPT_EV_CERTIFICATE);
  ASSERT_EQ(tlsrpt_session_event(TLSRPT_EV_TLSA_LOOKUP, TLSRPT_EV_STS_FETCH,
                                 "default/may", false, 0),
            TLSRPT_EV_TLSA_LOOKUP);
  ASSERT_EQ(tlsrpt_session_event(TLSRPT_EV_OK, TLSRPT_EV_STS_FETCH, "mta-sts/enforce",
                                 true, 0),
            TLSRPT_EV_OK);
  ASSERT_EQ(tlsrpt_session_event(TLSRPT_EV_OK, TLSRPT_EV_STS_INVALID, "table/secure",
                                 false, 0),
            TLSRPT_EV_OK);
}

static void test_classify(void) {
  static const struct {
    enum tlsrpt_policy_type t;
    enum tlsrpt_event ev;
    enum tlsrpt_cert cert;
    const char *want;
  } cases[] = {
      {TLSRPT_POLICY_STS, TLSRPT_EV_OK, 0, ""},
      {TLSRPT_POLICY_NONE, TLSRPT_EV_NO_STARTTLS, 0, "starttls-not-supported"},
      {TLSRPT_POLICY_STS, TLSRPT_EV_CERTIFICATE, TLSRPT_CERT_HOST_MISMATCH,
       "certificate-host-mismatch"},
      {TLSRPT_POLICY_STS, TLSRPT_EV_CERTIFICATE, TLSRPT_CERT_EXPIRED,
       "certificate-expired"},
      {TLSRPT_POLICY_STS, TLSRPT_EV_CERTIFICATE, TLSRPT_CERT_UNTRUSTED,
       "certificate-not-trusted"},
      {TLSRPT_POLICY_NONE, TLSRPT_EV_CERTIFICATE, TLSRPT_CERT_OTHER,
       "certificate-not-trusted"},
      {TLSRPT_POLICY_STS, TLSRPT_EV_CERTIFICATE, TLSRPT_CERT_UNKNOWN,
       "certificate-not-trusted"},
      {TLSRPT_POLICY_TLSA, TLSRPT_EV_CERTIFICATE, TLSRPT_CERT_DANE_NO_MATCH,
       "validation-failure"},
      {TLSRPT_POLICY_TLSA, TLSRPT_EV_CERTIFICATE, TLSRPT_CERT_UNTRUSTED,
       "validation-failure"},
      {TLSRPT_POLICY_TLSA, TLSRPT_EV_CERTIFICATE, TLSRPT_CERT_EXPIRED,
       "certificate-expired"},
      {TLSRPT_POLICY_TLSA, TLSRPT_EV_CERTIFICATE, TLSRPT_CERT_HOST_MISMATCH,
       "certificate-host-mismatch"},
      {TLSRPT_POLICY_STS, TLSRPT_EV_MX_NOT_LISTED, 0, "validation-failure"},
      {TLSRPT_POLICY_STS, TLSRPT_EV_HANDSHAKE, 0, "validation-failure"},
      {TLSRPT_POLICY_TLSA, TLSRPT_EV_TLSA_LOOKUP, 0, "dnssec-invalid"},
      {TLSRPT_POLICY_TLSA, TLSRPT_EV_TLSA_UNUSABLE, 0, "tlsa-invalid"},
      {TLSRPT_POLICY_TLSA, TLSRPT_EV_DNSSEC, 0, "dnssec-invalid"},
      {TLSRPT_POLICY_TLSA, TLSRPT_EV_DANE_REQUIRED, 0, "dane-required"},
      {TLSRPT_POLICY_STS, TLSRPT_EV_STS_FETCH, 0, "sts-policy-fetch-error"},
      {TLSRPT_POLICY_STS, TLSRPT_EV_STS_INVALID, 0, "sts-policy-invalid"},
      {TLSRPT_POLICY_STS, TLSRPT_EV_STS_WEBPKI, 0, "sts-webpki-invalid"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    enum tlsrpt_result res = tlsrpt_classify(cases[i].t, cases[i].ev, cases[i].cert);
    if (strcmp(tlsrpt_result_name(res), cases[i].want) != 0)
      TEST_FAIL_("case %zu: \"%s\" != \"%s\"", i, tlsrpt_result_name(res),
                 cases[i].want);
  }
}

static void test_policy_strings(void) {
  struct sts_policy p;
  memset(&p, 0, sizeof p);
  p.mode = STS_MODE_ENFORCE;
  p.max_age = 604800;
  static char two[] = "mx1.example.com\0*.example.net"; /* and the final NUL */
  p.nmx = 2;
  p.mx = two;
  p.mx_len = sizeof two;
  char *s = tlsrpt_sts_strings(&p);
  ASSERT_STR_EQ(s, "version: STSv1\nmode: enforce\nmx: mx1.example.com\n"
                   "mx: *.example.net\nmax_age: 604800");
  free(s);
  s = tlsrpt_sts_mx_hosts(&p);
  ASSERT_STR_EQ(s, "mx1.example.com\n*.example.net");
  free(s);
  p.mode = STS_MODE_TESTING;
  p.nmx = 0;
  p.mx = NULL;
  p.mx_len = 0;
  s = tlsrpt_sts_strings(&p);
  ASSERT_STR_EQ(s, "version: STSv1\nmode: testing\nmax_age: 604800");
  free(s);
  s = tlsrpt_sts_mx_hosts(&p);
  ASSERT_STR_EQ(s, "");
  free(s);

  struct dane_tlsa recs[2];
  memset(recs, 0, sizeof recs);
  uint8_t ab[32];
  memset(ab, 0xab, sizeof ab);
  recs[0] = (struct dane_tlsa){.usage = 3,
                               .selector = 1,
                               .mtype = 1,
                               .len = 4,
                               .data = (const uint8_t *)"\xde\xad\xbe\xef"};
  recs[1] =
      (struct dane_tlsa){.usage = 2, .selector = 0, .mtype = 1, .len = 32, .data = ab};
  s = tlsrpt_tlsa_strings(recs, 2);
  ASSERT_STR_EQ(s, "3 1 1 deadbeef\n2 0 1 "
                   "abababababababababababababababababababababababababababababababab");
  free(s);
  s = tlsrpt_tlsa_strings(recs, 0);
  ASSERT_STR_EQ(s, "");
  free(s);
  /* A malformed record (RDATA too short for the TLSA fields) has no four fields to
   * quote (RFC 8460 §4.4): left out, wherever it stands. */
  struct dane_tlsa three[3] = {
      {.malformed = true, .len = 2, .data = (const uint8_t *)"\x03\x01"},
      recs[0],
      {.malformed = true}};
  s = tlsrpt_tlsa_strings(three, 3);
  ASSERT_STR_EQ(s, "3 1 1 deadbeef");
  free(s);
  s = tlsrpt_tlsa_strings(three + 2, 1);
  ASSERT_STR_EQ(s, "");
  free(s);
}

static void test_datetime(void) {
  char dt[21];
  tlsrpt_datetime(0, dt);
  ASSERT_STR_EQ(dt, "1970-01-01T00:00:00Z");
  tlsrpt_datetime(1700000000, dt);
  ASSERT_STR_EQ(dt, "2023-11-14T22:13:20Z");
  tlsrpt_datetime(1704067199, dt);
  ASSERT_STR_EQ(dt, "2023-12-31T23:59:59Z");
}

/* One sts policy with a success count and two kinds of failure (the second without a
 * connection: no sending or receiving IP), one no-policy-found policy without
 * failures: every §4.4 field, in order. */
static void test_json_report(void) {
  struct tlsrpt_detail d[] = {
      {.result_type = "certificate-host-mismatch",
       .sending_ip = "198.51.100.25",
       .mx = "mx1.example.com",
       .ip = "192.0.2.1",
       .reason = "hostname mismatch",
       .count = 2},
      {.result_type = "validation-failure",
       .mx = "mx9.example.com",
       .ip = "",
       .reason = "not listed in the MTA-STS policy",
       .count = 1},
  };
  struct tlsrpt_policy_block p[] = {
      {.type = "sts",
       .domain = "example.com",
       .strings = "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 86400",
       .mx_host = "mx1.example.com",
       .successes = 5,
       .details = d,
       .ndetails = 2},
      {.type = "no-policy-found",
       .domain = "example.com",
       .strings = "",
       .mx_host = "mx2.example.com",
       .successes = 1},
  };
  struct tlsrpt_report r = {
      .organization = "Example Org",
      .contact = "postmaster@sender.example",
      .report_id = "2024-01-01T00:00:00Z_example.com",
      .start = 1704067200,
      .end = 1704153599,
      .policies = p,
      .npolicies = 2,
  };
  size_t len = 0;
  char *json = tlsrpt_report_json(&r, &len);
  ASSERT(json != NULL);
  ASSERT_EQ(len, strlen(json));
  const char *want =
      "{\"organization-name\":\"Example Org\","
      "\"date-range\":{\"start-datetime\":\"2024-01-01T00:00:00Z\","
      "\"end-datetime\":\"2024-01-01T23:59:59Z\"},"
      "\"contact-info\":\"postmaster@sender.example\","
      "\"report-id\":\"2024-01-01T00:00:00Z_example.com\","
      "\"policies\":["
      "{\"policy\":{\"policy-type\":\"sts\","
      "\"policy-string\":[\"version: STSv1\",\"mode: enforce\",\"mx: mx1.example.com\","
      "\"max_age: 86400\"],"
      "\"policy-domain\":\"example.com\",\"mx-host\":[\"mx1.example.com\"]},"
      "\"summary\":{\"total-successful-session-count\":5,"
      "\"total-failure-session-count\":3},"
      "\"failure-details\":["
      "{\"result-type\":\"certificate-host-mismatch\","
      "\"sending-mta-ip\":\"198.51.100.25\","
      "\"receiving-mx-hostname\":\"mx1.example.com\",\"receiving-ip\":\"192.0.2.1\","
      "\"failed-session-count\":2,\"failure-reason-code\":\"hostname mismatch\"},"
      "{\"result-type\":\"validation-failure\","
      "\"receiving-mx-hostname\":\"mx9.example.com\",\"failed-session-count\":1,"
      "\"failure-reason-code\":\"not listed in the MTA-STS policy\"}]},"
      "{\"policy\":{\"policy-type\":\"no-policy-found\",\"policy-domain\":\"example."
      "com\","
      "\"mx-host\":[\"mx2.example.com\"]},"
      "\"summary\":{\"total-successful-session-count\":1,"
      "\"total-failure-session-count\":0}}]}";
  ASSERT_STR_EQ(json, want);
  free(json);
}

static void test_json_escaping(void) {
  struct tlsrpt_detail d = {.result_type = "validation-failure",
                            .mx = "mx.example",
                            .ip = "2001:db8::1",
                            .reason = "q\"b\\s\x01\tn\n\xc3\xa9\xff\xed\xa0\x80 end",
                            .count = 1};
  struct tlsrpt_policy_block p = {.type = "tlsa",
                                  .domain = "example.com",
                                  .strings = "3 1 1 00",
                                  .mx_host = "mx.example",
                                  .details = &d,
                                  .ndetails = 1};
  struct tlsrpt_report r = {.organization = "Org \"Q\"",
                            .contact = "c\\d",
                            .report_id = "id",
                            .policies = &p,
                            .npolicies = 1};
  char *json = tlsrpt_report_json(&r, NULL);
  ASSERT(json != NULL);
  ASSERT(strstr(json, "\"organization-name\":\"Org \\\"Q\\\"\"") != NULL);
  ASSERT(strstr(json, "\"contact-info\":\"c\\\\d\"") != NULL);
  ASSERT(strstr(json, "\"failure-reason-code\":\"q\\\"b\\\\s\\u0001\\u0009n\\u000a"
                      "\xc3\xa9\\ufffd\\ufffd\\ufffd\\ufffd end\"") != NULL);
  ASSERT(strstr(json, "\"policy-string\":[\"3 1 1 00\"]") != NULL);
  ASSERT(strstr(json, "\"receiving-ip\":\"2001:db8::1\"") != NULL);
  ASSERT(strstr(json, "\"total-failure-session-count\":1") != NULL);
  for (const char *c = json; *c; c++)
    ASSERT((unsigned char)*c >= 0x20);
  free(json);
}

int main(void) {
  RUN_TEST(test_txt_rfc_examples);
  RUN_TEST(test_txt_several_uris_and_whitespace);
  RUN_TEST(test_txt_record_selection);
  RUN_TEST(test_txt_malformed);
  RUN_TEST(test_txt_uris);
  RUN_TEST(test_result_names);
  RUN_TEST(test_policy_type_of);
  RUN_TEST(test_session_event);
  RUN_TEST(test_classify);
  RUN_TEST(test_policy_strings);
  RUN_TEST(test_datetime);
  RUN_TEST(test_json_report);
  RUN_TEST(test_json_escaping);
  return 0;
}
