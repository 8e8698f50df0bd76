#!/usr/bin/python3
"""TLS reporting (RFC 8460): sessions counted per policy domain and policy, kept in
<state_dir>/policies.sqlite3 (table tlsrpt_count), and sent as gzipped JSON reports to
the rua of _smtp._tls.<domain>: by HTTPS POST, or by mail through the proxy itself.

Fixtures: mx1.example.test (127.0.0.2) and, per test, mx2.example.test (127.0.0.3);
one HttpsPolicyServer on 127.0.0.1 serves both mta-sts.example.test (MTA-STS policy
GETs) and reports.example.test (report POSTs to /tlsrpt), with a CA-signed certificate
for both names; both names resolve through the test DNS. tlsrpt.ca_file and
mta_sts.ca_file are the test CA. Reports are checked against RFC 8460 §4.4: every
required field, RFC 3339 dates, counts that add up, registered result types.

Mailed reports must be DKIM-signed (RFC 8460 §3): the signature on the message as the
report's MX received it is checked by an independent verifier, dkimpy (Debian
python3-dkim), which fetches the public key from the test DNS.
"""

import base64
import calendar
import email
import email.policy
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import dkim
import dns.resolver

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestBase, main, message, proxy_config, wait_until  # noqa: E402
from harness.httpsserver import policy_text  # noqa: E402
from harness.proxy import deep_merge, proxy_binary  # noqa: E402

DOMAIN = 'example.test'
RCPT = 'rcpt@example.test'
REPORT_HOST = 'reports.example.test'
ORG = 'Proxy Test Org'
# Not the proxy's hostname (proxy.test): the submitter of mailed reports, in their
# header and filename, is the contact's domain (RFC 8460 §5.1, §5.3).
CONTACT = 'tlsrpt@reporter.test'
SUBMITTER = 'reporter.test'
RESULT_TYPES = {
    'starttls-not-supported', 'certificate-host-mismatch', 'certificate-expired',
    'certificate-not-trusted', 'validation-failure', 'tlsa-invalid', 'dnssec-invalid',
    'dane-required', 'sts-policy-fetch-error', 'sts-policy-invalid', 'sts-webpki-invalid'}
DATETIME = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$')
DKIM_DOMAIN = 'proxy.test'
DKIM_SELECTOR = 'tlsrpt2026'


def epoch(datetime_z):
    """Unix seconds of an RFC 3339 'YYYY-MM-DDTHH:MM:SSZ'."""
    return calendar.timegm(time.strptime(datetime_z, '%Y-%m-%dT%H:%M:%SZ'))


def make_dkim_key(directory, kind, name='dkim.key', mode=0o600):
    """Writes a private key of KIND ('rsa' or 'ed25519') with openssl; returns (path,
    the TXT record publishing its public key, RFC 6376 §3.6.1 / RFC 8463 §4, for the
    service type tlsrpt as RFC 8460 §5.3 wants)."""
    path = os.path.join(directory, name)
    args = (['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'] if kind == 'rsa'
            else ['-algorithm', 'ED25519'])
    subprocess.run(['openssl', 'genpkey'] + args + ['-out', path], check=True,
                   capture_output=True)
    os.chmod(path, mode)
    der = subprocess.run(['openssl', 'pkey', '-in', path, '-pubout', '-outform', 'DER'],
                         check=True, capture_output=True).stdout
    # RSA: the SubjectPublicKeyInfo; Ed25519: the raw 32-byte key, its last bytes.
    p = base64.b64encode(der if kind == 'rsa' else der[-32:]).decode()
    return path, 'v=DKIM1; k=%s; s=tlsrpt; p=%s' % (kind, p)


