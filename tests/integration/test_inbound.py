#!/usr/bin/python3
"""The proxy's SMTP server side as the legacy MTA sees it: commands, pipelining, the
client ACL, SMTP smuggling defences, streaming of a 50 MB message, limits, timeouts
and reload."""

import hashlib
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (Client, Closed, TestBase, is_asan_build, main, message,  # noqa: E402
                     proxy_config, split_received, wait_until)

CAPS = ('PIPELINING', 'SIZE 52428800', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'DSN')
BARE = re.compile(rb'\r(?!\n)|(?<!\r)\n')

# Fake end-of-data sequences that some receivers accept (CVE-2023-51764 and friends).
SMUGGLE_SEPARATORS = {'lf_dot_lf': b'\n.\n', 'cr_dot_cr': b'\r.\r',
                      'crlf_dot_lf': b'\r\n.\n', 'lf_dot_crlf': b'\n.\r\n'}


def smuggling_body(sep):
    """A message whose body hides a second transaction behind SEP."""
    return (b'From: <sender@client.test>\r\nTo: <rcpt@example.test>\r\nSubject: smuggle\r\n'
            b'\r\nhello' + sep +
            b'MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n'
            b'From: <ceo@example.test>\r\nSubject: smuggled\r\n\r\nevil\r\n')


class Commands(TestBase):

    def test_greeting_and_ehlo(self):
        """220 proxy.test ESMTP; EHLO lists the relayed extensions (no STARTTLS: no
        inbound TLS is configured)."""
        c = self.client(greet=False)
        code, lines = c.read_reply()
        self.assertEqual(code, 220)
        self.assertRegex(lines[0], r'^proxy\.test ESMTP')
        code, lines = c.cmd('EHLO client.test')
        self.assertEqual(code, 250)
        self.assertTrue(lines[0].startswith('proxy.test'), lines)
        for cap in CAPS:
            self.assertIn(cap, lines)
        self.assertNotIn('STARTTLS', lines)
        self.assertReply(c.cmd('HELO client.test'), 250, 'proxy.test')

    def test_simple_commands(self):
        """NOOP/RSET 250, VRFY 252, HELP 214, unknown 500 5.5.1, sequence errors 503,
        MAIL answered by the proxy with 250 2.1.0, QUIT 221 and close."""
        c = self.client()
        self.assertReply(c.cmd('NOOP'), 250)
        self.assertReply(c.cmd('RSET'), 250)
        self.assertReply(c.cmd('VRFY postmaster'), 252)
        self.assertReply(c.cmd('HELP'), 214)
        self.assertReply(c.cmd('FROBNICATE now'), 500, '5.5.1')
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test>'), 503)
        self.assertReply(c.cmd('DATA'), 503)
        self.assertReply(c.cmd('MAIL FROM:<sender@client.test>'), 250, '2.1.0')
        self.assertReply(c.cmd('MAIL FROM:<sender@client.test>'), 503)
        # DATA before any RCPT: RFC 5321 3.3 allows 503 or 554 (Postfix: 554)
        self.assertIn(c.cmd('DATA')[0], (503, 554))
        self.assertReply(c.cmd('MAIL FROM:sender@client.test'), 5)  # nested or syntax
        self.assertReply(c.cmd('RSET'), 250)
        self.assertReply(c.cmd('MAIL FROM:sender-without-brackets'), 501)
        self.assertReply(c.cmd('QUIT'), 221)
        self.assertTrue(c.expect_closed())
        self.assertEqual(self.mx1.connections, 0)  # MAIL alone never reaches the MX

    def test_overlong_line(self):
        """A command line over 2048 bytes gets exactly one 500 5.5.2; the session goes
        on."""
        c = self.client()
        self.assertReply(c.cmd('NOOP ' + 'x' * 3000), 500, '5.5.2')
        self.assertReply(c.cmd('NOOP'), 250)
        c.nothing_pending(0.2)
        out = c.send_message('sender@client.test', ['rcpt@example.test'], message())
        self.assertReply(out['data'], 250)

    def test_pipelined_transaction(self):
        """MAIL, RCPT, RCPT, DATA in one write: replies in order, then delivery."""
        c = self.client()
        replies = c.pipeline(['MAIL FROM:<sender@client.test>', 'RCPT TO:<a@example.test>',
                              'RCPT TO:<b@example.test>', 'DATA'])
        self.assertEqual([r[0] for r in replies], [250, 250, 250, 354], replies)
        c.send_raw(message('pipe') + b'.\r\n')
        self.assertReply(c.read_reply(), 250)
        m = self.mx1.wait_messages(1)[0]
        self.assertEqual(m.rcpts, ['a@example.test', 'b@example.test'])
        self.assertEqual(split_received(m.data)[1], message('pipe'))

    def test_pipelined_with_refused_rcpt(self):
        """Pipelined RCPTs where the MX refuses one: replies stay in order and match."""
        self.mx1.configure(rcpt=lambda s, line: (550, '5.1.1 no such user')
                           if 'bad@' in line else None)
        c = self.client()
        replies = c.pipeline(['MAIL FROM:<sender@client.test>', 'RCPT TO:<a@example.test>',
                              'RCPT TO:<bad@example.test>', 'RCPT TO:<b@example.test>', 'DATA'])
        self.assertEqual([r[0] for r in replies], [250, 250, 550, 250, 354], replies)
        self.assertIn('no such user', ' '.join(replies[2][1]))
        c.send_raw(message() + b'.\r\n')
        self.assertReply(c.read_reply(), 250)
        self.assertEqual(self.mx1.wait_messages(1)[0].rcpts, ['a@example.test', 'b@example.test'])

    @proxy_config({'limits': {'recipients': 2}})
    def test_recipient_limit(self):
        """limits.recipients: the recipient over the limit gets 452."""
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        self.assertReply(c.cmd('RCPT TO:<a@example.test>'), 250)
        self.assertReply(c.cmd('RCPT TO:<b@example.test>'), 250)
        self.assertReply(c.cmd('RCPT TO:<c@example.test>'), 452)
        self.assertReply(c.data(message()), 250)
        self.assertEqual(self.mx1.wait_messages(1)[0].rcpts, ['a@example.test', 'b@example.test'])

    @proxy_config({'limits': {'message_size': 10000}})
    def test_message_size_limit(self):
        """limits.message_size: SIZE= over it is refused at MAIL (552 5.3.4), and a
        message that turns out too big is refused after its end and not delivered."""
        c = self.client()
        code, lines = c.cmd('EHLO client.test')
        self.assertIn('SIZE 10000', lines)
        self.assertReply(c.cmd('MAIL FROM:<sender@client.test> SIZE=20000'), 552, '5.3.4')
        self.assertReply(c.cmd('MAIL FROM:<sender@client.test>'), 250)
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test>'), 250)
        self.assertReply(c.data(message('big', 'y' * 78 + '\r\n') * 300), 552, '5.3.4')
        self.assertEqual(self.mx1.messages, [])
        self.assertReply(c.cmd('NOOP'), 250)


