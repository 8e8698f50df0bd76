"""RelayCase: a real MTA (harness/exim.py, harness/sendmail.py) uses the proxy as its
smarthost, as the README's recipes set it up.

    class EximRelay(RelayCase):
        mta_class = Exim                  # skipped, with the reason, where Exim cannot run
        def test_x(self):
            ex = self.start_mta()         # started on the proxy's port, stopped at cleanup
            self.submit(ex, 'bob@example.test')   # self.body from alice@sender.test
            self.assertRelayedOverTls(self.mx1.wait_messages(1)[0])
            self.sessions_with(re.escape('RCPT TO:<bob@example.test>'))
"""

import os
import re
import unittest

from .exim import Unavailable
from .util import TestBase


class RelayCase(TestBase):
    """mx1.example.test (127.0.0.2) and mx.other.test (127.0.0.3), both STARTTLS, and
    the proxy at log level debug (the session id of each command). Class attribute
    mta_class: Exim or Sendmail; setUpClass finds its packages (mta_root) or skips the
    class. self.body is a message with a line that starts with a dot."""

    proxy_extra = {'log': {'level': 'debug'}}
    mta_class = None
    mta_root = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.mta_root = cls.mta_class.find_root()
        except (Unavailable, OSError) as e:  # no network, no root, no namespace
            raise unittest.SkipTest('%s unavailable: %s' % (cls.mta_class.__name__, e))
        cls.body = (b'Subject: via %s\r\n\r\nline one\r\n.leading dot\r\n'
                    % cls.mta_class.name.encode())

    def setup_fixtures(self):
        self.mx1 = self.add_mx('mx1', '127.0.0.2')
        self.mx_other = self.add_mx('mx', '127.0.0.3', domain='other.test')

    def start_mta(self, **kw):
        """Starts the MTA (keywords go to mta_class) relaying to the proxy."""
        mta = self.mta_class(os.path.join(self.tmpdir, self.mta_class.name),
                             self.proxy.port, self.mta_root, **kw)
        self.addCleanup(mta.stop)
        mta.start()
        return mta

    def submit(self, mta, *rcpts):
        """MTA takes self.body from alice@sender.test to RCPTS."""
        mta.send('alice@sender.test', list(rcpts), self.body)

    def sessions_with(self, regex, flags=0):
        """Proxy session ids that received a command matching REGEX (the whole command;
        FLAGS: more re flags), in order."""
        rx = re.compile(r' ([0-9A-F]{10}): < 127\.0\.0\.1: ' + regex + '$', re.M | flags)
        return rx.findall(self.proxy.log_text())

    def assertRelayedOverTls(self, msg):
        """MSG, self.body from alice@sender.test to bob@example.test, reached mx1 over
        TLS 1.3 with its dot line intact, and the proxy logged it sent over TLS 1.3."""
        self.assertEqual(msg.tls_version, 'TLSv1.3')
        self.assertEqual((msg.mail_from, msg.rcpts),
                         ('alice@sender.test', ['bob@example.test']))
        self.assertIn(b'\r\n.leading dot\r\n', msg.data)
        self.proxy.wait_log(r'to=<bob@example\.test>, relay=mx1\.example\.test'
                            r'\[127\.0\.0\.2\]:\d+, .*status=sent \(250.*, tls=TLSv1\.3/')
