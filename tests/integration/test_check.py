#!/usr/bin/python3
"""`starttls-proxy -c FILE check DOMAIN [--json]`: the policy, DNS facts and a live
STARTTLS probe of every MX, without sending a message.

Fixtures as in TestBase (mx1.example.test on 127.0.0.2 with a CA-signed certificate);
the proxy daemon is not started: the command reads the same configuration file. Exit 0
when mail would be delivered, 1 with the reason otherwise, 2 on a usage or
configuration error.
"""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Proxy, TestBase, main  # noqa: E402
from harness.httpsserver import policy_text  # noqa: E402


class CheckCase(TestBase):
    start_proxy = False

    def check(self, domain='example.test', extra=None, as_json=False, timeout=30):
        """Runs check; returns (exit status, stdout, stderr). JSON output is parsed."""
        p = Proxy(self.tmpdir, self.dns.port, self.mx_port, self.pki.ca_file,
                  extra=extra, start=False)
        argv = [p.binary, '-c', p.config_path, 'check', domain]
        if as_json:
            argv.append('--json')
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout)
        out, err = r.stdout.decode(), r.stderr.decode()
        self.assertNotRegex(err, r'AddressSanitizer|LeakSanitizer|runtime error:')
        self.assertIn(r.returncode, (0, 1, 2), 'crashed? stderr:\n%s' % err)
        if as_json:
            try:
                out = json.loads(out)
            except ValueError:
                self.fail('not JSON: %r\nstderr:\n%s' % (out, err))
        return r.returncode, out, err

    def assertNoMail(self, mx):
        """The probe said EHLO and QUIT but never MAIL."""
        cmds = [c.upper() for c in mx.all_commands()]
        self.assertTrue(any(c.startswith('EHLO') for c in cmds), cmds)
        self.assertFalse(any(c.startswith(('MAIL', 'RCPT', 'DATA')) for c in cmds), cmds)
        self.assertEqual(mx.messages, [])

    def tlsa_for(self, cert):
        self.dns.add('_%d._tcp.mx1.example.test' % self.mx_port, 'TLSA',
                     self.pki.tlsa(cert, 3, 1, 1))


class GoodMx(CheckCase):

    def test_may_human(self):
        """Default level may: the probe's TLS summary and verdict are shown, exit 0."""
        rc, out, err = self.check()
        self.assertEqual(rc, 0, out + err)
        self.assertIn('policy table: no entry (default level may)', out)
        self.assertIn('10 mx1.example.test [127.0.0.2]', out)
        self.assertIn('MX RRset: DNSSEC insecure', out)
        self.assertRegex(out, r'mx1\.example\.test\[127\.0\.0\.2\]:%d: OK: Trusted TLS: '
                         r'TLSv1\.3 with cipher \S+' % self.mx_port)
        self.assertIn('CN = mx1.example.test', out.replace('CN=', 'CN = '))
        self.assertRegex(out, r'result: deliverable via mx1\.example\.test\[127\.0\.0\.2\]'
                         r':%d \(tls=TLSv1\.3/Trusted, policy=default/may\)' % self.mx_port)
        self.mx1.wait_for(lambda: any(c.upper() == 'QUIT'
                                      for c in self.mx1.all_commands()))
        self.assertNoMail(self.mx1)

    def test_dane_json(self):
        """DANE-EE match: Verified, the matched record and the TLSA RRset in JSON."""
        self.dns.ad = True
        self.tlsa_for(self.mx1.cfg['starttls'][0])
        rc, out, err = self.check(extra={'outbound': {'tls': {'default_level': 'dane'}}},
                                  as_json=True)
        self.assertEqual(rc, 0, '%s\n%s' % (out, err))
        self.assertTrue(out['deliverable'])
        self.assertEqual(out['domain'], 'example.test')
        self.assertIsNone(out['policy_table'])
        self.assertEqual(out['dns'], {'status': 'ok', 'reason': None, 'mx_secure': True,
                                      'ad_trusted': True, 'implicit_mx': False})
        host = out['hosts'][0]
        self.assertEqual((host['name'], host['pref'], host['addresses']),
                         ('mx1.example.test', 10, ['127.0.0.2']))
        self.assertEqual((host['tlsa'], host['level'], host['auth'], host['policy']),
                         ('found', 'dane', 'dane', 'dane'))
        self.assertTrue(host['tls_required'])
        self.assertRegex(host['tlsa_records'][0], r'^3 1 1 [0-9a-f]{16}')
        probe = out['probes'][0]
        self.assertEqual((probe['ok'], probe['tls'], probe['verdict']),
                         (True, 'TLSv1.3', 'Verified'))
        self.assertRegex(probe['matched'], r'^TLSA record 3 1 1 |^3 1 1 ')
        self.assertIn('mx1.example.test', probe['subject'])
        self.assertIn('deliverable via', out['result'])
        self.assertNoMail(self.mx1)

    def test_mta_sts_shown(self):
        """The TXT id, the policy in force and the cached copy."""
        https = self.add_policy_server('mta-sts.example.test')
        self.dns.add('_mta-sts.example.test', 'TXT', 'v=STSv1; id=20261125')
        https.set_policy('example.test', policy_text(mx=('mx1.example.test',
                                                          '*.backup.test')))
        sts = {'mta_sts': {'enabled': 'yes', 'ca_file': self.pki.ca_file,
                           'port': https.port, 'fetch_timeout': 2,
                           'allow_private_addresses': 'yes'}}
        rc, out, err = self.check(extra=sts)
        self.assertEqual(rc, 0, out + err)
        self.assertIn('MTA-STS: TXT _mta-sts.example.test: found (id=20261125)', out)
        self.assertIn('policy: mode enforce, max_age 86400, mx: mx1.example.test '
                      '*.backup.test', out)
        self.assertRegex(out, r'cached: id=20261125 fetched \S+Z expires \S+Z')
        self.assertIn('policy=mta-sts/enforce', out)
        rc, js, err = self.check(extra=sts, as_json=True)
        self.assertEqual(rc, 0, err)
        self.assertEqual(js['mta_sts']['id'], '20261125')
        self.assertEqual(js['mta_sts']['policy']['mode'], 'enforce')
        self.assertEqual(https.requests['example.test'], 1)  # second run: from the cache


