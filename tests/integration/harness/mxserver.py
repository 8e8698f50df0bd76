"""A scriptable SMTP server playing a destination MX, with fault injection.

    mx = MxServer('127.0.0.2', port, starttls=(cert, key), name='mx1.example.test')
    mx.messages            # delivered messages (Message), in order
    mx.sessions            # every connection (Session), in accept order
    mx.connections         # how many connections were accepted
    mx.wait_for(lambda: len(mx.messages) == 1, timeout=10)
    mx.configure(rcpt=(550, '5.1.1 no such user'))   # change behaviour at run time
    mx.stop()

Several MxServer share one port on different 127.0.0.x addresses (the proxy dials every
MX on outbound.port). One thread accepts; each connection gets its own thread.

Options (constructor keywords, or later through configure()):

  starttls=(cert, key)   offer STARTTLS and do TLS (server side, Python ssl); None: no TLS
  offer_starttls=True    advertise STARTTLS (False: certificate loaded but not offered)
  name                   host name in the greeting and EHLO reply
  caps                   EHLO keywords after the first line; default PIPELINING, SIZE n,
                         8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, DSN (+ STARTTLS)
  size                   SIZE value (default 52428800); MAIL SIZE=n above it gets 552
  tls_min, tls_max       'TLSv1.1' .. 'TLSv1.3' (or ssl.TLSVersion); tls_max='TLSv1.1'
                         also drops OpenSSL's security level to 0 so it can be negotiated
  tls_ciphers            TLS 1.2 cipher string for the server (e.g. 'AES128-GCM-SHA256':
                         a non-forward-secret RSA key exchange)
  tls_tickets            TLS 1.3 tickets sent after a full handshake (OpenSSL's default
                         is 2; after a resumption OpenSSL sends one)
  tls_garbage            after "220 ready" send non-TLS bytes instead of a handshake
  tls_inject             bytes sent in plaintext once the client's first handshake bytes
                         (its ClientHello) have arrived, before the server's answer; the
                         handshake is then attempted as usual (an injection after the
                         handshake started)
  Reply overrides, each (code, text) | [per-occurrence entries, None = default] |
  callable(session, line) -> (code, text) or None; text may have '\\n' for more lines:
      greeting, ehlo, helo, mail, rcpt, data (the 354), data_end (final reply), rset,
      noop, quit, starttls (the 220), ehlo_tls (EHLO inside TLS only; default: as ehlo)
    A 421 reply closes the connection after it is sent (unless close_after_421 is
    False); a non-220 greeting makes every later command but QUIT get 503. A text of
    bytes is sent as it is, as the whole reply (a malformed reply).
  reset_at               'greeting' (RST at once), 'ehlo', 'starttls' (before the 220),
                         'tls' (after the 220, instead of the handshake), 'tls_done'
                         (right after a completed handshake), 'mail', 'rcpt',
                         'data' (mid-body: after the first body bytes),
                         'data_end' (the final dot is read, no reply), 'quit'
  delay_at               (stage, seconds) or a list of them; the stage's reply is late
                         (stages as for reset_at, plus 'greeting')
  fault_fn               callable(session, stage) -> None | 'reset' | seconds: a fault
                         chosen at run time (e.g. at random) at every stage where
                         reset_at applies ('data' = mid-body, after the first body
                         bytes); 'reset' resets there, a number delays that long
  fault_connections      faults (overrides, reset_at, delay_at, fault_fn, injection,
                         tls_garbage, split_replies) apply to the first N connections
                         only; None: to all
  close_after_421        False: a 421 reply leaves the connection open, and later
                         commands are answered as usual (a server that breaks RFC 5321)
  pipeline_after_starttls  bytes sent in plaintext right after "220 ready for TLS", in
                         the same write (a CVE-2011-0411-style injection towards the client)
  discard_body           keep only the length, SHA-256 and first 4 KiB of each message
  lenient_data_end       end DATA also at a bare-LF/CR "." line, like vulnerable servers;
                         whatever follows is read as commands (smuggling detector)
  split_replies          send every multi-line reply in pieces, one write (one TLS record)
                         per line plus one in the middle of the last line, so the client
                         gets a reply across several reads; True: 5 ms apart, a number:
                         that many seconds apart (a fault: see fault_connections)

Every byte received is recorded per session (Session.rx_plain before TLS, rx_tls
inside it), whatever the state, so a test can prove what never reached the MX.

An ip with a colon (e.g. '::1') listens on IPv6.

A message is delivered (appended to .messages) only when its final "." was read and
the 250 is about to be sent; it is removed again if sending the 250 fails.
"""

