"""The proxy's log read by the real pflogsumm, as a mail admin runs it
(`pflogsumm --syslog-name=starttls-proxy`): a mixed batch goes through the proxy and
pflogsumm's Grand Totals and per-domain delivery table must tell what happened.

The batch: two messages delivered (three recipients at example.test), one deferred (its
MX answers 451 to the final dot), two bounced (one MX answers 550 to RCPT, one to the
final dot), one recipient refused by the proxy itself (an address literal) and one
client refused at connect (not in clients.allow). pflogsumm then counts 4 received
(transactions with an accepted recipient), 3 delivered, 1 deferred, 2 bounced and 2
rejected.

Two ways the log reaches pflogsumm: the stderr format (its lines carry a syslog-style
date and host), and syslog, where a private /dev/log (a mount namespace, as in
test_syslog.py) stands in for the system's syslog daemon and writes each datagram as
rsyslog's traditional file format would."""
import os
import re
import shutil
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness.proxy import proxy_binary  # noqa: E402
from harness.smtpclient import Client  # noqa: E402
from harness.util import TestBase, message  # noqa: E402

PFLOGSUMM = shutil.which('pflogsumm') or '/usr/sbin/pflogsumm'

# Receives syslog datagrams on /dev/log, appends each to OUT as a syslog daemon writes
# its file ("Mmm dd hh:mm:ss HOST TAG[PID]: text"), runs the proxy and passes SIGTERM on.
SYSLOG_INNER = r'''
import os, re, signal, socket, subprocess, sys, threading
out, host, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind('/dev/log')
rx = re.compile(r'^<(\d+)>(\w{3} [ \d]\d \d\d:\d\d:\d\d) (.*)$', re.S)
f = open(out, 'a')
def write(data):
    m = rx.match(data.decode('utf-8', 'replace'))
    if not m:
        f.write('UNPARSED %r\n' % data)
    elif int(m.group(1)) // 8 != 2:
        f.write('NOT FACILITY MAIL %r\n' % data)
    else:
        f.write('%s %s %s\n' % (m.group(2), host, m.group(3).rstrip('\n')))
    f.flush()
stop = threading.Event()
def pump():
    sock.settimeout(0.05)
    while not stop.is_set():
        try:
            write(sock.recv(65536))
        except socket.timeout:
            pass
t = threading.Thread(target=pump)
t.start()
p = subprocess.Popen(argv)
signal.signal(signal.SIGTERM, lambda *_: p.send_signal(signal.SIGTERM))
rc = p.wait()
stop.set()
t.join()
sock.setblocking(False)
while True:
    try:
        write(sock.recv(65536))
    except BlockingIOError:
        break
sys.exit(rc)
'''


