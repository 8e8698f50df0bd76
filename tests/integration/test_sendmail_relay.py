#!/usr/bin/python3
"""A real Sendmail (Debian's sendmail-bin 8.17, extracted into a private directory, see
harness/sendmail.py) uses the proxy as its SMART_HOST: the README's Sendmail recipe.
Measures how Sendmail reacts to the proxy's 452 4.5.3 for a second recipient domain.

Skipped, with the reason, where the packages cannot be fetched or run."""
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness.exim import Unavailable  # noqa: E402
from harness.sendmail import Sendmail, sendmail_root  # noqa: E402
from harness.util import TestBase, main, wait_until  # noqa: E402

try:
    ROOT, WHY = sendmail_root(), None
except (Unavailable, OSError) as e:  # no network, no root, no namespace
    ROOT, WHY = None, str(e)

BODY = b'Subject: via sendmail\r\n\r\nline one\r\n.leading dot\r\n'


@unittest.skipIf(ROOT is None, 'Sendmail unavailable: %s' % WHY)
class SendmailRelay(TestBase):
    proxy_extra = {'log': {'level': 'debug'}}  # the session ids of each command

    def setup_fixtures(self):
        self.mx1 = self.add_mx('mx1', '127.0.0.2')
        self.mx_other = self.add_mx('mx', '127.0.0.3', domain='other.test')

    def start_sendmail(self, **kw):
        sm = Sendmail(os.path.join(self.tmpdir, 'sendmail'), self.proxy.port, ROOT, **kw)
        self.addCleanup(sm.stop)
        sm.start()
        return sm

    def sessions_with(self, regex):
        """Proxy session ids that received a command matching REGEX, in order."""
        rx = re.compile(r' ([0-9A-F]{10}): < 127\.0\.0\.1: ' + regex + '$', re.M | re.I)
        return rx.findall(self.proxy.log_text())

    def test_delivers_over_tls(self):
        sm = self.start_sendmail()
        sm.send('alice@sender.test', ['bob@example.test'], BODY)
        msg = self.mx1.wait_messages(1, timeout=30)[0]
        self.assertEqual(msg.tls_version, 'TLSv1.3')
        self.assertEqual((msg.mail_from, msg.rcpts),
                         ('alice@sender.test', ['bob@example.test']))
        self.assertRegex(msg.data, rb'by sender\.test \(8\.17\.[\d.]+/8\.17\.[\d.]+\)')
        self.assertIn(b'\r\n.leading dot\r\n', msg.data)
        self.proxy.wait_log(r'to=<bob@example\.test>, relay=mx1\.example\.test'
                            r'\[127\.0\.0\.2\]:\d+, .*status=sent \(250.*, tls=TLSv1\.3/')
        wait_until(lambda: 'is empty' in sm.queue(), 30, lambda: sm.queue())

    def test_second_domain_452(self):
        """Measured: Sendmail delivers the recipient the proxy accepted, says QUIT,
        keeps the one answered 452 4.5.3 in its queue and sends it on a new connection
        at the next queue run (-q1s here; Debian's default QUEUE_INTERVAL is 10m)."""
        sm = self.start_sendmail()
        start = time.monotonic()
        sm.send('alice@sender.test', ['bob@example.test', 'carol@other.test'], BODY)
        first = wait_until(lambda: self.mx1.messages or self.mx_other.messages, 30)
        t_first = time.monotonic()
        wait_until(lambda: self.mx1.messages and self.mx_other.messages, 60,
                   lambda: 'second recipient never delivered; queue:\n' + sm.queue())
        t_second = time.monotonic()
        later = 'bob@example.test' if first is self.mx_other.messages \
            else 'carol@other.test'
        tried = self.sessions_with(r'RCPT To:<%s>' % re.escape(later))
        self.assertGreaterEqual(len(tried), 2, tried)
        self.assertNotEqual(tried[0], tried[-1])  # a new connection
        self.assertEqual(len(self.sessions_with('MAIL From:<alice@sender.test>.*')), 2)
        self.proxy.wait_log(r'%s: < 127\.0\.0\.1: QUIT' % tried[0])
        self.assertEqual(len(self.mx1.messages) + len(self.mx_other.messages), 2)
        print('sendmail: 452 4.5.3 recipient %s sent on a new connection %.1f s after '
              'the first delivery (queue run every 1 s; %.1f s after submission)'
              % (later, t_second - t_first, t_second - start), file=sys.stderr)


if __name__ == '__main__':
    main()
