#!/usr/bin/python3
"""Self-test of tests/integration/harness/postfix.py (stdlib unittest).

Runs a real, private Postfix instance (Debian's package) against a small
hand-written SMTP/LMTP sink on 127.0.0.1 and checks relaying, deferral
(451), bounce (550), injection over SMTP, LMTP, loopback-only listening,
clean shutdown, and that the system's Postfix files are untouched.  It also
measures and prints how Postfix retries a "452 4.5.3" recipient.

Run as root:  /usr/bin/python3 tests/integration/check_postfix_fixture.py -v
"""

import hashlib
import importlib.util
import os
import re
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_harness():
    # harness/ may not be a package (no __init__.py): import by path.
    path = os.path.join(HERE, 'harness', 'postfix.py')
    spec = importlib.util.spec_from_file_location('harness_postfix', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


pf = _load_harness()


# ----------------------------------------------------------------------
# SMTP / LMTP sink
# ----------------------------------------------------------------------
def _addr(arg):
    m = re.search(r'<([^>]*)>', arg)
    return m.group(1) if m else arg.split(':', 1)[-1].strip()


class _Handler(socketserver.StreamRequestHandler):
    timeout = 60

    def reply(self, text):
        for l in text.split('\r\n'):
            self.server.sink._event(self.conn, 'S', l)
        self.wfile.write(text.encode() + b'\r\n')
        self.wfile.flush()

    def handle(self):
        sink = self.server.sink
        self.conn = sink._new_conn()
        mail_from, rcpts = None, []
        self.reply('220 sink.test ESMTP test sink')
        while True:
            raw = self.rfile.readline()
            if not raw:
                break
            cmd = raw.rstrip(b'\r\n').decode('utf-8', 'replace')
            sink._event(self.conn, 'C', cmd)
            verb = cmd[:4].upper()
            if verb in ('EHLO', 'LHLO'):
                self.reply('250-sink.test\r\n250-PIPELINING\r\n250 8BITMIME')
            elif verb == 'HELO':
                self.reply('250 sink.test')
            elif verb == 'MAIL':
                mail_from, rcpts = _addr(cmd[5:]), []
                self.reply('250 2.1.0 Ok')
            elif verb == 'RCPT':
                if mail_from is None:
                    self.reply('503 5.5.1 need MAIL')
                    continue
                addr = _addr(cmd[5:])
                r = sink.rcpt_reply(addr, len(rcpts))
                if r.startswith('2'):
                    rcpts.append(addr)
                self.reply(r)
            elif verb == 'DATA':
                if mail_from is None:
                    self.reply('503 5.5.1 need MAIL')
                    continue
                if not rcpts:
                    self.reply('554 5.5.1 no valid recipients')
                    continue
                self.reply('354 go ahead')
                lines = []
                while True:
                    l = self.rfile.readline()
                    if not l:
                        return
                    if l in (b'.\r\n', b'.\n'):
                        break
                    lines.append(l[1:] if l.startswith(b'.') else l)
                n = sink._store(self.conn, mail_from, rcpts, b''.join(lines))
                if sink.lmtp:
                    for r in rcpts:
                        self.reply('250 2.0.0 <%s> delivered as S%d' % (r, n))
                else:
                    self.reply('250 2.0.0 Ok: queued as S%d' % n)
                mail_from, rcpts = None, []
            elif verb == 'RSET':
                mail_from, rcpts = None, []
                self.reply('250 2.0.0 Ok')
            elif verb == 'NOOP':
                self.reply('250 2.0.0 Ok')
            elif verb == 'QUIT':
                self.reply('221 2.0.0 bye')
                break
            else:
                self.reply('502 5.5.2 unknown command')
        sink._event(self.conn, '-', 'closed')


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class Sink:
    """Records every connection, command and reply, and every message.

    rules[rcpt] = reply line, or a list of reply lines used one per RCPT
    attempt (the last one sticks).  max_rcpts_per_txn: after that many
    accepted RCPTs in one transaction, answer 452 4.5.3.
    """

    def __init__(self, lmtp=False):
        self.lmtp = lmtp
        self.lock = threading.Lock()
        self.messages = []
        self.events = []      # (monotonic time, conn id, 'C'|'S'|'-', text)
        self.rules = {}
        self.max_rcpts_per_txn = None
        self.attempts = {}
        self._conns = 0
        self.server = _Server(('127.0.0.1', 0), _Handler)
        self.server.sink = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={'poll_interval': 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def _new_conn(self):
        with self.lock:
            self._conns += 1
            n = self._conns
        self._event(n, '-', 'connect')
        return n

    def _event(self, conn, kind, text):
        with self.lock:
            self.events.append((time.monotonic(), conn, kind, text))

    def _store(self, conn, mail_from, rcpts, data):
        with self.lock:
            self.messages.append({'conn': conn, 'mail_from': mail_from,
                                  'rcpts': list(rcpts), 'data': data,
                                  'time': time.monotonic()})
            return len(self.messages)

    def rcpt_reply(self, addr, naccepted):
        with self.lock:
            self.attempts[addr] = self.attempts.get(addr, 0) + 1
            if (self.max_rcpts_per_txn is not None
                    and naccepted >= self.max_rcpts_per_txn):
                return '452 4.5.3 Too many recipients'
            rule = self.rules.get(addr)
            if rule is None:
                return '250 2.1.5 Ok'
            if isinstance(rule, list):
                return rule.pop(0) if len(rule) > 1 else rule[0]
            return rule

    def wait_messages(self, n, timeout=20, pred=None):
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                msgs = [m for m in self.messages if pred is None or pred(m)]
            if len(msgs) >= n:
                return msgs
            if time.monotonic() > deadline:
                raise TimeoutError('sink got %d of %d messages' % (len(msgs),
                                                                   n))
            time.sleep(0.05)

    def transcript(self, t0=None):
        t0 = t0 if t0 is not None else (self.events[0][0] if self.events
                                        else 0)
        with self.lock:
            return ['%7.3fs conn#%d %s %s' % (t - t0, c, k, x)
                    for t, c, k, x in self.events]


# ----------------------------------------------------------------------
# system snapshot: the private instance must not touch these
# ----------------------------------------------------------------------
SYSTEM_PATHS = ['/etc/postfix', '/var/spool/postfix', '/var/lib/postfix',
                '/etc/aliases', '/etc/mailname']


def _snapshot():
    snap = {}
    for root in SYSTEM_PATHS:
        if not os.path.lexists(root):
            snap[root] = None
            continue
        walk = [(root, [], [])] if not os.path.isdir(root) else os.walk(root)
        for d, dirs, files in walk:
            for p in [d] + [os.path.join(d, f) for f in files]:
                st = os.lstat(p)
                h = None
                if os.path.isfile(p) and not os.path.islink(p):
                    with open(p, 'rb') as f:
                        h = hashlib.sha256(f.read()).hexdigest()
                snap[p] = (st.st_mode, st.st_uid, st.st_gid, st.st_size,
                           st.st_mtime_ns, h)
    return snap


def _system_masters():
    """pids of Postfix masters not started by this test."""
    out = []
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                with open('/proc/%s/cmdline' % d, 'rb') as f:
                    argv = f.read().split(b'\0')
            except OSError:
                continue
            if argv and argv[0].endswith(b'/master') and b'postfix' in argv[0]:
                out.append((int(d), argv))
    return out


_BEFORE = {}


def setUpModule():
    if os.geteuid() != 0:
        raise unittest.SkipTest('needs root (Postfix daemons, postdrop)')
    _BEFORE['snap'] = _snapshot()
    _BEFORE['masters'] = _system_masters()


def tearDownModule():
    after = _snapshot()
    before = _BEFORE.get('snap', {})
    changed = sorted(p for p in set(before) | set(after)
                     if before.get(p) != after.get(p))
    if changed:
        raise AssertionError('system Postfix files changed: %r' % changed)
    if _system_masters() != _BEFORE.get('masters', []):
        raise AssertionError('set of Postfix master processes changed: %r'
                             % _system_masters())
    print('\nsystem check: %s unchanged; Postfix masters before/after: %r'
          % (', '.join(SYSTEM_PATHS), _BEFORE.get('masters')),
          file=sys.stderr)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


BODY = (b'From: a@sender.test\r\nTo: b@dest.test\r\n'
        b'Subject: fixture test %d\r\n\r\nhello %d\r\n.leading dot\r\n')


class PostfixFixtureTest(unittest.TestCase):
    lmtp = False
    smtp_port = None
    extra_main_cf = None

    def setUp(self):
        # A 0700 parent, like pytest's tmp_path (/tmp/pytest-of-root is
        # 0700): the instance must not need its parents to be searchable
        # by the postfix user.
        self.base = tempfile.mkdtemp(prefix='pftest-')
        self.sink = Sink(lmtp=self.lmtp)
        self.smtp_port = _free_port() if type(self).smtp_port else None
        self.p = pf.Postfix(os.path.join(self.base, 'postfix'),
                            relay_port=self.sink.port,
                            smtp_port=self.smtp_port, lmtp=self.lmtp,
                            extra_main_cf=self.extra_main_cf)
        self.addCleanup(shutil.rmtree, self.base, True)
        self.addCleanup(self.sink.close)
        self.addCleanup(self._stop_and_check)
        self.p.start()

    def _stop_and_check(self):
        pgid = getattr(self.p, 'pgid', None)
        self.p.stop()
        if pgid:
            self.assertEqual(pf._pids_in_group(pgid), [],
                             'Postfix processes left behind')

    def body(self, n):
        return BODY % (n, n)


class TestRelay(PostfixFixtureTest):

    def test_two_messages_sent(self):
        q1 = self.p.send('alice@sender.test', ['bob@dest.test'],
                         self.body(1))
        q2 = self.p.send('carol@sender.test',
                         ['dave@dest.test', 'erin@dest.test'], self.body(2))
        self.assertRegex(q1 or '', r'^[0-9A-F]{6,}$')
        self.assertRegex(q2 or '', r'^[0-9A-F]{6,}$')
        self.assertNotEqual(q1, q2)
        for rcpt, qid in (('bob@dest.test', q1), ('dave@dest.test', q2),
                          ('erin@dest.test', q2)):
            line = self.p.wait_delivered(rcpt, 20, queue_id=qid)
            self.assertIn('relay=127.0.0.1[127.0.0.1]:%d' % self.sink.port,
                          line)
        msgs = self.sink.wait_messages(2)
        env = sorted((m['mail_from'], tuple(sorted(m['rcpts'])))
                     for m in msgs)
        self.assertEqual(env, [
            ('alice@sender.test', ('bob@dest.test',)),
            ('carol@sender.test', ('dave@dest.test', 'erin@dest.test'))])
        by_from = {m['mail_from']: m['data'] for m in msgs}
        self.assertIn(b'Subject: fixture test 1', by_from['alice@sender.test'])
        self.assertIn(b'\r\n.leading dot\r\n', by_from['alice@sender.test'])
        self.assertIn(b'Received: by sender.test', by_from['alice@sender.test'])
        # helo name and no TLS to the relay
        helos = [x for _, _, k, x in self.sink.events if k == 'C'
                 and x.upper().startswith(('EHLO', 'HELO'))]
        self.assertTrue(helos and all(h == 'EHLO sender.test' for h in helos),
                        helos)
        self.assertFalse([x for _, _, k, x in self.sink.events
                          if x.upper().startswith('STARTTLS')])
        deadline = time.monotonic() + 10
        while self.p.queue() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.p.queue(), [])
        # the log really is Postfix's log (postlogd -> maillog_file)
        self.assertRegex(self.p.log_text(), r'postfix/master\[\d+\]: daemon '
                         r'started -- version 3\.')

    def test_451_deferred_and_queued(self):
        self.sink.rules['temp@dest.test'] = '451 4.3.0 try again later'
        qid = self.p.send('alice@sender.test',
                          ['temp@dest.test', 'ok@dest.test'], self.body(3))
        line = self.p.wait_status('temp@dest.test', 'deferred', 20)
        self.assertIn(qid, line)
        self.assertIn('451 4.3.0 try again later', line)
        self.p.wait_delivered('ok@dest.test', 20, queue_id=qid)
        q = self.p.queue()
        self.assertEqual([m['queue_id'] for m in q], [qid])
        self.assertIn(q[0]['queue_name'], ('deferred', 'active'))
        self.assertEqual([r['address'] for r in q[0]['recipients']],
                         ['temp@dest.test'])
        self.assertIn('451 4.3.0 try again later',
                      q[0]['recipients'][0]['delay_reason'])
        # now let it through; flush() makes Postfix try right away
        self.sink.rules['temp@dest.test'] = '250 2.1.5 Ok'
        start = self.p.log_offset()
        self.p.flush()
        self.p.wait_delivered('temp@dest.test', 20, start=start)

    def test_550_bounced(self):
        self.sink.rules['nouser@dest.test'] = '550 5.1.1 no such user'
        qid = self.p.send('alice@sender.test', ['nouser@dest.test'],
                          self.body(4))
        line = self.p.wait_status('nouser@dest.test', 'bounced', 20)
        self.assertIn(qid, line)
        self.assertIn('550 5.1.1 no such user', line)
        # Postfix sends the DSN to the sender via the same relayhost
        # (mydestination is empty), with the null sender.
        dsn = self.sink.wait_messages(1, 20, lambda m: m['mail_from'] == '')
        self.assertEqual(dsn[0]['rcpts'], ['alice@sender.test'])
        self.p.wait_log(r'%s: removed' % qid, 20)


class TestSmtpInjection(PostfixFixtureTest):
    smtp_port = True

    def test_send_via_smtpd_and_loopback_only(self):
        qid = self.p.send('inject@sender.test', ['x@dest.test'],
                          self.body(5), via='smtp')
        self.assertRegex(qid or '', r'^[0-9A-F]{6,}$')
        self.p.wait_delivered('x@dest.test', 20, queue_id=qid)
        msgs = self.sink.wait_messages(1)
        self.assertEqual((msgs[0]['mail_from'], msgs[0]['rcpts']),
                         ('inject@sender.test', ['x@dest.test']))
        # the smtpd listens on 127.0.0.1:port only, never on 0.0.0.0
        listeners = _tcp_listeners(self.smtp_port)
        self.assertEqual(listeners, ['127.0.0.1'])


class TestLmtp(PostfixFixtureTest):
    lmtp = True

    def test_lmtp_transport(self):
        self.assertEqual(self.p.postconf('default_transport'),
                         'lmtp:inet:[127.0.0.1]:%d' % self.sink.port)
        qid = self.p.send('alice@sender.test', ['l1@dest.test', 'l2@dest.test'],
                          self.body(6))
        for r in ('l1@dest.test', 'l2@dest.test'):
            line = self.p.wait_delivered(r, 20, queue_id=qid)
            self.assertIn('postfix/lmtp[', line)
        self.assertTrue(any(x.startswith('LHLO') for _, _, k, x
                            in self.sink.events if k == 'C'))


def _tcp_listeners(port):
    out = []
    with open('/proc/net/tcp') as f:
        next(f)
        for line in f:
            fl = line.split()
            ip, p = fl[1].split(':')
            if int(p, 16) == port and fl[3] == '0A':
                out.append(socket.inet_ntoa(int(ip, 16).to_bytes(4, 'little')))
    return out


class TestRetry452(PostfixFixtureTest):
    """Measure (print, don't assert) how Postfix retries 452 4.5.3."""

    def _report(self, title, t0, start):
        print('\n==== %s ====' % title, file=sys.stderr)
        print('-- sink transcript (time since submit, connection):',
              file=sys.stderr)
        for l in self.sink.transcript(t0):
            print('   ' + l, file=sys.stderr)
        print('-- postfix log:', file=sys.stderr)
        for l in self.p.log_text()[start:].splitlines():
            if re.search(r'postfix/(smtp|qmgr|pickup)\[', l):
                print('   ' + l, file=sys.stderr)

    def _rcpt_times(self, addr):
        return [(t, c) for t, c, k, x in self.sink.events
                if k == 'C' and x.upper().startswith('RCPT')
                and '<%s>' % addr in x]

    def test_452_single_recipient_retry_delay(self):
        """A recipient answered 452 4.5.3 twice, then 250."""
        r = 'busy@dest.test'
        self.sink.rules[r] = ['452 4.5.3 Too many recipients'] * 2 + \
            ['250 2.1.5 Ok']
        start = self.p.log_offset()
        t0 = time.monotonic()
        qid = self.p.send('alice@sender.test', [r], self.body(7))
        self.p.wait_delivered(r, 30, queue_id=qid)
        self._report('452 4.5.3 for one recipient (2x), fast-retry config',
                     t0, start)
        times = self._rcpt_times(r)
        gaps = ['%.2fs (conn#%d -> conn#%d)' % (b[0] - a[0], a[1], b[1])
                for a, b in zip(times, times[1:])]
        print('RESULT single 452: RCPT attempts=%d, gaps between attempts: '
              '%s' % (len(times), ', '.join(gaps)), file=sys.stderr)
        print('RESULT config fast: %s' % dict(zip(
            pf.FAST_RETRY, self.p.postconf(*pf.FAST_RETRY))), file=sys.stderr)
        print('RESULT config Postfix defaults (postconf -d): %s'
              % _postconf_defaults(list(pf.FAST_RETRY)), file=sys.stderr)

    def test_452_rcpt_limit_per_transaction(self):
        """Server takes 2 RCPTs per transaction, 452 4.5.3 for the rest."""
        self.sink.max_rcpts_per_txn = 2
        rcpts = ['r1@dest.test', 'r2@dest.test', 'r3@dest.test']
        start = self.p.log_offset()
        t0 = time.monotonic()
        qid = self.p.send('alice@sender.test', rcpts, self.body(8))
        for r in rcpts:
            self.p.wait_delivered(r, 30, queue_id=qid)
        self._report('452 4.5.3 after 2 RCPTs per transaction, fast-retry '
                     'config', t0, start)
        txns = []
        for m in self.sink.messages:
            txns.append('conn#%d t=%.2fs rcpts=%s' % (
                m['conn'], m['time'] - t0, m['rcpts']))
        print('RESULT rcpt-limit: transactions: %s' % '; '.join(txns),
              file=sys.stderr)
        t3 = self._rcpt_times('r3@dest.test')
        print('RESULT rcpt-limit: r3 RCPT attempts: %s' % ', '.join(
            '%.2fs conn#%d' % (t - t0, c) for t, c in t3), file=sys.stderr)


class TestRetry452Backoff(TestRetry452):
    """Same, with minimal_backoff_time (3s) > queue_run_delay (1s): shows
    the retry is driven by the per-message backoff, not by the scan."""
    extra_main_cf = {'minimal_backoff_time': '3s',
                     'maximal_backoff_time': '12s'}
    test_452_rcpt_limit_per_transaction = None

    def test_452_single_recipient_retry_delay(self):
        r = 'busy@dest.test'
        self.sink.rules[r] = ['452 4.5.3 Too many recipients'] * 3 + \
            ['250 2.1.5 Ok']
        start = self.p.log_offset()
        t0 = time.monotonic()
        qid = self.p.send('alice@sender.test', [r], self.body(9))
        self.p.wait_delivered(r, 40, queue_id=qid)
        self._report('452 4.5.3 for one recipient (3x), queue_run_delay=1s '
                     'minimal_backoff_time=3s maximal_backoff_time=12s',
                     t0, start)
        times = self._rcpt_times(r)
        print('RESULT backoff 452: RCPT attempts at %s' % ', '.join(
            '%.2fs conn#%d' % (t - t0, c) for t, c in times), file=sys.stderr)


class TestNoLeftovers(unittest.TestCase):

    def test_sigkilled_test_process_leaves_no_postfix(self):
        """A test runner killed with SIGKILL (no teardown, no atexit) must
        not leave the master running: the harness' watchdog kills it."""
        base = tempfile.mkdtemp(prefix='pftest-')
        self.addCleanup(shutil.rmtree, base, True)
        code = ('import importlib.util, os, signal\n'
                'spec = importlib.util.spec_from_file_location("h", %r)\n'
                'm = importlib.util.module_from_spec(spec)\n'
                'spec.loader.exec_module(m)\n'
                'p = m.Postfix(%r, relay_port=9)\n'
                'p.start()\n'
                'print(p.pgid, flush=True)\n'
                'os.kill(os.getpid(), signal.SIGKILL)\n'
                % (pf.__file__, os.path.join(base, 'postfix')))
        r = subprocess.run(['/usr/bin/python3', '-c', code],
                           stdout=subprocess.PIPE, timeout=60)
        self.assertEqual(r.returncode, -9)
        pgid = int(r.stdout.split()[0])
        deadline = time.monotonic() + 10
        while pf._pids_in_group(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(pf._pids_in_group(pgid), [])


def _postconf_defaults(names):
    r = subprocess.run([pf.POSTCONF, '-d', '-h'] + names,
                       stdout=subprocess.PIPE, check=True,
                       env={'PATH': '/usr/sbin:/usr/bin'})
    return dict(zip(names, r.stdout.decode().split()))


if __name__ == '__main__':
    unittest.main()