class Rfc5321(TestBase):
    """RFC 5321 points the MTA may lean on that the tests above do not show."""

    def test_helo_takes_no_esmtp_parameters(self):
        """HELO (an old MTA): a one-line 250 with no extension list, and an ESMTP
        parameter after it is not understood (555 5.5.4); plain MAIL works."""
        c = self.client(ehlo=None)
        code, lines = c.cmd('HELO client.test')
        self.assertEqual((code, lines), (250, ['proxy.test']))
        self.assertReply(c.cmd('MAIL FROM:<sender@client.test> SIZE=100'), 555, '5.5.4')
        self.assertReply(c.cmd('MAIL FROM:<sender@client.test>'), 250)
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test>'), 250)
        self.assertReply(c.data(message('helo')), 250)
        self.assertNotIn('SIZE', self.mx1.wait_messages(1)[0].mail_line)

    def test_ehlo_resets_the_transaction(self):
        """EHLO in the middle of a transaction resets it as RSET would (§4.1.4): a
        RCPT or DATA after it is out of sequence, and nothing is delivered."""
        c = self.client()
        self.assertReply(c.cmd('MAIL FROM:<sender@client.test>'), 250)
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test>'), 250)
        self.assertReply(c.cmd('EHLO client.test'), 250)
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test>'), 503, '5.5.1')
        self.assertReply(c.cmd('DATA'), 503, '5.5.1')
        c.nothing_pending()
        self.assertEqual(self.mx1.messages, [])
        out = c.send_message('sender@client.test', ['rcpt@example.test'], message('after'))
        self.assertReply(out['data'], 250)

    def test_paths(self):
        """Lower-case verbs and a space after the colon are taken; a source route
        (§4.1.1.3, App. C) is accepted and dropped; a quoted local part and the null
        reverse-path reach the MX as written."""
        c = self.client()
        self.assertReply(c.cmd('mail from: <>'), 250, '2.1.0')
        self.assertReply(c.cmd('rcpt to: <@relay.test,@other.test:a@example.test>'), 250)
        self.assertReply(c.cmd('RCPT TO:<"john doe"@example.test>'), 250)
        self.assertReply(c.data(message('paths')), 250)
        m = self.mx1.wait_messages(1)[0]
        self.assertEqual(m.mail_line, 'MAIL FROM:<>')
        self.assertEqual(m.rcpt_lines, ['RCPT TO:<a@example.test>',
                                        'RCPT TO:<"john doe"@example.test>'])

    def test_bare_postmaster(self):
        """RCPT TO:<postmaster> without a domain (§4.5.1: every relay MUST take it) is
        this server's postmaster: relayed as postmaster@ the proxy's hostname, the
        mailbox its TLS reports also name."""
        own = self.add_mx('mx', '127.0.0.6', domain='proxy.test')
        c = self.client()
        self.assertReply(c.cmd('MAIL FROM:<sender@client.test>'), 250)
        self.assertReply(c.cmd('RCPT TO:<PostMaster>'), 250)
        self.assertReply(c.data(message('to the postmaster')), 250)
        self.assertEqual(own.wait_messages(1)[0].rcpts, ['postmaster@proxy.test'])
        self.assertEqual(self.mx1.connections, 0)

    def test_address_literal_recipients_refused(self):
        """A recipient at an address literal is refused for good (550 5.1.2), IPv4 or
        IPv6 alike, before any DNS lookup or MX connection."""
        c = self.client()
        self.assertReply(c.cmd('MAIL FROM:<sender@[192.0.2.1]>'), 250)
        for rcpt in ('u@[127.0.0.2]', 'u@[IPv6:::1]', 'u@[x-tag:anything]'):
            self.assertReply(c.cmd('RCPT TO:<%s>' % rcpt), 550, '5.1.2',
                             'address literals are not relayed')
        self.assertReply(c.cmd('DATA'), 554)
        self.assertEqual(self.mx1.connections, 0)
        self.assertEqual(self.dns.queries, [])

    def test_utf8_address_needs_smtputf8(self):
        """A non-ASCII address is taken only in a transaction whose MAIL declared
        SMTPUTF8 (RFC 6531 3.4); otherwise 553 5.6.7, and the MX never sees it."""
        c = self.client()
        self.assertReply(c.cmd('MAIL FROM:<us\u00e9r@client.test>'), 553, '5.6.7')
        self.assertReply(c.cmd('MAIL FROM:<sender@client.test>'), 250)
        self.assertReply(c.cmd('RCPT TO:<\u7528\u6237@example.test>'), 553, '5.6.7')
        self.assertReply(c.cmd('RCPT TO:<rcpt@\u4f8b\u5b50.example.test>'), 553, '5.6.7')
        self.assertReply(c.cmd('RSET'), 250)
        self.assertEqual(self.mx1.connections, 0)
        self.assertReply(c.cmd('MAIL FROM:<us\u00e9r@client.test> SMTPUTF8'), 250)
        self.assertReply(c.cmd('RCPT TO:<\u7528\u6237@example.test>'), 250)
        self.assertReply(c.data(message('utf8')), 250)
        m = self.mx1.wait_messages(1)[0]
        self.assertEqual(m.rcpts, ['\u7528\u6237@example.test'])

    def test_parameter_syntax(self):
        """A parameter the proxy passes on with a value its RFC does not allow (SIZE,
        RFC 1870; BODY, RFC 6152; SMTPUTF8, RFC 6531; RET, ENVID, NOTIFY, ORCPT, RFC
        3461), or given twice, gets 501 5.5.4 and never reaches the MX; the forms
        allowed are taken and passed on."""
        c = self.client()
        for params in ('SIZE=abc', 'SIZE', 'BODY=9BIT', 'BODY=BINARYMIME', 'SMTPUTF8=yes',
                       'RET=ALL', 'ENVID=' + 'e' * 101, 'ENVID=a+zz', 'SIZE=1 SIZE=2',
                       'RET=FULL RET=HDRS'):
            self.assertReply(c.cmd('MAIL FROM:<sender@client.test> ' + params), 501,
                             '5.5.4')
        self.assertReply(c.cmd('MAIL FROM:<sender@client.test> SIZE=100 body=8bitmime '
                               'RET=hdrs ENVID=Q+2B1'), 250)
        for params in ('NOTIFY=SOMETIMES', 'NOTIFY=NEVER,SUCCESS', 'NOTIFY=',
                       'ORCPT=rfc822', 'ORCPT=rfc822;a+4', 'NOTIFY=NEVER NOTIFY=NEVER'):
            self.assertReply(c.cmd('RCPT TO:<rcpt@example.test> ' + params), 501, '5.5.4')
        self.assertEqual(self.mx1.connections, 0)
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test> notify=success,delay '
                               'ORCPT=rfc822;rcpt+40example.test'), 250)
        self.assertReply(c.data(message('params')), 250)
        m = self.mx1.wait_messages(1)[0]
        self.assertEqual(m.mail_line, 'MAIL FROM:<sender@client.test> SIZE=100 '
                         'BODY=8bitmime RET=hdrs ENVID=Q+2B1')
        self.assertEqual(m.rcpt_lines, ['RCPT TO:<rcpt@example.test> NOTIFY=success,delay '
                                        'ORCPT=rfc822;rcpt+40example.test'])

    def test_other_verbs(self):
        """NOOP takes an argument; HELP 214; EXPN, AUTH and STARTTLS, not offered,
        get 502 whatever their arguments; a 512-octet command line (§4.5.3.1.4) is
        taken."""
        c = self.client()
        self.assertReply(c.cmd('NOOP anything at all'), 250, '2.0.0')
        self.assertReply(c.cmd('HELP MAIL'), 214)
        for line in ('EXPN staff', 'EXPN', 'AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=', 'AUTH LOGIN',
                     'AUTH', 'STARTTLS', 'STARTTLS now'):
            self.assertReply(c.cmd(line), 502, '5.5.1')
        line = 'NOOP ' + 'x' * (512 - len('NOOP \r\n'))
        self.assertEqual(len(line) + 2, 512)
        self.assertReply(c.cmd(line), 250)
        c.nothing_pending()

    def test_early_talker(self):
        """A client that sends EHLO before reading the greeting gets the 220 first and
        then its 250: it is served, not refused."""
        c = self.client(greet=False)
        c.send_raw(b'EHLO client.test\r\nNOOP\r\n')
        self.assertReply(c.read_reply(), 220)
        self.assertReply(c.read_reply(), 250, 'PIPELINING')
        self.assertReply(c.read_reply(), 250)
        c.nothing_pending()

    def test_bare_lf_command_lines(self):
        """Command lines ended by a bare LF are taken like CRLF ones (the message data
        still needs CRLF)."""
        c = self.client()
        c.send_raw(b'NOOP\nMAIL FROM:<sender@client.test>\nRCPT TO:<rcpt@example.test>\n'
                   b'DATA\n')
        self.assertEqual([r[0] for r in c.read_replies(4)], [250, 250, 250, 354])
        c.send_raw(message('lf') + b'.\r\n')
        self.assertReply(c.read_reply(), 250)
        self.assertEqual(split_received(self.mx1.wait_messages(1)[0].data)[1], message('lf'))

    def test_commands_split_across_reads(self):
        """Pipelined commands arriving a few bytes at a time are neither lost nor
        answered early; an over-long line arriving in pieces gets one 500 5.5.2."""
        c = self.client()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        wire = (b'MAIL FROM:<sender@client.test>\r\nRCPT TO:<rcpt@example.test>\r\n'
                b'NOOP ' + b'x' * 3000 + b'\r\nNOOP\r\nDATA\r\n')
        pos = 0
        while pos < len(wire):  # 7 bytes a write, then the long line 300 at a time
            step = 7 if pos < 120 else 300
            c.send_raw(wire[pos:pos + step])
            pos += step
            time.sleep(0.002)
        got = [r[0] for r in c.read_replies(5)]
        self.assertEqual(got, [250, 250, 500, 250, 354])
        c.send_raw(message('split') + b'.\r\n')
        self.assertReply(c.read_reply(), 250)
        c.nothing_pending()

    def test_long_text_line_passed_on(self):
        """A message line longer than 1000 octets (§4.5.3.1.6) is not the proxy's to
        refuse: it reaches the MX unchanged, which decides."""
        body = message('long', 'y' * 5000 + '\r\n')
        out = self.send('rcpt@example.test', body)
        self.assertReply(out['data'], 250)
        self.assertEqual(split_received(self.mx1.wait_messages(1)[0].data)[1], body)


