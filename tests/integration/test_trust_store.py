#!/usr/bin/python3
"""One trust store: MTA-STS policy fetches and TLS-RPT https: POSTs trust what MX
connections trust unless they have their own key. The order, first match wins: the
specific key (mta_sts.ca_file, tlsrpt.ca_file, cache.redis.ca_file) >
outbound.tls.ca_file / ca_path > $SSL_CERT_FILE / $SSL_CERT_DIR > the system store.

Fixtures: mx1.example.test (127.0.0.2, STARTTLS, a certificate from the test CA); the
HTTPS server on loopback serving mta-sts.example.test and reports.example.test with a
certificate from the test CA. outbound.tls.ca_file is the test CA (the harness's
base) and neither mta_sts.ca_file nor tlsrpt.ca_file is set, unless a test says
otherwise. An enforce policy that lists no MX of example.test shows that a policy
was fetched and enforced (451 4.7.5); delivery at may shows that it was not.
"""

import os
import shutil
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestBase, main, message, wait_until  # noqa: E402
from harness.httpsserver import policy_text  # noqa: E402
from harness.pki import TestPKI  # noqa: E402
from harness.proxy import deep_merge, proxy_binary  # noqa: E402

DOMAIN = 'example.test'
RCPT = 'rcpt@example.test'
REPORT_HOST = 'reports.example.test'
UNLISTED = policy_text(mode='enforce', mx=('mx9.example.test',))


class TrustCase(TestBase):

    def setup_fixtures(self):
        self.mx1 = self.add_mx('mx1', '127.0.0.2')
        self.https = self.add_policy_server('mta-sts.%s' % DOMAIN, REPORT_HOST,
                                            posts=['/tlsrpt'])
        self.dns.add('_mta-sts.%s' % DOMAIN, 'TXT', 'v=STSv1; id=1')
        self.https.set_policy(DOMAIN, UNLISTED)
        # Another CA, which signed nothing the fixtures serve.
        self.other_pki = TestPKI(os.path.join(self.tmpdir, 'other'), ca_name='Other CA')

    def start_the_proxy(self, extra=None):
        base = {'mta_sts': {'enabled': 'yes', 'port': self.https.port,
                            'fetch_timeout': 2, 'allow_private_addresses': 'yes'},
                'tlsrpt': {'enabled': 'yes', 'interval': 3600,
                           'contact': 'tlsrpt@proxy.test',
                           'allow_private_addresses': 'yes'}}
        return super().start_the_proxy(deep_merge(base, extra))

    def start_with_env(self, env, extra=None):
        """Starts the proxy with ENV added to its environment (restored afterwards)."""
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            return self.start_the_proxy(extra)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def assertEnforced(self):
        """The unlisting enforce policy was fetched and applied: 451 4.7.5."""
        out = self.send(RCPT)
        self.assertReply(out['rcpt'][0], 451, '4.7.5')
        self.assertEqual(self.https.fetches(DOMAIN), 1)
        self.assertEqual(self.mx1.messages, [])

    def assertUntrustedPolicyHost(self):
        """The policy host's certificate did not validate: no policy, delivered at may,
        the failure logged as the policy host's certificate (sts-webpki-invalid)."""
        out = self.send(RCPT)
        self.assertReply(out['data'], 250)
        self.mx1.wait_messages(1)
        self.assertLog(r'policy: example\.test: .*sts=unavailable '
                       r'\(policy host certificate: ')
        self.assertEqual(self.https.fetches(DOMAIN), 0)

    def counted(self):
        path = os.path.join(self.proxy.state_dir, 'policies.sqlite3')
        if not os.path.exists(path):
            return False
        db = sqlite3.connect('file:%s?mode=ro' % path, uri=True, timeout=5)
        try:
            return db.execute('SELECT count(*) FROM tlsrpt_count').fetchone()[0] > 0
        except sqlite3.OperationalError:
            return False
        finally:
            db.close()

    def tlsrpt_send(self, env=None):
        """One session counted, then `tlsrpt send` with ENV added: the CompletedProcess."""
        self.dns.add('_smtp._tls.%s' % DOMAIN, 'TXT', 'v=TLSRPTv1; rua=https://%s:%d/tlsrpt'
                     % (REPORT_HOST, self.https.port))
        out = self.send(RCPT, message('trust-store'))
        self.assertReply(out['data'], 250)
        wait_until(self.counted, 10, 'the session was never counted')
        self.proxy.stop()
        return subprocess.run([proxy_binary(), '-c', self.proxy.config_path, 'tlsrpt',
                               'send'], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=60, env=dict(os.environ, **(env or {})))


