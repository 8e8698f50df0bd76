#!/usr/bin/python3
"""Self-tests of the integration fixtures (no proxy needed): the PKI against openssl
verify, the DNS server against dnslib's client, the MX server against a raw client,
Python's smtplib+ssl and swaks, and the config writer against PyYAML."""

import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dnslib import QTYPE, RCODE, DNSRecord, EDNS0  # noqa: E402

from harness import (Client, Closed, DnsServer, MxServer, TestPKI, deep_merge,  # noqa: E402
                     dot_stuff, message, reserve_port, to_yaml, wait_until)


class Tmp(unittest.TestCase):
    def setUp(self):
        self.tmpdir = tempfile.mkdtemp(prefix='sp-harness-')
        self.addCleanup(shutil.rmtree, self.tmpdir, True)


class PKITest(Tmp):
    def verify(self, pki, cert, *extra):
        return subprocess.run(['openssl', 'verify', '-CAfile', pki.ca_file] + list(extra)
                              + [cert], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=30)

    def test_issue_variants(self):
        pki = TestPKI(self.tmpdir)
        for kind in ('ec', 'rsa'):
            cert, key = pki.issue('mx1.example.test', key=kind)
            r = self.verify(pki, cert, '-verify_hostname', 'mx1.example.test')
            self.assertEqual(r.returncode, 0, r.stdout)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)  # key matches the certificate
        cert, _ = pki.issue('old.example.test', expired=True)
        r = self.verify(pki, cert)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b'expired', r.stdout)
        cert, _ = pki.issue('self.example.test', self_signed=True)
        r = self.verify(pki, cert)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b'self-signed', r.stdout.replace(b'self signed', b'self-signed'))
        cert, _ = pki.issue('mx5.example.test', wrong_name='other.example.test')
        self.assertEqual(self.verify(pki, cert).returncode, 0)
        r = self.verify(pki, cert, '-verify_hostname', 'mx5.example.test')
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b'mismatch', r.stdout)
        self.assertEqual(len(pki.fingerprint(cert)), 64)
        self.assertEqual(len(pki.tlsa(cert)[3]), 32)


