"""Shared helpers and the TestBase every integration test derives from.

    free_port()                      a TCP port free on 127.0.0.1 right now
    reserve_port(ips)                (port, holder socket): a port kept bound on 127.0.0.1
                                     and free on every address in IPS (for the MX fixtures)
    wait_until(pred, timeout, msg)   polls pred() until true (returned) or AssertionError
    proxy_config(extra)              decorator: per-test proxy config extras
    message(subject, body)           a small RFC 5322 message, CRLF line ends

TestBase.setUp builds: self.tmpdir, self.pki (TestPKI), self.dns (DnsServer),
self.mx_port, the fixtures of setup_fixtures() (by default self.mx1: STARTTLS MX
mx1.example.test on 127.0.0.2, DNS "example.test MX 10 mx1.example.test"), then
self.proxy (Proxy, config = class attribute proxy_extra merged with @proxy_config).
Fixture builders for setup_fixtures(): add_mx() (an MX host) and add_policy_server()
(the HTTPS host of MTA-STS policies and TLS-RPT reports). For a test's SMTP:
client(), begin_transaction() (MAIL and RCPT, maybe DATA, asserted) and send().
Cleanups close clients, stop the proxy (failing the test on a crash, a bad exit status
or a sanitizer report), the MX servers and the DNS server, and delete the tmpdir (kept
when SP_KEEP_TMP=1). On a failed test the proxy log is printed to stderr.
"""

import os
import re
import shutil
import socket
import sys
import tempfile
import time
import unittest

MX_IPS = ['127.0.0.%d' % i for i in range(2, 20)]


def shutdown_sockets(lock, socks):
    """Shuts down (both ways) every socket in socks, a collection guarded by lock, so
    that a fixture's connection threads see the end at once."""
    with lock:
        socks = list(socks)
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def free_port(host='127.0.0.1'):
    """A TCP port nothing listens on at HOST right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def reserve_port(ips=MX_IPS, tries=50):
    """Returns (port, holder): HOLDER is a socket bound (not listening) to
    127.0.0.1:PORT, so no other test process gets PORT from the kernel while it is
    open; PORT was bindable on every address in IPS. Close HOLDER when done."""
    for _ in range(tries):
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        holder.bind(('127.0.0.1', 0))
        port = holder.getsockname()[1]
        ok = True
        for ip in ips:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((ip, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port, holder
        holder.close()
    raise RuntimeError('no port free on all of %s' % ips)


def wait_until(pred, timeout=10, msg=None, interval=0.01):
    """Polls PRED() every INTERVAL s until it returns a true value, which is returned.
    After TIMEOUT s raises AssertionError(MSG) (MSG may be a callable for a late text)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) * 4 + 10):
        v = pred()
        if v:
            return v
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(interval, left))  # a poll interval, not a readiness guess
    v = pred()
    if v:
        return v
    raise AssertionError(msg() if callable(msg) else (msg or 'condition not met within %ss'
                                                      % timeout))


def proxy_config(extra):
    """Decorator: merge EXTRA into the proxy config for this test method."""
    def deco(fn):
        fn.proxy_extra = extra
        return fn
    return deco


def message(subject='test', body='hello\r\n', headers=None, mail_from='sender@client.test',
            to='rcpt@example.test'):
    """A small message (bytes, CRLF line ends, ending with CRLF)."""
    h = ['From: <%s>' % mail_from, 'To: <%s>' % to, 'Subject: %s' % subject,
         'Message-ID: <%s.%d@client.test>' % (subject.replace(' ', '-'), os.getpid())]
    h += list(headers or [])
    text = '\r\n'.join(h) + '\r\n\r\n' + body
    if not text.endswith('\r\n'):
        text += '\r\n'
    return text.encode()


def split_received(data):
    """Splits DATA (bytes as the MX got it) into (first header field with its folded
    continuation lines, the rest). AssertionError unless it starts with Received:."""
    if not data.startswith(b'Received:'):
        raise AssertionError('message does not start with Received:: %r' % data[:200])
    pos = data.index(b'\r\n') + 2
    for _ in range(100):
        if data[pos:pos + 1] in (b' ', b'\t'):
            pos = data.index(b'\r\n', pos) + 2
        else:
            break
    return data[:pos], data[pos:]