class TlsRptCase(TestBase):
    """mx1 + the HTTPS server; tlsrpt enabled with class attribute `interval`."""

    interval = 3600

    def setup_fixtures(self):
        self.mx1 = self.add_mx('mx1', '127.0.0.2', tls=self.mx1_tls)
        self.https = self.add_policy_server(REPORT_HOST, 'mta-sts.%s' % DOMAIN,
                                            posts=['/tlsrpt'])

    def start_the_proxy(self, extra=None):
        base = {'tlsrpt': {'enabled': 'yes', 'organization': ORG, 'contact': CONTACT,
                           'interval': self.interval, 'ca_file': self.pki.ca_file,
                           'allow_private_addresses': 'yes'},
                'mta_sts': {'enabled': 'yes', 'ca_file': self.pki.ca_file,
                            'port': self.https.port, 'fetch_timeout': 2,
                            'allow_private_addresses': 'yes'}}
        return super().start_the_proxy(deep_merge(base, extra))

    # ---- fixtures ------------------------------------------------------------------------
    def rua_https(self):
        return 'https://%s:%d/tlsrpt' % (REPORT_HOST, self.https.port)

    def publish_rua(self, *uris, domain=DOMAIN):
        self.dns.remove('_smtp._tls.%s' % domain, 'TXT')
        self.dns.add('_smtp._tls.%s' % domain, 'TXT', 'v=TLSRPTv1; rua=%s' % ','.join(uris))

    def publish_sts(self, mx):
        self.dns.add('_mta-sts.%s' % DOMAIN, 'TXT', 'v=STSv1; id=1')
        self.https.set_policy(DOMAIN, policy_text(mode='enforce', mx=mx))

    def cli_send(self):
        return subprocess.run([proxy_binary(), '-c', self.proxy.config_path, 'tlsrpt',
                               'send'], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=60)

    def stored(self):
        """Rows of the counter table: dicts (empty when the table is not there yet)."""
        return self.proxy.tlsrpt_counts()

    def wait_stored(self, total, domain=DOMAIN):
        def enough():
            n = sum(r['count'] for r in self.stored() if r['domain'] == domain)
            return n >= total
        wait_until(enough, 10, lambda: 'counts never reached %d: %r' % (total,
                                                                        self.stored()))

    # ---- reports -------------------------------------------------------------------------
    def posted_reports(self):
        out = []
        for p in list(self.https.posts):
            self.assertEqual(p['content_type'], 'application/tlsrpt+gzip')
            self.assertEqual(p['path'], '/tlsrpt')
            self.assertEqual(p['sni'], REPORT_HOST)
            self.assertEqual(p['host'].split(':')[0], REPORT_HOST)
            out.append(self.validate(json.loads(gzip.decompress(p['body']))))
        return out

    def validate(self, rep):
        """RFC 8460 §4.4 field by field; returns REP."""
        self.assertEqual(rep['organization-name'], ORG)
        self.assertEqual(rep['contact-info'], CONTACT)
        self.assertIsInstance(rep['report-id'], str)
        self.assertTrue(rep['report-id'])
        start, end = rep['date-range']['start-datetime'], rep['date-range']['end-datetime']
        self.assertRegex(start, DATETIME)
        self.assertRegex(end, DATETIME)
        self.assertLessEqual(start, end)
        self.assertIsInstance(rep['policies'], list)
        self.assertTrue(rep['policies'])
        for p in rep['policies']:
            pol = p['policy']
            self.assertIn(pol['policy-type'], ('sts', 'tlsa', 'no-policy-found'))
            self.assertIsInstance(pol['policy-domain'], str)
            for key in ('policy-string', 'mx-host'):
                if key in pol:
                    self.assertIsInstance(pol[key], list)
                    self.assertTrue(all(isinstance(s, str) for s in pol[key]))
            s = p['summary']
            self.assertIsInstance(s['total-successful-session-count'], int)
            self.assertIsInstance(s['total-failure-session-count'], int)
            details = p.get('failure-details', [])
            for d in details:
                self.assertIn(d['result-type'], RESULT_TYPES)
                self.assertIsInstance(d['receiving-mx-hostname'], str)
                self.assertGreaterEqual(d['failed-session-count'], 1)
                if 'receiving-ip' in d:  # connected: our end of it (§4.4)
                    self.assertEqual(d['sending-mta-ip'], '127.0.0.1', d)
            self.assertEqual(s['total-failure-session-count'],
                             sum(d['failed-session-count'] for d in details))
        return rep

    @staticmethod
    def totals(reports, domain=DOMAIN):
        """(successes, failures, [failure details]) over every report's policies."""
        ok = bad = 0
        details = []
        for rep in reports:
            for p in rep['policies']:
                if p['policy']['policy-domain'] != domain:
                    continue
                ok += p['summary']['total-successful-session-count']
                bad += p['summary']['total-failure-session-count']
                details += [dict(d, policy=p['policy']) for d in p.get('failure-details',
                                                                         [])]
        return ok, bad, details


class HttpsReports(TlsRptCase):

    interval = 2

    def setup_fixtures(self):
        super().setup_fixtures()
        self.mx2 = self.add_mx('mx2', '127.0.0.3', pref=20)

    def test_sts_failure_and_success_posted_on_interval(self):
        """MTA-STS enforce listing mx1 and mx2; mx1 presents a certificate for another
        name: one certificate-host-mismatch for mx1, one success on mx2, reported by
        the daemon's timer (2 s periods) to the https rua as one sts policy."""
        cert, key = self.pki.issue('mx1.example.test', wrong_name='other.example.test')
        self.mx1.configure(starttls=(cert, key))
        self.publish_sts(('mx1.example.test', 'mx2.example.test'))
        self.publish_rua(self.rua_https())
        out = self.send(RCPT, message('tlsrpt-sts'))
        self.assertReply(out['data'], 250)
        self.mx2.wait_messages(1)

        def both():
            ok, bad, _ = self.totals(self.posted_reports())
            return ok >= 1 and bad >= 1
        wait_until(both, 20, lambda: 'reports: %r; log:\n%s' % (
            self.posted_reports(), self.proxy.log_text()))
        reports = self.posted_reports()
        ok, bad, details = self.totals(reports)
        self.assertEqual((ok, bad), (1, 1))
        self.assertEqual(len(details), 1)
        d = details[0]
        self.assertEqual(d['result-type'], 'certificate-host-mismatch')
        self.assertEqual(d['receiving-mx-hostname'], 'mx1.example.test')
        self.assertEqual(d['receiving-ip'], '127.0.0.2')
        self.assertEqual(d['sending-mta-ip'], '127.0.0.1')
        self.assertEqual(d['failed-session-count'], 1)
        self.assertIn('hostname mismatch', d['failure-reason-code'])
        pol = d['policy']
        self.assertEqual(pol['policy-type'], 'sts')
        self.assertEqual(pol['policy-domain'], DOMAIN)
        self.assertEqual(pol['policy-string'], ['version: STSv1', 'mode: enforce',
                                                'mx: mx1.example.test',
                                                'mx: mx2.example.test',
                                                'max_age: 86400'])
        self.assertEqual(pol['mx-host'], ['mx1.example.test', 'mx2.example.test'])
        for rep in reports:
            self.assertEqual([p['policy']['policy-type'] for p in rep['policies']],
                             ['sts'])
        self.assertLog(r'tlsrpt: example\.test: report .* sent to https://')
        wait_until(lambda: not [r for r in self.stored() if r['domain'] == DOMAIN], 10,
                   lambda: 'counts left after sending: %r' % self.stored())