class DnsTest(unittest.TestCase):
    def setUp(self):
        self.dns = DnsServer()
        self.addCleanup(self.dns.stop)
        d = self.dns
        d.add('example.test', 'MX', (10, 'mx1.example.test'))
        d.add('example.test', 'MX', (20, 'mx2.example.test'))
        d.add('mx1.example.test', 'A', '127.0.0.2')
        d.add('mx1.example.test', 'AAAA', '::1')
        d.add('alias.example.test', 'CNAME', 'mx1.example.test')
        d.add('_mta-sts.example.test', 'TXT', 'v=STSv1; id=20240101')
        d.add('_25._tcp.mx1.example.test', 'TLSA', (3, 1, 1, 'ab' * 32))
        d.add('null.test', 'MX', (0, '.'))

    def q(self, name, qtype, tcp=False, do=False, timeout=2):
        req = DNSRecord.question(name, qtype)
        if do:
            req.add_ar(EDNS0(udp_len=1232, flags='do'))
        return DNSRecord.parse(req.send('127.0.0.1', self.dns.port, tcp=tcp, timeout=timeout))

    def test_answers(self):
        for tcp in (False, True):
            r = self.q('example.test', 'MX', tcp=tcp)
            self.assertEqual(r.header.rcode, RCODE.NOERROR)
            self.assertEqual(sorted((rr.rdata.preference, str(rr.rdata.label)) for rr in r.rr),
                             [(10, 'mx1.example.test.'), (20, 'mx2.example.test.')])
            self.assertEqual(str(r.q.qname), 'example.test.')
        r = self.q('MX1.Example.TEST.', 'A')
        self.assertEqual([str(rr.rdata) for rr in r.rr], ['127.0.0.2'])
        r = self.q('mx1.example.test', 'AAAA')
        self.assertEqual([str(rr.rdata) for rr in r.rr], ['::1'])
        r = self.q('alias.example.test', 'A')
        self.assertEqual([QTYPE.get(rr.rtype) for rr in r.rr], ['CNAME', 'A'])
        r = self.q('_mta-sts.example.test', 'TXT')
        self.assertEqual(r.rr[0].rdata.data, [b'v=STSv1; id=20240101'])
        r = self.q('_25._tcp.mx1.example.test', 'TLSA')
        self.assertEqual(r.rr[0].rdata.cert_usage, 3)
        r = self.q('null.test', 'MX')
        self.assertEqual(str(r.rr[0].rdata.label), '.')

    def test_negative(self):
        r = self.q('nothere.example.test', 'MX')
        self.assertEqual(r.header.rcode, RCODE.NXDOMAIN)
        r = self.q('mx1.example.test', 'MX')  # exists with other types: NODATA
        self.assertEqual((r.header.rcode, len(r.rr)), (RCODE.NOERROR, 0))
        r = self.q('_tcp.mx1.example.test', 'TXT')  # empty non-terminal: NODATA
        self.assertEqual((r.header.rcode, len(r.rr)), (RCODE.NOERROR, 0))
        self.dns.servfail('example.test', 'MX')
        self.assertEqual(self.q('example.test', 'MX').header.rcode, RCODE.SERVFAIL)
        self.assertEqual(self.q('example.test', 'TXT').header.rcode, RCODE.NOERROR)
        self.dns.clear('example.test', 'MX')
        self.assertEqual(self.q('example.test', 'MX').header.rcode, RCODE.NOERROR)
        self.dns.drop('example.test')
        with self.assertRaises(socket.timeout):
            self.q('example.test', 'MX', timeout=0.3)
        with self.assertRaises(socket.timeout):
            self.q('example.test', 'MX', tcp=True, timeout=0.3)

    def test_flags_edns_truncation_log(self):
        r = self.q('example.test', 'MX')
        self.assertEqual(r.header.ad, 0)
        self.assertEqual([x for x in r.ar if x.rtype == 41], [])
        self.dns.ad = True
        r = self.q('example.test', 'MX', do=True)
        self.assertEqual(r.header.ad, 1)
        opt = [x for x in r.ar if x.rtype == 41]
        self.assertEqual(len(opt), 1)
        self.assertTrue(opt[0].ttl & 0x8000)  # DO echoed
        self.dns.set_ad('example.test', False)
        self.assertEqual(self.q('example.test', 'MX').header.ad, 0)
        self.dns.truncate('example.test')
        r = self.q('example.test', 'MX')
        self.assertEqual((r.header.tc, len(r.rr)), (1, 0))
        r = self.q('example.test', 'MX', tcp=True)
        self.assertEqual((r.header.tc, len(r.rr)), (0, 2))
        for i in range(30):  # too big for 512 bytes: truncated over UDP
            self.dns.add('big.test', 'TXT', 'x' * 200 + str(i))
        self.assertEqual(self.q('big.test', 'TXT').header.tc, 1)
        self.assertEqual(len(self.q('big.test', 'TXT', tcp=True).rr), 30)
        self.assertGreaterEqual(self.dns.queried('example.test', 'MX'), 4)
        self.assertIn(('big.test', 'TXT'), self.dns.queries)
        self.assertTrue(any(q['proto'] == 'tcp' and q['do'] is False
                            for q in self.dns.query_log))


