#!/usr/bin/python3
"""A hostile or broken client: a recipient flood, NUL bytes in commands and data, a
command pipelined after STARTTLS, and a slowloris crowd of idle connections that
trickle partial lines. The proxy must answer each in order, bound its memory, keep
its connection limit, close idle connections on time, and stay responsive."""

import os
import re
import resource
import selectors
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (Client, TestBase, is_asan_build, main, message,  # noqa: E402
                     proxy_config, split_received, wait_until)

RCPT_FLOOD = 10000
RCPT_LIMIT = 1000  # limits.recipients default
RCPT_BATCH = 500


def raise_nofile(want):
    """Raises RLIMIT_NOFILE of this process (and so of the proxy it starts) to at
    least WANT; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Latency(threading.Thread):
    """A second client doing NOOP round trips until stopped (bounded); .worst is the
    slowest round trip in seconds, .errors what went wrong."""

    def __init__(self, port, limit=100000):
        super().__init__(daemon=True)
        self.client = Client(port)
        self.client.greet()
        self.stop = threading.Event()
        self.limit = limit
        self.worst = 0.0
        self.count = 0
        self.errors = []

    def run(self):
        for _ in range(self.limit):
            if self.stop.wait(0.05):
                break
            t = time.monotonic()
            try:
                code, lines = self.client.cmd('NOOP', timeout=30)
            except AssertionError as e:
                self.errors.append(str(e))
                break
            if code != 250:
                self.errors.append('NOOP got %d %s' % (code, lines))
            self.worst = max(self.worst, time.monotonic() - t)
            self.count += 1

    def finish(self):
        self.stop.set()
        self.join(60)
        self.client.close()


class Hostile(TestBase):

    # ---- a recipient flood -----------------------------------------------------------
    def test_ten_thousand_recipients(self):
        """10,000 RCPTs in one transaction, pipelined 500 per write: the first 1,000
        (limits.recipients) are relayed and get the MX's 250, every later one gets
        452 4.5.3 from the proxy, in order; the message then goes to exactly those
        1,000; another client's NOOPs are answered throughout; bounded time."""
        slow = is_asan_build()
        watcher = Latency(self.proxy.port)
        self.addCleanup(watcher.finish)
        watcher.start()
        c = self.client(timeout=60)
        t0 = time.monotonic()
        self.assertReply(c.cmd('MAIL FROM:<flood@client.test>'), 250)
        codes = []
        for start in range(0, RCPT_FLOOD, RCPT_BATCH):
            lines = ['RCPT TO:<r%d@example.test>' % i
                     for i in range(start, start + RCPT_BATCH)]
            for i, (code, text) in enumerate(c.pipeline(lines, timeout=60)):
                n = start + i
                if n < RCPT_LIMIT:
                    self.assertEqual(code, 250, 'RCPT %d: %d %s' % (n, code, text))
                else:
                    self.assertEqual(code, 452, 'RCPT %d: %d %s' % (n, code, text))
                    self.assertIn('4.5.3', text[0])
                codes.append(code)
        rcpt_time = time.monotonic() - t0
        self.assertEqual(len(codes), RCPT_FLOOD)
        self.assertReply(c.data(message('flood')), 250)
        total = time.monotonic() - t0
        watcher.finish()
        msgs = self.mx1.wait_messages(1)
        self.assertEqual(len(msgs), 1)
        self.assertEqual(msgs[0].rcpts, ['r%d@example.test' % i for i in range(RCPT_LIMIT)])
        self.assertEqual(watcher.errors, [])
        self.assertGreater(watcher.count, 0)
        self.assertLess(watcher.worst, 5.0 if slow else 1.0,
                        'NOOP took %.2fs during the flood' % watcher.worst)
        self.assertLess(total, 120 if slow else 30)
        self.assertTrue(self.proxy.running())
        sys.stderr.write('\n  10,000 RCPTs: %.2fs, with DATA %.2fs; worst NOOP of %d on '
                         'another connection %.3fs\n' % (rcpt_time, total, watcher.count,
                                                         watcher.worst))

    # ---- NUL bytes ---------------------------------------------------------------------
    def test_nul_in_command_lines(self):
        """A NUL anywhere in a command line gets 501 5.5.4, the command is not acted
        on, and the session carries on: a RCPT with a NUL never reaches the MX."""
        c = self.client()
        for line in (b'NOOP\0', b'NO\0OP', b'\0', b'EHLO cli\0ent.test',
                     b'MAIL FROM:<a\0b@client.test>'):
            self.assertReply(c.cmd(line), 501, '5.5.4')
        self.assertReply(c.cmd('MAIL FROM:<sender@client.test>'), 250)
        for line in (b'RCPT TO:<r\0cpt@example.test>', b'RCPT TO:<rcpt@example.test>\0',
                     b'RCPT TO:<rcpt@example.test> NOTIFY=\0NEVER'):
            self.assertReply(c.cmd(line), 501, '5.5.4')
        self.assertReply(c.cmd('DATA'), 554)  # no recipient was accepted
        self.assertEqual(self.mx1.connections, 0, 'a NUL RCPT reached the MX')
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test>'), 250)
        self.assertReply(c.data(message('after-nul')), 250)
        self.assertEqual(len(self.mx1.wait_messages(1)), 1)
        self.assertNotIn('\0', ''.join(self.mx1.all_commands()))

    def test_nul_in_data(self):
        """NUL bytes in the body (mid-line, alone on a line, right after a line's
        dot, right before the terminator) are passed on unchanged: the MX gets
        exactly the bytes sent, after the proxy's Received: header, and no NUL
        sequence ends the data early."""
        body = (b'From: <sender@client.test>\r\nSubject: nul\r\n\r\n'
                b'hello\0world\r\n\0\r\n.\0\r\n\0.\r\n\0\r\n.\r\n')
        c = self.client()
        c.cmd('MAIL FROM:<sender@client.test>')
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test>'), 250)
        self.assertReply(c.data(body), 250)
        msgs = self.mx1.wait_messages(1)
        self.assertEqual(len(msgs), 1)
        self.assertEqual(split_received(msgs[0].data)[1], body)
        self.assertReply(c.cmd('NOOP'), 250)
        c.nothing_pending()
        self.assertTrue(self.proxy.running())

    # ---- STARTTLS without inbound TLS ----------------------------------------------------
    def test_command_pipelined_after_starttls(self):
        """No inbound TLS: STARTTLS gets 502 and whatever was pipelined behind it is
        answered as the ordinary commands they are, in order, with nothing extra (no
        desync): here a whole transaction in the same write as the STARTTLS."""
        c = self.client()
        c.send_raw(b'STARTTLS\r\nNOOP\r\n')
        self.assertEqual([r[0] for r in c.read_replies(2)], [502, 250])
        c.nothing_pending()
        replies = c.pipeline(['EHLO client.test', 'STARTTLS', 'MAIL FROM:<s@client.test>',
                              'RCPT TO:<rcpt@example.test>', 'DATA'])
        self.assertEqual([r[0] for r in replies], [250, 502, 250, 250, 354], replies)
        self.assertNotIn('STARTTLS', replies[0][1])
        c.send_raw(message('after-starttls') + b'.\r\nNOOP\r\n')
        self.assertReply(c.read_reply(), 250)
        self.assertReply(c.read_reply(), 250)
        c.nothing_pending()
        self.assertEqual(len(self.mx1.wait_messages(1)), 1)
        self.assertEqual(self.mx1.messages[0].rcpts, ['rcpt@example.test'])