class EncryptCase(TlsRptCase):
    """example.test at level encrypt; mx1 offers no STARTTLS, mx2 (pref 20) does."""

    mx1_tls = False

    def setup_fixtures(self):
        super().setup_fixtures()
        self.mx2 = self.add_mx('mx2', '127.0.0.3', pref=20)

    def start_the_proxy(self, extra=None):
        return super().start_the_proxy(deep_merge(
            {'policy': {'table': {DOMAIN: 'encrypt'}}}, extra))

    def cause_failure_and_success(self):
        """mx1 fails (starttls-not-supported), mx2 takes the message (ok)."""
        out = self.send(RCPT, message('tlsrpt-encrypt'))
        self.assertReply(out['data'], 250)
        self.mx2.wait_messages(1)
        self.wait_stored(2)


class CliReports(EncryptCase):
    """Long periods: reports go out only through `starttls-proxy tlsrpt send`."""

    def test_counts_persist_across_restart_then_cli_send(self):
        self.publish_rua(self.rua_https())
        self.cause_failure_and_success()
        self.restart_proxy()
        rows = [r for r in self.stored() if r['domain'] == DOMAIN]
        self.assertEqual(sum(r['count'] for r in rows), 2, rows)
        self.assertEqual(self.https.posts, [])
        r = self.cli_send()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('1 report(s) sent, 0 failed', r.stdout)
        reports = self.posted_reports()
        self.assertEqual(len(reports), 1)
        ok, bad, details = self.totals(reports)
        self.assertEqual((ok, bad), (1, 1))
        self.assertEqual(details[0]['result-type'], 'starttls-not-supported')
        self.assertEqual(details[0]['receiving-mx-hostname'], 'mx1.example.test')
        self.assertEqual(details[0]['receiving-ip'], '127.0.0.2')
        policies = {p['policy']['mx-host'][0]: p for p in reports[0]['policies']}
        self.assertEqual(sorted(policies), ['mx1.example.test', 'mx2.example.test'])
        for p in policies.values():
            self.assertEqual(p['policy']['policy-type'], 'no-policy-found')
            self.assertNotIn('policy-string', p['policy'])
        self.assertEqual(policies['mx2.example.test']['summary'],
                         {'total-successful-session-count': 1,
                          'total-failure-session-count': 0})
        self.assertEqual(self.stored(), [])
        r = self.cli_send()  # nothing left
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('0 report(s) sent', r.stdout)
        self.assertEqual(len(self.https.posts), 1)

    def test_failed_post_is_kept_and_retried(self):
        self.https.accept_posts('/tlsrpt', status=503)
        self.publish_rua(self.rua_https())
        self.cause_failure_and_success()
        r = self.cli_send()
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn('HTTP 503', r.stderr)
        self.assertEqual(len(self.https.posts), 1)
        self.assertEqual(sum(r['count'] for r in self.stored()), 2)
        self.https.accept_posts('/tlsrpt', status=202)
        r = self.cli_send()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(len(self.https.posts), 2)
        first, second = [json.loads(gzip.decompress(p['body'])) for p in self.https.posts]
        # The same report again: same period start, domain and counts. (A send of the
        # running period ends "now", so its end-datetime, and the id's last part,
        # move with the retry.)
        self.assertEqual(first['report-id'].split('_')[:2],
                         second['report-id'].split('_')[:2])
        self.assertEqual(first['date-range']['start-datetime'],
                         second['date-range']['start-datetime'])
        self.assertEqual(first['policies'], second['policies'])
        self.assertEqual(self.stored(), [])

    def test_no_record_drops_counts(self):
        """No _smtp._tls record: nothing is sent and the counts go."""
        self.cause_failure_and_success()
        r = self.cli_send()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('1 domain(s) without a TLS-RPT record', r.stdout)
        self.assertEqual(self.https.posts, [])
        self.assertEqual(self.stored(), [])

    def test_unreachable_https_rua_fails(self):
        """A rua whose host does not resolve: exit 1, counts kept."""
        self.publish_rua('https://nowhere.example.test/tlsrpt')
        self.cause_failure_and_success()
        r = self.cli_send()
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn('cannot resolve the report host', r.stderr)
        self.assertEqual(sum(r['count'] for r in self.stored()), 2)


class DaemonRetry(EncryptCase):
    """RFC 8460 §5.5: a report that could not be delivered is tried again within the
    day, with exponential backoff, not only at the next period's end. 10 s periods:
    the retries come 1, 3 and 7 s after the run (interval/288, at least 1 s, then
    doubling while before the next period's end)."""

    interval = 10

    def test_failed_post_retried_before_next_period(self):
        self.https.accept_posts('/tlsrpt', status=503)
        self.publish_rua(self.rua_https())
        self.cause_failure_and_success()
        wait_until(lambda: self.https.posts, 15, 'no report POSTed')
        first = time.monotonic()
        self.https.accept_posts('/tlsrpt', status=200)
        wait_until(lambda: len(self.https.posts) >= 2, 5,
                   lambda: 'not retried within 5 s:\n%s' % self.proxy.log_text())
        self.assertLess(time.monotonic() - first, 5)
        self.assertLog(r'tlsrpt: 1 report\(s\) failed: retrying in 1 s')
        ok, bad, _ = self.totals(self.posted_reports()[1:])
        self.assertEqual((ok, bad), (1, 1))
        wait_until(lambda: not self.stored(), 10,
                   lambda: 'counts left after the retry: %r' % self.stored())


