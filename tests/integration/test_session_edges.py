"""Session corner cases where the proxy answers the MTA by itself in the middle of a
transaction: the replies stay in order and the session stays usable."""
import os
import socket
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
        self.assertTrue(lines[0].startswith('5.6.7 <b@example.test>: mx1.example.test['),
                        lines)
        code, lines = c.cmd('RCPT TO:<c@example.test>')
        self.assertEqual(code, 550, lines)
        self.assertTrue(lines[0].startswith('5.6.7 <c@example.test>: '), lines)
        self.proxy.wait_log(r'to=<c@example\.test>, .*status=bounced \(550 5\.6\.7 '
                            r'<c@example\.test>: .* does not support SMTPUTF8\)')
        self.assertEqual(c.cmd('RSET')[0], 250)
        self.begin_transaction(c, rcpt='b@example.test', mail_from='a@client.test',
                               data=True)
        c.send_raw(b'Subject: ascii\r\n\r\nbody\r\n.\r\n')
        self.assertEqual(c.read_reply()[0], 250)
        self.mx1.wait_messages(1)
        self.assertEqual(len(self.mx1.messages), 1)

    def test_8bitmime_to_mx_without_it_is_refused(self):
        """BODY=8BITMIME to an MX that lacks 8BITMIME: the proxy cannot convert the
        message to 7 bit, so (RFC 6152 3) it is refused, each RCPT with 550 5.6.3,
        and never sent; BODY=7BIT and no BODY go through on that MX."""
        self.mx1.configure(caps=['PIPELINING', 'STARTTLS'])
        c = self.client()
        self.assertEqual(c.cmd('MAIL FROM:<a@client.test> BODY=8BITMIME')[0], 250)
        code, lines = c.cmd('RCPT TO:<b@example.test>')
        self.assertEqual(code, 550, lines)
        self.assertTrue(lines[0].startswith('5.6.3 <b@example.test>: mx1.example.test['),
                        lines)
        self.assertIn('does not support 8BITMIME', lines[0])
        self.assertEqual(c.cmd('RCPT TO:<c@example.test>')[0], 550)
        self.assertEqual(c.cmd('RSET')[0], 250)
        self.assertFalse([l for l in self.mx1.all_commands() if l.startswith('MAIL')])
        for body in (' BODY=7BIT', ''):
            self.assertEqual(c.cmd('MAIL FROM:<a@client.test>' + body)[0], 250)
            self.assertEqual(c.cmd('RCPT TO:<b@example.test>')[0], 250)
            self.assertEqual(c.data(b'Subject: ascii\r\n\r\nbody\r\n')[0], 250)
        self.assertEqual(len(self.mx1.wait_messages(2)), 2)

    def test_mx_lost_before_any_recipient_accepted_tries_a_new_connection(self):
        """The MX connection drops at the transaction's first RCPT: that RCPT gets
        451 4.4.2. No recipient was accepted, so nothing of the transaction lives on that
        connection: the next RCPT routes and connects afresh and the message is
        delivered to it alone."""
        self.mx1.configure(reset_at='rcpt', fault_connections=1)
        c = self.client()
        self.assertEqual(c.cmd('MAIL FROM:<a@client.test>')[0], 250)
        code, lines = c.cmd('RCPT TO:<b@example.test>')
        self.assertEqual(code, 451, lines)
        self.assertTrue(lines[0].startswith('4.4.2 connection to mx1.example.test['), lines)
        self.assertEqual(c.cmd('RCPT TO:<c@example.test>')[0], 250)
        self.assertEqual(c.cmd('DATA')[0], 354)
        c.send_raw(b'Subject: second try\r\n\r\nbody\r\n.\r\n')
        self.assertEqual(c.read_reply()[0], 250)
        self.mx1.wait_messages(1)
        self.assertEqual(self.mx1.messages[0].rcpts, ['c@example.test'])
        self.assertEqual(self.mx1.connections, 2)

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

    def test_half_close_after_pipelined_quit(self):
        """The client sends the final dot and QUIT together and shuts down its side
        (as Exim does) while the MX is slow to answer the dot: the client still gets the
        MX's 250 and then 221, and the MX has the message once."""
        self.mx1.configure(delay_at=('data_end', 0.5))
        c = self.begin_transaction(data=True)
        c.send_raw(b'Subject: half-close\r\n\r\nbody\r\n.\r\nQUIT\r\n')
        c.sock.shutdown(socket.SHUT_WR)
        self.assertEqual(c.read_reply()[0], 250)
        self.assertEqual(c.read_reply()[0], 221)
        self.mx1.wait_messages(1)
        self.assertEqual(len(self.mx1.messages), 1)

    def test_half_close_mid_data_delivers_nothing(self):
        """EOF in the middle of message data: no reply is owed, the MX connection is
        reset without the final dot and holds nothing."""
        c = self.begin_transaction(data=True)
        c.send_raw(b'Subject: cut\r\n\r\npartial body\r\n')
        c.sock.shutdown(socket.SHUT_WR)
        c.expect_closed()
        self.proxy.wait_log(r'(lost connection|closed its side).* in state DATA')
        self.mx1.wait_for(lambda: any('DATA' in c.upper() for c in self.mx1.all_commands()),
                          5)
        self.assertEqual(self.mx1.messages, [])

if __name__ == '__main__':
    unittest.main()
