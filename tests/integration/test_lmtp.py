"""The LMTP listener (RFC 2033): one message to several destinations in one
transaction, one reply per accepted recipient after the final dot, each carrying its
own destination's verdict. Asserts the replies on the wire, the MX mailboxes, the
proxy's log and, with a real Postfix as the LMTP client, what Postfix logs."""
import os
import random
import re
import signal
import socket
import stat
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness.smtpclient import Client, dot_stuff  # noqa: E402
from harness.util import (TestBase, free_port, message, proxy_config,  # noqa: E402
                          split_received, wait_until)

BODY = message('lmtp fan-out', 'one message, three destinations\r\n.dot line\r\n')

# The README's recipe for Exim's lmtp transport on the proxy's unix socket.
EXIM_UNIX_ROUTER = """\
proxy_lmtp:
  driver = accept
  domains = ! +local_domains
  transport = proxy_lmtp
  no_more
"""
EXIM_UNIX_TRANSPORT = """\
proxy_lmtp:
  driver = lmtp
  socket = %s
  batch_max = 100
  user = Debian-exim

"""


class LmtpBase(TestBase):
    """mx1 (example.test, accepts), mx451 (d451.test), mx550 (d550.test); the proxy has
    an LMTP listener on self.lmtp_port next to its SMTP one."""

    start_proxy = False

    def exim_send_three(self, recipe, subject, extra_config=''):
        """A real Exim (harness/exim.py; the test is skipped where it cannot run) with
        its configuration passed through recipe(text) -> text, started, and one
        message from alice@sender.test submitted to bob@example.test,
        later@d451.test and nobody@d550.test. Returns the Exim."""
        from harness.exim import Exim, EximUnavailable, exim_root
        try:
            root = exim_root()
        except (EximUnavailable, OSError) as e:
            self.skipTest('Exim unavailable: %s' % e)
        ex = Exim(os.path.join(self.tmpdir, 'exim'), self.lmtp_port, root,
                  extra_config=extra_config)
        with open(ex.config) as f:
            conf = recipe(f.read())
        with open(ex.config, 'w') as f:
            f.write(conf)
        self.addCleanup(ex.stop)
        ex.start()
        ex.send('alice@sender.test', ['bob@example.test', 'later@d451.test',
                                      'nobody@d550.test'],
                b'Subject: ' + subject + b'\r\n\r\nhello\r\n')
        return ex

    def setUp(self):
        super().setUp()
        self.lmtp_port = free_port()
        self.start_the_proxy()

    def lmtp_listen(self):
        """Listen entries added to the proxy's own SMTP one."""
        return [{'address': '127.0.0.1:%d' % self.lmtp_port, 'protocol': 'lmtp'}]

    def start_the_proxy(self, extra=None):
        from harness.proxy import Proxy, deep_merge
        merged = deep_merge(self.proxy_extra, getattr(
            getattr(self, self._testMethodName), 'proxy_extra', None))
        merged = deep_merge(merged, extra)
        self.proxy = Proxy(self.tmpdir, self.dns.port, self.mx_port, self.pki.ca_file,
                           extra=merged, start=False)
        self.proxy.base['listen'] = self.proxy.base['listen'] + self.lmtp_listen()
        self.proxy.write_config(merged)
        self.addCleanup(self._stop_proxy, self.proxy)
        self.proxy.start()
        return self.proxy

    def setup_fixtures(self):
        self.mx1 = self.add_mx('mx1', '127.0.0.2')
        self.mx451 = self.add_mx('mx', '127.0.0.3', domain='d451.test',
                                 data_end=(451, '4.3.0 mailbox busy, try later'))
        self.mx550 = self.add_mx('mx', '127.0.0.4', domain='d550.test',
                                 data_end=(550, '5.7.1 content refused'))

    def lmtp(self, lhlo='client.test', port=None):
        c = Client(port or self.lmtp_port)
        self.addCleanup(c.close)
        code, lines = c.read_reply()
        self.assertEqual(code, 220, lines)
        self.assertIn('LMTP', lines[0])
        if lhlo:
            code, lines = c.cmd('LHLO %s' % lhlo)
            self.assertEqual(code, 250, lines)
            self.assertIn('PIPELINING', lines)
            self.assertIn('ENHANCEDSTATUSCODES', lines)
        return c

    def transaction(self, c, rcpts, body=BODY, pipelined=True):
        """MAIL, RCPTs (one write when PIPELINED), DATA, body. Returns (rcpt replies,
        final replies) with one final reply per 2xx RCPT."""
        lines = ['MAIL FROM:<sender@client.test>'] + ['RCPT TO:<%s>' % r for r in rcpts]
        if pipelined:
            replies = c.pipeline(lines)
        else:
            replies = [c.cmd(l) for l in lines]
        self.assertEqual(replies[0][0], 250, replies[0])
        rcpt_replies = replies[1:]
        accepted = sum(1 for r in rcpt_replies if r[0] // 100 == 2)
        if not accepted:
            return rcpt_replies, []
        code, text = c.cmd('DATA')
        self.assertEqual(code, 354, text)
        c.send_raw(dot_stuff(body) + b'.\r\n')
        return rcpt_replies, c.read_replies(accepted, timeout=20)


class LmtpWire(LmtpBase):
    def test_three_destinations_one_reply_each_in_order(self):
        c = self.lmtp()
        rcpts = ['a@d451.test', 'bob@example.test', 'c@d550.test', 'dave@example.test']
        rcpt_replies, finals = self.transaction(c, rcpts)
        self.assertEqual([r[0] for r in rcpt_replies], [250, 250, 250, 250])
        self.assertEqual([r[0] for r in finals], [451, 250, 550, 250])
        self.assertReply(finals[0], 451, '4.3.0 mailbox busy')
        self.assertReply(finals[2], 550, '5.7.1 content refused')
        c.nothing_pending(0.3)
        self.mx1.wait_messages(1)
        self.assertEqual(len(self.mx1.messages), 1)
        msg = self.mx1.messages[0]
        self.assertEqual(msg.rcpts, ['bob@example.test', 'dave@example.test'])
        self.assertIn(b'\r\n.dot line\r\n', msg.data)
        self.assertTrue(msg.data.startswith(b'Received: from client.test'), msg.data[:100])
        self.assertIn(b'with LMTP', msg.data.split(b'\r\n\r\n')[0])
        # Neither of the other destinations kept the message.
        self.assertEqual(self.mx451.messages, [])
        self.assertEqual(self.mx550.messages, [])
        self.assertLog(r'to=<bob@example\.test>, relay=mx1\.example\.test.*status=sent')
        self.assertLog(r'to=<a@d451\.test>, relay=mx\.d451\.test.*status=deferred '
                       r'\(451 4\.3\.0')
        self.assertLog(r'to=<c@d550\.test>, relay=mx\.d550\.test.*status=bounced '
                       r'\(550 5\.7\.1')
        # The connection goes on: a second transaction, then QUIT.
        _, finals = self.transaction(c, ['eve@example.test'])
        self.assertEqual([r[0] for r in finals], [250])
        self.assertReply(c.cmd('QUIT'), 221)
        # The MX connection of the first transaction was cached and reused.
        self.mx1.wait_messages(2)
        self.assertEqual(self.mx1.connections, 1)

    def test_rcpt_replies_per_destination_and_only_accepted_get_final(self):
        self.mx451.configure(rcpt=(450, '4.2.1 over quota'), data_end=None)
        c = self.lmtp()
        rcpts = ['x@d451.test', 'bob@example.test', 'y@nxdomain.test', 'c@d550.test']
        rcpt_replies, finals = self.transaction(c, rcpts)
        self.assertEqual([r[0] for r in rcpt_replies], [450, 250, 550, 250],
                         rcpt_replies)
        self.assertReply(rcpt_replies[0], 450, '4.2.1 over quota')
        self.assertEqual([r[0] for r in finals], [250, 550])
        c.nothing_pending(0.3)

    def test_sequential_rcpts_and_data_refused_by_one_destination(self):
        self.mx550.configure(data=(554, '5.3.0 no DATA today'), data_end=None)
        c = self.lmtp()
        rcpt_replies, finals = self.transaction(
            c, ['c@d550.test', 'bob@example.test'], pipelined=False)
        self.assertEqual([r[0] for r in rcpt_replies], [250, 250])
        self.assertReply(finals[0], 554, '5.3.0 no DATA today')
        self.assertReply(finals[1], 250)
        self.mx1.wait_messages(1)

    def test_reset_mid_data_affects_only_its_recipients(self):
        self.mx451.configure(reset_at='data', data_end=None)
        c = self.lmtp()
        body = BODY + b'x' * 300000 + b'\r\n'
        _, finals = self.transaction(c, ['bob@example.test', 'a@d451.test',
                                         'c@d550.test'], body=body)
        self.assertReply(finals[0], 250)
        self.assertReply(finals[1], 451, '4.4.2', 'lost')
        self.assertReply(finals[2], 550, '5.7.1')
        self.mx1.wait_messages(1)
        self.assertEqual(len(self.mx1.messages), 1)
        self.assertTrue(self.mx1.messages[0].data.endswith(b'x' * 1000 + b'\r\n'))
        self.assertEqual(self.mx451.messages, [])
        self.assertLog(r'to=<a@d451\.test>, .*status=deferred \(451 4\.4\.2')

    def test_destination_lost_after_dot_gets_4xx(self):
        self.mx451.configure(reset_at='data_end', data_end=None)
        c = self.lmtp()
        _, finals = self.transaction(c, ['a@d451.test', 'bob@example.test'])
        self.assertReply(finals[0], 451, '4.4.2')
        self.assertReply(finals[1], 250)

    def test_rset_then_new_transaction_and_helo_refused(self):
        c = self.lmtp(lhlo=None)
        self.assertReply(c.cmd('EHLO client.test'), 500, 'LHLO')
        self.assertReply(c.cmd('HELO client.test'), 500)
        self.assertReply(c.cmd('MAIL FROM:<a@client.test>'), 503)
        self.assertReply(c.cmd('LHLO client.test'), 250)
        self.assertReply(c.cmd('MAIL FROM:<a@client.test>'), 250)
        self.assertReply(c.cmd('RCPT TO:<bob@example.test>'), 250)
        self.assertReply(c.cmd('RSET'), 250)
        self.assertReply(c.cmd('DATA'), 503)
        _, finals = self.transaction(c, ['bob@example.test'])
        self.assertEqual([r[0] for r in finals], [250])
        self.mx1.wait_messages(1)
        self.assertEqual(len(self.mx1.messages), 1)

    def test_malformed_input(self):
        c = self.lmtp()
        replies = c.pipeline(['MAIL FROM:<a@client.test>', 'RCPT TO:<bob@example.test>',
                              'RCPT TO:<nodomain>', 'RCPT TO:bad syntax',
                              'RCPT TO:<x@[127.0.0.1]>', 'BOGUS', 'RCPT TO:<c@d550.test>',
                              'DATA extra'])
        self.assertEqual([r[0] for r in replies], [250, 250, 501, 501, 550, 500, 250, 501])
        c.send_raw(b'X' * 5000 + b'\r\n')
        self.assertReply(c.read_reply(), 500, '5.5.2')
        self.assertReply(c.cmd('DATA'), 354)
        # A bare LF in the body: refused for every recipient, nothing delivered.
        c.send_raw(b'Subject: x\r\n\r\nbare\nlf\r\n.\r\n')
        finals = c.read_replies(2)
        self.assertEqual([r[0] for r in finals], [550, 550])
        self.assertReply(finals[0], 550, '5.6.11')
        c.nothing_pending(0.3)
        self.assertEqual(self.mx1.messages, [])
        self.assertEqual(self.mx550.messages, [])
        self.assertReply(c.cmd('NOOP'), 250)

    def test_bdat_chunk_is_never_run_as_commands(self):
        """BDAT without CHUNKING: 503, its chunk skipped exactly; the LMTP commands
        inside it get no reply and reach no destination."""
        chunk = (b'MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@example.test>\r\n'
                 b'DATA\r\nSubject: injected\r\n\r\nevil\r\n.\r\n')
        c = self.lmtp()
        c.send_raw(b'BDAT %d LAST\r\n' % len(chunk) + chunk)
        self.assertReply(c.read_reply(), 503, '5.5.1')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')
        c.nothing_pending(0.2)
        self.assertEqual(self.mx1.connections, 0)
        self.assertEqual(self.mx1.messages, [])
        c.send_raw(b'BDAT 1x\r\n' + chunk)
        self.assertReply(c.read_reply(), 421, '4.5.0')
        self.assertTrue(c.expect_closed())
        self.assertEqual(self.mx1.connections, 0)

    def test_many_pipelined_recipients_then_dot_quit_and_half_close(self):
        """30 recipients at 3 domains in one write (more than an MX connection's
        command window), then the body, the dot and QUIT in one write and a half-close,
        as Exim sends them: every reply still comes, in order."""
        self.mx451.configure(data_end=None)
        self.mx550.configure(data_end=None)
        c = self.lmtp()
        domains = ['example.test', 'd451.test', 'd550.test']
        rcpts = ['r%02d@%s' % (i, domains[i % 3]) for i in range(30)]
        replies = c.pipeline(['MAIL FROM:<a@client.test>'] + ['RCPT TO:<%s>' % r
                                                               for r in rcpts] + ['DATA'])
        self.assertEqual([r[0] for r in replies], [250] + [250] * 30 + [354])
        c.send_raw(dot_stuff(BODY) + b'.\r\nQUIT\r\n')
        c.sock.shutdown(socket.SHUT_WR)
        finals = c.read_replies(31)
        self.assertEqual([r[0] for r in finals], [250] * 30 + [221])
        c.expect_closed()
        for mx in (self.mx1, self.mx451, self.mx550):
            mx.wait_messages(1)
            self.assertEqual(len(mx.messages), 1)
            self.assertEqual(len(mx.messages[0].rcpts), 10)
        self.assertEqual(self.mx1.messages[0].rcpts, rcpts[0::3])

    def test_sigterm_lets_the_fan_out_finish(self):
        """SIGTERM after the dot, one destination still thinking: both recipients get
        their MX's verdict, then 421; the process exits 0."""
        self.mx1.configure(delay_at=('data_end', 1.0))
        self.mx451.configure(data_end=None)
        c = self.lmtp()
        replies = c.pipeline(['MAIL FROM:<a@client.test>', 'RCPT TO:<bob@example.test>',
                              'RCPT TO:<a@d451.test>', 'DATA'])
        self.assertEqual([r[0] for r in replies], [250, 250, 250, 354])
        c.send_raw(dot_stuff(BODY) + b'.\r\n')
        self.mx451.wait_messages(1)
        self.proxy.proc.send_signal(signal.SIGTERM)
        finals = c.read_replies(2)
        self.assertEqual([r[0] for r in finals], [250, 250])
        self.assertReply(c.read_reply(), 421)
        self.assertEqual(self.proxy.proc.wait(10), 0)
        self.proxy.proc = None  # stopped here, not by the cleanup
        self.assertNotRegex(self.proxy.log_text(), r'Sanitizer|runtime error:')
        self.assertEqual(len(self.mx1.messages), 1)

    def test_smtp_listener_still_one_destination(self):
        c = self.client()
        replies = c.pipeline(['MAIL FROM:<a@client.test>', 'RCPT TO:<bob@example.test>',
                              'RCPT TO:<c@d550.test>'])
        self.assertReply(replies[2], 452, '4.5.3')
        self.assertReply(c.cmd('LHLO x'), 500)


class LmtpFaults(LmtpBase):
    """Faults of one destination in every phase change only its recipients' replies."""

    proxy_extra = {'timeouts': {'data_done': 2}}

    def setup_fixtures(self):
        super().setup_fixtures()
        self.mx451.configure(data_end=None)
        self.mx550.configure(data_end=None)
        self.dns.servfail('broken.test')
        self.dns.add('down.test', 'MX', (10, 'mx.down.test'))
        self.dns.add('mx.down.test', 'A', '127.0.0.9')  # nothing listens there

    def test_each_destination_fails_its_own_way(self):
        self.mx451.configure(mail=(550, '5.7.1 sender refused here'))
        self.mx550.configure(delay_at=('rcpt', 0.5))
        c = self.lmtp()
        rcpts = ['c@d550.test', 'x@broken.test', 'bob@example.test', 'y@down.test',
                 'a@d451.test', 'c2@d550.test']
        rcpt_replies, finals = self.transaction(c, rcpts)
        self.assertEqual([r[0] for r in rcpt_replies], [250, 451, 250, 451, 550, 250],
                         rcpt_replies)
        self.assertReply(rcpt_replies[3], 451, '4.4.1', 'mx.down.test')
        self.assertReply(rcpt_replies[4], 550, '5.7.1 sender refused here')
        self.assertEqual([r[0] for r in finals], [250, 250, 250])
        self.mx1.wait_messages(1)
        self.mx550.wait_messages(1)
        self.assertEqual(self.mx550.messages[0].rcpts, ['c@d550.test', 'c2@d550.test'])

    def test_slow_destination_times_out_alone(self):
        """timeouts.data_done is 2 s; d451's MX takes 4 s for its verdict: its
        recipient gets 451 and the message is not counted as delivered there; the
        others' 250s stand."""
        self.mx451.configure(delay_at=('data_end', 4))
        c = self.lmtp()
        _, finals = self.transaction(c, ['bob@example.test', 'a@d451.test',
                                         'c@d550.test'])
        self.assertReply(finals[0], 250)
        self.assertReply(finals[1], 451, '4.4.2')
        self.assertReply(finals[2], 250)
        self.mx1.wait_messages(1)
        self.mx550.wait_messages(1)
        self.assertLog(r'to=<a@d451\.test>, .*status=deferred \(451 4\.4\.2')

    def test_large_message_streams_to_all_with_one_slow_reader(self):
        """4 MiB to three destinations, one of which pauses mid-body: the proxy pauses
        reading the MTA meanwhile (bounded buffers) and every MX gets the message
        intact."""
        self.mx451.configure(delay_at=('data', 1.0), discard_body=True)
        self.mx1.configure(discard_body=True)
        self.mx550.configure(discard_body=True)
        line = b'0123456789' * 7 + b'abcdefgh\r\n'
        body = b'Subject: big\r\n\r\n' + line * (4 * 1024 * 1024 // len(line))
        c = self.lmtp()
        _, finals = self.transaction(c, ['bob@example.test', 'a@d451.test',
                                         'c@d550.test'], body=body)
        self.assertEqual([r[0] for r in finals], [250, 250, 250])
        for mx, rcpt in ((self.mx1, 'bob@example.test'), (self.mx451, 'a@d451.test'),
                         (self.mx550, 'c@d550.test')):
            mx.wait_messages(1)
            m = mx.messages[0]
            received, rest = split_received(m.head)
            # Each copy names only its own recipient; the body arrives whole.
            self.assertIn(('for <%s>' % rcpt).encode(), received)
            self.assertEqual(m.length, len(received) + len(body))
            self.assertEqual(rest, body[:len(rest)])


class LmtpRandomFaults(LmtpBase):
    """Nothing lost, nothing doubled: 25 transactions, each to one recipient at each of
    three destinations whose MX resets the connection at a random stage (seeded). A
    recipient reported 250 is in its MX's mailbox exactly once; any other reply means
    it is in none."""

    def setup_fixtures(self):
        super().setup_fixtures()
        # One seeded sequence per MX: each MX's faults do not depend on how the three
        # servers' threads interleave.
        for i, mx in enumerate((self.mx1, self.mx451, self.mx550)):
            rng = random.Random(2033 + i)
            mx.configure(data_end=None,
                         fault_fn=lambda sess, stage, rng=rng:
                         'reset' if rng.random() < 0.08 else None)

    def test_random_resets_never_lose_or_double(self):
        domains = ['example.test', 'd451.test', 'd550.test']
        final = {}
        c = None
        for n in range(25):
            if c is None:
                c = self.lmtp()
            rcpts = ['t%02d@%s' % (n, d) for d in domains]
            replies = c.pipeline(['MAIL FROM:<a@client.test>'] + ['RCPT TO:<%s>' % r
                                                                   for r in rcpts])
            self.assertEqual(replies[0][0], 250)
            ok = [r for r, rep in zip(rcpts, replies[1:]) if rep[0] == 250]
            for r, rep in zip(rcpts, replies[1:]):
                final[r] = rep[0]
                self.assertIn(rep[0] // 100, (2, 4), rep)
            if not ok:
                self.assertReply(c.cmd('RSET'), 250)
                continue
            self.assertReply(c.cmd('DATA'), 354)
            c.send_raw(dot_stuff(message('t%02d' % n)) + b'.\r\n')
            for r, rep in zip(ok, c.read_replies(len(ok), timeout=20)):
                final[r] = rep[0]
                self.assertIn(rep[0] // 100, (2, 4), rep)
        self.assertReply(c.cmd('QUIT'), 221)
        delivered = {}
        for mx in (self.mx1, self.mx451, self.mx550):
            for m in list(mx.messages):
                for r in m.rcpts:
                    delivered[r] = delivered.get(r, 0) + 1
        for r, code in sorted(final.items()):
            self.assertEqual(delivered.get(r, 0), 1 if code == 250 else 0,
                             '%s: reply %d, %d copies' % (r, code, delivered.get(r, 0)))
        sent = sum(1 for c in final.values() if c == 250)
        print('random resets: %d of %d recipients delivered, the rest 4xx'
              % (sent, len(final)), file=sys.stderr)
        # Both outcomes happened (these seeds: 52 of 75 delivered).
        self.assertGreater(sum(1 for c in final.values() if c == 250), 20)
        self.assertGreater(sum(1 for c in final.values() if c != 250), 5)


class LmtpLimits(LmtpBase):
    proxy_extra = {'lmtp': {'max_recipients': 4, 'max_destinations': 2}}

    def test_recipient_and_destination_limits(self):
        """max_recipients counts RCPT commands of the transaction (refused ones too)."""
        c = self.lmtp()
        replies = c.pipeline(['MAIL FROM:<a@client.test>', 'RCPT TO:<bob@example.test>',
                              'RCPT TO:<a@d451.test>', 'RCPT TO:<c@d550.test>',
                              'RCPT TO:<dave@example.test>', 'RCPT TO:<eve@example.test>'])
        self.assertEqual([r[0] for r in replies], [250, 250, 250, 452, 250, 452])
        self.assertReply(replies[3], 452, '4.5.3', 'destinations')
        self.assertReply(replies[5], 452, '4.5.3', 'recipients')
        self.assertEqual(self.mx550.connections, 0)


class LmtpConnectionLimit(LmtpBase):
    proxy_extra = {'outbound': {'max_connections': 1}}

    def test_outbound_connection_limit(self):
        c = self.lmtp()
        replies = c.pipeline(['MAIL FROM:<a@client.test>', 'RCPT TO:<bob@example.test>',
                              'RCPT TO:<c@d550.test>'])
        self.assertEqual([r[0] for r in replies], [250, 250, 452])
        self.assertReply(replies[2], 452, '4.5.3', 'MX connections')
        self.assertLog(r'outbound\.max_connections \(1\) reached: d550\.test deferred')


class LmtpMixedPolicy(LmtpBase):
    """One DANE destination (signed MX, TLSA for its key) and one at `may` without
    STARTTLS, in one transaction: each gets its own policy."""

    proxy_extra = {'outbound': {'tls': {'default_level': 'dane'}},
                   'policy': {'table': {'plain.test': 'may'}}}

    def setup_fixtures(self):
        self.mx1 = self.add_mx('mx1', '127.0.0.2')
        self.mx_plain = self.add_mx('mx', '127.0.0.5', domain='plain.test', tls=False)
        self.mx_dane = self.add_mx('mx', '127.0.0.6', domain='dane.test')
        self.dns.ad = True
        cert = self.mx_dane.cfg['starttls'][0]
        tlsa = self.pki.tlsa(cert) if self._testMethodName.endswith('one_transaction') \
            else (3, 1, 1, b'\0' * 32)
        self.dns.add('_%d._tcp.mx.dane.test' % self.mx_port, 'TLSA', tlsa)

    def test_dane_and_may_in_one_transaction(self):
        c = self.lmtp()
        _, finals = self.transaction(c, ['d@dane.test', 'p@plain.test'])
        self.assertEqual([r[0] for r in finals], [250, 250])
        self.mx_dane.wait_messages(1)
        self.mx_plain.wait_messages(1)
        self.assertEqual(self.mx_dane.messages[0].tls_version, 'TLSv1.3')
        self.assertIsNone(self.mx_plain.messages[0].tls_version)
        self.assertLog(r'(?m)to=<d@dane\.test>, .*status=sent .*, tls=TLSv1\.3/Verified, '
                       r'policy=dane$')
        self.assertLog(r'(?m)to=<p@plain\.test>, .*status=sent .*, tls=none, '
                       r'policy=table/may$')

    def test_dane_failure_defers_only_its_recipient(self):
        c = self.lmtp()
        replies = c.pipeline(['MAIL FROM:<a@client.test>', 'RCPT TO:<bob@example.test>',
                              'RCPT TO:<d@dane.test>'])
        self.assertReply(replies[1], 250)
        self.assertReply(replies[2], 451, '4.7.5')
        self.assertNoMail(self.mx_dane)


class LmtpUnixSocket(LmtpBase):
    def lmtp_listen(self):
        self.sock_path = os.path.join(self.tmpdir, 'lmtp.sock')
        self.smtp_sock = os.path.join(self.tmpdir, 'smtp.sock')
        self.pf_sock = os.path.join(self.tmpdir, 'pf-lmtp.sock')
        self.exim_sock = os.path.join(self.tmpdir, 'exim-lmtp.sock')
        return [{'path': self.sock_path, 'mode': '0600', 'protocol': 'lmtp'},
                {'path': self.smtp_sock},
                {'path': self.exim_sock, 'mode': '0666', 'protocol': 'lmtp'},
                {'path': self.pf_sock, 'mode': '0666', 'protocol': 'lmtp'}]

    def wait_sockets(self):
        """Until the last socket of the list has its mode (it is made last)."""
        def ready():
            try:
                return stat.S_IMODE(os.stat(self.pf_sock).st_mode) == 0o666
            except FileNotFoundError:
                return False
        wait_until(ready, 10, 'the unix sockets were not made')

    def unix_client(self, path):
        c = Client.__new__(Client)
        c.timeout, c.buf, c.transcript, c.eof = 10, b'', [], False
        c.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.sock.settimeout(10)
        c.sock.connect(path)
        self.addCleanup(c.close)
        return c

    def test_lmtp_and_smtp_over_unix_sockets(self):
        # The TCP listener (the harness's readiness probe) may answer before the
        # sockets after it in the list are made.
        self.wait_sockets()
        self.check_unix_sockets()

    @proxy_config({'workers': 2})
    def test_unix_sockets_with_two_loops(self):
        """workers: 2: TCP listeners are per loop (SO_REUSEPORT); a unix socket has
        one file and one owner, the main loop, which makes it with its mode, serves
        it and removes it at stop."""
        self.proxy.wait_log(r'2 event loops \(workers\)')
        self.wait_sockets()
        self.check_unix_sockets()

    def check_unix_sockets(self):
        self.assertEqual(stat.S_IMODE(os.stat(self.sock_path).st_mode), 0o600)
        c = self.unix_client(self.sock_path)
        self.assertReply(c.read_reply(), 220, 'LMTP')
        self.assertReply(c.cmd('LHLO client.test'), 250)
        _, finals = self.transaction(c, ['bob@example.test', 'c@d550.test'])
        self.assertEqual([r[0] for r in finals], [250, 550])
        s = self.unix_client(self.smtp_sock)
        self.assertReply(s.read_reply(), 220, 'ESMTP')
        self.assertReply(s.cmd('EHLO client.test'), 250)
        out = s.send_message('a@client.test', ['carol@example.test'], BODY)
        self.assertReply(out['data'], 250)
        self.mx1.wait_messages(2)
        self.proxy.stop()
        self.assertFalse(os.path.exists(self.sock_path))


    def test_postfix_lmtp_over_unix_socket(self):
        """Postfix's lmtp client (as user postfix) on the socket: lmtp:unix:PATH."""
        from harness.postfix import Postfix
        self.wait_sockets()
        pf = Postfix(os.path.join(self.tmpdir, 'postfix'), lmtp=True, extra_main_cf={
            'default_transport': 'lmtp:unix:%s' % self.pf_sock})
        self.addCleanup(pf.stop)
        pf.start()
        qid = pf.send('alice@sender.test', ['bob@example.test', 'nobody@d550.test'],
                      b'Subject: via unix\r\n\r\nhello\r\n')
        sent = pf.wait_status('bob@example.test', 'sent', timeout=30, queue_id=qid)
        self.assertIn('postfix/lmtp[', sent)
        pf.wait_status('nobody@d550.test', 'bounced', timeout=30, queue_id=qid)
        self.mx1.wait_messages(1)

    def test_exim_lmtp_transport_over_unix_socket(self):
        """Exim's lmtp transport (a local transport, run as Debian-exim, hence the
        socket's 0666) on the socket, with the README's recipe: an accept router and
        batch_max, so one LMTP transaction carries three destinations' recipients."""
        self.wait_sockets()

        def unix_recipe(conf):
            router = re.search(r'^smarthost:\n(  .*\n)+', conf, re.M).group(0)
            conf = conf.replace(router, EXIM_UNIX_ROUTER)
            return conf.replace('begin transports\n', 'begin transports\n' +
                                EXIM_UNIX_TRANSPORT % self.exim_sock)
        ex = self.exim_send_three(unix_recipe, b'exim lmtp socket',
                                  extra_config='domainlist local_domains = @')
        # A local delivery logs the local part, then the address.
        ex.wait_log(r'=> bob <bob@example\.test> .*R=proxy_lmtp T=proxy_lmtp '
                    r'.*C="250 2\.0\.0')
        ex.wait_log(r'\*\* nobody@d550\.test .*R=proxy_lmtp T=proxy_lmtp: .*'
                    r'550 5\.7\.1 content refused')
        # The deferred recipient is retried (every second here), alone.
        retry = re.compile(r'== later@d451\.test R=proxy_lmtp T=proxy_lmtp defer .*'
                           r'451 4\.3\.0 mailbox busy')
        wait_until(lambda: len(retry.findall(ex.log_text())) >= 2, 30,
                   lambda: 'no retry of later@d451.test:\n' + ex.log_text())
        self.assertEqual(len(re.findall(r'=> bob <bob@example\.test>', ex.log_text())),
                         1)
        self.mx1.wait_messages(1)
        self.assertEqual(len(self.mx1.messages), 1)
        self.assertEqual(self.mx1.messages[0].rcpts, ['bob@example.test'])
        self.assertIn(b'Subject: exim lmtp socket', self.mx1.messages[0].data)
        # One LMTP transaction carried all three recipients: one proxy session id.
        log = self.proxy.log_text()
        ids = [re.search(r'([0-9A-F]{10}): to=<%s>' % re.escape(r), log).group(1)
               for r in ('bob@example.test', 'later@d451.test', 'nobody@d550.test')]
        self.assertEqual(len(set(ids)), 1, ids)
        self.assertRegex(log, r'%s: connect from unknown\[unix\]' % ids[0])
        self.assertEqual(len(re.findall(r'to=<bob@example\.test>', log)), 1)


class LmtpPostfix(LmtpBase):
    """A real Postfix 3.7 delivers through its lmtp client: one message, three
    destinations, three outcomes in Postfix's log."""

    def test_postfix_lmtp_sent_deferred_bounced(self):
        from harness.postfix import Postfix
        pf = Postfix(os.path.join(self.tmpdir, 'postfix'), relay_port=self.lmtp_port,
                     lmtp=True)
        self.addCleanup(pf.stop)
        pf.start()
        start = pf.log_offset()
        qid = pf.send('alice@sender.test',
                      ['bob@example.test', 'later@d451.test', 'nobody@d550.test'],
                      b'Subject: postfix lmtp\r\nMessage-ID: <pf-lmtp@sender.test>\r\n'
                      b'\r\nhello\r\n')
        sent = pf.wait_status('bob@example.test', 'sent', timeout=30, start=start,
                              queue_id=qid)
        deferred = pf.wait_status('later@d451.test', 'deferred', timeout=30,
                                  start=start, queue_id=qid)
        bounced = pf.wait_status('nobody@d550.test', 'bounced', timeout=30,
                                 start=start, queue_id=qid)
        for line in (sent, deferred, bounced):
            self.assertIn('postfix/lmtp[', line)
            self.assertIn('relay=127.0.0.1[127.0.0.1]:%d' % self.lmtp_port, line)
        self.assertIn('451 4.3.0 mailbox busy', deferred)
        self.assertIn('550 5.7.1 content refused', bounced)
        self.mx1.wait_messages(1)
        # The deferred recipient is retried (1 s backoff here), alone: bob is not sent
        # again.
        retry = re.compile(r'%s: to=<later@d451\.test>.*status=deferred' % qid)
        wait_until(lambda: len(retry.findall(pf.log_text()[start:])) >= 2, 30,
                   lambda: 'no retry of later@d451.test:\n' + pf.log_text()[start:])
        self.assertEqual(len(self.mx1.messages), 1)
        self.assertEqual(self.mx1.messages[0].rcpts, ['bob@example.test'])
        self.assertEqual(len(re.findall(r'to=<bob@example\.test>.*status=sent',
                                        pf.log_text()[start:])), 1)


class LmtpExim(LmtpBase):
    """A real Exim (harness/exim.py) with the README's recipe: its smtp transport with
    protocol = lmtp, one delivery for recipients at three destinations."""

    def test_exim_lmtp_delivered_deferred_bounced(self):
        # The README's Exim recipe: the smtp transport speaking LMTP.
        ex = self.exim_send_three(
            lambda conf: conf.replace('remote_smtp:\n  driver = smtp\n',
                                      'remote_smtp:\n  driver = smtp\n  protocol = lmtp\n'
                                      '  port = %d\n  max_rcpt = 100\n' % self.lmtp_port),
            b'exim lmtp')
        sent = ex.wait_log(r'=> bob@example\.test .*C="250 2\.0\.0').group(0)
        ex.wait_log(r'== later@d451\.test .*451 4\.3\.0 mailbox busy')
        ex.wait_log(r'\*\* nobody@d550\.test .*550 5\.7\.1 content refused')
        self.assertIn('[127.0.0.1]:%d' % self.lmtp_port, sent)
        self.mx1.wait_messages(1)
        self.assertEqual(self.mx1.messages[0].rcpts, ['bob@example.test'])
        # One LMTP transaction carried all three recipients: one proxy session id.
        log = self.proxy.log_text()
        ids = [re.search(r'([0-9A-F]{10}): to=<%s>' % re.escape(r), log).group(1)
               for r in ('bob@example.test', 'later@d451.test', 'nobody@d550.test')]
        self.assertEqual(len(set(ids)), 1, ids)


if __name__ == '__main__':
    unittest.main()