class TestBase(unittest.TestCase):
    """See the module docstring. Class attributes: proxy_extra (dict), start_proxy
    (bool), mx1_tls (bool: mx1 offers STARTTLS)."""

    proxy_extra = {}
    start_proxy = True
    mx1_tls = True
    domain = 'example.test'

    def setUp(self):
        self.tmpdir = tempfile.mkdtemp(prefix='sp-it-%s-' % self._testMethodName)
        self.addCleanup(self._remove_tmpdir)
        self.mx_port, holder = reserve_port()
        self.addCleanup(holder.close)
        from .pki import TestPKI
        from .dnsserver import DnsServer
        self.pki = TestPKI(self.tmpdir)
        self.dns = DnsServer()
        self.addCleanup(self.dns.stop)
        self.mxs = {}
        self.proxy = None
        self.setup_fixtures()
        if self.start_proxy:
            self.start_the_proxy()

    # ---- fixtures ------------------------------------------------------------------------
    def setup_fixtures(self):
        """Override to build other fixtures; the default is mx1 (see module doc)."""
        self.mx1 = self.add_mx('mx1', '127.0.0.2', tls=self.mx1_tls)

    def add_mx(self, host, ip, domain=None, pref=10, tls=True, key='ec', a_record=True,
               fqdn=None, **mxkw):
        """Starts an MxServer named HOST.DOMAIN (or FQDN) on IP:self.mx_port (STARTTLS
        with a CA-signed KEY certificate when TLS), adds "DOMAIN MX PREF HOST.DOMAIN"
        (unless PREF is None) and "HOST.DOMAIN A IP" (unless not A_RECORD) to DNS.
        Other keywords go to MxServer."""
        from .mxserver import MxServer
        domain = domain or self.domain
        fqdn = fqdn or '%s.%s' % (host, domain)
        if tls and 'starttls' not in mxkw:
            mxkw['starttls'] = self.pki.issue(fqdn, key=key)
        mx = MxServer(ip, self.mx_port, name=fqdn, **mxkw)
        self.addCleanup(mx.stop)
        self.mxs[fqdn] = mx
        if pref is not None:
            self.dns.add(domain, 'MX', (pref, fqdn))
        if a_record:
            self.dns.add(fqdn, 'A', ip)
        return mx

    def add_policy_server(self, *names, ip='127.0.0.1', posts=()):
        """Starts an HttpsPolicyServer on IP (a port of the kernel's pick) with one
        CA-signed certificate for NAMES (the first one its subject) and adds
        "NAME A IP" to DNS for each; POSTs to each path in POSTS get 200. Stopped at
        cleanup; returned."""
        from .httpsserver import HttpsPolicyServer
        cert, key = self.pki.issue(names[0], alt_names=names[1:])
        https = HttpsPolicyServer(ip, 0, cert, key)
        self.addCleanup(https.stop)
        for path in posts:
            https.accept_posts(path)
        for name in names:
            self.dns.add(name, 'A', ip)
        return https

    def start_the_proxy(self, extra=None):
        """Starts self.proxy with proxy_extra, @proxy_config and EXTRA merged."""
        from .proxy import Proxy, deep_merge
        merged = deep_merge({}, self.proxy_extra)
        method = getattr(self, self._testMethodName, None)
        merged = deep_merge(merged, getattr(method, 'proxy_extra', None))
        merged = deep_merge(merged, extra)
        self.proxy = Proxy(self.tmpdir, self.dns.port, self.mx_port, self.pki.ca_file,
                           extra=merged, start=False)
        self.addCleanup(self._stop_proxy, self.proxy)
        self.proxy.start()
        return self.proxy

    def _stop_proxy(self, proxy):
        try:
            proxy.stop()
        finally:
            proxy.kill()

    def restart_proxy(self, extra=None):
        """Stops the running proxy (with the usual checks) and starts a new one."""
        if self.proxy is not None:
            self.proxy.stop()
        return self.start_the_proxy(extra)

    def client(self, greet=True, ehlo='client.test', **kw):
        """A Client to the proxy, closed at cleanup. With GREET, reads the 220 and does
        EHLO (asserting 220 and 250)."""
        from .smtpclient import Client
        c = Client(self.proxy.port, **kw)
        self.addCleanup(c.close)
        if greet:
            code, lines = c.read_reply()
            self.assertEqual(code, 220, lines)
            if ehlo:
                code, lines = c.cmd('EHLO %s' % ehlo)
                self.assertEqual(code, 250, lines)
        return c

    def begin_transaction(self, c=None, rcpt='bob@example.test',
                          mail_from='alice@client.test', data=False):
        """MAIL FROM:<MAIL_FROM> and RCPT TO:<RCPT> on client C (a new client() when
        None), each asserted 250; with DATA also DATA, asserted 354, so that the
        caller sends the message. Returns C."""
        if c is None:
            c = self.client()
        self.assertEqual(c.cmd('MAIL FROM:<%s>' % mail_from)[0], 250)
        self.assertEqual(c.cmd('RCPT TO:<%s>' % rcpt)[0], 250)
        if data:
            self.assertEqual(c.cmd('DATA')[0], 354)
        return c

    def send(self, rcpts, body=None, mail_from='sender@client.test', params=''):
        """One transaction on a fresh connection, then QUIT. Returns the reply dict of
        Client.send_message."""
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        c = self.client()
        out = c.send_message(mail_from, rcpts, body or message(), params=params)
        try:
            c.cmd('QUIT')
        except AssertionError:
            pass
        c.close()
        return out

    # ---- assertions ----------------------------------------------------------------------
    def assertReply(self, reply, code, *substrings):
        """REPLY (code, lines) has CODE (an int, or a one-digit class 2..5) and every
        substring somewhere in its text."""
        got, lines = reply
        text = '\n'.join(lines)
        if code < 10:
            self.assertEqual(got // 100, code, 'reply %d %s' % (got, text))
        else:
            self.assertEqual(got, code, 'reply %d %s' % (got, text))
        for s in substrings:
            self.assertIn(s, text, 'reply %d %s' % (got, text))

    def assertLog(self, regex, timeout=10):
        return self.proxy.wait_log(regex, timeout)

    # ---- TLS-policy assertions (DANE, policy table, MTA-STS tests) -----------------------
    def relay(self, mx):
        """Regex for "host[ip]:port" of MX as the proxy logs it."""
        return r'%s\[%s\]:%d' % (re.escape(mx.cfg['name']), re.escape(mx.ip), self.mx_port)

    def assertNoMail(self, mx):
        """MX has no message and never saw MAIL (in plaintext or at all)."""
        self.assertEqual(mx.messages, [])
        mails = [c for c in mx.all_commands() if c.upper().startswith('MAIL')]
        self.assertEqual(mails, [], 'MX %s saw MAIL' % mx.ip)

    def assertDeferred(self, out, *hosts, policy=None, rcpt='rcpt@example.test'):
        """RCPT got 451 4.7.5 naming every host in HOSTS (never 5xx); no DATA. With
        POLICY, the deferral's log line names the policy that applied."""
        self.assertReply(out['mail'], 250)
        self.assertReply(out['rcpt'][0], 451, '4.7.5', *hosts)
        self.assertIsNone(out['data'])
        if policy:
            self.assertLog(r'(?m)to=<%s>, .*dsn=4\.7\.5, status=deferred \(451 4\.7\.5.*\), '
                           r'tls=[^,]*, policy=%s$' % (re.escape(rcpt), re.escape(policy)))

    def assertReason(self, out, host, reason):
        """REASON is given for HOST, in the RCPT reply or in a log line naming HOST."""
        text = ' '.join(out['rcpt'][0][1])
        if host in text and reason in text:
            return
        self.assertLog(re.escape(host) + r'.*' + re.escape(reason))

    # ---- teardown ------------------------------------------------------------------------
    def _failed(self):
        # Python 3.11 reports a failure to the result at once and leaves
        # outcome.success True until the cleanups have run: look in the result too.
        outcome = getattr(self, '_outcome', None)
        if outcome is None:
            return False
        if not getattr(outcome, 'success', True):
            return True
        result = getattr(outcome, 'result', None)
        return any(t is self for t, _ in getattr(result, 'failures', []) +
                   getattr(result, 'errors', []))

    def _remove_tmpdir(self):
        if self._failed() and self.proxy is not None:
            sys.stderr.write('\n---- proxy log (%s) ----\n%s\n---- end ----\n' % (
                self.id(), self.proxy.log_text()[-20000:]))
        if os.environ.get('SP_KEEP_TMP') == '1':
            sys.stderr.write('kept %s\n' % self.tmpdir)
            return
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def main():
    """unittest.main() for a test file run as a script; exits non-zero on failure."""
    unittest.main(verbosity=2)