class NonGlobalRua(EncryptCase):
    """tlsrpt.allow_private_addresses: no (the default; the other tests allow their
    loopback fixture): https: rua endpoints on loopback, named by a literal or by a
    name that resolves there, are refused before any connection, since a
    destination's _smtp._tls record would otherwise aim the proxy's POSTs at the
    operator's own network. The report counts as failed and is kept."""

    def start_the_proxy(self, extra=None):
        return super().start_the_proxy(deep_merge(
            {'tlsrpt': {'allow_private_addresses': 'no'}}, extra))

    def test_loopback_rua_refused(self):
        literal = 'https://127.0.0.1:%d/tlsrpt' % self.https.port
        self.publish_rua(literal, self.rua_https())
        self.cause_failure_and_success()
        r = self.cli_send()
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn('0 report(s) sent, 1 failed', r.stdout)
        for uri in (literal, self.rua_https()):
            self.assertRegex(r.stderr, r'tlsrpt: example\.test: report \S+ to %s failed: '
                             r'refused non-global address 127\.0\.0\.1 '
                             r'\(tlsrpt\.allow_private_addresses: no\)' % re.escape(uri))
        self.assertEqual(self.https.connections, 0)
        self.assertEqual(self.https.posts, [])
        self.assertEqual(sum(r['count'] for r in self.stored()), 2)


class StsFetchFailureReports(TlsRptCase):
    """example.test announces an MTA-STS policy (enforce, mx1) that cannot be had: the
    message is still delivered (default level may, RFC 8461 §5) and the report counts
    the session as the failure to get the policy (RFC 8460 §4.3.2.2), once, under
    policy-type sts. Reports go out through `starttls-proxy tlsrpt send`."""

    def publish_failing_sts(self, text=None, status=200, ttl=None):
        self.dns.add('_mta-sts.%s' % DOMAIN, 'TXT', 'v=STSv1; id=1', ttl=ttl)
        self.https.set_policy(DOMAIN, policy_text(mode='enforce', mx=('mx1.example.test',))
                              if text is None else text, status=status)

    def deliver_and_report(self):
        """One message delivered to mx1 at may; the one report sent, validated."""
        self.publish_rua(self.rua_https())
        out = self.send(RCPT, message('tlsrpt-sts-fail'))
        self.assertReply(out['data'], 250)
        self.mx1.wait_messages(1)
        self.assertLog(r'mta-sts: example\.test: policy fetch failed')
        self.wait_stored(1)
        r = self.cli_send()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        reports = self.posted_reports()
        self.assertEqual(len(reports), 1)
        return reports[0]

    def check_one_failure(self, rep, result_type, reason):
        ok, bad, details = self.totals([rep])
        self.assertEqual((ok, bad), (0, 1), rep)
        self.assertEqual(len(rep['policies']), 1, rep)
        pol = rep['policies'][0]['policy']
        self.assertEqual(pol['policy-type'], 'sts')
        self.assertEqual(pol['policy-domain'], DOMAIN)
        self.assertNotIn('policy-string', pol)
        self.assertNotIn('mx-host', pol)
        d = details[0]
        self.assertEqual(d['result-type'], result_type)
        self.assertEqual(d['receiving-mx-hostname'], 'mx1.example.test')
        self.assertEqual(d['receiving-ip'], '127.0.0.2')
        self.assertEqual(d['failed-session-count'], 1)
        self.assertIn(reason, d['failure-reason-code'])

    def test_policy_404_is_fetch_error(self):
        self.publish_failing_sts(status=404)
        rep = self.deliver_and_report()
        self.check_one_failure(rep, 'sts-policy-fetch-error', 'HTTP 404')
        self.assertLog(r'policy: example\.test: .*sts=unavailable \(fetch error: HTTP 404\)')
        self.assertEqual(self.https.fetches(DOMAIN), 1)

    def test_unparsable_policy_is_invalid(self):
        self.publish_failing_sts('mode: enforce\r\nmx: mx1.example.test\r\n'
                                 'max_age: 86400\r\n')  # no version
        rep = self.deliver_and_report()
        self.check_one_failure(rep, 'sts-policy-invalid', 'version')
        self.assertLog(r'policy: example\.test: .*sts=unavailable \(invalid policy: ')

    def test_untrusted_policy_host_is_webpki_invalid(self):
        self.https.set_cert(DOMAIN, *self.pki.issue('mta-sts.example.test',
                                                    self_signed=True))
        self.publish_failing_sts()
        rep = self.deliver_and_report()
        self.check_one_failure(rep, 'sts-webpki-invalid', 'TLS: ')
        self.assertLog(r'policy: example\.test: .*sts=unavailable \(policy host certificate: ')
        self.assertEqual(self.https.fetches(DOMAIN), 0)

    @proxy_config({'outbound': {'connection_cache_time': 0}})  # two TLS sessions
    def test_cached_policy_survives_failed_refresh(self):
        """A valid cached policy (id=1) and a failed fetch of a new id (404): both
        sessions are successes under the cached policy, no fetch error reported. The
        TXT has a 1 s TTL: messages go until the proxy's cached answer (id=1) expired
        and it saw id=2; every session counts."""
        self.publish_rua(self.rua_https())
        self.publish_failing_sts(ttl=1)  # id=1, served
        out = self.send(RCPT, message('tlsrpt-sts-cached-1'))
        self.assertReply(out['data'], 250)
        self.dns.remove('_mta-sts.%s' % DOMAIN, 'TXT')
        self.dns.add('_mta-sts.%s' % DOMAIN, 'TXT', 'v=STSv1; id=2', ttl=1)
        self.https.set_policy(DOMAIN, None, status=404)
        sent = [1]

        def refetched():
            sent[0] += 1
            out = self.send(RCPT, message('tlsrpt-sts-cached-%d' % sent[0]))
            self.assertReply(out['data'], 250)
            return self.https.fetches(DOMAIN) >= 2
        wait_until(refetched, 15, 'id=2 never fetched', interval=0.2)
        n = sent[0]
        self.mx1.wait_messages(n)
        self.assertEqual(self.https.fetches(DOMAIN), 2)
        self.assertLog(r'mta-sts: example\.test: policy fetch failed: HTTP 404')
        self.wait_stored(n)
        r = self.cli_send()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        reports = self.posted_reports()
        self.assertEqual(len(reports), 1)
        ok, bad, details = self.totals(reports)
        self.assertEqual((ok, bad, details), (n, 0, []))
        pol = reports[0]['policies'][0]['policy']
        self.assertEqual(pol['policy-type'], 'sts')
        self.assertEqual(pol['policy-string'], ['version: STSv1', 'mode: enforce',
                                                'mx: mx1.example.test',
                                                'max_age: 86400'])