class Crowd:
    """Many raw client sockets on one selector, for the slowloris test."""

    def __init__(self, port):
        self.port = port
        self.sel = selectors.DefaultSelector()
        self.socks = []
        self.got = {}  # sock -> bytes received
        self.eof = set()

    def open(self, n, timeout=30):
        """Opens N connections (non-blocking connect) and waits for a full first line
        from each; returns the list of (sock, first line)."""
        new = []
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(('127.0.0.1', self.port))
            self.got[s] = b''
            self.sel.register(s, selectors.EVENT_READ)
            self.socks.append(s)
            new.append(s)
        self.pump(lambda: all(b'\n' in self.got[s] or s in self.eof for s in new), timeout)
        return [(s, self.got[s].split(b'\n', 1)[0]) for s in new]

    def pump(self, done, timeout):
        """Reads whatever arrives until DONE() or TIMEOUT s; returns DONE()."""
        deadline = time.monotonic() + timeout
        for _ in range(10 ** 6):
            if done():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return done()
            for key, _ in self.sel.select(min(left, 0.2)):
                self._read(key.fileobj)
        return done()

    def _read(self, s):
        try:
            data = s.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b''
        if data:
            self.got[s] += data
        else:
            self.eof.add(s)
            self.sel.unregister(s)

    def send_byte(self, b):
        for s in self.socks:
            if s not in self.eof:
                try:
                    s.send(b)
                except OSError:
                    pass

    def close(self):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        self.sel.close()