class PolicyFetch(TrustCase):
    start_proxy = False

    def test_outbound_ca_file_trusts_policy_host(self):
        """Only outbound.tls.ca_file names the CA: the policy is fetched and enforced
        (it used to fail as sts-webpki-invalid against libcurl's own bundle)."""
        self.start_the_proxy()
        self.assertEnforced()

    def test_specific_ca_file_wins(self):
        """mta_sts.ca_file names another CA: the policy host is untrusted, although
        outbound.tls.ca_file would have trusted it."""
        self.start_the_proxy({'mta_sts': {'ca_file': self.other_pki.ca_file}})
        self.assertUntrustedPolicyHost()

    def test_specific_ca_file_same_ca(self):
        """mta_sts.ca_file alone, outbound.tls with another CA: the specific key is
        used for the fetch (the MX is then Untrusted, which the policy refuses)."""
        self.start_the_proxy({'mta_sts': {'ca_file': self.pki.ca_file},
                              'outbound': {'tls': {'ca_file': self.other_pki.ca_file}}})
        self.assertEnforced()

    def test_outbound_ca_path_trusts_policy_host(self):
        """outbound.tls.ca_path (a hashed directory) instead of ca_file."""
        capath = os.path.join(self.tmpdir, 'capath')
        os.makedirs(capath)
        shutil.copy(self.pki.ca_file, capath)
        subprocess.run(['openssl', 'rehash', capath], check=True)
        self.start_the_proxy({'outbound': {'tls': {'ca_file': None, 'ca_path': capath}}})
        self.assertEnforced()

    def test_ssl_cert_file_trusts_policy_host_and_mx(self):
        """No trust key at all: $SSL_CERT_FILE applies to the policy fetch as it does
        to MX certificates (libcurl alone would ignore it)."""
        self.https.set_policy(DOMAIN, policy_text(mode='enforce', mx=('mx1.example.test',)))
        self.start_with_env({'SSL_CERT_FILE': self.pki.ca_file},
                            {'outbound': {'tls': {'ca_file': None}}})
        out = self.send(RCPT)
        self.assertReply(out['data'], 250)
        self.mx1.wait_messages(1)
        self.assertLog(r'Verified TLS connection established to mx1\.example\.test')
        self.assertLog(r'to=<rcpt@example\.test>, .*status=sent .*, policy=mta-sts/enforce')

    def test_system_store_refuses_test_ca(self):
        """No trust key and no environment: the system store, which lacks the test
        CA."""
        env = {k: v for k, v in os.environ.items()
               if k not in ('SSL_CERT_FILE', 'SSL_CERT_DIR')}
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            self.start_the_proxy({'outbound': {'tls': {'ca_file': None}}})
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.assertUntrustedPolicyHost()


class ReportPost(TrustCase):
    """The report is counted by the daemon, then sent by `starttls-proxy tlsrpt send`
    with the same configuration."""
    start_proxy = False

    def setup_fixtures(self):
        super().setup_fixtures()
        # No MTA-STS here: the session counts as no-policy-found.
        self.dns.remove('_mta-sts.%s' % DOMAIN, 'TXT')

    def test_outbound_ca_file_trusts_report_host(self):
        self.start_the_proxy()
        r = self.tlsrpt_send()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('1 report(s) sent, 0 failed', r.stdout)
        self.assertEqual(len(self.https.posts), 1)

    def test_specific_ca_file_wins(self):
        self.start_the_proxy({'tlsrpt': {'ca_file': self.other_pki.ca_file}})
        r = self.tlsrpt_send()
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(self.https.posts, [])

    def test_ssl_cert_file_trusts_report_host(self):
        self.start_with_env({'SSL_CERT_FILE': self.pki.ca_file},
                            {'outbound': {'tls': {'ca_file': None}}})
        r = self.tlsrpt_send({'SSL_CERT_FILE': self.pki.ca_file})
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(len(self.https.posts), 1)


if __name__ == '__main__':
    main()