class StsEnforceReports(TlsRptCase):
    """MTA-STS enforce (RFC 8461) with mx1 (pref 10) and mx2 (pref 20): mx1 fails the
    policy, the message goes to mx2; the one report (tlsrpt send) has one sts policy
    with mx2's success and mx1's failure under its RFC 8460 §4.3 result type."""

    def setup_fixtures(self):
        super().setup_fixtures()
        self.mx2 = self.add_mx('mx2', '127.0.0.3', pref=20)

    def report(self, mx):
        self.publish_sts(mx)
        self.publish_rua(self.rua_https())
        out = self.send(RCPT, message('tlsrpt-sts-enforce'))
        self.assertReply(out['data'], 250)
        self.mx2.wait_messages(1)
        self.wait_stored(2)
        r = self.cli_send()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        reports = self.posted_reports()
        self.assertEqual(len(reports), 1)
        ok, bad, details = self.totals(reports)
        self.assertEqual((ok, bad, len(details)), (1, 1, 1), reports)
        self.assertEqual([p['policy']['policy-type'] for p in reports[0]['policies']],
                         ['sts'])
        self.assertNoMail(self.mx1)
        return details[0]

    def test_expired_certificate(self):
        """§4.3.1: an expired certificate is certificate-expired (not
        validation-failure nor certificate-not-trusted)."""
        self.mx1.configure(starttls=self.pki.issue('mx1.example.test', expired=True))
        d = self.report(('mx1.example.test', 'mx2.example.test'))
        self.assertEqual(d['result-type'], 'certificate-expired')
        self.assertEqual(d['receiving-mx-hostname'], 'mx1.example.test')
        self.assertEqual(d['receiving-ip'], '127.0.0.2')
        self.assertIn('expired', d['failure-reason-code'])

    def test_mx_not_in_policy(self):
        """An MX host the enforce policy does not list is never connected to: a
        validation-failure for it, without addresses (no session was opened)."""
        d = self.report(('mx2.example.test',))
        self.assertEqual(d['result-type'], 'validation-failure')
        self.assertEqual(d['receiving-mx-hostname'], 'mx1.example.test')
        self.assertNotIn('receiving-ip', d)
        self.assertNotIn('sending-mta-ip', d)
        self.assertIn('MTA-STS', d['failure-reason-code'])
        self.assertEqual(d['policy']['mx-host'], ['mx2.example.test'])


class StsTestingCase(TlsRptCase):
    """MTA-STS mode testing (RFC 8461 §5): the checks of enforce are made and their
    failures counted for the report (RFC 8460), but the message is still delivered to
    the host that failed them."""

    def publish_testing(self, mx=('mx1.example.test',)):
        self.dns.add('_mta-sts.%s' % DOMAIN, 'TXT', 'v=STSv1; id=1')
        self.https.set_policy(DOMAIN, policy_text(mode='testing', mx=mx))

    def deliver_and_count(self, result_type):
        """One message delivered to mx1; its one session counted under the sts
        policy with RESULT_TYPE ('' for a success); returns the row."""
        out = self.send(RCPT, message('tlsrpt-sts-testing'))
        self.assertReply(out['data'], 250)
        self.mx1.wait_messages(1)
        self.wait_stored(1)
        rows = [r for r in self.stored() if r['domain'] == DOMAIN]
        self.assertEqual(len(rows), 1, rows)
        row = rows[0]
        self.assertEqual((row['policy_type'], row['result_type'], row['count']),
                         ('sts', result_type, 1), row)
        self.assertEqual(row['mx'], 'mx1.example.test' if result_type else '', row)
        return row


class StsTestingCounts(StsTestingCase):

    def test_wrong_name_counted(self):
        cert, key = self.pki.issue('mx1.example.test', wrong_name='other.example.test')
        self.mx1.configure(starttls=(cert, key))
        self.publish_testing()
        self.deliver_and_count('certificate-host-mismatch')
        self.assertLog(r'(?m)to=<%s>, relay=mx1\.example\.test.*status=sent .*'
                       r'policy=mta-sts/testing$' % re.escape(RCPT))

    def test_not_listed_counted(self):
        self.publish_testing(mx=('mx9.example.test',))
        row = self.deliver_and_count('validation-failure')
        self.assertIn('not listed in the MTA-STS policy', row['reason'])

    def test_valid_counted_as_success(self):
        self.publish_testing()
        self.deliver_and_count('')