class Access(TestBase):

    @proxy_config({'clients': {'allow': ['10.0.0.0/8']}})
    def test_client_not_allowed(self):
        """A client outside clients.allow gets 554 and the connection is closed; it
        cannot relay."""
        c = Client(self.proxy.port)
        self.addCleanup(c.close)
        try:
            code, lines = c.read_reply()
        except Closed:
            self.fail('closed without a 554')
        self.assertEqual(code, 554, lines)
        try:
            c.send_raw(b'EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<rcpt@example.test>\r\n')
        except OSError:
            pass
        self.assertTrue(c.expect_closed())
        self.assertEqual(self.mx1.connections, 0)
        self.assertEqual(self.dns.queries, [])

    @proxy_config({'limits': {'connections': 2}})
    def test_connection_limit(self):
        """limits.connections 2: a third client gets 421 and is closed; after one
        leaves, a new client is served again."""
        def greeted():
            c = Client(self.proxy.port)
            try:
                code, lines = c.read_reply()
            except Closed:
                code = None
            if code == 220:
                self.addCleanup(c.close)
                return c
            c.close()
            return None
        c1 = wait_until(greeted, 10, 'first client never greeted')
        c2 = wait_until(greeted, 10, 'second client never greeted')
        c3 = Client(self.proxy.port)
        self.addCleanup(c3.close)
        self.assertReply(c3.read_reply(), 421, '4.7.0')
        self.assertTrue(c3.expect_closed())
        self.assertReply(c2.cmd('NOOP'), 250)
        c1.cmd('QUIT')
        c1.close()
        c4 = wait_until(greeted, 10, 'no client served after one left')
        self.assertReply(c4.cmd('NOOP'), 250)

    @proxy_config({'timeouts': {'inbound_command': 1}})
    def test_idle_timeout(self):
        """timeouts.inbound_command 1: an idle client gets 421 after about a second and
        the connection is closed."""
        c = self.client()
        t = time.monotonic()
        code, lines = c.read_reply(timeout=10)
        elapsed = time.monotonic() - t
        self.assertEqual(code, 421, lines)
        self.assertGreater(elapsed, 0.5)
        self.assertLess(elapsed, 5)
        self.assertTrue(c.expect_closed())

    def test_reload(self):
        """SIGHUP with a broken config: the error is logged, the proxy keeps serving
        with the old config. SIGHUP with a good one: new sessions use it."""
        with open(self.proxy.config_path) as f:
            good = f.read()
        self.proxy.write_config(text=good + 'no_such_key: 1\n')
        self.proxy.reload()
        self.proxy.wait_log(r'no_such_key')
        self.assertTrue(self.proxy.running())
        out = self.send('rcpt@example.test')
        self.assertReply(out['data'], 250)
        c = self.client(greet=False)
        self.assertRegex(c.read_reply()[1][0], r'^proxy\.test ')
        c.close()
        self.proxy.write_config({'hostname': 'proxy2.test'})
        self.proxy.reload()

        def new_name():
            with Client(self.proxy.port) as c2:
                return c2.read_reply()[1][0].startswith('proxy2.test ')
        wait_until(new_name, 10, lambda: 'reload not applied; log:\n' + self.proxy.log_text())