import hashlib
import itertools
import re
import selectors
import socket
import ssl
import struct
import threading
import time
import warnings

from .util import shutdown_sockets

_TLS_NAMES = {
    'TLSv1': ssl.TLSVersion.TLSv1, 'TLSv1.1': ssl.TLSVersion.TLSv1_1,
    'TLSv1.2': ssl.TLSVersion.TLSv1_2, 'TLSv1.3': ssl.TLSVersion.TLSv1_3,
}
_HEAD_KEEP = 4096
_LINE_MAX = 65536
_LENIENT_END = re.compile(rb'(?:\A|\r\n|\n|\r)\.(?:\r\n|\n|\r)')
_PATH = re.compile(r'^(MAIL FROM|RCPT TO):\s*<([^<>]*)>(.*)$', re.I)


class Message:
    """One delivered message, as the MX saw it.

    mail_from, rcpts (list of addresses), data (bytes after un-dot-stuffing, including
    the final CRLF; None with discard_body), raw (bytes as received before
    un-stuffing, terminator excluded; None with discard_body), length, sha256 (hex of
    data), head (first 4 KiB of data), tls_version ('TLSv1.3' ... or None), tls_cipher,
    helo, mail_line and rcpt_lines (the raw command lines with parameters), session."""

    def __init__(self, sess):
        self.session = sess
        self.mail_from = sess.mail_from
        self.rcpts = list(sess.rcpts)
        self.mail_line = sess.mail_line
        self.rcpt_lines = list(sess.rcpt_lines)
        self.helo = sess.helo
        self.tls_version = sess.tls_version
        self.tls_cipher = sess.tls_cipher
        self.data = None
        self.raw = None
        self.length = 0
        self.sha256 = None
        self.head = b''

    def __repr__(self):
        return '<Message from=%r to=%r len=%d tls=%s>' % (
            self.mail_from, self.rcpts, self.length, self.tls_version)


class Session:
    """One accepted connection: id (0-based), peer, helo, tls_version, tls_cipher, sni
    (server name the client sent), tls_error (handshake failure text), tls_resumed
    (the TLS session was resumed, not a full handshake), commands (lines
    received outside DATA), replies ((code, text) sent), plaintext_after_starttls
    (bytes the client pipelined after STARTTLS; discarded), messages, reset (True when
    this server reset it), closed (the thread is done), t_accept (time.monotonic() at
    accept), rx_plain and rx_tls (every byte received in plaintext, and inside TLS)."""

    def __init__(self, sid, peer):
        self.id = sid
        self.peer = peer
        self.helo = None
        self.tls_version = None
        self.tls_cipher = None
        self.sni = None
        self.tls_error = None
        self.tls_resumed = False
        self.commands = []
        self.replies = []
        self.plaintext_after_starttls = b''
        self.messages = []
        self.reset = False
        self.closed = False
        self.mail_from = None
        self.mail_line = None
        self.rcpts = []
        self.rcpt_lines = []
        self.t_accept = time.monotonic()
        self.rx_plain = bytearray()
        self.rx_tls = bytearray()

    def new_transaction(self):
        self.mail_from, self.mail_line, self.rcpts, self.rcpt_lines = None, None, [], []