class PflogsummBase(TestBase):
    """The batch, pflogsumm's run and the checks of its report; no tests."""

    proxy_extra = {'clients': {'allow': ['127.0.0.1/32']}}

    def setup_fixtures(self):
        self.mx1 = self.add_mx('mx1', '127.0.0.2')
        self.add_mx('mx', '127.0.0.3', domain='d451.test',
                    data_end=(451, '4.3.0 mailbox busy, try later'))
        self.add_mx('mx', '127.0.0.4', domain='d550r.test',
                    rcpt=(550, '5.1.1 no such user'))
        self.add_mx('mx', '127.0.0.5', domain='d550d.test',
                    data_end=(550, '5.7.1 content refused'))

    def log_for_pflogsumm(self):
        """The proxy's log, after it stopped, as pflogsumm gets it."""
        self.proxy.stop()
        return self.proxy.log_text()

    def run_batch(self):
        body = message('pflogsumm batch', 'hello\r\n' * 40)
        # Two transactions on one connection, as an MTA's connection cache sends them.
        c = self.client()
        out = c.send_message('sender@client.test', ['bob@example.test',
                                                    'carol@example.test'], body)
        self.assertReply(out['data'], 250)
        out = c.send_message('sender@client.test', ['dave@example.test'], body)
        self.assertReply(out['data'], 250)
        self.assertReply(c.cmd('QUIT'), 221)
        self.assertReply(self.send('later@d451.test', body)['data'], 451, 'mailbox busy')
        out = self.send('nobody@d550r.test', body)
        self.assertReply(out['rcpt'][0], 550, 'no such user')
        self.assertIsNone(out['data'])
        self.assertReply(self.send('x@d550d.test', body)['data'], 550, 'content refused')
        out = self.send('y@[192.0.2.1]', body)
        self.assertReply(out['rcpt'][0], 550, 'address literals are not relayed')
        stranger = Client(self.proxy.port, source='127.0.0.9')
        self.addCleanup(stranger.close)
        self.assertReply(stranger.read_reply(), 554, 'not allowed to relay')
        self.mx1.wait_messages(2)

    def pflogsumm(self, log):
        path = os.path.join(self.tmpdir, 'maillog')
        with open(path, 'w') as f:
            f.write(log)
        r = subprocess.run([PFLOGSUMM, '--syslog-name=starttls-proxy', path],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def check_report(self, report, log):
        sizes = set(re.findall(r'/qmgr\[\d+\]: \w+: from=<[^>]*>, size=(\d+), ', log))
        self.assertEqual(len(sizes), 1, log)
        size = int(sizes.pop())
        self.assertRegex(report, r'\n\s+%d\s+bytes received\n' % (4 * size))
        self.assertRegex(report, r'\n\s+%d\s+bytes delivered\n' % (3 * size))
        totals = dict((m.group(2), int(m.group(1))) for m in re.finditer(
            r'^\s*(\d+)\s+(received|delivered|deferred|bounced|rejected)\b', report,
            re.M))
        self.assertEqual(totals, {'received': 4, 'delivered': 3, 'deferred': 1,
                                  'bounced': 2, 'rejected': 2}, report)
        rows = self.table(report, 'Host/Domain Summary: Message Delivery')
        self.assertEqual(rows.get('example.test', (0, 0))[0], 3, report)
        self.assertEqual(rows['example.test'][1], 3 * size, report)
        self.assertEqual(rows.get('d451.test'), (0, 0, 1), report)
        self.assertEqual(set(rows), {'example.test', 'd451.test'}, report)
        senders = self.table(report, 'Senders by message count')
        self.assertEqual(senders, {'sender@client.test': (4,)}, report)
        # Every delivery found its message's size (qmgr's line came first).
        self.assertNotIn('Messages with no size data', report)
        self.assertRegex(report, r'message deferral detail\n-+\n\s+smtp \(total: 1\)\n'
                         r'\s+1\s+4\.3\.0 mailbox busy')
        self.assertRegex(report, r'message bounce detail \(by relay\)\n-+\n')
        self.assertRegex(report, r'mx\.d550r\.test\[127\.0\.0\.4\]:\d+ \(total: 1\)\n'
                         r'\s+1\s+5\.1\.1 no such user')
        self.assertRegex(report, r'mx\.d550d\.test\[127\.0\.0\.5\]:\d+ \(total: 1\)\n'
                         r'\s+1\s+5\.7\.1 content refused')
        self.assertRegex(report, r'RCPT\n\s+Recipient address rejected: address literals '
                         r'are not relayed \(total: 1\)')
        self.assertRegex(report, r'CONNECT\n\s+client not allowed to relay through this '
                         r'proxy \(total: 1\)')

    def table(self, report, title):
        """Rows of a pflogsumm table: {last column: leading numbers (k/m units
        scaled)}."""
        m = re.search(r'^%s\s*\n-+\n(.*?)(?:\n\n|\Z)' % re.escape(title), report,
                      re.M | re.S)
        self.assertIsNotNone(m, 'no %r table:\n%s' % (title, report))
        rows = {}
        for line in m.group(1).splitlines():
            if line.strip().startswith('-') or 'host/domain' in line or \
                    'sender address' in line:
                continue
            nums = []
            for field in line.split()[:-1]:
                n = re.match(r'^(\d+)([km]?)$', field)
                if not n:
                    break
                nums.append(int(n.group(1)) * {'': 1, 'k': 1024, 'm': 1048576}[n.group(2)])
            rows[line.split()[-1]] = tuple(nums)
        return rows



@unittest.skipUnless(os.path.exists(PFLOGSUMM), 'needs pflogsumm (Debian package)')
class Pflogsumm(PflogsummBase):
    def test_stderr_log(self):
        self.run_batch()
        log = self.log_for_pflogsumm()
        self.assertRegex(log, r'(?m)^\w{3} [ \d]\d \d\d:\d\d:\d\d proxy\.test '
                         r'starttls-proxy/smtp\[\d+\]: [0-9A-F]{10}: '
                         r'to=<bob@example\.test>, '
                         r'relay=mx1\.example\.test\[127\.0\.0\.2\]:\d+, delay=[\d.]+, '
                         r'dsn=2\.0\.0, status=sent \(250 [^)]*\), '
                         r'tls=TLSv1\.3/Trusted, policy=default/may$')
        self.check_report(self.pflogsumm(log), log)


@unittest.skipUnless(os.path.exists(PFLOGSUMM), 'needs pflogsumm (Debian package)')
@unittest.skipUnless(os.geteuid() == 0 and shutil.which('unshare'),
                     'needs root and unshare for a private /dev/log')
class PflogsummSyslog(PflogsummBase):
    proxy_extra = {'clients': {'allow': ['127.0.0.1/32']}, 'log': {'output': 'syslog'}}

    def start_the_proxy(self, extra=None):
        self.syslog_file = os.path.join(self.tmpdir, 'syslog')
        inner = os.path.join(self.tmpdir, 'syslog_inner.py')
        with open(inner, 'w') as f:
            f.write(SYSLOG_INNER)
        wrapper = os.path.join(self.tmpdir, 'syslog_wrapper.sh')
        with open(wrapper, 'w') as f:
            f.write('#!/bin/sh\nexec unshare --mount --propagation private sh -c '
                    '\'mount -t tmpfs tmpfs /dev && exec /usr/bin/python3 "$0" "$@"\' '
                    '%s %s proxy.test %s "$@"\n' % (inner, self.syslog_file,
                                                     proxy_binary()))
        os.chmod(wrapper, stat.S_IRWXU)
        from harness.proxy import Proxy, deep_merge
        self.proxy = Proxy(self.tmpdir, self.dns.port, self.mx_port, self.pki.ca_file,
                           extra=deep_merge(self.proxy_extra, extra), start=False)
        self.proxy.binary = wrapper
        self.addCleanup(self._stop_proxy, self.proxy)
        self.proxy.start()
        return self.proxy

    def log_for_pflogsumm(self):
        self.proxy.stop()
        with open(self.syslog_file) as f:
            return f.read()

    def test_syslog(self):
        self.run_batch()
        log = self.log_for_pflogsumm()
        self.assertNotIn('UNPARSED', log)
        self.assertNotIn('NOT FACILITY MAIL', log)
        self.assertRegex(log, r'(?m)^\w{3} [ \d]\d \d\d:\d\d:\d\d proxy\.test '
                              r'starttls-proxy/smtpd\[\d+\]: [0-9A-F]{10}: '
                              r'client=unknown\[127\.0\.0\.1\]$')
        self.assertRegex(log, r'(?m) starttls-proxy/smtp\[\d+\]: [0-9A-F]{10}: Trusted TLS '
                              r'connection established to mx1\.example\.test')
        self.assertRegex(log, r'(?m) starttls-proxy\[\d+\]: starttls-proxy \S+ ready$')
        self.check_report(self.pflogsumm(log), log)


if __name__ == '__main__':
    unittest.main()