class MxTest(Tmp):
    def setUp(self):
        super().setUp()
        self.port, holder = reserve_port()
        self.addCleanup(holder.close)
        self.pki = TestPKI(self.tmpdir)
        self.cert = self.pki.issue('mx1.example.test')

    def mx(self, ip='127.0.0.2', **kw):
        mx = MxServer(ip, self.port, name='mx1.example.test', **kw)
        self.addCleanup(mx.stop)
        return mx

    def client(self, ip='127.0.0.2'):
        c = Client(self.port, host=ip, timeout=5)
        self.addCleanup(c.close)
        return c

    def session(self, *commands):
        """A client past the greeting and EHLO, then each of COMMANDS sent (the test
        checks the replies it is about)."""
        c = self.client()
        c.read_reply()
        c.cmd('EHLO x')
        for command in commands:
            c.cmd(command)
        return c

    def smtp(self, **kw):
        s = smtplib.SMTP('127.0.0.2', self.port, timeout=5, **kw)
        s._host = 'mx1.example.test'  # the name STARTTLS verifies
        return s

    def tls_ctx(self):
        ctx = ssl.create_default_context(cafile=self.pki.ca_file)
        return ctx

    def test_plain_delivery_dot_stuffing_pipelining(self):
        mx = self.mx(starttls=self.cert)
        c = self.client()
        self.assertEqual(c.read_reply()[0], 220)
        code, lines = c.cmd('EHLO proxy.test')
        self.assertEqual(code, 250)
        for cap in ('STARTTLS', 'PIPELINING', 'SIZE 52428800', '8BITMIME', 'SMTPUTF8',
                    'ENHANCEDSTATUSCODES', 'DSN'):
            self.assertIn(cap, lines)
        body = b'Subject: t\r\n\r\n.\r\n..two\r\n.lead\r\nend\r\n'
        replies = c.pipeline(['MAIL FROM:<a@client.test> SIZE=100 BODY=8BITMIME',
                              'RCPT TO:<x@example.test> NOTIFY=NEVER',
                              'RCPT TO:<y@example.test>', 'DATA'])
        self.assertEqual([r[0] for r in replies], [250, 250, 250, 354])
        c.send_raw(dot_stuff(body) + b'.\r\n')
        code, lines = c.read_reply()
        self.assertEqual(code, 250)
        self.assertIn('queued as', lines[0])
        m = mx.wait_messages(1)[0]
        self.assertEqual(m.data, body)
        self.assertEqual(m.raw, dot_stuff(body))
        self.assertEqual((m.mail_from, m.rcpts, m.helo, m.tls_version),
                         ('a@client.test', ['x@example.test', 'y@example.test'], 'proxy.test',
                          None))
        self.assertEqual(m.mail_line, 'MAIL FROM:<a@client.test> SIZE=100 BODY=8BITMIME')
        self.assertEqual(m.rcpt_lines[0], 'RCPT TO:<x@example.test> NOTIFY=NEVER')
        self.assertEqual(c.cmd('MAIL FROM:<a@client.test> SIZE=99999999')[0], 552)
        self.assertEqual(c.cmd('QUIT')[0], 221)
        self.assertEqual(mx.connections, 1)

    def test_empty_message_and_split_terminator(self):
        mx = self.mx()
        c = self.session('MAIL FROM:<>', 'RCPT TO:<x@example.test>')
        self.assertEqual(c.cmd('DATA')[0], 354)
        c.send_raw(b'.\r\n')
        self.assertEqual(c.read_reply()[0], 250)
        c.cmd('MAIL FROM:<>')
        c.cmd('RCPT TO:<x@example.test>')
        self.assertEqual(c.cmd('DATA')[0], 354)
        for piece in (b'a\r', b'\n', b'.', b'\r', b'\n'):  # terminator split over writes
            c.send_raw(piece)
        self.assertEqual(c.read_reply()[0], 250)
        msgs = mx.wait_messages(2)
        self.assertEqual([m.data for m in msgs], [b'', b'a\r\n'])
        self.assertEqual(msgs[0].mail_from, '')

    def test_data_scanner_every_split(self):
        """The MX's DATA reader un-stuffs and finds the end whatever the chunking."""
        from harness.mxserver import Session

        class FakeConn:
            def __init__(self, chunks):
                self.chunks, self.buf, self.sent = list(chunks), b'', []

            def recv(self):
                return self.chunks.pop(0) if self.chunks else None

            def take_buffer(self):
                b, self.buf = self.buf, b''
                return b

            def unread(self, data):
                self.buf = data + self.buf

            def send(self, data):
                self.sent.append(data)

        mx = self.mx()
        body = b'.\r\n..a\r\nb.\r\n.\r\r\n\r\n...\r\nend\r\n'
        wire = dot_stuff(body) + b'.\r\nNOOP\r\n'
        for lenient in (False, True):
            mx.configure(lenient_data_end=lenient)
            for i in range(1, len(wire)):
                for j in range(i, len(wire)):
                    conn = FakeConn([wire[:i], wire[i:j], wire[j:]])
                    sess = Session(0, None)
                    sess.rcpts = ['x@example.test']
                    mx._receive_data(conn, sess)
                    m = sess.messages[-1]
                    if not lenient:  # (a lenient reader stops at the bare CR's line)
                        self.assertEqual((m.data, m.raw), (body, dot_stuff(body)), (i, j))
                    self.assertTrue(conn.sent[-1].startswith(b'250 '))
                    rest = conn.buf + b''.join(conn.chunks)
                    if not lenient:
                        self.assertEqual(rest, b'NOOP\r\n', (i, j))

    def test_starttls_smtplib(self):
        mx = self.mx(starttls=self.cert)
        with self.smtp(local_hostname='proxy.test') as s:
            s.starttls(context=self.tls_ctx())
            s.sendmail('a@client.test', ['x@example.test'], message())
        m = mx.wait_messages(1)[0]
        self.assertEqual(m.tls_version, 'TLSv1.3')
        self.assertTrue(m.tls_cipher.startswith('TLS_'))
        self.assertEqual(mx.sessions[0].sni, 'mx1.example.test')
        self.assertEqual(m.data, message())

    def test_tls_limits(self):
        mx = self.mx(starttls=self.cert, tls_max='TLSv1.2')
        with self.smtp() as s:
            s.starttls(context=self.tls_ctx())
            s.sendmail('a@client.test', ['x@example.test'], message())
        self.assertEqual(mx.wait_messages(1)[0].tls_version, 'TLSv1.2')
        # a non-forward-secret-only server: an FS-only client cannot connect
        cert_rsa = self.pki.issue('mx1.example.test', key='rsa')
        mx.configure(starttls=cert_rsa, tls_max='TLSv1.2', tls_ciphers='AES128-GCM-SHA256')
        ctx = self.tls_ctx()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers('ECDHE+AESGCM:DHE+AESGCM')
        with self.smtp() as s:
            with self.assertRaises(ssl.SSLError):
                s.starttls(context=ctx)
        wait_until(lambda: mx.sessions[-1].tls_error, 5)
        self.assertIn('NO_SHARED_CIPHER', mx.sessions[-1].tls_error.upper())

    def test_reply_overrides_and_421(self):
        mx = self.mx(rcpt=[(550, '5.1.1 no such user'), None], data_end=(554, '5.7.1 spam'))
        c = self.session('MAIL FROM:<a@b.test>')
        self.assertEqual(c.cmd('RCPT TO:<x@example.test>'), (550, ['5.1.1 no such user']))
        self.assertEqual(c.cmd('RCPT TO:<y@example.test>')[0], 250)
        self.assertEqual(c.data(b'x\r\n'), (554, ['5.7.1 spam']))
        self.assertEqual(mx.messages, [])
        mx.configure(greeting=(421, '4.3.2 go away\nsecond line'))
        c2 = self.client()
        self.assertEqual(c2.read_reply(), (421, ['4.3.2 go away', 'second line']))
        self.assertTrue(c2.expect_closed())
        mx.configure(greeting=(554, '5.3.2 no service'))
        c3 = self.client()
        self.assertEqual(c3.read_reply()[0], 554)
        self.assertEqual(c3.cmd('EHLO x')[0], 503)
        self.assertEqual(c3.cmd('QUIT')[0], 221)

    def test_resets_and_delay(self):
        mx = self.mx(reset_at='data')
        c = self.session('MAIL FROM:<a@b.test>', 'RCPT TO:<x@example.test>')
        self.assertEqual(c.cmd('DATA')[0], 354)
        c.send_raw(b'Subject: x\r\n\r\nbody\r\n')
        with self.assertRaises(Closed):
            c.read_reply()
        wait_until(lambda: mx.sessions[0].closed, 5)
        self.assertTrue(mx.sessions[0].reset)
        mx.configure(reset_at='data_end')
        c = self.session('MAIL FROM:<a@b.test>', 'RCPT TO:<x@example.test>')
        with self.assertRaises(Closed):
            c.data(b'x\r\n')
        mx.configure(reset_at='greeting', fault_connections=3)
        with self.assertRaises((Closed, ConnectionResetError)):
            self.client().read_reply()  # the reset may even beat connect()'s return
        c = self.client()  # the 4th connection: no faults any more
        self.assertEqual(c.read_reply()[0], 220)
        self.assertEqual(mx.messages, [])
        mx.configure(delay_at=('rcpt', 0.5), fault_connections=None, reset_at=None)
        c = self.session('MAIL FROM:<a@b.test>')
        import time
        t = time.monotonic()
        self.assertEqual(c.cmd('RCPT TO:<x@example.test>')[0], 250)
        self.assertGreaterEqual(time.monotonic() - t, 0.45)

    def test_injection_after_starttls(self):
        mx = self.mx(starttls=self.cert, pipeline_after_starttls=b'250 INJECTED\r\n')
        c = self.session()
        c.send_raw(b'STARTTLS\r\nNOOP\r\n')  # the client pipelines past STARTTLS too
        self.assertEqual(c.read_reply()[0], 220)
        self.assertEqual(c.read_reply(), (250, ['INJECTED']))
        wait_until(lambda: mx.sessions[0].plaintext_after_starttls, 5)
        self.assertEqual(mx.sessions[0].plaintext_after_starttls, b'NOOP\r\n')

    def test_raw_bytes_recorded_before_and_inside_tls(self):
        """rx_plain holds every byte before TLS (smtplib writes "ehlo"),
        rx_tls everything inside; ehlo_tls refuses EHLO inside TLS only."""
        mx = self.mx(starttls=self.cert, ehlo_tls=(550, '5.7.0 not here'))
        with self.smtp(local_hostname='plain.test') as s:
            s.starttls(context=self.tls_ctx())
            self.assertEqual(s.ehlo('inside.test')[0], 550)
            self.assertEqual(s.helo('inside.test')[0], 250)
            s.sendmail('marker@client.test', ['x@example.test'], message())
        mx.wait_messages(1)
        sess = mx.sessions[0]
        self.assertIn(b'ehlo plain.test\r\nSTARTTLS\r\n', bytes(sess.rx_plain))
        self.assertNotIn(b'marker', bytes(sess.rx_plain))
        self.assertIn(b'mail FROM:<marker@client.test>', bytes(sess.rx_tls))
        self.assertIn(message(), bytes(sess.rx_tls))

    def test_injection_in_handshake_and_drop_after_it(self):
        """tls_inject: plaintext after the ClientHello breaks the handshake;
        reset_at='tls_done': the connection goes right after a good handshake."""
        mx = self.mx(starttls=self.cert, tls_inject=b'250 injected\r\n')
        with self.smtp() as s:
            with self.assertRaises((ssl.SSLError, OSError)):
                s.starttls(context=self.tls_ctx())
        mx.configure(tls_inject=None, reset_at='tls_done')
        with self.smtp() as s:
            s.starttls(context=self.tls_ctx())
            with self.assertRaises((smtplib.SMTPServerDisconnected, OSError)):
                s.ehlo('x')
        wait_until(lambda: mx.sessions[1].closed, 5)
        self.assertTrue(mx.sessions[1].reset)
        self.assertEqual(mx.sessions[1].tls_version, 'TLSv1.3')

    def test_lenient_end_shows_smuggling(self):
        mx = self.mx(lenient_data_end=True)
        c = self.session('MAIL FROM:<a@b.test>', 'RCPT TO:<x@example.test>', 'DATA')
        c.send_raw(b'hello\r\n\n.\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<v@example.test>\r\n'
                   b'DATA\r\nsmuggled\r\n.\r\n')
        replies = c.read_replies(4)
        self.assertEqual([r[0] for r in replies], [250, 250, 250, 354])
        self.assertEqual(c.read_reply()[0], 250)
        msgs = mx.wait_messages(2)
        self.assertEqual(msgs[0].data, b'hello\r\n\n')
        self.assertEqual(msgs[1].mail_from, 'evil@x.test')

    def test_discard_body_big(self):
        import hashlib
        mx = self.mx(discard_body=True)
        c = self.session('MAIL FROM:<a@b.test>', 'RCPT TO:<x@example.test>', 'DATA')
        line = b'.' + b'x' * 997 + b'\r\n'
        chunk = line * 256
        n = 20
        c.send_chunks(chunk for _ in range(n))
        long_line = b'y' * 200000 + b'\r\n'  # longer than the server's line buffer
        c.send_raw(long_line + b'.\r\n')
        self.assertEqual(c.read_reply()[0], 250)
        m = mx.wait_messages(1)[0]
        body = (line[1:] * 256) * n + long_line
        self.assertEqual(m.length, len(body))
        self.assertEqual(m.sha256, hashlib.sha256(body).hexdigest())
        self.assertIsNone(m.data)
        self.assertEqual(m.head, body[:4096])

    def test_shared_port_two_ips_and_swaks(self):
        mx2 = self.mx('127.0.0.3', starttls=self.cert)
        mx1 = self.mx('127.0.0.2')
        out = subprocess.run(
            ['swaks', '--server', '127.0.0.3:%d' % self.port, '--to', 'x@example.test',
             '--from', 'a@client.test', '--helo', 'swaks.test', '--tls', '--pipeline',
             '--tls-verify', '--tls-ca-path', self.pki.ca_file, '--tls-sni',
             'mx1.example.test', '--body', 'swaks body', '--timeout', '10'],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout.decode())
        m = mx2.wait_messages(1)[0]
        self.assertEqual(m.tls_version, 'TLSv1.3')
        self.assertEqual(m.helo, 'swaks.test')
        self.assertIn(b'swaks body', m.data)
        self.assertEqual(mx1.connections, 0)


class ConfigWriterTest(unittest.TestCase):
    def test_yaml_round_trip(self):
        try:
            import yaml
        except ImportError:
            self.skipTest('PyYAML not installed')
        base = {'hostname': 'proxy.test', 'listen': ['127.0.0.1:1'],
                'dns': {'servers': ['127.0.0.1:5'], 'timeout': 1},
                'outbound': {'port': 25, 'tls': {'ca_file': '/x "y"\\z'}}}
        merged = deep_merge(base, {'dns': {'tries': 1, 'timeout': None},
                                   'clients': {'allow': ['10.0.0.0/8']},
                                   'policy': {'table': [{'domain': 'a.test', 'level': 'may'}]},
                                   'inbound': {'bare_newline': 'normalize'},
                                   'flag': True, 'empty': []})
        self.assertEqual(yaml.safe_load(to_yaml(merged)), merged)
        self.assertNotIn('timeout', merged['dns'])
        self.assertEqual(base['dns']['timeout'], 1)  # the base is not modified


if __name__ == '__main__':
    unittest.main(verbosity=2)