class StsTestingNoStarttls(StsTestingCase):
    """mx1 offers no STARTTLS: delivered in plaintext, counted as such."""

    mx1_tls = False

    def test_no_starttls_counted(self):
        self.publish_testing()
        self.deliver_and_count('starttls-not-supported')


class MailCase(TlsRptCase):
    """rua=mailto: the daemon (2 s periods) delivers the report itself to the MX hosts
    of the rua's domain (the MX of reports.test, 127.0.0.4, unless a test says
    otherwise), never through its listener; it is signed with the tlsrpt.dkim key of
    class attribute `key_type`."""

    interval = 2
    key_type = 'rsa'

    def setup_fixtures(self):
        super().setup_fixtures()
        self.rua_mx = self.add_mx('mx', '127.0.0.4', domain='reports.test')
        key, record = make_dkim_key(self.tmpdir, self.key_type)
        # TXT strings are at most 255 bytes (RFC 1035 §3.3.14); a verifier joins them.
        self.dns.add('%s._domainkey.%s' % (DKIM_SELECTOR, DKIM_DOMAIN), 'TXT',
                     [record[i:i + 255] for i in range(0, len(record), 255)])
        self.key_file = key
        self.proxy_extra = {'tlsrpt': {'dkim': {'domain': DKIM_DOMAIN,
                                                'selector': DKIM_SELECTOR,
                                                'key_file': key}}}

    def dkim_verify(self, data):
        """dkimpy's verdict on DATA as a TLS report (its tlsrpt='strict': the key
        record must be for s=tlsrpt, l= is not honoured); it reads the key record from
        the test DNS."""
        res = dns.resolver.Resolver(configure=False)
        res.nameservers = ['127.0.0.1']
        res.port = self.dns.port

        def dnsfunc(name, timeout=5):
            name = name.decode() if isinstance(name, bytes) else name
            ans = res.resolve(name.rstrip('.'), 'TXT', lifetime=timeout)
            return b''.join(b''.join(r.strings) for r in ans)
        return dkim.verify(data, dnsfunc=dnsfunc, tlsrpt='strict')

    def mx1_fails_sts_enforce(self):
        """MTA-STS enforce listing mx1, whose certificate names another host."""
        self.mx1.configure(starttls=self.pki.issue('mx1.example.test',
                                                   wrong_name='other.example.test'))
        self.publish_sts(('mx1.example.test',))


class MailReports(MailCase):

    def mailed_report(self):
        self.publish_rua('mailto:tls-rpt@reports.test')
        out = self.send(RCPT, message('tlsrpt-mail'))
        self.assertReply(out['data'], 250)
        self.mx1.wait_messages(1)
        return self.rua_mx.wait_messages(1, timeout=20)[0]

    def test_report_mailed_through_the_proxy(self):
        m = self.mailed_report()
        self.assertEqual(m.mail_from, CONTACT)
        self.assertEqual(m.rcpts, ['tls-rpt@reports.test'])
        self.assertEqual(m.tls_version, 'TLSv1.3')
        msg = email.message_from_bytes(m.data, policy=email.policy.default)
        self.assertEqual(msg.get_content_type(), 'multipart/report')
        self.assertEqual(msg.get_param('report-type'), 'tlsrpt')
        self.assertEqual(msg['TLS-Report-Domain'], DOMAIN)
        # §5.3: the submitter MUST be the domain of contact-info, not the org name.
        self.assertEqual(msg['TLS-Report-Submitter'], SUBMITTER)
        self.assertRegex(str(msg['Subject']), r'^Report Domain: example\.test '
                         r'Submitter: reporter\.test Report-ID: <.+>$')
        self.assertIsNotNone(msg['Message-ID'])
        self.assertIsNotNone(msg['Date'])
        parts = list(msg.iter_parts())
        self.assertEqual([p.get_content_type() for p in parts],
                         ['text/plain', 'application/tlsrpt+gzip'])
        att = parts[1]
        self.assertEqual(att['Content-Transfer-Encoding'], 'base64')
        # §5.1: sender!policy-domain!begin!end, sender the contact's domain.
        self.assertRegex(att.get_filename(),
                         r'^reporter\.test!example\.test!\d+!\d+\.json\.gz$')
        rep = self.validate(json.loads(gzip.decompress(att.get_content())))
        ok, bad, _ = self.totals([rep])
        self.assertEqual((ok, bad), (1, 0))
        # §5.3: the Subject's Report-ID is an RFC 5322 msg-id, the report's report-id.
        atom = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
        self.assertRegex(str(msg['Subject']), r' Report-ID: <%s@%s>$' % (atom, atom))
        self.assertIn('<%s>' % rep['report-id'], str(msg['Subject']))
        # The file name's begin and end timestamps are the report's date-range.
        begin, end = (int(t) for t in
                      att.get_filename()[:-len('.json.gz')].split('!')[2:4])
        self.assertEqual((epoch(rep['date-range']['start-datetime']),
                          epoch(rep['date-range']['end-datetime'])), (begin, end))
        pol = rep['policies'][0]['policy']
        self.assertEqual(pol['policy-type'], 'no-policy-found')
        self.assertEqual(pol['mx-host'], ['mx1.example.test'])
        self.assertLog(r'tlsrpt: example\.test: report .* sent to '
                       r'mailto:tls-rpt@reports\.test')

    def test_report_is_dkim_signed(self):
        """RFC 8460 §3: the report as received verifies, with the §5.3 fields signed
        (and over-signed: one more added breaks it); any change breaks it."""
        self.assertLog(r'tlsrpt: reports by mail are DKIM-signed: d=proxy\.test '
                       r's=tlsrpt2026 a=%s-sha256' % self.key_type)
        m = self.mailed_report()
        msg = email.message_from_bytes(m.data, policy=email.policy.compat32)
        sig = dkim.util.parse_tag_value(msg['DKIM-Signature'].encode())
        self.assertEqual(sig[b'a'], b'%s-sha256' % self.key_type.encode())
        self.assertEqual(sig[b'c'], b'relaxed/relaxed')
        self.assertNotIn(b'l', sig)  # §5.3: no body length limit
        self.assertEqual(sig[b'd'], DKIM_DOMAIN.encode())
        self.assertEqual(sig[b's'], DKIM_SELECTOR.encode())
        signed = [h.strip().lower() for h in sig[b'h'].decode().split(':')]
        for field in ('from', 'to', 'subject', 'date', 'message-id', 'content-type',
                      'mime-version', 'tls-report-domain', 'tls-report-submitter'):
            self.assertGreaterEqual(signed.count(field), 2, field)  # over-signed
        self.assertTrue(self.dkim_verify(m.data), 'signature does not verify')
        # Tampered copies: the report body, a signed field, an added From.
        body = m.data.replace(b'This is an aggregate TLS report',
                              b'This is an aggregate TLS rep0rt')
        self.assertNotEqual(body, m.data)
        self.assertFalse(self.dkim_verify(body))
        field = m.data.replace(b'TLS-Report-Domain: example.test',
                               b'TLS-Report-Domain: example.tesu')
        self.assertNotEqual(field, m.data)
        self.assertFalse(self.dkim_verify(field))
        self.assertFalse(self.dkim_verify(b'From: <attacker@evil.test>\r\n' + m.data))


    def test_reload_reads_the_key_again(self):
        """SIGHUP reads the key file again: one others may read is refused and the
        running configuration kept; once fixed, the next reload takes it."""
        signed = r'tlsrpt: reports by mail are DKIM-signed: d=proxy\.test'
        self.assertLog(signed)
        os.chmod(self.key_file, 0o644)
        self.proxy.reload()
        self.proxy.wait_log(r'tlsrpt\.dkim\.key_file: %s: mode 0644 lets other users read'
                            % re.escape(self.key_file))
        self.proxy.wait_log(r'reload of .* failed: keeping the running configuration')
        os.chmod(self.key_file, 0o600)
        self.proxy.reload()
        wait_until(lambda: len(re.findall(signed, self.proxy.log_text())) == 2, 10,
                   lambda: 'key not loaded again:\n%s' % self.proxy.log_text())


