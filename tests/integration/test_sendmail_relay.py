#!/usr/bin/python3
"""A real Sendmail (Debian's sendmail-bin 8.17, extracted into a private directory, see
harness/sendmail.py) uses the proxy as its SMART_HOST: the README's Sendmail recipe,
with the fixtures of harness/relay.py, which skips the tests, with the reason, where
the packages cannot be fetched or run. Measures how Sendmail reacts to the proxy's
452 4.5.3 for a second recipient domain."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness.relay import RelayCase  # noqa: E402
from harness.sendmail import Sendmail  # noqa: E402
from harness.util import main, wait_until  # noqa: E402


class SendmailRelay(RelayCase):
    mta_class = Sendmail

    def test_delivers_over_tls(self):
        sm = self.start_mta()
        self.submit(sm, 'bob@example.test')
        msg = self.mx1.wait_messages(1, timeout=30)[0]
        self.assertRegex(msg.data, rb'by sender\.test \(8\.17\.[\d.]+/8\.17\.[\d.]+\)')
        self.assertRelayedOverTls(msg)
        wait_until(lambda: 'is empty' in sm.queue(), 30, lambda: sm.queue())

    def test_second_domain_452(self):
        """Measured: Sendmail delivers the recipient the proxy accepted, says QUIT,
        keeps the one answered 452 4.5.3 in its queue and sends it on a new connection
        at the next queue run (-q1s here; Debian's default QUEUE_INTERVAL is 10m)."""
        sm = self.start_mta()
        start = time.monotonic()
        self.submit(sm, 'bob@example.test', 'carol@other.test')
        first = wait_until(lambda: self.mx1.messages or self.mx_other.messages, 30)
        t_first = time.monotonic()
        wait_until(lambda: self.mx1.messages and self.mx_other.messages, 60,
                   lambda: 'second recipient never delivered; queue:\n' + sm.queue())
        t_second = time.monotonic()
        later = 'bob@example.test' if first is self.mx_other.messages \
            else 'carol@other.test'
        tried = self.sessions_with(r'RCPT To:<%s>' % re.escape(later), re.I)
        self.assertGreaterEqual(len(tried), 2, tried)
        self.assertNotEqual(tried[0], tried[-1])  # a new connection
        self.assertEqual(len(self.sessions_with('MAIL From:<alice@sender.test>.*', re.I)), 2)
        self.proxy.wait_log(r'%s: < 127\.0\.0\.1: QUIT' % tried[0])
        self.assertEqual(len(self.mx1.messages) + len(self.mx_other.messages), 2)
        print('sendmail: 452 4.5.3 recipient %s sent on a new connection %.1f s after '
              'the first delivery (queue run every 1 s; %.1f s after submission)'
              % (later, t_second - t_first, t_second - start), file=sys.stderr)


if __name__ == '__main__':
    main()