class Smuggling(TestBase):
    """Bare CR / LF in message data (SMTP smuggling). The MX fixture accepts such fake
    ends like a vulnerable server, so anything passed through raw would show up there
    as a second transaction."""

    def setUp(self):
        super().setUp()
        self.mx1.configure(lenient_data_end=True)

    def refused(self, sep):
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test>'), 250)
        self.assertReply(c.data(smuggling_body(sep) + b'.\r\n', stuff=False), 550, '5.6.11')
        # the hidden commands were data, not commands of this session
        self.assertReply(c.cmd('NOOP'), 250)
        c.nothing_pending(0.2)
        self.assertEqual(self.mx1.messages, [])
        self.assertNotIn('MAIL FROM:<evil@x.test>', self.mx1.all_commands())
        # the session is still usable for a clean message
        out = c.send_message('sender@client.test', ['rcpt@example.test'], message('clean'))
        self.assertReply(out['data'], 250)
        self.assertEqual(len(self.mx1.wait_messages(1)), 1)

    def test_refuse_lf_dot_lf(self):
        self.refused(SMUGGLE_SEPARATORS['lf_dot_lf'])

    def test_refuse_cr_dot_cr(self):
        self.refused(SMUGGLE_SEPARATORS['cr_dot_cr'])

    def test_refuse_crlf_dot_lf(self):
        self.refused(SMUGGLE_SEPARATORS['crlf_dot_lf'])

    def test_refuse_lf_dot_crlf(self):
        self.refused(SMUGGLE_SEPARATORS['lf_dot_crlf'])

    @proxy_config({'inbound': {'bare_newline': 'normalize'}})
    def test_normalize(self):
        """bare_newline: normalize: delivered; the MX sees CRLF only, dot-stuffing
        redone, and the hidden commands only as message text."""
        for i, (name, sep) in enumerate(sorted(SMUGGLE_SEPARATORS.items())):
            with self.subTest(sep=name):
                c = self.client()
                c.cmd('MAIL FROM:<sender@client.test>')
                c.cmd('RCPT TO:<rcpt@example.test>')
                self.assertReply(c.data(smuggling_body(sep) + b'.\r\n', stuff=False), 250)
                msgs = self.mx1.wait_messages(i + 1)
                self.assertEqual(len(msgs), i + 1)
                m = msgs[i]
                self.assertEqual(m.mail_from, 'sender@client.test')
                self.assertEqual(m.rcpts, ['rcpt@example.test'])
                self.assertIsNone(BARE.search(m.raw), m.raw)
                self.assertIn(b'MAIL FROM:<evil@x.test>\r\n', m.data)
                self.assertIn(b'\r\nevil\r\n', m.data)
                self.assertNotIn('MAIL FROM:<evil@x.test>', self.mx1.all_commands())
                c.cmd('QUIT')
                c.close()