class MailReportsEd25519(MailReports):
    """The same with an Ed25519 key: ed25519-sha256 (RFC 8463)."""

    key_type = 'ed25519'


class MailDespiteTls:
    """RFC 8460 §5.3: "sending MTAs MUST deliver reports despite any TLS-related
    failures and SHOULD NOT include this SMTP session in the next report". example.test
    asks for its reports at mailto:tls-rpt@example.test, and its one MX (mx1) fails
    the policy of break_tls(): mail to it is deferred, its report is delivered there
    all the same (opportunistic TLS, policy=tlsrpt/may), and the report's own session
    is counted nowhere. The relaxed treatment cannot be had through the listener: the
    report's own envelope sent there is deferred like any message. A mixin of
    MailCase: break_tls() and `policy` come with each variant."""

    policy = None  # the policy name of the deferrals

    def break_tls(self):
        raise NotImplementedError

    def test_report_delivered_despite_policy(self):
        self.break_tls()
        self.publish_rua('mailto:tls-rpt@example.test')
        self.assertDeferred(self.send(RCPT, message('tlsrpt-broken')), 'mx1.example.test',
                            policy=self.policy)
        m = self.mx1.wait_messages(1, timeout=20)[0]
        self.assertEqual((m.mail_from, m.rcpts), (CONTACT, ['tls-rpt@example.test']))
        self.assertEqual(m.tls_version, 'TLSv1.3')  # STARTTLS offered: taken
        self.assertTrue(self.dkim_verify(m.data), 'signature does not verify')
        msg = email.message_from_bytes(m.data, policy=email.policy.default)
        att = list(msg.iter_parts())[1]
        rep = self.validate(json.loads(gzip.decompress(att.get_content())))
        ok, bad, details = self.totals([rep])
        self.assertEqual((ok, bad), (0, 1), rep)  # the deferral, not the report
        self.assertEqual(details[0]['receiving-mx-hostname'], 'mx1.example.test')
        self.assertLog(r'policy: example\.test: TLS report delivery \(RFC 8460 section '
                       r'5\.3\): the policy above is not enforced')
        self.assertLog(r'(?m)tlsrpt: to=<tls-rpt@example\.test>, relay=%s, .*status=sent '
                       r'\(250 .*\), tls=TLSv1\.3/\w+, policy=tlsrpt/may$'
                       % self.relay(self.mx1))
        self.assertLog(r'tlsrpt: example\.test: report \S+ sent to '
                       r'mailto:tls-rpt@example\.test')
        # Two more periods: had the report's session been counted, a second report
        # would be on its way by now (a report loop).
        time.sleep(2 * self.interval + 1.5)
        self.assertEqual([r for r in self.stored() if r['domain'] == DOMAIN], [])
        self.assertEqual(len(self.mx1.messages), 1)
        self.assertEqual(len(re.findall(r'report \S+ sent to mailto:',
                                        self.proxy.log_text())), 1)
        # A message with the report's envelope, through the listener: still deferred,
        # and counted.
        out = self.send('tls-rpt@example.test', message('not-a-report'),
                        mail_from=CONTACT)
        self.assertDeferred(out, 'mx1.example.test', policy=self.policy,
                            rcpt='tls-rpt@example.test')
        self.assertEqual(len(self.mx1.messages), 1)
        self.wait_stored(1)


