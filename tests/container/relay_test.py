"""The container image, run as an admin would: a relay over STARTTLS to a loopback MX,
a non-root process, SIGTERM (podman stop) draining an open transaction.

Run by tests/container/run.sh (make test-container), which builds the image and sets
    SP_PODMAN   the podman command with its global options (shell words)
    SP_IMAGE    the image under test
    SP_LABEL    a label put on every container, removed by run.sh at exit
The container uses --network host, so it reaches the fixtures of
tests/integration/harness (DnsServer, MxServer, TestPKI) on loopback. Its own
configuration is mounted over /etc/starttls-proxy/proxy.yaml, the test CA beside it.
"""

import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..',
                                'integration'))
from harness import Client, TestBase, free_port, message, to_yaml, wait_until  # noqa: E402

PODMAN = shlex.split(os.environ.get('SP_PODMAN', 'podman'))
IMAGE = os.environ.get('SP_IMAGE', 'localhost/starttls-proxy:latest')
LABEL = os.environ.get('SP_LABEL', 'starttls-proxy-test')
UID = 10025            # the Dockerfile's starttls-proxy user
GRACE = 40             # podman stop -t: compose.yaml's stop_grace_period
HEALTH_PORT = 9025     # the HEALTHCHECK asks 127.0.0.1:9025 (metrics.listen)


