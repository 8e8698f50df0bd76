#!/usr/bin/python3
"""Faults on the way to the destination: resets, DNS failures, unusable MX hosts,
TLS failures and a STARTTLS response injection. A fault that may heal is a 4xx; only
the destination's own refusal (and NXDOMAIN / null MX) is a 5xx."""

import os
import re
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Closed, TestBase, main, message, proxy_config, split_received  # noqa: E402

NO_SERVER_IPS = ('127.0.0.9', '127.0.0.10')  # nothing listens there: connect is refused


def big_body(kb=256):
    line = 'x' * 78 + '\r\n'
    return line * (kb * 1024 // len(line))


class RelayFaults(TestBase):

    def assertNoDelivery(self, *mxs):
        for mx in mxs or (self.mx1,):
            self.assertEqual(mx.messages, [], 'MX %s has a message' % mx.ip)

    def assertSessionUsable(self, c):
        """The client connection still works after the failed transaction."""
        self.assertReply(c.cmd('RSET'), 250)
        self.assertReply(c.cmd('NOOP'), 250)

    # ---- the MX breaks during DATA --------------------------------------------------------
    def test_reset_mid_data(self):
        """The MX resets the connection while the body streams: the client gets a 4xx
        after its final dot, and the MX has no message."""
        self.mx1.configure(reset_at='data')
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test>'), 250)
        self.assertReply(c.data(message('reset', big_body())), 4)
        self.mx1.wait_for(lambda: self.mx1.sessions[0].reset, 5)
        self.assertNoDelivery()
        self.assertSessionUsable(c)

    def test_reset_before_final_reply(self):
        """The MX reads the final dot and resets without a reply: 4xx, not 250."""
        self.mx1.configure(reset_at='data_end')
        out = self.send('rcpt@example.test')
        self.assertReply(out['data'], 4)
        self.assertNoDelivery()

    def test_client_disconnects_mid_data(self):
        """The client goes away in the middle of the body: the proxy drops the
        upstream without the final dot, so the MX has no (partial) message."""
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        c.cmd('RCPT TO:<rcpt@example.test>')
        self.assertReply(c.cmd('DATA'), 354)
        c.send_raw(message('partial', big_body(64)))
        self.mx1.wait_for(lambda: self.mx1.sessions and self.mx1.sessions[0].commands[-1:]
                          == ['DATA'], 10)
        c.close()
        self.mx1.wait_for(lambda: all(s.closed for s in self.mx1.sessions), 10,
                          'the proxy kept the upstream open after the client left')
        self.assertNoDelivery()
        self.assertTrue(self.proxy.running())

    @proxy_config({'timeouts': {'inbound_data': 1}})
    def test_client_stalls_mid_data(self):
        """The client stops sending in the middle of the body for longer than
        timeouts.inbound_data: the client is dropped (a 421 at most), the upstream is
        dropped without the final dot, the MX has no message."""
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        c.cmd('RCPT TO:<rcpt@example.test>')
        self.assertReply(c.cmd('DATA'), 354)
        c.send_raw(message('stall', 'first part\r\n'))
        t = time.monotonic()
        try:
            reply = c.read_reply(timeout=10)
        except Closed:
            reply = None  # dropped without a reply: fine too
        if reply is not None:
            self.assertReply(reply, 421)
            self.assertTrue(c.expect_closed())
        self.assertLess(time.monotonic() - t, 5)
        self.mx1.wait_for(lambda: all(s.closed for s in self.mx1.sessions), 10,
                          'upstream still open after the client timed out')
        self.assertNoDelivery()

    @proxy_config({'timeouts': {'command': 1}})
    def test_slow_mx_command_timeout(self):
        """An MX slower than timeouts.command on RCPT: 4xx to the client, in time."""
        self.mx1.configure(delay_at=('rcpt', 5))
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        t = time.monotonic()
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test>', timeout=10), 4)
        self.assertLess(time.monotonic() - t, 4.5)

    @proxy_config({'timeouts': {'data_done': 1}})
    def test_slow_final_reply_data_done_timeout(self):
        """No final reply within timeouts.data_done: 4xx (never a 250 of our own)."""
        self.mx1.configure(delay_at=('data_end', 5))
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        c.cmd('RCPT TO:<rcpt@example.test>')
        t = time.monotonic()
        self.assertReply(c.data(message('slow'), timeout=10), 4)
        self.assertLess(time.monotonic() - t, 4.5)

    # ---- DNS -----------------------------------------------------------------------------
    def test_dns_timeout(self):
        """The resolver never answers: RCPT gets 4xx 4.4.3."""
        self.dns.drop('example.test')
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test>'), 4, '4.4.3')
        self.assertEqual(self.mx1.connections, 0)

    def test_dns_servfail(self):
        """SERVFAIL for the MX query: 4xx."""
        self.dns.servfail('example.test')
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        r = c.cmd('RCPT TO:<rcpt@example.test>')
        self.assertReply(r, 4)
        self.assertRegex(' '.join(r[1]), r'^4\.\d+\.\d+')
        self.assertEqual(self.mx1.connections, 0)

    def refused_rcpt(self, rcpt, code, text):
        """RCPT to rcpt gets code and text, naming the recipient first as smtpd's
        refusals do; so does the delivery line."""
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        got, lines = c.cmd('RCPT TO:<%s>' % rcpt)
        self.assertEqual(got, code, lines)
        self.assertTrue(lines[0].startswith(text), lines)
        self.proxy.wait_log(r'to=<%s>, .*status=bounced \(%d %s' % (
            re.escape(rcpt), code, re.escape(lines[0])))
        self.assertEqual(self.mx1.connections, 0)

    def test_nxdomain(self):
        """A domain that does not exist: 550 5.1.2."""
        self.refused_rcpt('rcpt@nosuchdomain.test', 550,
                          '5.1.2 <rcpt@nosuchdomain.test>: nosuchdomain.test: domain not found')

    def test_null_mx(self):
        """RFC 7505 null MX: 556 5.1.10, no connection attempt."""
        self.dns.add('nullmx.test', 'MX', (0, '.'))
        self.refused_rcpt('rcpt@nullmx.test', 556,
                          '5.1.10 <rcpt@nullmx.test>: nullmx.test: domain accepts no mail')

    def test_implicit_mx(self):
        """No MX records but an A record: the domain itself is the MX (RFC 5321 5.1)."""
        mx = self.add_mx(None, '127.0.0.6', fqdn='amx.test', pref=None)
        out = self.send('rcpt@amx.test')
        self.assertReply(out['data'], 250)
        self.assertEqual(mx.wait_messages(1)[0].rcpts, ['rcpt@amx.test'])

    def test_mx_lookup_failure_never_uses_the_address_records(self):
        """RFC 5321 5.1: SERVFAIL or no answer to the MX query defers (4.4.3); the
        domain's own A record is not taken for an implicit MX (whoever drops the MX
        answer must not redirect the mail)."""
        mx = self.add_mx(None, '127.0.0.6', fqdn='amx.test', pref=None)
        for fault in (self.dns.servfail, self.dns.drop):
            fault('amx.test', 'MX')
            c = self.client()
            c.cmd('MAIL FROM:<sender@client.test>')
            self.assertReply(c.cmd('RCPT TO:<rcpt@amx.test>'), 451, '4.4.3')
            c.close()
        self.assertEqual(mx.connections, 0)

    def test_domain_case_and_trailing_dot(self):
        """Example.TEST routes as example.test; a trailing dot is not in RFC 5321's
        Domain syntax (4.1.2): 501 5.5.4."""
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        self.assertReply(c.cmd('RCPT TO:<rcpt@Example.TEST.>'), 501, '5.5.4')
        self.assertReply(c.cmd('RCPT TO:<rcpt@Example.TEST>'), 250)
        self.assertReply(c.data(message()), 250)
        self.assertEqual(len(self.mx1.wait_messages(1)), 1)

    # ---- MX selection --------------------------------------------------------------------
    def test_all_addresses_of_a_host_before_the_next_host(self):
        """RFC 5321 5.1: lowest preference first, every address of a host (IPv4, then
        IPv6) before the next host."""
        self.dns.add('multi.test', 'MX', (20, 'b.multi.test'))
        self.dns.add('multi.test', 'MX', (10, 'a.multi.test'))
        self.dns.add('a.multi.test', 'A', NO_SERVER_IPS[0])
        self.dns.add('a.multi.test', 'AAAA', '::1')
        self.dns.add('b.multi.test', 'A', NO_SERVER_IPS[1])
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        got, lines = c.cmd('RCPT TO:<rcpt@multi.test>')
        self.assertEqual(got, 451, lines)
        tried = re.findall(r'([a-z.]+\[[0-9a-f.:]+\])', ' '.join(lines))
        self.assertEqual(tried, ['a.multi.test[%s]' % NO_SERVER_IPS[0], 'a.multi.test[::1]',
                                 'b.multi.test[%s]' % NO_SERVER_IPS[1]])

    def test_equal_preferences_shuffled(self):
        """RFC 5321 5.1: hosts of equal preference are tried in random order: over 24
        routings both orders occur (each has probability 2^-24 of never occurring)."""
        self.dns.add('multi.test', 'MX', (10, 'd1.multi.test'))
        self.dns.add('multi.test', 'MX', (10, 'd2.multi.test'))
        self.dns.add('d1.multi.test', 'A', NO_SERVER_IPS[0])
        self.dns.add('d2.multi.test', 'A', NO_SERVER_IPS[1])
        firsts = set()
        c = self.client()
        for _ in range(24):
            c.cmd('MAIL FROM:<sender@client.test>')
            got, lines = c.cmd('RCPT TO:<rcpt@multi.test>')
            self.assertEqual(got, 451, lines)
            firsts.add(re.search(r'(d[12])\.multi\.test\[', ' '.join(lines)).group(1))
            self.assertReply(c.cmd('RSET'), 250)
        self.assertEqual(firsts, {'d1', 'd2'})

    def test_null_mx_next_to_other_mx_ignored(self):
        """RFC 7505 3: a null MX must stand alone; next to real MX records it is
        ignored and the real ones are used."""
        self.dns.add('multi.test', 'MX', (0, '.'))
        mx2 = self.add_mx('mx2', '127.0.0.3', domain='multi.test', pref=20)
        self.assertReply(self.send('rcpt@multi.test')['data'], 250)
        mx2.wait_messages(1)

    def test_mx_target_address_literal_is_a_name(self):
        """RFC 5321 5.1: an MX naming "127.0.0.3" is a name to resolve, never an
        address to dial: it has no address records here, so nothing is dialled."""
        mx = self.add_mx('lit', '127.0.0.3', domain='multi.test', pref=None,
                         a_record=False)
        self.dns.add('multi.test', 'MX', (10, '127.0.0.3'))
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        self.assertReply(c.cmd('RCPT TO:<rcpt@multi.test>'), 4, '127.0.0.3: host not found')
        self.assertEqual(mx.connections, 0)

    def test_unspecified_address_never_dialled(self):
        """An MX resolving to 0.0.0.0 or :: (which the kernel takes for this host) is
        skipped, never dialled: the next MX gets the message."""
        self.dns.add('multi.test', 'MX', (10, 'zero.multi.test'))
        self.dns.add('zero.multi.test', 'A', '0.0.0.0')
        self.dns.add('zero.multi.test', 'AAAA', '::')
        mx2 = self.add_mx('mx2', '127.0.0.3', domain='multi.test', pref=20)
        self.assertReply(self.send('rcpt@multi.test')['data'], 250)
        mx2.wait_messages(1)
        self.dns.add('zero.test', 'MX', (10, 'zero.multi.test'))
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        self.assertReply(c.cmd('RCPT TO:<rcpt@zero.test>'), 451, '4.4.4',
                         'zero.multi.test: no usable address')
        self.assertNotRegex(self.proxy.log_text(), r'zero\.multi\.test\[')

    def test_mx_address_lookup_failure_skipped(self):
        """SERVFAIL for one MX host's addresses: that host is skipped, the next one
        gets the message."""
        self.dns.add('multi.test', 'MX', (10, 'broken.multi.test'))
        self.dns.servfail('broken.multi.test')
        mx2 = self.add_mx('mx2', '127.0.0.3', domain='multi.test', pref=20)
        self.assertReply(self.send('rcpt@multi.test')['data'], 250)
        mx2.wait_messages(1)

    def test_no_mx_host_has_addresses_defers(self):
        """Every MX host's address lookup failing (SERVFAIL) or finding no host
        (NXDOMAIN) defers with 451 4.4.4: a DNS fault that may heal, never a bounce."""
        self.dns.add('multi.test', 'MX', (10, 'broken.multi.test'))
        self.dns.add('multi.test', 'MX', (20, 'gone.multi.test'))
        self.dns.servfail('broken.multi.test')
        self.dns.add('nxmx.test', 'MX', (10, 'gone.nxmx.test'))
        c = self.client()
        for domain in ('multi.test', 'nxmx.test'):
            c.cmd('MAIL FROM:<sender@client.test>')
            self.assertReply(c.cmd('RCPT TO:<rcpt@%s>' % domain), 451, '4.4.4')
            self.assertReply(c.cmd('RSET'), 250)

    def test_first_mx_refuses_second_gets_it(self):
        """The preferred MX refuses the TCP connection: the next MX gets the message."""
        self.dns.add('multi.test', 'MX', (10, 'dead.multi.test'))
        self.dns.add('dead.multi.test', 'A', NO_SERVER_IPS[0])
        mx2 = self.add_mx('mx2', '127.0.0.3', domain='multi.test', pref=20)
        out = self.send('rcpt@multi.test')
        self.assertReply(out['data'], 250)
        self.assertEqual(mx2.wait_messages(1)[0].rcpts, ['rcpt@multi.test'])

    def test_mx_without_address_skipped(self):
        """An MX host name with no A/AAAA records is skipped."""
        self.dns.add('multi.test', 'MX', (10, 'noaddr.multi.test'))
        mx2 = self.add_mx('mx2', '127.0.0.3', domain='multi.test', pref=20)
        out = self.send('rcpt@multi.test')
        self.assertReply(out['data'], 250)
        mx2.wait_messages(1)

    def test_every_mx_unusable(self):
        """Both MX hosts refuse connections: 451, the reply names each host."""
        self.dns.add('multi.test', 'MX', (10, 'dead1.multi.test'))
        self.dns.add('multi.test', 'MX', (20, 'dead2.multi.test'))
        self.dns.add('dead1.multi.test', 'A', NO_SERVER_IPS[0])
        self.dns.add('dead2.multi.test', 'A', NO_SERVER_IPS[1])
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        self.assertReply(c.cmd('RCPT TO:<rcpt@multi.test>'), 451, 'dead1.multi.test',
                         'dead2.multi.test')
        self.assertSessionUsable(c)

    def test_mx_greets_421_next_mx(self):
        """The preferred MX greets 421: the next MX gets the message."""
        mx1 = self.add_mx('mx1', '127.0.0.3', domain='multi.test', pref=10,
                          greeting=(421, '4.3.2 service not available'))
        mx2 = self.add_mx('mx2', '127.0.0.4', domain='multi.test', pref=20)
        out = self.send('rcpt@multi.test')
        self.assertReply(out['data'], 250)
        mx2.wait_messages(1)
        self.assertEqual(mx1.connections, 1)
        self.assertNoDelivery(mx1)

    # ---- a host that fails before the transaction: QUIT, next MX ------------------------
    def two_mx(self, **mx1kw):
        """multi.test: mx1 (pref 10, MxServer options MX1KW) and a good mx2 (pref 20)."""
        mx1 = self.add_mx('mx1', '127.0.0.3', domain='multi.test', pref=10, **mx1kw)
        mx2 = self.add_mx('mx2', '127.0.0.4', domain='multi.test', pref=20)
        return mx1, mx2

    def assertQuitOnly(self, mx, before=('EHLO', 'HELO', 'STARTTLS')):
        """MX's one session ended with QUIT (RFC 5321 4.1.1.10, as Postfix closes a
        session it gives up on) after commands of BEFORE only, and was not reset."""
        mx.wait_for(lambda: mx.sessions and mx.sessions[0].closed, 10)
        cmds = [c.split(' ')[0].upper() for c in mx.sessions[0].commands]
        self.assertEqual(cmds[-1:], ['QUIT'], mx.sessions[0].commands)
        self.assertTrue(set(cmds[:-1]) <= set(before), mx.sessions[0].commands)
        self.assertNoDelivery(mx)

    def test_greeting_554_quit_next_mx(self):
        """RFC 5321 3.1: a server that greets 554 waits for QUIT; the client sends it
        (no reset) and the next MX gets the message."""
        mx1, mx2 = self.two_mx(greeting=(554, '5.3.2 no service here'))
        self.assertReply(self.send('rcpt@multi.test')['data'], 250)
        mx2.wait_messages(1)
        self.assertQuitOnly(mx1, before=())

    @proxy_config({'policy': {'table': {'multi.test': 'encrypt'}}})
    def test_starttls_refused_at_encrypt_quit_next_mx(self):
        """encrypt, and mx1 answers STARTTLS 454: QUIT to mx1, mx2 gets the mail."""
        mx1, mx2 = self.two_mx(starttls_reply=(454, '4.7.0 TLS not available'))
        self.assertReply(self.send('rcpt@multi.test')['data'], 250)
        self.assertEqual(mx2.wait_messages(1)[0].tls_version, 'TLSv1.3')
        self.assertQuitOnly(mx1)

    @proxy_config({'policy': {'table': {'multi.test': 'verify'}}})
    def test_certificate_not_verified_quit_inside_tls(self):
        """verify, and mx1's certificate names another host: mx1 gets QUIT inside the
        TLS session (nothing else), mx2 gets the mail."""
        mx1, mx2 = self.two_mx(starttls=self.pki.issue('other.invalid'))
        self.assertReply(self.send('rcpt@multi.test')['data'], 250)
        mx2.wait_messages(1)
        self.assertQuitOnly(mx1)
        self.assertIn(b'QUIT', bytes(mx1.sessions[0].rx_tls))
        self.assertNotIn(b'QUIT', bytes(mx1.sessions[0].rx_plain))

    def test_starttls_421_next_mx(self):
        """421 to STARTTLS (level may): the server is closing the connection, so the
        host fails there and the next MX gets the message; the session is not taken
        on in plaintext."""
        mx1, mx2 = self.two_mx(starttls_reply=(421, '4.3.2 shutting down'))
        self.assertReply(self.send('rcpt@multi.test')['data'], 250)
        self.assertEqual(mx2.wait_messages(1)[0].tls_version, 'TLSv1.3')
        self.assertNoDelivery(mx1)
        self.assertEqual([c.split(' ')[0].upper() for c in mx1.all_commands()],
                         ['EHLO', 'STARTTLS'])

    def test_421_mid_session_closes_the_connection(self):
        """RFC 5321 3.8: 421 means the server closes the channel. An MX that answers
        MAIL with 421 and (wrongly) keeps the connection open gets nothing more on it
        but QUIT; the next transaction opens a new connection."""
        self.mx1.configure(mail=[(421, '4.7.0 too busy')], close_after_421=False)
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test>'), 4)
        self.assertReply(c.cmd('RSET'), 250)
        out = c.send_message('sender@client.test', ['rcpt@example.test'], message('again'))
        self.assertReply(out['data'], 250)
        self.assertEqual(len(self.mx1.wait_messages(1)), 1)
        self.assertEqual(self.mx1.connections, 2)
        first = [x.split(' ')[0].upper() for x in self.mx1.sessions[0].commands]
        after = first[first.index('MAIL') + 1:]
        self.assertTrue(set(after) <= {'RCPT', 'QUIT'}, self.mx1.sessions[0].commands)
        self.assertNotIn('MAIL', after)
        self.assertNotIn('RSET', after)

    def test_malformed_greeting_next_mx(self):
        """A greeting whose code changes between its lines is malformed (RFC 5321
        4.2.1): that host fails and the next MX gets the message."""
        mx1, mx2 = self.two_mx(greeting=(220, b'220-mx1.multi.test hello\r\n'
                                              b'250 mx1.multi.test ESMTP\r\n'))
        self.assertReply(self.send('rcpt@multi.test')['data'], 250)
        mx2.wait_messages(1)
        self.assertNoDelivery(mx1)
        self.assertNotIn('MAIL', [c.split(' ')[0].upper() for c in mx1.all_commands()])

    def test_malformed_ehlo_reply_next_mx(self):
        """An EHLO reply line without the space or hyphen after its code is malformed:
        that host fails (nothing is sent to it after the EHLO), the next MX gets it."""
        mx1, mx2 = self.two_mx(ehlo=(250, b'250-mx1.multi.test hello\r\n'
                                          b'250PIPELINING\r\n250 8BITMIME\r\n'))
        self.assertReply(self.send('rcpt@multi.test')['data'], 250)
        mx2.wait_messages(1)
        self.assertNoDelivery(mx1)
        self.assertEqual([c.split(' ')[0].upper() for c in mx1.all_commands()], ['EHLO'])

    def test_capabilities_before_tls_are_forgotten(self):
        """RFC 3207 4.2: what the MX said before STARTTLS is discarded. It offers SIZE
        and DSN before TLS only: MAIL inside TLS carries neither SIZE= nor RET=."""
        self.mx1.configure(ehlo_tls=(250, 'mx1.example.test\nPIPELINING\n8BITMIME'))
        out = self.send('rcpt@example.test', params=' SIZE=100 RET=HDRS')
        self.assertReply(out['data'], 250)
        m = self.mx1.wait_messages(1)[0]
        self.assertEqual(m.tls_version, 'TLSv1.3')
        self.assertEqual(m.mail_line, 'MAIL FROM:<sender@client.test>')

    # ---- TLS failures at level may: one plaintext retry ----------------------------------
    def _plaintext_retry(self):
        out = self.send('rcpt@example.test', message('retry'))
        self.assertReply(out['data'], 250)
        m = self.mx1.wait_messages(1)[0]
        self.assertIsNone(m.tls_version)
        self.assertEqual(split_received(m.data)[1], message('retry'))
        first = self.mx1.sessions[0]
        self.assertTrue(first.tls_error or first.reset or not first.messages)
        self.assertEqual(self.mx1.connections, 2)  # once with TLS, once without
        self.assertNotIn('STARTTLS', self.mx1.sessions[1].commands)
        log = self.assertLog(r'(?i)mx1\.example\.test\[127\.0\.0\.2\]:%d.*'
                             r'(plaintext|without tls|cleartext|no tls|retry)' % self.mx_port)
        return log

    def test_tls_no_forward_secret_cipher(self):
        """The MX offers only RSA key exchange (TLS 1.2, AES128-GCM-SHA256): the
        handshake fails and the proxy retries once in plaintext."""
        self.mx1.configure(starttls=self.pki.issue('mx1.example.test', key='rsa'),
                           tls_max='TLSv1.2', tls_ciphers='AES128-GCM-SHA256')
        self._plaintext_retry()
        self.assertIn('SHARED_CIPHER', (self.mx1.sessions[0].tls_error or '').upper())

    def test_tls_1_1_only_mx(self):
        """An MX that speaks at most TLS 1.1: handshake fails, plaintext retry."""
        try:
            self.mx1.configure(tls_max='TLSv1.1')
        except ssl.SSLError as e:
            self.skipTest('TLS 1.1 server not possible here: %s' % e)
        self._plaintext_retry()

    def test_tls_garbage_after_220(self):
        """The MX answers STARTTLS with 220 then sends no TLS at all."""
        self.mx1.configure(tls_garbage=True)
        self._plaintext_retry()

    def test_starttls_response_injection(self):
        """The MX sends extra replies in plaintext right after its "220 ready for TLS"
        (CVE-2011-0411 class). They must never be read as replies inside TLS: the
        message arrives intact with its real envelope, the client never sees the
        injected text and gets no extra reply."""
        inject = b''.join(b'250 2.0.0 INJECTED %d\r\n' % i for i in range(6))
        self.mx1.configure(pipeline_after_starttls=inject)
        c = self.client()
        out = c.send_message('sender@client.test', ['rcpt@example.test'], message('inj'))
        replies = [out['mail']] + out['rcpt'] + ([out['data']] if out['data'] else [])
        for code, lines in replies:
            self.assertNotIn('INJECTED', ' '.join(lines))
        c.nothing_pending(0.3)
        if out['data'] and out['data'][0] == 250:
            msgs = self.mx1.wait_messages(1)
            self.assertEqual(len(msgs), 1)
            self.assertEqual(msgs[0].rcpts, ['rcpt@example.test'])
            self.assertEqual(split_received(msgs[0].data)[1], message('inj'))
            # the client's 250 is the MX's own final reply, not an injected one
            self.assertIn(msgs[0].session.replies[-1][1], ' '.join(out['data'][1]))
        else:
            rcpt = out['rcpt'][0]
            self.assertEqual(rcpt[0] // 100, 4, rcpt)
            self.assertNoDelivery()
        self.assertReply(c.cmd('NOOP'), 250)


if __name__ == '__main__':
    main()