class MailDespiteStsEnforce(MailDespiteTls, MailCase):
    """MTA-STS enforce listing mx1, whose certificate names another host."""

    policy = 'mta-sts/enforce'

    def break_tls(self):
        self.mx1_fails_sts_enforce()


class MailDespiteDane(MailDespiteTls, MailCase):
    """DANE (every answer DNSSEC-secure): mx1's TLSA record is for another key."""

    policy = 'table/dane'

    def setup_fixtures(self):
        super().setup_fixtures()
        self.dns.ad = True
        self.proxy_extra = deep_merge(self.proxy_extra,
                                      {'policy': {'table': {DOMAIN: 'dane'}}})

    def break_tls(self):
        other = self.pki.issue('unrelated.example.test')[0]
        self.dns.add('_%d._tcp.mx1.example.test' % self.mx_port, 'TLSA',
                     self.pki.tlsa(other, 3, 1, 1))


class MailByCli(MailCase):
    """`tlsrpt send` delivers a mailed report itself, under the same rules: the daemon
    need not run."""

    interval = 3600

    def test_cli_mails_report_despite_policy(self):
        self.mx1_fails_sts_enforce()
        self.publish_rua('mailto:tls-rpt@example.test')
        self.assertDeferred(self.send(RCPT, message('tlsrpt-cli')), 'mx1.example.test',
                            policy='mta-sts/enforce')
        self.wait_stored(1)
        self.proxy.stop()
        r = self.cli_send()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('1 report(s) sent, 0 failed', r.stdout)
        self.assertRegex(r.stderr, r'tlsrpt: to=<tls-rpt@example\.test>, relay=%s, '
                         r'.*status=sent \(250 .*policy=tlsrpt/may' % self.relay(self.mx1))
        m = self.mx1.wait_messages(1)[0]
        self.assertEqual(m.rcpts, ['tls-rpt@example.test'])
        self.assertTrue(self.dkim_verify(m.data), 'signature does not verify')
        self.assertEqual(self.stored(), [])


class MailReportsWithoutKey(TlsRptCase):
    """No tlsrpt.dkim: a mailto: rua is skipped (an unsigned report would break RFC 8460
    §3), said at start and for each report; the https: rua of the same record works."""

    interval = 2

    def setup_fixtures(self):
        super().setup_fixtures()
        self.rua_mx = self.add_mx('mx', '127.0.0.4', domain='reports.test')

    def test_mailto_skipped_https_sent(self):
        self.assertLog(r'tlsrpt: no tlsrpt\.dkim key: reports to mailto: rua will not be '
                       r'sent')
        self.publish_rua('mailto:tls-rpt@reports.test', self.rua_https())
        out = self.send(RCPT, message('tlsrpt-nokey'))
        self.assertReply(out['data'], 250)
        self.mx1.wait_messages(1)
        wait_until(lambda: self.https.posts, 20, 'no report POSTed')
        ok, bad, _ = self.totals(self.posted_reports())
        self.assertEqual((ok, bad), (1, 0))
        self.assertLog(r'tlsrpt: example\.test: report \S+ to mailto:tls-rpt@reports\.test '
                       r'skipped: no tlsrpt\.dkim key to sign it')
        self.assertLog(r'tlsrpt: example\.test: report \S+ sent to https://')
        self.assertNoMail(self.rua_mx)


class DkimKeyFile(TestBase):
    """The key file is checked when the config loads: --check-config and the start
    refuse it, naming file:line:col and why."""

    start_proxy = False

    def check_config(self, key, user=None):
        from harness.proxy import Proxy
        p = Proxy(os.path.dirname(key), self.dns.port, self.mx_port, self.pki.ca_file,
                  start=False, extra={'tlsrpt': {'enabled': 'yes', 'dkim': {
                      'domain': DKIM_DOMAIN, 'selector': DKIM_SELECTOR,
                      'key_file': key}}})
        os.chmod(p.config_path, 0o644)
        cmd = [proxy_binary(), '--check-config', p.config_path]
        if user:
            cmd = ['setpriv', '--reuid=%d' % user, '--regid=%d' % user, '--clear-groups'] + cmd
        return p, subprocess.run(cmd, capture_output=True, text=True, timeout=30)

    def test_key_checks(self):
        d = tempfile.mkdtemp(prefix='sp-dkim-')
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o755)  # the unprivileged reader below gets to the files
        good, _ = make_dkim_key(d, 'ed25519')
        p, r = self.check_config(good)
        self.assertEqual((r.returncode, r.stdout), (0, 'configuration OK\n'), r.stderr)
        world, _ = make_dkim_key(d, 'rsa', name='world.key', mode=0o644)
        p, r = self.check_config(world)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r'^%s:\d+:\d+: tlsrpt\.dkim\.key_file: %s: mode 0644 '
                         r'lets other users read' % (re.escape(p.config_path),
                                                     re.escape(world)))
        with self.assertRaisesRegex(AssertionError, 'mode 0644'):
            p.start()  # the daemon refuses to start too
        if os.geteuid() == 0:  # a reader without the right to the key: say who reads
            p, r = self.check_config(good, user=65534)
            self.assertEqual(r.returncode, 1)
            self.assertIn('tlsrpt.dkim.key_file: cannot read %s: Permission denied '
                          '(reading as uid 65534, gid 65534)' % good, r.stderr)


if __name__ == '__main__':
    main()