class Failures(CheckCase):

    def test_dane_mismatch(self):
        """TLSA for another key: the probe fails with the reason, exit 1, 4.7.5."""
        self.dns.ad = True
        self.tlsa_for(self.pki.issue('unrelated.example.test')[0])
        extra = {'outbound': {'tls': {'default_level': 'dane'}}}
        rc, out, err = self.check(extra=extra)
        self.assertEqual(rc, 1, out + err)
        self.assertRegex(out, r'mx1\.example\.test\[127\.0\.0\.2\]:%d: FAILED: .*'
                         r'not verified \(dane\)' % self.mx_port)
        self.assertIn('result: not deliverable: 451 4.7.5 example.test: no MX host '
                      'passed the TLS policy', out)
        rc, js, err = self.check(extra=extra, as_json=True)
        self.assertEqual(rc, 1)
        self.assertFalse(js['deliverable'])
        self.assertFalse(js['probes'][0]['ok'])
        self.assertIn('TLSA', js['probes'][0]['reason'])
        self.assertIn('451 4.7.5', js['result'])
        self.assertNoMail(self.mx1)

    def test_no_starttls_under_encrypt(self):
        """Table entry encrypt, MX without STARTTLS: exit 1, the table entry shown."""
        self.mx1.configure(starttls=None)
        extra = {'policy': {'table': {'example.test': 'encrypt'}}}
        rc, out, err = self.check(extra=extra)
        self.assertEqual(rc, 1, out + err)
        self.assertRegex(out, r'policy table: example\.test -> encrypt \(line \d+\)')
        self.assertIn('level encrypt, TLS required; policy=table/encrypt', out)
        self.assertIn('TLS is required, but was not offered by host', out)
        self.assertIn('451 4.7.5', out)
        self.assertIn('not consulted', out)  # MTA-STS: the table decides
        rc, js, err = self.check(extra=extra, as_json=True)
        self.assertEqual(rc, 1)
        self.assertEqual(js['policy_table']['level'], 'encrypt')
        self.assertNoMail(self.mx1)

    def test_nxdomain(self):
        rc, out, err = self.check('nowhere.test')
        self.assertEqual(rc, 1, out + err)
        self.assertIn('MX: domain does not exist', out)
        self.assertIn('result: not deliverable: 550 5.1.2 nowhere.test: domain not found',
                      out)
        rc, js, err = self.check('nowhere.test', as_json=True)
        self.assertEqual(rc, 1)
        self.assertEqual(js['dns']['status'], 'domain does not exist')
        self.assertEqual((js['hosts'], js['probes']), ([], []))

    def test_unreachable_mx(self):
        """An MX address where nothing listens: 4.4.1, not a policy failure."""
        self.dns.add('down.test', 'MX', (10, 'mx.down.test'))
        self.dns.add('mx.down.test', 'A', '127.0.0.9')
        rc, out, err = self.check('down.test')
        self.assertEqual(rc, 1, out + err)
        self.assertRegex(out, r'mx\.down\.test\[127\.0\.0\.9\]:%d: FAILED: connect failed'
                         % self.mx_port)
        self.assertIn('451 4.4.1 down.test: no MX host reachable', out)

    def test_bad_arguments(self):
        rc, out, err = self.check('bad..name')
        self.assertEqual(rc, 2)
        self.assertIn('not a domain name', err)


class Packaging(CheckCase):

    def test_container_config_is_valid(self):
        """The container image's configuration passes --check-config."""
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), 'packaging', 'proxy.container.yaml')
        p = Proxy(self.tmpdir, self.dns.port, self.mx_port, self.pki.ca_file, start=False)
        r = subprocess.run([p.binary, '--check-config', path], capture_output=True,
                           timeout=30)
        self.assertEqual((r.returncode, r.stdout), (0, b'configuration OK\n'), r.stderr)


if __name__ == '__main__':
    main()
