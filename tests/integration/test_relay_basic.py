#!/usr/bin/python3
"""Relaying through the proxy: TLS 1.3 delivery, plaintext delivery, the destination's
replies passed back, one destination per transaction."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestBase, main, message, split_received  # noqa: E402

# Dot-stuffing material: a lone ".", leading dots, a line that is only "..".
BODY = ('line one\r\n'
        '.\r\n'
        '.leading dot\r\n'
        '..two dots\r\n'
        '..\r\n'
        'last line\r\n')


class RelayBasic(TestBase):

    def test_tls13_delivery(self):
        """STARTTLS to the MX with TLS 1.3; the MX gets the message byte for byte after
        the proxy's Received: header; the client gets the MX's own 250 text; the log has
        the Postfix-style TLS and delivery lines."""
        msg = message('tls13', BODY)
        c = self.client()
        out = c.send_message('sender@client.test', ['rcpt@example.test'], msg)
        self.assertReply(out['mail'], 250, '2.1.0')
        self.assertReply(out['rcpt'][0], 250)
        self.assertReply(out['data'], 250)
        m = self.mx1.wait_messages(1)[0]
        # the MX's own final reply text, passed through (it names the MX's queue id)
        mx_text = self.mx1.sessions[-1].replies[-1][1]
        self.assertIn('queued as', mx_text)
        self.assertIn(mx_text, ' '.join(out['data'][1]))
        self.assertEqual(m.tls_version, 'TLSv1.3')
        self.assertEqual(m.helo, 'proxy.test')
        self.assertEqual(m.mail_from, 'sender@client.test')
        self.assertEqual(m.rcpts, ['rcpt@example.test'])
        received, rest = split_received(m.data)
        self.assertRegex(received, rb'\bby proxy\.test\b')
        self.assertEqual(rest, msg)  # unchanged, dot-stuffed lines included
        self.assertEqual(m.session.sni, 'mx1.example.test')
        p = self.mx_port
        self.assertLog(r'TLS connection established to mx1\.example\.test\[127\.0\.0\.2\]:%d: '
                       r'TLSv1\.3 with cipher' % p)
        self.assertLog(r'to=<rcpt@example\.test>, relay=mx1\.example\.test\[127\.0\.0\.2\]:%d'
                       % p)
        self.assertLog(r'status=sent \(250')
        self.assertEqual(c.cmd('QUIT')[0], 221)

    def test_plaintext_when_no_starttls(self):
        """An MX without STARTTLS gets the message in plaintext (default level may)."""
        self.mx1.configure(starttls=None)
        out = self.send('rcpt@example.test', message('plain'))
        self.assertReply(out['data'], 250)
        m = self.mx1.wait_messages(1)[0]
        self.assertIsNone(m.tls_version)
        self.assertEqual(split_received(m.data)[1], message('plain'))
        self.assertNotIn('STARTTLS', self.mx1.all_commands())
        self.assertLog(r'to=<rcpt@example\.test>, relay=mx1\.example\.test\[127\.0\.0\.2\]:%d'
                       r'.*status=sent' % self.mx_port)

    def test_rcpt_550_passed_back(self):
        """The MX's 550 on RCPT reaches the client with its enhanced code and text."""
        self.mx1.configure(rcpt=(550, '5.1.1 <nobody@example.test>: no such user'))
        c = self.client()
        self.assertReply(c.cmd('MAIL FROM:<sender@client.test>'), 250)
        self.assertReply(c.cmd('RCPT TO:<nobody@example.test>'), 550, '5.1.1', 'no such user')
        # no valid recipient: 503 or (as Postfix after failed RCPTs) 554
        self.assertIn(c.cmd('DATA')[0], (503, 554))
        self.assertEqual(self.mx1.messages, [])

    def test_rcpt_451_passed_back(self):
        """A temporary RCPT failure stays temporary."""
        self.mx1.configure(rcpt=(451, '4.3.0 try again later'))
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test>'), 451, '4.3.0', 'try again later')

    def test_data_end_554_passed_back(self):
        """The MX's 554 after the final dot is the client's reply; nothing delivered."""
        self.mx1.configure(data_end=(554, '5.7.1 message content rejected'))
        out = self.send('rcpt@example.test')
        self.assertReply(out['data'], 554, '5.7.1', 'content rejected')
        self.assertEqual(self.mx1.messages, [])

    def test_two_recipients_same_domain(self):
        """Two recipients at the destination: one message with both."""
        out = self.send(['a@example.test', 'b@example.test'])
        self.assertEqual([r[0] for r in out['rcpt']], [250, 250])
        self.assertReply(out['data'], 250)
        m = self.mx1.wait_messages(1)[0]
        self.assertEqual(m.rcpts, ['a@example.test', 'b@example.test'])
        self.assertEqual(len(self.mx1.messages), 1)
        self.assertLog(r'to=<a@example\.test>.*status=sent')
        self.assertLog(r'to=<b@example\.test>.*status=sent')

    def test_second_domain_deferred_452(self):
        """A recipient at another domain gets 452 4.5.3; the first is still delivered,
        and the other destination is never contacted."""
        other = self.add_mx('mx', '127.0.0.5', domain='other.test')
        out = self.send(['a@example.test', 'b@other.test'])
        self.assertReply(out['rcpt'][0], 250)
        self.assertReply(out['rcpt'][1], 452, '4.5.3')
        self.assertReply(out['data'], 250)
        m = self.mx1.wait_messages(1)[0]
        self.assertEqual(m.rcpts, ['a@example.test'])
        self.assertEqual(other.connections, 0)

    def test_next_transaction_same_connection(self):
        """Two transactions on one client connection, the second after RSET; both
        delivered, each with its own envelope."""
        c = self.client()
        out1 = c.send_message('s1@client.test', ['a@example.test'], message('one'))
        self.assertReply(out1['data'], 250)
        self.assertReply(c.cmd('RSET'), 250)
        out2 = c.send_message('s2@client.test', ['b@example.test'], message('two'))
        self.assertReply(out2['data'], 250)
        msgs = self.mx1.wait_messages(2)
        self.assertEqual([(m.mail_from, m.rcpts) for m in msgs],
                         [('s1@client.test', ['a@example.test']),
                          ('s2@client.test', ['b@example.test'])])
        self.assertEqual(split_received(msgs[1].data)[1], message('two'))

    def test_upstream_reused_same_destination(self):
        """A second transaction to the same destination on the same client connection
        reuses the upstream connection (DESIGN 2.7)."""
        c = self.client()
        for i in range(3):
            out = c.send_message('sender@client.test', ['r%d@example.test' % i],
                                 message('reuse%d' % i))
            self.assertReply(out['data'], 250)
        self.assertEqual(len(self.mx1.wait_messages(3)), 3)
        self.assertEqual(self.mx1.connections, 1)

    def test_mail_params_passed_on(self):
        """ESMTP parameters the MX supports reach it (SIZE, BODY, DSN's RET/ENVID/NOTIFY)."""
        c = self.client()
        self.assertReply(c.cmd('MAIL FROM:<sender@client.test> SIZE=1000 BODY=8BITMIME '
                               'RET=HDRS ENVID=abc123'), 250)
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test> NOTIFY=NEVER'), 250)
        self.assertReply(c.data(message('params')), 250)
        m = self.mx1.wait_messages(1)[0]
        for p in ('BODY=8BITMIME', 'RET=HDRS', 'ENVID=abc123'):
            self.assertIn(p, m.mail_line)
        self.assertTrue(re.search(r'SIZE=\d+', m.mail_line), m.mail_line)
        self.assertIn('NOTIFY=NEVER', m.rcpt_lines[0])


    def test_dsn_params_only_where_the_mx_offers_dsn(self):
        """An MX without DSN gets none of RFC 3461's parameters (RET, ENVID on MAIL;
        NOTIFY, ORCPT on RCPT); the others it offers (SIZE, BODY) still go."""
        self.mx1.configure(caps=['PIPELINING', 'SIZE 52428800', '8BITMIME',
                                 'ENHANCEDSTATUSCODES'])
        c = self.client()
        replies = c.pipeline(['MAIL FROM:<sender@client.test> SIZE=1000 BODY=8BITMIME '
                              'RET=HDRS ENVID=abc123',
                              'RCPT TO:<rcpt@example.test> NOTIFY=SUCCESS,FAILURE '
                              'ORCPT=rfc822;rcpt+40example.test', 'DATA'])
        self.assertEqual([r[0] for r in replies], [250, 250, 354], replies)
        c.send_raw(message('no dsn') + b'.\r\n')
        self.assertReply(c.read_reply(), 250)
        m = self.mx1.wait_messages(1)[0]
        self.assertEqual((m.mail_line, m.rcpt_lines),
                         ('MAIL FROM:<sender@client.test> SIZE=1000 BODY=8BITMIME',
                          ['RCPT TO:<rcpt@example.test>']))

    def test_enhanced_codes_where_the_mx_gives_none(self):
        """The proxy advertises ENHANCEDSTATUSCODES, so every reply after EHLO carries
        one (RFC 2034), also the MX's own replies when the MX has none: its code's
        class with .0.0 goes before the MX's text, on every line."""
        self.mx1.configure(caps=['PIPELINING', '8BITMIME'], mail=(250, 'Ok'),
                           rcpt=lambda s, line: (550, 'no such user') if 'bad@' in line
                           else (250, 'Ok'),
                           data_end=(250, 'Ok\nqueued as 1234'))
        c = self.client()
        self.assertReply(c.cmd('MAIL FROM:<sender@client.test>'), 250, '2.1.0')
        self.assertEqual(c.cmd('RCPT TO:<rcpt@example.test>'), (250, ['2.0.0 Ok']))
        self.assertEqual(c.cmd('RCPT TO:<bad@example.test>'), (550, ['5.0.0 no such user']))
        self.assertEqual(c.data(message('codes')),
                         (250, ['2.0.0 Ok', '2.0.0 queued as 1234']))
        self.assertLog(r'to=<rcpt@example\.test>, .*dsn=2\.0\.0, status=sent \(250.2\.0\.0 Ok')


if __name__ == '__main__':
    main()