class NormalizeExact(TestBase):
    """bare_newline: normalize rewrites only line ends: the MX stores exactly the text
    a strict client would have sent for the same lines (no dot dropped, none added
    to a line the client stuffed), and the proxy logs the rewrite."""

    BODY = (b'Subject: dots\r\n\r\n'
            b'A\r\n.\nB\r\n'      # a lone "." ended by a bare LF
            b'.\rC\n'                # a lone "." ended by a bare CR; a bare LF
            b'..\nD\r\n'            # a client-stuffed ".." after a bare LF
            b'..\r\nE\n'            # the same after a CRLF; a bare LF
            b'.x\r\n')              # a '.' after a bare LF that is text
    # On the wire to the MX, after the Received: header; and what the MX un-stuffs.
    WIRE = (b'Subject: dots\r\n\r\nA\r\n..\r\nB\r\n..\r\nC\r\n..\r\nD\r\n..\r\n'
            b'E\r\n..x\r\n')
    TEXT = b'Subject: dots\r\n\r\nA\r\n.\r\nB\r\n.\r\nC\r\n.\r\nD\r\n.\r\nE\r\n.x\r\n'

    def deliver(self, chunks):
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test>'), 250)
        self.assertReply(c.cmd('DATA'), 354)
        for chunk in chunks:  # one write each: the proxy may read them apart
            c.send_raw(chunk)
        self.assertReply(c.read_reply(), 250)
        c.cmd('QUIT')
        c.close()

    @proxy_config({'inbound': {'bare_newline': 'normalize'}})
    def test_exact_bytes_at_the_mx(self):
        data = self.BODY + b'.\r\n'
        # whole, then byte by byte (cuts between CR and LF, and between a line end
        # and its dot)
        self.deliver([data])
        self.deliver([data[i:i + 1] for i in range(len(data))])
        msgs = self.mx1.wait_messages(2)
        for m in msgs:
            _, rest = split_received(m.raw)
            self.assertEqual(rest, self.WIRE)
            _, text = split_received(m.data)
            self.assertEqual(text, self.TEXT)
        lines = self.proxy.wait_log(r'(?m)^.*[0-9A-F]{10}: bare newline normalized: '
                                    r'5 line ends from 127\.0\.0\.1\n(.|\n)*'
                                    r'[0-9A-F]{10}: bare newline normalized: 5 line ends')
        self.assertTrue(lines)

    def test_refuse_still_refuses(self):
        """The default mode refuses the same data; nothing reaches the MX."""
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test>'), 250)
        self.assertReply(c.data(self.BODY + b'.\r\n', stuff=False), 550, '5.6.11')
        self.assertReply(c.cmd('NOOP'), 250)
        self.assertEqual(self.mx1.messages, [])
        self.assertNotIn('bare newline normalized', self.proxy.log_text())


