"""The command line (--check-config, --version), JSON logs, and SIGTERM draining, as
an operator sees them."""
import json
import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness.proxy import proxy_binary  # noqa: E402
from harness.util import TestBase, proxy_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*args):
    return subprocess.run([proxy_binary(), *args], capture_output=True, text=True,
                          timeout=30)


class CommandLine(unittest.TestCase):
    def write(self, name, text):
        import tempfile
        d = tempfile.mkdtemp(prefix='sp-cli-')
        path = os.path.join(d, name)
        with open(path, 'w') as f:
            f.write(text)
        return path

    def test_example_config_is_ok(self):
        r = run('--check-config', os.path.join(REPO, 'proxy.yaml.example'))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), 'configuration OK')

    def test_every_error_reported_with_position(self):
        path = self.write('bad.yaml', 'listen:\n  - 127.0.0.1:99999\nbogus: 1\n'
                          'outbound:\n  tls:\n    min_protocol: TLSv1.1\n')
        r = run('--check-config', path)
        self.assertNotEqual(r.returncode, 0)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 3, r.stderr)
        self.assertRegex(lines[0], r'^%s:2:\d+: listen' % path)
        self.assertRegex(lines[1], r'^%s:3:1: bogus: unknown key' % path)
        self.assertRegex(lines[2], r'^%s:6:\d+: outbound\.tls\.min_protocol: ' % path)
        self.assertNotIn('configuration OK', r.stdout)

    def test_non_forward_secret_ciphers_refused(self):
        path = self.write('rsa.yaml', 'outbound:\n  tls:\n    ciphers: AES128-GCM-SHA256\n')
        r = run('--check-config', path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('non-forward-secret suite AES128-GCM-SHA256', r.stderr)

    def test_version_and_help(self):
        r = run('--version')
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r'^starttls-proxy \d+\.\d+\.\d+')
        r = run('--help')
        self.assertEqual(r.returncode, 0)
        self.assertIn('--check-config', r.stdout)
        self.assertNotEqual(run('--bogus').returncode, 0)


def send_one(test, rcpt='bob@example.test'):
    c = test.begin_transaction(rcpt=rcpt, data=True)
    c.send_raw(b'Subject: t\r\n\r\nbody\r\n.\r\n')
    return c


class JsonLogs(TestBase):
    @proxy_config({'log': {'format': 'json'}})
    def test_delivery_is_one_json_object(self):
        c = send_one(self)
        self.assertEqual(c.read_reply()[0], 250)
        self.proxy.wait_log(r'"event":"delivery"')
        events = [json.loads(line) for line in self.proxy.log_text().splitlines()
                  if line.startswith('{')]
        self.assertTrue(events)
        for e in events:
            self.assertIn('time', e)
            self.assertIn('level', e)
        d = [e for e in events if e.get('event') == 'delivery'][0]
        self.assertEqual(d['to'], 'bob@example.test')
        self.assertEqual(d['from'], 'alice@client.test')
        self.assertEqual(d['status'], 'sent')
        self.assertEqual(d['tls'], 'TLSv1.3')
        self.assertEqual(d['dsn'], '2.0.0')
        self.assertRegex(d['relay'], r'^mx1\.example\.test\[127\.0\.0\.2\]:\d+$')
        self.assertTrue(d['reply'].startswith('250 '))
        tls = [e for e in events if 'TLS connection established' in e.get('msg', '')]
        self.assertTrue(tls, events)


class Draining(TestBase):
    def test_sigterm_lets_open_transaction_finish(self):
        """SIGTERM while a transaction is open: the MTA still gets the MX's 250, then
        421; idle sessions get 421 at once; the process exits 0."""
        idle = self.client()
        busy = self.client()
        self.assertEqual(busy.cmd('MAIL FROM:<a@client.test>')[0], 250)
        self.assertEqual(busy.cmd('RCPT TO:<b@example.test>')[0], 250)
        self.proxy.proc.send_signal(signal.SIGTERM)
        code, lines = idle.read_reply()
        self.assertEqual(code, 421, lines)
        self.assertEqual(busy.cmd('DATA')[0], 354)
        busy.send_raw(b'Subject: t\r\n\r\nbody\r\n.\r\n')
        self.assertEqual(busy.read_reply()[0], 250)
        self.assertEqual(busy.read_reply()[0], 421)
        self.assertEqual(self.proxy.proc.wait(10), 0)
        self.assertEqual(len(self.mx1.messages), 1)
        self.proxy.proc = None  # stopped here, not by the cleanup
        self.assertNotRegex(self.proxy.log_text(), r'Sanitizer|runtime error:')


if __name__ == '__main__':
    unittest.main()
