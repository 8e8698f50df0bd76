"""A real redis-server (Debian's) on loopback for the shared-cache tests.

    r = RedisServer(tmpdir)                         # plain, on a free port
    r = RedisServer(tmpdir, password='s3cret')      # requirepass
    r = RedisServer(tmpdir, tls=(cert, key), ca_file=ca)   # TLS only (--tls-port)
    r.url()                      # "redis://127.0.0.1:P" / "rediss://..." for the proxy
    r.cmd('HGETALL', 'key')      # one command over a fresh connection, decoded reply
    r.keys('starttls-proxy:*')
    r.kill(); r.start()          # SIGKILL (no save), then the same port again
    r.pause(); r.resume()        # SIGSTOP / SIGCONT: a Redis that stops answering
    r.stop()

Started with --save '' --appendonly no in its own directory under TMPDIR, so a kill
loses everything, as an unpersisted Redis would; start() polls PING until it answers.
"""

import os
import signal
import socket
import ssl
import subprocess

from .util import free_port, wait_until

REDIS_SERVER = '/usr/bin/redis-server'


class RedisError(Exception):
    pass


def _read_reply(f):
    line = f.readline()
    if not line.endswith(b'\r\n'):
        raise ConnectionError('connection closed')
    kind, rest = line[:1], line[1:-2]
    if kind == b'+':
        return rest.decode()
    if kind == b'-':
        return RedisError(rest.decode())
    if kind == b':':
        return int(rest)
    if kind == b'$':
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b'*':
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise ConnectionError('bad reply %r' % line)


class RedisServer:
    def __init__(self, tmpdir, password=None, tls=None, ca_file=None, name='redis'):
        self.dir = os.path.join(tmpdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.tls = tls
        self.ca_file = ca_file
        self.proc = None
        self.log_path = os.path.join(self.dir, 'redis.log')
        self.start()

    def url(self, db=None, password=None, user=''):
        auth = ''
        if password:
            auth = '%s:%s@' % (user, password)
        return '%s://%s127.0.0.1:%d%s' % ('rediss' if self.tls else 'redis', auth,
                                          self.port, '/%d' % db if db else '')

    def start(self, timeout=10):
        args = [REDIS_SERVER, '--bind', '127.0.0.1', '-::1', '--save', '', '--appendonly', 'no',
                '--dir', self.dir, '--logfile', self.log_path, '--protected-mode', 'no']
        if self.tls:
            args += ['--port', '0', '--tls-port', str(self.port), '--tls-cert-file',
                     self.tls[0], '--tls-key-file', self.tls[1], '--tls-auth-clients',
                     'no']
        else:
            args += ['--port', str(self.port)]
        if self.password:
            args += ['--requirepass', self.password]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError('redis-server exited with %s; log:\n%s' % (
                    self.proc.returncode, self.log_text()))
            try:
                return self.cmd('PING') == 'PONG'
            except (OSError, ConnectionError):
                return False
        wait_until(ready, timeout, lambda: 'redis-server not answering PING on %d; '
                   'log:\n%s' % (self.port, self.log_text()))

    def log_text(self):
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def _connect(self):
        s = socket.create_connection(('127.0.0.1', self.port), timeout=5)
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.ca_file)
            ctx.check_hostname = False
            s = ctx.wrap_socket(s)
        return s

    def cmd(self, *args):
        """Sends one command (after AUTH when a password is set) on a fresh
        connection; returns the decoded reply (bytes for bulk strings). An error reply
        is raised as RedisError."""
        with self._connect() as s:
            f = s.makefile('rwb')
            cmds = ([('AUTH', self.password)] if self.password else []) + [args]
            for c in cmds:
                parts = [a if isinstance(a, bytes) else str(a).encode() for a in c]
                f.write(b'*%d\r\n' % len(parts))
                for p in parts:
                    f.write(b'$%d\r\n%s\r\n' % (len(p), p))
            f.flush()
            replies = [_read_reply(f) for _ in cmds]
        for r in replies:
            if isinstance(r, RedisError):
                raise r
        return replies[-1]

    def keys(self, pattern='*'):
        return sorted(k.decode() for k in self.cmd('KEYS', pattern))

    def hgetall(self, key):
        r = self.cmd('HGETALL', key) or []
        return {r[i]: r[i + 1] for i in range(0, len(r), 2)}

    def kill(self):
        """SIGKILL: everything in memory is gone."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def pause(self):
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.kill()