INJECTED = (b'MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n'
            b'Subject: injected\r\n\r\nevil\r\n.\r\n')


class Bdat(TestBase):
    """BDAT without CHUNKING (not offered): 503, and the chunk's bytes are never read
    as commands: skipped exactly when the size is readable, else the connection is
    closed with 421."""

    def assert_not_run(self):
        self.assertEqual(self.mx1.connections, 0)
        self.assertEqual(self.mx1.messages, [])
        self.assertNotIn('evil@x.test', self.proxy.log_text())

    def test_chunk_skipped_not_run(self):
        c = self.client()
        c.send_raw(b'BDAT %d LAST\r\n' % len(INJECTED) + INJECTED)
        self.assertReply(c.read_reply(), 503, '5.5.1')
        # the next reply is NOOP's: none came for the chunk's "commands"
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')
        c.nothing_pending(0.2)
        self.proxy.wait_log(r'[0-9A-F]{10}: BDAT without CHUNKING from 127\.0\.0\.1: '
                            r'%d bytes discarded' % len(INJECTED))
        self.assert_not_run()
        # in step: a message sent the usual way goes through, alone
        out = c.send_message('sender@client.test', ['rcpt@example.test'], message('ok'))
        self.assertReply(out['data'], 250)
        msgs = self.mx1.wait_messages(1)
        self.assertEqual([m.rcpts for m in msgs], [['rcpt@example.test']])

    def test_unreadable_or_oversized_size_closes(self):
        for line in (b'BDAT 99999999999999999999 LAST', b'BDAT 12x LAST',
                     b'BDAT 52428801 LAST', b'BDAT 20 LAST\x01', b'bdat\t20',
                     b'BDAT'):
            with self.subTest(line=line):
                c = self.client()
                c.send_raw(line + b'\r\n' + INJECTED)
                self.assertReply(c.read_reply(), 421, '4.5.0')
                self.assertTrue(c.expect_closed())
        self.assert_not_run()