def held_connections(port, client_ports):
    """How many of the connections from client_ports the server on loopback PORT
    holds open: its ends in ESTABLISHED state (from /proc/net/tcp). Exact, unlike a
    count of the process's sockets, which a readiness probe closing late can skew."""
    held = 0
    with open('/proc/net/tcp') as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if (state == '01' and int(local.split(':')[1], 16) == port
                    and int(remote.split(':')[1], 16) in client_ports):
                held += 1
    return held


def proxy_sockets(pid):
    """How many sockets the process PID holds (listeners, clients, DNS)."""
    n = 0
    for fd in os.listdir('/proc/%d/fd' % pid):
        try:
            if os.readlink('/proc/%d/fd/%s' % (pid, fd)).startswith('socket:'):
                n += 1
        except OSError:
            pass
    return n


class Slowloris(TestBase):
    start_proxy = False
    timeout = 3

    def setUp(self):
        asan = is_asan_build()
        self.idle = 1000
        self.limit = self.idle + 200
        self.bound_kb = None if asan else 40 * 1024
        have = raise_nofile(self.limit * 2 + 200)
        if have < self.limit + 100:
            self.skipTest('RLIMIT_NOFILE %d is too low for %d sockets' % (have, self.limit))
        super().setUp()
        self.start_the_proxy({'limits': {'connections': self.limit},
                              'timeouts': {'inbound_command': self.timeout}})
        self.crowd = Crowd(self.proxy.port)
        self.addCleanup(self.crowd.close)
        # The harness's readiness probe must have left before slots are counted.
        wait_until(lambda: len(re.findall(r': (?:dis)?connect from', self.proxy.log_text()))
                   % 2 == 0, 10)

    def test_idle_crowd(self):
        """1,000 connections greeted, each trickling a partial line
        ("NOO") byte by byte: all are held at once; RSS grows by less than 40 MB
        (not checked under ASan); a real client is still served; the connection
        limit (limits.connections: 1200) is exact: the slots left are filled and the
        next connection gets 421 4.7.0; then, idle, every trickler gets 421 4.4.2 and
        is closed by timeouts.inbound_command (3 s), and the proxy's sockets go back
        to what they were."""
        proxy = self.proxy
        base_socks = proxy_sockets(proxy.pid)
        base_rss = proxy.rss_kb()
        t0 = time.monotonic()
        greeted = self.crowd.open(self.idle)
        bad = [l for _, l in greeted if not l.startswith(b'220 ')]
        self.assertEqual(bad, [], 'not greeted with 220')
        open_time = time.monotonic() - t0
        # The partial line, a byte at a time: no reply may come for it.
        for b in (b'N', b'O', b'O'):
            self.crowd.send_byte(b)
            t_last = time.monotonic()
            self.crowd.pump(lambda: False, 0.2)
        stuck = [s for s in self.crowd.socks if self.crowd.got[s].count(b'\n') != 1]
        self.assertEqual(len(stuck), 0, 'a partial line got a reply or a close')
        held = held_connections(proxy.port,
                                {sk.getsockname()[1] for sk in self.crowd.socks})
        self.assertGreaterEqual(held, self.idle, 'the proxy does not hold every connection')
        rss_growth = proxy.rss_kb() - base_rss
        # A real client is served while the crowd is there.
        c = self.client()
        self.assertReply(c.cmd('MAIL FROM:<s@client.test>'), 250)
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test>'), 250)
        self.assertReply(c.data(message('crowd')), 250)
        # Fill the remaining slots exactly; one more is refused.
        fill = self.crowd.open(self.limit - self.idle - 1)
        self.assertEqual([l for _, l in fill if not l.startswith(b'220 ')], [])
        over = Client(proxy.port)
        self.addCleanup(over.close)
        refused = over.read_reply()
        checked = time.monotonic() - t_last
        # Past the timeout, crowd slots may have been freed: the count means nothing.
        self.assertLess(checked, self.timeout, 'the checks took %.1fs after the last '
                        'trickled byte: too slow for a %ds timeout' % (checked, self.timeout))
        self.assertReply(refused, 421, '4.7.0')
        self.assertTrue(over.expect_closed())
        if self.bound_kb is not None:
            self.assertLess(rss_growth, self.bound_kb,
                            'RSS grew %d kB for %d idle connections' % (
                                rss_growth, self.idle))
        # Now idle: the timeout closes every one of them with a 421.
        c.close()
        t1 = time.monotonic()
        n = len(self.crowd.socks)
        closed = self.crowd.pump(lambda: len(self.crowd.eof) == n, 10 * self.timeout + 30)
        close_time = time.monotonic() - t1
        self.assertTrue(closed, '%d of %d connections still open after %.1fs' % (
            n - len(self.crowd.eof), n, close_time))
        no421 = [s for s in self.crowd.socks
                 if not re.search(rb'\r\n421 4\.4\.2 .*timeout', self.crowd.got[s])]
        self.assertEqual(len(no421), 0, 'closed without 421 4.4.2: %r' % (
            [self.crowd.got[s] for s in no421[:3]],))
        # (+5: the MX connection of the real client may idle in the upstream cache)
        wait_until(lambda: proxy_sockets(proxy.pid) <= base_socks + 5, 30,
                   lambda: 'proxy still holds %d sockets (had %d)' % (
                       proxy_sockets(proxy.pid), base_socks))
        self.assertGreaterEqual(len(re.findall(r'timeout after', proxy.log_text())), n)
        self.assertReply(self.client().cmd('NOOP'), 250)
        sys.stderr.write('\n  %d idle connections: opened in %.2fs, RSS +%d kB (%.1f kB '
                         'each), all closed by the %ds timeout %.2fs after going idle\n'
                         % (self.idle, open_time, rss_growth, rss_growth / self.idle,
                            self.timeout, close_time))

    def test_trickle_has_a_deadline(self):
        """A client trickling one byte at a time never completes a command: only
        progress (a whole command) restarts the idle timer, so these 20 are closed
        within the timeout (3 s) of their first byte instead of keeping their slots
        (enough of them would exhaust limits.connections)."""
        conns = self.crowd.open(20)
        self.assertTrue(all(l.startswith(b'220 ') for _, l in conns))
        deadline = time.monotonic() + 2 * self.timeout
        for i in range(100):
            if time.monotonic() > deadline or len(self.crowd.eof) == 20:
                break
            self.crowd.send_byte(b'x')
            self.crowd.pump(lambda: len(self.crowd.eof) == 20, 0.5)
        self.assertEqual(len(self.crowd.eof), 20, 'trickling clients were never closed')


