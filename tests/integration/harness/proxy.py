"""Runs the real starttls-proxy binary against the loopback fixtures.

    p = Proxy(tmpdir, dns_port, mx_port, ca_file, extra={'limits': {'connections': 2}})
    p.port; p.log_text(); p.wait_log(r'status=sent', timeout=10)
    p.rss_kb(); p.hwm_kb()               # VmRSS / VmHWM of the process, in kB
    p.write_config(extra); p.reload()    # rewrite the YAML, send SIGHUP
    p.stop()                             # SIGTERM; AssertionError on a bad exit or
                                         # sanitizer report in the log

The binary is $STARTTLS_PROXY_BIN, else <repo>/build/starttls-proxy found relative to
this file. Its stdout and stderr go to TMPDIR/proxy.log. Its state_dir (the MTA-STS
policy cache, policies.sqlite3) is TMPDIR/proxy-state: per test, kept across restarts
of a proxy of the same name.
"""

import os
import re
import signal
import socket
import sqlite3
import subprocess

from .util import free_port, wait_until

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
_SANITIZER = re.compile(r'AddressSanitizer|LeakSanitizer|runtime error:')


def proxy_binary():
    """Path of the binary under test; AssertionError when there is none."""
    path = os.environ.get('STARTTLS_PROXY_BIN') or os.path.join(_REPO, 'build',
                                                                'starttls-proxy')
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise AssertionError('proxy binary %s not found: build it or set '
                             'STARTTLS_PROXY_BIN' % path)
    return path


def is_asan_build(path=None):
    """True when the binary under test was built with AddressSanitizer."""
    path = path or proxy_binary()
    with open(path, 'rb') as f:
        return b'__asan_init' in f.read()


def deep_merge(base, extra):
    """Returns BASE updated recursively with EXTRA (dicts merged, other values
    replaced; a None value deletes the key)."""
    out = dict(base)
    for k, v in (extra or {}).items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _scalar(v):
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    return '"%s"' % s.replace('\\', '\\\\').replace('"', '\\"')


def to_yaml(obj, indent=0):
    """Block-style YAML for dicts, lists and scalars (strings double-quoted)."""
    pad = ' ' * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict) and v:
                out.append('%s%s:' % (pad, k))
                out.append(to_yaml(v, indent + 2))
            elif isinstance(v, list) and v:
                out.append('%s%s:' % (pad, k))
                out.append(to_yaml(v, indent + 2))
            elif isinstance(v, (dict, list)):
                out.append('%s%s: %s' % (pad, k, '{}' if isinstance(v, dict) else '[]'))
            else:
                out.append('%s%s: %s' % (pad, k, _scalar(v)))
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, dict):
                inner = to_yaml(v, indent + 2).lstrip(' ')
                out.append('%s- %s' % (pad, inner))
            else:
                out.append('%s- %s' % (pad, _scalar(v)))
    else:
        out.append(pad + _scalar(obj))
    return '\n'.join(out)


class Proxy:
    """One running starttls-proxy. Attributes: port, config (dict), config_path,
    log_path, state_dir, proc."""

    def __init__(self, tmpdir, dns_port, mx_port, ca_file, extra=None, start=True,
                 name='proxy'):
        self.tmpdir = tmpdir
        self.binary = proxy_binary()
        self.port = free_port()
        self.config_path = os.path.join(tmpdir, '%s.yaml' % name)
        self.log_path = os.path.join(tmpdir, '%s.log' % name)
        self.state_dir = os.path.join(tmpdir, '%s-state' % name)
        os.makedirs(self.state_dir, exist_ok=True)
        self.base = {
            'hostname': 'proxy.test',
            'listen': ['127.0.0.1:%d' % self.port],
            'dns': {'servers': ['127.0.0.1:%d' % dns_port], 'timeout': 1, 'tries': 1},
            'outbound': {'port': mx_port, 'helo_name': 'proxy.test',
                         'tls': {'ca_file': ca_file}},
            'log': {'format': 'postfix'},
            'state_dir': self.state_dir,
        }
        self.proc = None
        self._logf = None
        self.write_config(extra)
        if start:
            self.start()

    def write_config(self, extra=None, text=None):
        """Writes the config file: the base merged with EXTRA, or TEXT verbatim."""
        if text is None:
            self.config = deep_merge(self.base, extra)
            text = to_yaml(self.config) + '\n'
        with open(self.config_path, 'w') as f:
            f.write(text)

    def start(self, timeout=10):
        """Starts the binary and polls until its listen port accepts a TCP connection."""
        self._logf = open(self.log_path, 'ab')
        self.proc = subprocess.Popen([self.binary, '-c', self.config_path],
                                     stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                rc, self.proc = self.proc.returncode, None  # reported once, here
                self._close_log()
                raise AssertionError('proxy exited with %s during start-up; log:\n%s' % (
                    rc, self.log_text()))
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=1):
                    return True
            except OSError:
                return False
        wait_until(ready, timeout, lambda: 'proxy not listening on %d after %ss; log:\n%s'
                   % (self.port, timeout, self.log_text()))

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def tlsrpt_counts(self):
        """Rows of the TLS-RPT counter table in the state file, as dicts (empty while
        the file or the table is not there yet)."""
        path = os.path.join(self.state_dir, 'policies.sqlite3')
        if not os.path.exists(path):
            return []
        db = sqlite3.connect('file:%s?mode=ro' % path, uri=True, timeout=5)
        try:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute('SELECT * FROM tlsrpt_count')]
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()

    def log_text(self):
        """Everything the proxy wrote so far."""
        try:
            with open(self.log_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except FileNotFoundError:
            return ''

    def wait_log(self, regex, timeout=10, flags=0):
        """Polls the log until REGEX matches; returns the match (AssertionError with
        the log on timeout)."""
        rx = re.compile(regex, flags)
        return wait_until(lambda: rx.search(self.log_text()), timeout,
                          lambda: 'log never matched %r within %ss; log:\n%s'
                          % (regex, timeout, self.log_text()))

    def _status(self, key):
        with open('/proc/%d/status' % self.proc.pid) as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1])
        raise AssertionError('%s not in /proc/%d/status' % (key, self.proc.pid))

    def rss_kb(self):
        """Resident set size now (VmRSS), kB."""
        return self._status('VmRSS')

    def hwm_kb(self):
        """Peak resident set size (VmHWM), kB."""
        return self._status('VmHWM')

    def reload(self):
        """Sends SIGHUP."""
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout=10):
        """SIGTERM, wait; kills after TIMEOUT. AssertionError when the exit status is
        not 0 (or the process had already died) or the log has a sanitizer report."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        died_early = proc.poll() is not None
        if not died_early:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
            self._close_log()
            raise AssertionError('proxy ignored SIGTERM for %ss; log:\n%s' % (
                timeout, self.log_text()))
        self._close_log()
        log = self.log_text()
        if died_early:
            raise AssertionError('proxy died during the test (status %s); log:\n%s'
                                 % (rc, log))
        if rc != 0:
            raise AssertionError('proxy exit status %s after SIGTERM; log:\n%s' % (rc, log))
        if _SANITIZER.search(log):
            raise AssertionError('sanitizer report in the proxy log:\n%s' % log)

    def kill(self):
        """SIGKILL without checks (cleanup after a failure)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)
        self._close_log()

    def _close_log(self):
        if self._logf is not None:
            self._logf.close()
            self._logf = None