class _Reset(Exception):
    pass


class _Closed(Exception):
    pass


class MxServer:
    """See the module docstring."""

    _DEFAULTS = dict(
        starttls=None, offer_starttls=True, name='mx.example.test', caps=None,
        size=52428800, tls_min=None, tls_max=None, tls_ciphers=None, tls_garbage=False,
        tls_inject=None, greeting=None, ehlo=None, ehlo_tls=None, helo=None, mail=None,
        rcpt=None, data=None,
        data_end=None, rset=None, noop=None, quit=None, starttls_reply=None,
        reset_at=None, delay_at=None, fault_fn=None, fault_connections=None,
        pipeline_after_starttls=None, discard_body=False, lenient_data_end=False,
        idle_timeout=60, split_replies=False, tls_tickets=None, close_after_421=True,
    )

    def __init__(self, ip, port, **kw):
        self.ip, self.port = ip, port
        self.cfg = dict(self._DEFAULTS)
        self.configure(**kw)
        self.messages = []
        self.sessions = []
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self._socks = set()
        self._counts = {}
        self._qid = itertools.count(1)
        family = socket.AF_INET6 if ':' in ip else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((ip, port))
        except OSError:
            self.sock.close()
            raise
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name='mx-%s' % ip,
                                        daemon=True)
        self._thread.start()

    # ---- configuration -----------------------------------------------------------------
    def configure(self, **kw):
        """Changes options (see the module docstring); affects later connections and
        later commands of open ones. 'starttls' here is the (cert, key) pair; the
        STARTTLS reply override is 'starttls_reply'."""
        for k, v in kw.items():
            if k not in self._DEFAULTS:
                raise TypeError('unknown MxServer option %r' % (k,))
            self.cfg[k] = v
        self._ctx = self._make_ctx() if self.cfg['starttls'] else None

    def _make_ctx(self):
        cert, key = self.cfg['starttls']
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        tmin, tmax = self.cfg['tls_min'], self.cfg['tls_max']
        if isinstance(tmin, str):
            tmin = _TLS_NAMES[tmin]
        if isinstance(tmax, str):
            tmax = _TLS_NAMES[tmax]
        with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: that is the point
            warnings.simplefilter('ignore', DeprecationWarning)
            if tmax is not None and tmax < ssl.TLSVersion.TLSv1_2:
                ctx.set_ciphers('DEFAULT:@SECLEVEL=0')
                ctx.minimum_version = tmin or ssl.TLSVersion.TLSv1
            elif tmin is not None:
                ctx.minimum_version = tmin
            if tmax is not None:
                ctx.maximum_version = tmax
        if self.cfg['tls_ciphers']:
            ctx.set_ciphers(self.cfg['tls_ciphers'])
        if self.cfg['tls_tickets'] is not None:
            ctx.num_tickets = self.cfg['tls_tickets']

        def on_sni(sslobj, server_name, _ctx):
            sess = getattr(sslobj, '_mx_session', None)
            if sess is not None:
                sess.sni = server_name
        ctx.sni_callback = on_sni
        return ctx

    # ---- helpers for tests ---------------------------------------------------------------
    def wait_for(self, cond, timeout=10, msg=None):
        """Polls cond() until it returns a true value (returned) or TIMEOUT seconds pass
        (AssertionError with MSG)."""
        deadline = time.monotonic() + timeout
        while True:
            v = cond()
            if v:
                return v
            if time.monotonic() >= deadline:
                raise AssertionError(msg or 'condition not met within %ss on MX %s'
                                     % (timeout, self.ip))
            self._stop.wait(0.01)

    def wait_messages(self, n=1, timeout=10):
        """Waits until at least N messages were delivered; returns .messages."""
        self.wait_for(lambda: len(self.messages) >= n, timeout,
                      'MX %s: %d message(s) expected, have %d' % (
                          self.ip, n, len(self.messages)))
        return self.messages

    def resumed(self):
        """How many TLS sessions were resumptions (not full handshakes)."""
        return sum(1 for s in list(self.sessions) if s.tls_resumed)

    def all_commands(self):
        """Every command line received, over all sessions, in session order."""
        return [c for s in list(self.sessions) for c in s.commands]

    # ---- serving -------------------------------------------------------------------------
    def _accept_loop(self):
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                if not sel.select(timeout=0.2):
                    continue
                try:
                    conn, peer = self.sock.accept()
                except OSError:
                    continue
                with self._lock:
                    sess = Session(self.connections, peer)
                    self.connections += 1
                    self.sessions.append(sess)
                    self._socks.add(conn)
                t = threading.Thread(target=self._session, args=(conn, sess),
                                     name='mx-%s-%d' % (self.ip, sess.id), daemon=True)
                self._threads.append(t)
                t.start()
        finally:
            sel.close()

    def stop(self):
        """Stops accepting, shuts every connection down and joins the threads."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        shutdown_sockets(self._lock, self._socks)
        for t in self._threads:
            t.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # ---- one connection ---------------------------------------------------------------------
    def _faulty(self, sess):
        n = self.cfg['fault_connections']
        return n is None or sess.id < n

    def _override(self, sess, cmd, line):
        if not self._faulty(sess):
            return None
        spec = self.cfg.get(cmd)
        with self._lock:
            i = self._counts.get(cmd, 0)
            self._counts[cmd] = i + 1
        if spec is None:
            return None
        if callable(spec):
            return spec(sess, line)
        if isinstance(spec, list):
            return spec[i] if i < len(spec) else None
        return spec

    def _stage(self, c, sess, stage, reset=True):
        """Applies delay_at (and reset_at, when RESET) for STAGE."""
        if not self._faulty(sess):
            return
        delays = self.cfg['delay_at']
        if delays:
            if isinstance(delays, tuple):
                delays = [delays]
            for st, secs in delays:
                if st == stage:
                    self._stop.wait(secs)
        if reset and self.cfg['reset_at'] == stage:
            raise _Reset()
        if reset and self.cfg['fault_fn'] is not None:
            self._apply_fault(self.cfg['fault_fn'](sess, stage))

    def _apply_fault(self, action):
        """What a fault_fn returned: None, 'reset' or a delay in seconds."""
        if action == 'reset':
            raise _Reset()
        if isinstance(action, (int, float)) and not isinstance(action, bool):
            if action > 0:
                self._stop.wait(action)
        elif action is not None:
            raise ValueError('fault_fn returned %r' % (action,))

    def _register(self, sock):
        with self._lock:
            self._socks.add(sock)
        if self._stop.is_set():
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _session(self, sock, sess):
        c = _Conn(sock, self._stop, self.cfg['idle_timeout'], sess)
        try:
            self._run(c, sess)
        except _Reset:
            sess.reset = True
            try:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                  struct.pack('ii', 1, 0))
            except OSError:
                pass
        except (_Closed, OSError, ssl.SSLError, ValueError):
            pass
        finally:
            with self._lock:
                self._socks.discard(sock)
                self._socks.discard(c.sock)
            try:
                c.sock.close()
            except OSError:
                pass
            sess.closed = True

    def _reply(self, c, sess, code, text, trailer=b''):
        """Sends one reply; TRAILER (bytes) goes out in the same write, after it."""
        if isinstance(text, bytes):
            lines, wire = [text], text
        else:
            lines = str(text).split('\n')
            wire = ''.join('%d%s%s\r\n' % (code, '-' if i < len(lines) - 1 else ' ', l)
                           for i, l in enumerate(lines)).encode()
        sess.replies.append((code, text))
        wire = wire + trailer
        pieces = [wire]
        gap = self.cfg['split_replies']
        if gap and len(lines) > 1 and self._faulty(sess):
            gap = 0.005 if gap is True else gap
            cut = len(wire) - len(lines[-1]) // 2 - 2
            pieces = wire[:cut].splitlines(keepends=True) + [wire[cut:]]
        for i, piece in enumerate(pieces):
            if i:
                time.sleep(gap)  # each piece its own segment: a fault, not a wait
            c.send(piece)
        if code == 421 and self.cfg['close_after_421']:
            raise _Closed()

    def _answer(self, c, sess, cmd, line, default, stage=None, reset=True):
        self._stage(c, sess, stage or cmd, reset)
        r = self._override(sess, cmd, line) or default
        self._reply(c, sess, r[0], r[1])
        return r[0]

    def _ehlo_lines(self, arg, tls_active):
        caps = self.cfg['caps']
        if caps is None:
            caps = ['PIPELINING', 'SIZE %d' % self.cfg['size'], '8BITMIME', 'SMTPUTF8',
                    'ENHANCEDSTATUSCODES', 'DSN']
        caps = list(caps)
        if self._ctx is not None and self.cfg['offer_starttls'] and not tls_active:
            caps.insert(0, 'STARTTLS')
        return '\n'.join(['%s hello %s' % (self.cfg['name'], arg)] + caps)

    def _run(self, c, sess):
        name = self.cfg['name']
        self._stage(c, sess, 'greeting')
        g = self._override(sess, 'greeting', '') or (220, '%s ESMTP test MX' % name)
        self._reply(c, sess, g[0], g[1])
        greeted = g[0] == 220
        tls_active = False
        while not self._stop.is_set():
            line = c.readline()
            if line is None:
                return
            text = line.decode('utf-8', 'replace')
            sess.commands.append(text)
            verb = text.split(' ', 1)[0].upper()
            arg = text[len(verb):].strip()
            if not greeted:
                if verb == 'QUIT':
                    self._reply(c, sess, 221, '2.0.0 Bye')
                    return
                self._reply(c, sess, 503, '5.5.1 Bad sequence of commands')
                continue
            if verb in ('EHLO', 'HELO'):
                sess.helo = arg
                sess.new_transaction()
                if verb == 'EHLO':
                    key = 'ehlo_tls' if tls_active and self.cfg['ehlo_tls'] else 'ehlo'
                    self._answer(c, sess, key, text,
                                 (250, self._ehlo_lines(arg, tls_active)), stage='ehlo')
                else:
                    self._answer(c, sess, 'helo', text, (250, name))
            elif verb == 'STARTTLS':
                if self._ctx is None or tls_active or not self.cfg['offer_starttls']:
                    self._reply(c, sess, 502, '5.5.1 STARTTLS not available')
                    continue
                sess.plaintext_after_starttls = c.take_buffer()  # never used (CVE-2011-0411)
                self._stage(c, sess, 'starttls')
                r = self._override(sess, 'starttls_reply', text) or (
                    220, '2.0.0 Ready to start TLS')
                inject = self.cfg['pipeline_after_starttls']
                inject = inject if inject and r[0] == 220 and self._faulty(sess) else b''
                self._reply(c, sess, r[0], r[1], trailer=inject)  # one write, one segment
                if r[0] != 220:
                    continue
                self._stage(c, sess, 'tls')
                if self.cfg['tls_garbage'] and self._faulty(sess):
                    c.send(b'this is not a TLS record\r\n')
                    return
                if self.cfg['tls_inject'] and self._faulty(sess):
                    c.wait_readable()
                    c.send(self.cfg['tls_inject'])
                try:
                    c.start_tls(self._ctx, sess, self._register)
                except (ssl.SSLError, OSError, ValueError) as e:
                    sess.tls_error = str(e)
                    return
                tls_active = True
                sess.tls_version = c.sock.version()
                sess.tls_cipher = c.sock.cipher()[0]
                sess.tls_resumed = c.sock.session_reused
                sess.helo = None
                sess.new_transaction()
                self._stage(c, sess, 'tls_done')
            elif verb == 'MAIL':
                m = _PATH.match(text)
                if not m or m.group(1).upper() != 'MAIL FROM':
                    self._reply(c, sess, 501, '5.5.4 Syntax: MAIL FROM:<address>')
                    continue
                if sess.mail_from is not None:
                    self._reply(c, sess, 503, '5.5.1 Error: nested MAIL command')
                    continue
                sz = re.search(r'\bSIZE=(\d+)', m.group(3), re.I)
                if sz and self.cfg['size'] and int(sz.group(1)) > self.cfg['size']:
                    self._reply(c, sess, 552, '5.3.4 Message size exceeds fixed limit')
                    continue
                code = self._answer(c, sess, 'mail', text, (250, '2.1.0 Ok'))
                if code == 250:
                    sess.mail_from, sess.mail_line = m.group(2), text
            elif verb == 'RCPT':
                m = _PATH.match(text)
                if not m or m.group(1).upper() != 'RCPT TO':
                    self._reply(c, sess, 501, '5.5.4 Syntax: RCPT TO:<address>')
                    continue
                if sess.mail_from is None:
                    self._reply(c, sess, 503, '5.5.1 Error: need MAIL command')
                    continue
                code = self._answer(c, sess, 'rcpt', text, (250, '2.1.5 Ok'))
                if 200 <= code < 300:
                    sess.rcpts.append(m.group(2))
                    sess.rcpt_lines.append(text)
            elif verb == 'DATA':
                if not sess.rcpts:
                    self._reply(c, sess, 554 if sess.mail_from else 503,
                                '5.5.1 Error: no valid recipients')
                    continue
                code = self._answer(c, sess, 'data', text,
                                    (354, 'End data with <CR><LF>.<CR><LF>'),
                                    reset=False)  # reset_at='data' is mid-body
                if code != 354:
                    continue
                self._receive_data(c, sess)
                sess.new_transaction()
            elif verb == 'RSET':
                sess.new_transaction()
                self._answer(c, sess, 'rset', text, (250, '2.0.0 Ok'))
            elif verb == 'NOOP':
                self._answer(c, sess, 'noop', text, (250, '2.0.0 Ok'))
            elif verb == 'VRFY':
                self._reply(c, sess, 252, '2.0.0 Cannot VRFY user')
            elif verb == 'QUIT':
                self._answer(c, sess, 'quit', text, (221, '2.0.0 Bye'))
                return
            else:
                self._reply(c, sess, 500, '5.5.2 Error: command not recognized')

    def _receive_data(self, c, sess):
        msg = Message(sess)
        lenient = self.cfg['lenient_data_end']
        discard = self.cfg['discard_body'] and not lenient
        h = hashlib.sha256()
        head = bytearray()
        keep, raw_keep = ([], []) if not discard else (None, None)
        length = 0
        at_start = True  # buf begins at the start of a line

        def take(body):
            nonlocal length, head
            if raw_keep is not None:
                raw_keep.append(body)
            if at_start and body[:1] == b'.':
                body = body[1:]
            body = body.replace(b'\r\n.', b'\r\n')
            h.update(body)
            length += len(body)
            if len(head) < _HEAD_KEEP:
                head += body[:_HEAD_KEEP - len(head)]
            if keep is not None:
                keep.append(body)

        buf = c.take_buffer() or c.recv()
        if buf is None:
            raise _Closed()
        if self._faulty(sess):
            if self.cfg['reset_at'] == 'data':
                raise _Reset()
            if self.cfg['fault_fn'] is not None:
                self._apply_fault(self.cfg['fault_fn'](sess, 'data'))
        for _ in range(10 ** 7):
            if lenient:
                body, rest, done = self._lenient_scan(c, buf)
            else:
                body, rest, done = self._strict_scan(buf, at_start)
            if body:
                take(body)
                at_start = True  # every body ends with a line end
            if done:
                c.unread(rest)
                break
            if len(rest) > _LINE_MAX:
                # a very long line: pass on all but a tail that may start the terminator
                take(rest[:-4])
                at_start = False
                rest = rest[-4:]
            more = c.recv()
            if more is None:
                raise _Closed()
            buf = rest + more
        msg.length, msg.sha256, msg.head = length, h.hexdigest(), bytes(head)
        if keep is not None:
            msg.data = b''.join(keep)
            msg.raw = b''.join(raw_keep)
        self._stage(c, sess, 'data_end')
        r = self._override(sess, 'data_end', '.') or (
            250, '2.0.0 Ok: queued as Q%s-%04d' % (self.ip.replace('.', ''), next(self._qid)))
        delivered = 200 <= r[0] < 300
        if delivered:
            with self._lock:
                self.messages.append(msg)
                sess.messages.append(msg)
        try:
            self._reply(c, sess, r[0], r[1])
        except BaseException:
            if delivered:
                with self._lock:
                    if msg in self.messages:
                        self.messages.remove(msg)
                        sess.messages.remove(msg)
            raise

    @staticmethod
    def _strict_scan(buf, at_start):
        """Only CRLF.CRLF ends the data. Returns (body, rest, done): body is whole lines
        (ends with CRLF) or empty; rest is the unread remainder (after the terminator
        when done, else the incomplete last line)."""
        if at_start and buf.startswith(b'.\r\n'):
            return b'', buf[3:], True
        i = buf.find(b'\r\n.\r\n')
        if i >= 0:
            return buf[:i + 2], buf[i + 5:], True
        j = buf.rfind(b'\r\n')
        if j < 0:
            return b'', buf, False
        return buf[:j + 2], buf[j + 2:], False

    @staticmethod
    def _lenient_scan(c, buf):
        """Like a vulnerable server: a "." line between any line ends (CRLF, LF, CR)
        ends the data. Reads until an end is found."""
        for _ in range(100000):
            m = _LENIENT_END.search(buf)
            if m:
                sep = buf[m.start():m.end()]
                lead = sep[:len(sep) - len(sep.lstrip(b'\r\n'))]
                return buf[:m.start()] + lead, buf[m.end():], True
            more = c.recv()
            if more is None:
                raise _Closed()
            buf += more
        raise _Closed()


class _Conn:
    """Buffered line I/O over a plain or TLS socket."""

    def __init__(self, sock, stop, timeout, sess=None):
        self.sock = sock
        self.stop = stop
        self.buf = b''
        self.sess = sess
        sock.settimeout(timeout)

    def send(self, data):
        self.sock.sendall(data)

    def recv(self):
        if self.stop.is_set():
            return None
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            return None
        if data and self.sess is not None:
            if isinstance(self.sock, ssl.SSLSocket):
                self.sess.rx_tls += data
            else:
                self.sess.rx_plain += data
        return data or None

    def wait_readable(self):
        """Waits until the peer sent something (not read here) or the timeout ends."""
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except (socket.timeout, OSError):
            pass

    def readline(self):
        for _ in range(100000):
            i = self.buf.find(b'\n')
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 1:]
                return line[:-1] if line.endswith(b'\r') else line
            if len(self.buf) > _LINE_MAX:
                return None
            data = self.recv()
            if data is None:
                return None
            self.buf += data
        return None

    def take_buffer(self):
        b, self.buf = self.buf, b''
        return b

    def unread(self, data):
        self.buf = (data or b'') + self.buf

    def start_tls(self, ctx, sess, register):
        sslsock = ctx.wrap_socket(self.sock, server_side=True, do_handshake_on_connect=False)
        sslsock._mx_session = sess  # for the SNI callback
        self.sock = sslsock
        register(sslsock)
        sslsock.do_handshake()