class NonReader(TestBase):
    """A client that stops reading cannot keep a closing session (and its memory) for
    ever: a graceful close gives up after timeouts.inbound_command, resets the
    connection and says so in the log."""

    # ~6.5 MB of EHLO replies: more than the proxy's socket send buffer can grow to
    # (tcp_wmem's 4 MB) plus the proxy's own 256 kB cap on unsent replies.
    EHLOS = 60000

    @staticmethod
    def send_all(sock, data):
        try:
            sock.sendall(data)
        except OSError:
            pass  # reset by the proxy while blocked: expected

    @proxy_config({'timeouts': {'inbound_command': 1}})
    def test_close_deadline_for_a_client_that_does_not_read(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(('127.0.0.1', self.proxy.port))
        greeting = b''
        while not greeting.endswith(b'\r\n'):
            greeting += sock.recv(1)
        self.assertTrue(greeting.startswith(b'220 '), greeting)
        # this session's id: its "connect from" is logged before the greeting is sent
        sid = re.findall(r'([0-9A-F]{10}): connect from', self.proxy.log_text())[-1]
        t0 = time.monotonic()
        # Pipelined EHLOs and QUIT, never reading the replies: the proxy's write
        # queue cannot drain, so its close after the 421 of its command timeout (it
        # stops reading at its cap), or after QUIT should it get there, waits on us.
        sender = threading.Thread(target=self.send_all, daemon=True,
                                  args=(sock, b'EHLO c\r\n' * self.EHLOS + b'QUIT\r\n'))
        sender.start()
        self.proxy.wait_log(sid + r': disconnect from unknown\[127\.0\.0\.1\]', 30)
        elapsed = time.monotonic() - t0
        self.assertRegex(self.proxy.log_text(),
                         sid + r': close timeout: unknown\[127\.0\.0\.1\] did not read our last '
                         r'replies within 1 s: connection reset')
        # at most the command timeout (if QUIT was never read) plus the deadline
        self.assertLess(elapsed, 2 + 5)
        sender.join(10)
        self.assertFalse(sender.is_alive())
        # the connection is gone: reading ends in a reset or EOF, well short of
        # every reply
        got = 0
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += len(chunk)
        except ConnectionResetError:
            pass
        self.assertLess(got, 100 * self.EHLOS)


if __name__ == '__main__':
    main()
