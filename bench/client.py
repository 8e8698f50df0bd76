"""SMTP client pieces of the benchmark: timed single messages (latency) and many idle
sessions (memory per connection). Stdlib only."""

import asyncio
import socket
import ssl
import time


class SmtpError(RuntimeError):
    pass


class _Conn:
    def __init__(self, host, port, timeout=60):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b''

    def reply(self, want):
        """Reads one (multi-line) reply; raises unless its code starts with WANT."""
        lines = []
        while True:
            while b'\n' not in self.buf:
                d = self.sock.recv(65536)
                if not d:
                    raise SmtpError('connection closed; so far %r' % lines)
                self.buf += d
            line, _, self.buf = self.buf.partition(b'\n')
            lines.append(line)
            if len(line) < 4 or line[3:4] != b'-':
                break
        if not lines[-1].startswith(want):
            raise SmtpError('expected %s, got %r' % (want, lines))
        return lines

    def cmd(self, line, want=b'2'):
        self.sock.sendall(line + b'\r\n')
        return self.reply(want)

    def starttls(self, ctx, session, server_hostname):
        self.cmd(b'STARTTLS')
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname,
                                    session=session)
        self.buf = b''
        return self.sock.session

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def body(size):
    """Headers + SIZE bytes of body in 78-character lines, dot-terminated."""
    head = b'From: <a@client.bench.test>\r\nTo: <b@bench.test>\r\nSubject: bench\r\n\r\n'
    line = b'x' * 76 + b'\r\n'
    return head + line * max(1, size // len(line)) + b'.\r\n'


def latency(host, port, rcpt, size, count, persistent, tls_name=None, cafile=None,
            deadline=None):
    """COUNT sequential messages; returns the list of per-message seconds. One message
    per connection: connect → 250 after the dot (QUIT waited for, untimed). Persistent:
    MAIL → 250 after the dot on one session. TLS_NAME: do STARTTLS ourselves (the
    "direct with TLS" baseline), resuming the previous session like the relays do."""
    data = body(size)
    ctx = None
    if tls_name:
        ctx = ssl.create_default_context(cafile=cafile)
    session = None
    out = []
    conn = None

    def open_session():
        nonlocal session
        c = _Conn(host, port)
        c.reply(b'220')
        c.cmd(b'EHLO client.bench.test')
        if ctx:
            session = c.starttls(ctx, session, tls_name)
            c.cmd(b'EHLO client.bench.test')
        return c

    def one(c):
        c.cmd(b'MAIL FROM:<a@client.bench.test>')
        c.cmd(b'RCPT TO:<%s>' % rcpt.encode())
        c.cmd(b'DATA', b'354')
        c.sock.sendall(data)
        c.reply(b'250')

    try:
        if persistent:
            conn = open_session()
        for _ in range(count):
            if deadline and time.monotonic() > deadline:
                break
            if persistent:
                t0 = time.perf_counter()
                one(conn)
                out.append(time.perf_counter() - t0)
            else:
                t0 = time.perf_counter()
                c = open_session()
                one(c)
                out.append(time.perf_counter() - t0)
                if ctx:
                    session = c.sock.session
                c.cmd(b'QUIT')
                c.close()
        if conn:
            conn.cmd(b'QUIT')
    finally:
        if conn:
            conn.close()
    return out


async def _idle_one(host, port, rcpt, sem, holders, timeout, stage='rcpt'):
    async with sem:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)

        async def reply(want):
            while True:
                line = await asyncio.wait_for(r.readline(), timeout)
                if not line:
                    raise SmtpError('closed')
                if line[3:4] != b'-':
                    if not line.startswith(want):
                        raise SmtpError('expected %s, got %r' % (want, line))
                    return

        await reply(b'220')
        cmds = [b'EHLO client.bench.test', b'MAIL FROM:<a@client.bench.test>',
                b'RCPT TO:<%s>' % rcpt.encode()]
        for cmd in cmds[:3 if stage == 'rcpt' else 2]:
            w.write(cmd + b'\r\n')
            await reply(b'2')
        holders.append((r, w))


async def _idle(host, port, rcpt, n, parallel, timeout, hold, stage='rcpt'):
    sem = asyncio.Semaphore(parallel)
    holders = []
    res = await asyncio.gather(*[_idle_one(host, port, rcpt, sem, holders, timeout, stage)
                                 for _ in range(n)], return_exceptions=True)
    errors = [e for e in res if isinstance(e, BaseException)]
    try:
        await hold(len(holders), errors)
    finally:
        for r, w in holders:
            try:
                w.write(b'QUIT\r\n')
                w.close()
            except Exception:
                pass
        await asyncio.sleep(0.2)


def idle(host, port, rcpt, n, hold, parallel=50, timeout=30, stage='rcpt'):
    """Opens N sessions that each stop after RCPT (an open transaction: the relay holds
    its MX connection) or, with stage='mail', after MAIL FROM (no MX connection yet),
    then calls `await hold(opened, errors)` and closes them."""
    asyncio.run(_idle(host, port, rcpt, n, parallel, timeout, hold, stage))
