"""Session corner cases where the proxy answers the MTA by itself in the middle of a
transaction: the replies stay in order and the session stays usable."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness.util import TestBase  # noqa: E402


class SessionEdges(TestBase):
    def test_smtputf8_to_mx_without_it_is_refused_per_recipient(self):
        """An SMTPUTF8 transaction to an MX that lacks SMTPUTF8: every RCPT gets
        550 5.6.7 (RFC 6531 §3.5), including later ones on the same MX connection,
        and the next transaction works."""
        self.mx1.configure(caps=['PIPELINING', '8BITMIME', 'STARTTLS'])
        c = self.client()
        self.assertEqual(c.cmd('MAIL FROM:<a@client.test> SMTPUTF8')[0], 250)
        code, lines = c.cmd('RCPT TO:<b@example.test>')
        self.assertEqual(code, 550, lines)
        self.assertIn('5.6.7', lines[0])
        code, lines = c.cmd('RCPT TO:<c@example.test>')
        self.assertEqual(code, 550, lines)
        self.assertEqual(c.cmd('RSET')[0], 250)
        self.assertEqual(c.cmd('MAIL FROM:<a@client.test>')[0], 250)
        self.assertEqual(c.cmd('RCPT TO:<b@example.test>')[0], 250)
        self.assertEqual(c.cmd('DATA')[0], 354)
        c.send_raw(b'Subject: ascii\r\n\r\nbody\r\n.\r\n')
        self.assertEqual(c.read_reply()[0], 250)
        self.mx1.wait_messages(1)
        self.assertEqual(len(self.mx1.messages), 1)

    def test_pipelined_refusals_keep_order(self):
        """Pipelined RCPTs answered partly by the proxy (452 4.5.3 for another domain)
        and partly by the MX keep their order."""
        c = self.client()
        c.send_raw(b'MAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.test>\r\n'
                   b'RCPT TO:<x@other.test>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n')
        replies = [c.read_reply() for _ in range(5)]
        self.assertEqual([r[0] for r in replies], [250, 250, 452, 250, 354])
        self.assertIn('4.5.3', replies[2][1][0])
        c.send_raw(b'Subject: t\r\n\r\nbody\r\n.\r\n')
        self.assertEqual(c.read_reply()[0], 250)
        self.mx1.wait_messages(1)
        self.assertEqual(self.mx1.messages[0].rcpts, ['b@example.test', 'c@example.test'])


if __name__ == '__main__':
    unittest.main()