def podman(*args, check=True, timeout=120):
    """Runs podman ARGS; returns the CompletedProcess (text). AssertionError with
    podman's output when it fails and CHECK."""
    p = subprocess.run(PODMAN + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError('podman %s: status %d\n%s%s' % (
            ' '.join(args), p.returncode, p.stdout, p.stderr))
    return p


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(('127.0.0.1', port))
            return True
        except OSError:
            return False


class Container(TestBase):
    start_proxy = False

    def setUp(self):
        super().setUp()
        self.name = 'sp-test-%d-%s' % (os.getpid(), self._testMethodName)
        self.port = free_port()
        # The image's HEALTHCHECK is fixed to port 9025: checked when it is free here.
        self.health = port_free(HEALTH_PORT)
        config = {
            'hostname': 'proxy.test',
            'listen': ['127.0.0.1:%d' % self.port],
            'dns': {'servers': ['127.0.0.1:%d' % self.dns.port], 'timeout': 1, 'tries': 1},
            'outbound': {'port': self.mx_port, 'helo_name': 'proxy.test',
                         'tls': {'ca_file': '/etc/starttls-proxy/ca.pem'}},
            'state_dir': '/var/lib/starttls-proxy',
            'log': {'format': 'postfix', 'level': 'info'},
        }
        if self.health:
            config['metrics'] = {'listen': '127.0.0.1:%d' % HEALTH_PORT}
        cfg = os.path.join(self.tmpdir, 'proxy.yaml')
        with open(cfg, 'w') as f:
            f.write(to_yaml(config) + '\n')
        os.chmod(cfg, 0o644)        # read by uid 10025 in the container
        os.chmod(self.pki.ca_file, 0o644)
        self.addCleanup(self._remove)
        podman('run', '-d', '--name', self.name, '--label', LABEL, '--network', 'host',
               '--log-driver', 'k8s-file', '--stop-timeout', str(GRACE),
               '-v', '%s:/etc/starttls-proxy/proxy.yaml:ro' % cfg,
               '-v', '%s:/etc/starttls-proxy/ca.pem:ro' % self.pki.ca_file, IMAGE)

        def ready():
            if self.state('{{.State.Running}}') != 'true':
                raise AssertionError('container exited during start-up (status %s); '
                                     'log:\n%s' % (self.state('{{.State.ExitCode}}'),
                                                   self.logs()))
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=1):
                    return True
            except OSError:
                return False
        wait_until(ready, 30, lambda: 'proxy in the container not listening on %d '
                   'after 30 s; log:\n%s' % (self.port, self.logs()))

    def state(self, fmt):
        return podman('inspect', '-f', fmt, self.name).stdout.strip()

    def logs(self):
        p = podman('logs', self.name, check=False)
        return p.stdout + p.stderr

    def wait_log(self, regex, timeout=10):
        rx = re.compile(regex)
        return wait_until(lambda: rx.search(self.logs()), timeout,
                          lambda: 'container log never matched %r; log:\n%s'
                          % (regex, self.logs()))

    def _remove(self):
        if self._failed():
            sys.stderr.write('\n---- container log (%s) ----\n%s---- end ----\n'
                             % (self.id(), self.logs()))
        podman('rm', '-f', '-v', '-t', '0', self.name, check=False)

    def stop(self):
        """podman stop; returns (seconds it took, exit code)."""
        t = time.monotonic()
        podman('stop', '-t', str(GRACE), self.name, timeout=GRACE + 30)
        return time.monotonic() - t, int(self.state('{{.State.ExitCode}}'))

    def client(self, greet=True, ehlo='client.test', **kw):
        c = Client(self.port, **kw)
        self.addCleanup(c.close)
        if greet:
            self.assertEqual(c.read_reply()[0], 220)
            self.assertEqual(c.cmd('EHLO %s' % ehlo)[0], 250)
        return c

    # ---- the tests ------------------------------------------------------------------
    def test_relay_over_starttls_as_non_root(self):
        """A message reaches the MX over TLS 1.3, with a Postfix-style log line; the
        proxy runs as uid 10025 inside the container and seen from the host; the
        HEALTHCHECK passes; podman stop exits 0."""
        c = self.client()
        out = c.send_message('alice@client.test', ['bob@example.test'],
                             message('through the container', to='bob@example.test'))
        self.assertReply(out['data'], 250)
        c.cmd('QUIT')
        wait_until(lambda: len(self.mx1.messages) == 1, 10, 'no message at the MX')
        msg = self.mx1.messages[0]
        self.assertEqual(msg.tls_version, 'TLSv1.3')
        self.assertEqual(msg.rcpts, ['bob@example.test'])
        self.assertIn(b'Subject: through the container', msg.data)
        self.wait_log(r'to=<bob@example\.test>, relay=mx1\.example\.test\[127\.0\.0\.2\]'
                      r':%d, .*status=sent' % self.mx_port)
        self.wait_log(r'TLS connection established to mx1\.example\.test.*TLSv1\.3')

        self.assertEqual(podman('exec', self.name, 'id', '-u').stdout.strip(), str(UID))
        self.assertEqual(podman('exec', self.name, 'id', '-un').stdout.strip(),
                         'starttls-proxy')
        pid = int(self.state('{{.State.Pid}}'))
        with open('/proc/%d/status' % pid) as f:
            uids = [line.split()[1:] for line in f if line.startswith('Uid:')][0]
        self.assertEqual(uids, [str(UID)] * 4, 'real, effective, saved, fs uid on the host')
        top = podman('top', self.name, 'user', 'huser', 'args').stdout
        self.assertRegex(top, r'starttls-proxy\s+%d\s+/usr/local/bin/starttls-proxy' % UID)

        if self.health:
            podman('healthcheck', 'run', self.name)
        else:
            sys.stderr.write('\n  port %d busy on this host: HEALTHCHECK not run\n'
                             % HEALTH_PORT)

        took, code = self.stop()
        self.assertEqual(code, 0, self.logs())
        self.assertLess(took, 10, 'an idle proxy stops at once')
        self.wait_log(r'all sessions closed, exiting')

    def test_stop_drains_open_transaction(self):
        """podman stop (SIGTERM) while a transaction is open: an idle session gets 421
        at once, the open one still delivers (the MX answers its dot 1 s late) and gets
        the MX's 250 before its 421; the proxy exits 0 well inside the grace period
        and says so in its log."""
        self.mx1.configure(delay_at=('data_end', 1))
        idle = self.client()
        busy = self.client()
        self.assertEqual(busy.cmd('MAIL FROM:<alice@client.test>')[0], 250)
        self.assertEqual(busy.cmd('RCPT TO:<bob@example.test>')[0], 250)

        result = {}

        def stop():
            try:
                result['stop'] = self.stop()
            except BaseException as e:  # reported by the main thread
                result['error'] = e
            result['t'] = time.monotonic()
        stopper = threading.Thread(target=stop, daemon=True)
        stopper.start()
        self.wait_log(r'Terminated: stopping, 2 sessions open')
        self.assertEqual(idle.read_reply()[0], 421)

        self.assertEqual(busy.cmd('DATA')[0], 354)
        busy.send_raw(message('in flight', to='bob@example.test') + b'.\r\n')
        self.assertEqual(busy.read_reply(timeout=15)[0], 250)
        t_250 = time.monotonic()
        self.assertEqual(busy.read_reply()[0], 421)

        stopper.join(GRACE + 40)
        self.assertNotIn('error', result, result.get('error'))
        self.assertIn('stop', result, 'podman stop did not return')
        took, code = result['stop']
        self.assertGreaterEqual(result['t'], t_250, 'container gone before the 250')
        self.assertEqual(code, 0, 'exit status after SIGTERM; log:\n' + self.logs())
        self.assertLess(took, 30, 'drained inside the 30 s deadline and the grace period')
        self.assertEqual(len(self.mx1.messages), 1)
        self.assertEqual(self.mx1.messages[0].tls_version, 'TLSv1.3')
        log = self.logs()
        self.assertIn('all sessions closed, exiting', log)
        self.assertNotIn('shutdown deadline reached', log)


if __name__ == '__main__':
    unittest.main(verbosity=2)