class BigMessage(TestBase):
    """A 50 MB message streams through; the proxy never holds it whole."""

    HWM_LIMIT_KB = int(os.environ.get('SP_MAX_HWM_KB', 64 * 1024))
    SIZE = 50 * 1000 * 1000

    def setUp(self):
        super().setUp()
        self.mx1.configure(discard_body=True)

    def chunks(self):
        yield b'From: <sender@client.test>\r\nSubject: big\r\nX-Big-Test: 1\r\n\r\n'
        line = b'0123456789' * 7 + b'abcdefgh\r\n'  # 80 bytes
        chunk = line * 8192
        sent = 0
        while sent + len(chunk) <= self.SIZE:
            yield chunk
            sent += len(chunk)
        yield line * ((self.SIZE - sent) // len(line))

    def test_50mb_streams(self):
        c = self.client()
        rss_idle = self.proxy.rss_kb()
        c.cmd('MAIL FROM:<sender@client.test> SIZE=%d' % self.SIZE)
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test>'), 250)
        self.assertReply(c.cmd('DATA'), 354)
        h = hashlib.sha256()
        n = 0
        t = time.monotonic()
        for chunk in self.chunks():
            h.update(chunk)
            n += c.send_chunks([chunk])
        c.send_raw(b'.\r\n')
        self.assertReply(c.read_reply(timeout=300), 250)
        elapsed = time.monotonic() - t
        m = self.mx1.wait_messages(1)[0]
        received, rest = split_received(m.head)
        self.assertTrue(rest.startswith(b'From: <sender@client.test>'))
        self.assertEqual(m.length, len(received) + n)
        full = hashlib.sha256(received)
        for chunk in self.chunks():
            full.update(chunk)
        self.assertEqual(m.sha256, full.hexdigest())
        hwm = self.proxy.hwm_kb()
        sys.stderr.write('\n50 MB: %.1f s, proxy VmRSS idle %d kB, VmHWM %d kB\n'
                         % (elapsed, rss_idle, hwm))
        if is_asan_build(self.proxy.binary):
            self.skipTest('ASan build: memory bound not meaningful (VmHWM %d kB)' % hwm)
        self.assertLess(hwm, self.HWM_LIMIT_KB)


if __name__ == '__main__':
    main()
