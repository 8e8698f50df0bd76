"""A real Postfix (Debian's package, a private instance) uses the proxy as its
relayhost: what a mail admin deploys. Asserts what Postfix logs and what the MX
mailboxes hold."""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness.postfix import Postfix  # noqa: E402
from harness.util import TestBase  # noqa: E402


class PostfixRelay(TestBase):
    def setup_fixtures(self):
        self.mx1 = self.add_mx('mx1', '127.0.0.2')
        self.mx_other = self.add_mx('mx', '127.0.0.3', domain='other.test')

    def start_postfix(self):
        pf = Postfix(os.path.join(self.tmpdir, 'postfix'), relay_port=self.proxy.port)
        self.addCleanup(pf.stop)
        pf.start()
        return pf

    def test_delivers_over_tls(self):
        pf = self.start_postfix()
        body = b'Subject: via postfix\r\n\r\nline one\r\n.leading dot\r\n'
        qid = pf.send('alice@sender.test', ['bob@example.test'], body)
        line = pf.wait_delivered('bob@example.test', timeout=30, queue_id=qid)
        self.assertIn('relay=127.0.0.1[127.0.0.1]:%d' % self.proxy.port, line)
        self.assertIn('250 2.0.0', line)
        self.mx1.wait_messages(1)
        msg = self.mx1.messages[0]
        self.assertEqual(msg.tls_version, 'TLSv1.3')
        self.assertEqual(msg.mail_from, 'alice@sender.test')
        self.assertEqual(msg.rcpts, ['bob@example.test'])
        self.assertTrue(msg.data.startswith(b'Received: from sender.test'), msg.data[:200])
        self.assertIn(b'\r\n.leading dot\r\n', msg.data)
        self.proxy.wait_log(r'to=<bob@example\.test>, relay=mx1\.example\.test\[127\.0\.0\.2\]'
                            r':\d+, .*status=sent \(250.*, tls=TLSv1\.3/')

    def test_rejection_bounces_and_deferral_stays_queued(self):
        self.mx1.configure(rcpt=(550, '5.1.1 no such user'))
        pf = self.start_postfix()
        qid = pf.send('alice@sender.test', ['nobody@example.test'], b'Subject: x\r\n\r\nx\r\n')
        line = pf.wait_status('nobody@example.test', 'bounced', timeout=30, queue_id=qid)
        self.assertIn('550 5.1.1 no such user', line)
        self.mx1.configure(rcpt=(451, '4.3.0 try later'))
        qid = pf.send('alice@sender.test', ['later@example.test'], b'Subject: y\r\n\r\ny\r\n')
        line = pf.wait_status('later@example.test', 'deferred', timeout=30, queue_id=qid)
        self.assertIn('451 4.3.0 try later', line)
        self.assertTrue(any('later@example.test' in str(q) for q in pf.queue()))

    def test_second_domain_is_deferred_then_delivered(self):
        """The proxy answers 452 4.5.3 for a second destination; Postfix defers that
        recipient and delivers it on a later connection. The delay measured here uses
        the fixture's 1 s backoff; with Postfix defaults it is minimal_backoff_time
        (300 s) or more."""
        pf = self.start_postfix()
        start = time.monotonic()
        qid = pf.send('alice@sender.test', ['bob@example.test', 'carol@other.test'],
                      b'Subject: two domains\r\n\r\nhello\r\n')
        first = pf.wait_delivered('bob@example.test', timeout=30, queue_id=qid)
        self.assertIn('status=sent', first)
        deferred = pf.wait_status('carol@other.test', 'deferred', timeout=30, queue_id=qid)
        self.assertIn('452 4.5.3', deferred)
        second = pf.wait_retried_delivery('carol@other.test', queue_id=qid)
        retry_after = time.monotonic() - start
        self.mx1.wait_messages(1)
        self.mx_other.wait_messages(1)
        self.assertEqual(self.mx1.messages[0].rcpts, ['bob@example.test'])
        self.assertEqual(self.mx_other.messages[0].rcpts, ['carol@other.test'])
        self.assertEqual(len(self.mx1.messages), 1)
        self.assertEqual(len(self.mx_other.messages), 1)
        print('postfix retried the 452 4.5.3 recipient %.1f s later: %s'
              % (retry_after, second.strip()), file=sys.stderr)


if __name__ == '__main__':
    unittest.main()
