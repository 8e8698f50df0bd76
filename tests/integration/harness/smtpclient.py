"""A raw SMTP line client for wire-level assertions.

    c = Client(port)                      # connects to 127.0.0.1:port
    code, lines = c.read_reply()          # the greeting; lines = texts after "NNN-"/"NNN "
    code, lines = c.cmd('EHLO client.test')
    c.send_raw(b'MAIL FROM:<a@b>\\r\\nRCPT TO:<c@d>\\r\\n')
    replies = c.pipeline(['MAIL FROM:<a@b>', 'RCPT TO:<c@d>', 'DATA'])  # one write
    code, lines = c.data(b'Subject: x\\r\\n\\r\\nbody\\r\\n')   # DATA, 354, body, final reply
    c.send_message('a@b', ['c@d'], body)  # MAIL/RCPT/DATA; dict of replies
    c.send_chunks(iter_of_bytes)          # writes everything, reads nothing
    c.expect_closed(); c.nothing_pending(0.2); c.close()

Every read has a deadline (the timeout given to the call, or the client's default);
on expiry Timeout (an AssertionError) is raised, on EOF Closed.
"""

import socket
import time


class Closed(AssertionError):
    """The server closed the connection while a reply was expected."""


class Timeout(AssertionError):
    """No (complete) reply before the deadline."""


def dot_stuff(body):
    """Dot-stuffs BODY (bytes with CRLF line ends) and makes it end with CRLF."""
    if not body.endswith(b'\r\n'):
        body += b'\r\n'
    if body.startswith(b'.'):
        body = b'.' + body
    return body.replace(b'\r\n.', b'\r\n..')


class Client:
    """One SMTP connection to HOST:PORT. Attributes: sock, transcript (list of
    ('>', bytes) sent and ('<', bytes) reply lines received)."""

    def __init__(self, port, host='127.0.0.1', timeout=10, source=None):
        self.timeout = timeout
        self.buf = b''
        self.transcript = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source:
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        try:
            self.sock.connect((host, port))
        except OSError:
            self.sock.close()
            raise
        self.eof = False

    # ---- reading -----------------------------------------------------------------------
    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Timeout('no reply within the deadline; have %r' % self.buf[:200])
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise Timeout('no reply within the deadline; have %r' % self.buf[:200])
        except ConnectionResetError:
            data = b''
        if not data:
            self.eof = True
            raise Closed('connection closed by server; pending %r' % self.buf[:200])
        self.buf += data

    def read_line(self, timeout=None):
        """One line without its CRLF (bytes)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        for _ in range(100000):
            i = self.buf.find(b'\n')
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 1:]
                self.transcript.append(('<', line))
                return line.rstrip(b'\r')
            self._fill(deadline)
        raise Timeout('line too long')

    def read_reply(self, timeout=None):
        """Reads one (possibly multi-line) reply. Returns (code, [line texts]); the
        texts are what follows "NNN-" or "NNN " (enhanced codes left in place)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        lines = []
        code = None
        for _ in range(1000):
            line = self.read_line(max(0.001, deadline - time.monotonic())).decode(
                'utf-8', 'replace')
            if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3] not in ' -'):
                raise AssertionError('malformed reply line %r' % line)
            if code is not None and int(line[:3]) != code:
                raise AssertionError('reply code changed inside a reply: %r' % line)
            code = int(line[:3])
            lines.append(line[4:])
            if len(line) == 3 or line[3] == ' ':
                return code, lines
        raise AssertionError('reply with too many lines')

    def read_replies(self, n, timeout=None):
        """Reads N replies; returns a list of (code, lines)."""
        return [self.read_reply(timeout) for _ in range(n)]

    # ---- writing -----------------------------------------------------------------------
    def send_raw(self, data):
        """Writes DATA (bytes or str) as is."""
        if isinstance(data, str):
            data = data.encode()
        self.transcript.append(('>', data))
        self.sock.sendall(data)

    def send_line(self, line):
        """Writes LINE + CRLF."""
        self.send_raw((line.encode() if isinstance(line, str) else line) + b'\r\n')

    def cmd(self, line, timeout=None):
        """Sends one command line; returns its reply (code, lines)."""
        self.send_line(line)
        return self.read_reply(timeout)

    def pipeline(self, lines, timeout=None):
        """Sends every line in ONE write, then reads one reply per line."""
        self.send_raw(b''.join((l.encode() if isinstance(l, str) else l) + b'\r\n'
                               for l in lines))
        return self.read_replies(len(lines), timeout)

    def send_chunks(self, chunks):
        """Writes every chunk (an iterable of bytes) without reading anything; returns
        the byte count."""
        n = 0
        self.sock.settimeout(max(self.timeout, 60))
        for chunk in chunks:
            self.sock.sendall(chunk)
            n += len(chunk)
        self.sock.settimeout(self.timeout)
        return n

    # ---- whole transactions ------------------------------------------------------------
    def greet(self, name='client.test'):
        """Reads the greeting, sends EHLO; returns (greeting, ehlo reply)."""
        return self.read_reply(), self.cmd('EHLO %s' % name)

    def data(self, body, stuff=True, timeout=None):
        """DATA; on 354 sends BODY (dot-stuffed unless STUFF is false, when BODY must
        already end with its terminator) and returns the final reply; otherwise returns
        the DATA reply."""
        r = self.cmd('DATA', timeout)
        if r[0] != 354:
            return r
        self.send_raw(dot_stuff(body) + b'.\r\n' if stuff else body)
        return self.read_reply(timeout)

    def send_message(self, mail_from, rcpts, body, params='', timeout=None):
        """MAIL, RCPT for each, DATA if any RCPT got 2xx. Returns a dict: 'mail',
        'rcpt' (list), 'data' (the final reply, or the DATA reply, or None)."""
        out = {'mail': self.cmd('MAIL FROM:<%s>%s' % (mail_from, params), timeout),
               'rcpt': [], 'data': None}
        if out['mail'][0] != 250:
            return out
        for r in rcpts:
            out['rcpt'].append(self.cmd('RCPT TO:<%s>' % r, timeout))
        if any(200 <= r[0] < 300 for r in out['rcpt']):
            out['data'] = self.data(body, timeout=timeout)
        return out

    # ---- connection state --------------------------------------------------------------
    def expect_closed(self, timeout=None):
        """True when the server closes the connection (EOF or reset) before the
        deadline with no further data; AssertionError if a reply line arrives."""
        deadline = time.monotonic() + (timeout or self.timeout)
        if self.buf:
            raise AssertionError('unexpected data before close: %r' % self.buf[:200])
        try:
            self._fill(deadline)
        except Closed:
            return True
        raise AssertionError('unexpected data instead of close: %r' % self.buf[:200])

    def nothing_pending(self, wait=0.2):
        """Asserts that no byte arrives within WAIT seconds (an extra, unrequested
        reply would). EOF counts as nothing."""
        if self.buf:
            raise AssertionError('unexpected pending data: %r' % self.buf[:200])
        try:
            self._fill(time.monotonic() + wait)
        except (Timeout, Closed):
            return True
        raise AssertionError('unexpected data: %r' % self.buf[:200])

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
