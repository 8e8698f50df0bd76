"""A private Exim 4 (Debian's exim4-daemon-light, extracted, never installed) relaying
everything to one smarthost, for recipe tests.

    root = exim_root()                   # downloads and extracts once; Unavailable
    ex = Exim(workdir, relay_port, root) # with the reason when that cannot work
    ex.start(); msgid = ex.send('a@sender.test', ['b@example.test'], body)
    ex.wait_log(r'=> b@example\\.test'); ex.attempts('b@example.test'); ex.stop()

Why it looks like this: exim4 conflicts with postfix as an installed MTA, so the
package is fetched with `apt-get download` into a cache directory ($SP_DEB_CACHE,
default /var/tmp/starttls-proxy-debs) and unpacked with `dpkg-deb -x`. Debian's binary
resolves its compiled-in user "Debian-exim" at start-up; where that user does not
exist, Exim runs in its own mount namespace (`unshare -m`) over copies of /etc/passwd
and /etc/group that add it (uid/gid unused on this machine). Nothing outside workdir
and the cache changes, except the search bit for others on workdir's ancestors (the
exim user must reach its spool).

The daemon listens on 127.0.0.1:smtp_port (submission over SMTP, like an application
would), runs a queue runner every second (-q1s), and routes every domain with a
manualroute router to [127.0.0.1]:relay_port (`self = send` and `allow_localhost`:
the smarthost is on this host). Retries use `retry` (default "F,1m,1s": every second
for a minute, instead of Debian's "F,2h,15m; ..."). Its log is workdir/log/mainlog
with +all, so times have milliseconds.

Needs root and the libraries of exim4-daemon-light (scripts/install-deps.sh installs
those a postfix test host lacks). fetch_debs(), check_libraries(), make_searchable(),
listening(), MtaDaemon (start and stop of a daemon) and Unavailable serve
harness/sendmail.py too.
"""

import os
import pwd
import grp
import re
import signal
import smtplib
import subprocess
import time

from .util import free_port, wait_until

PACKAGE = 'exim4-daemon-light'
CACHE = os.environ.get('SP_DEB_CACHE', '/var/tmp/starttls-proxy-debs')
EXIM_USER = 'Debian-exim'


class Unavailable(Exception):
    """The MTA cannot run here; the text says why (the test skips with it)."""


EximUnavailable = Unavailable


def _run(argv, cwd=None, timeout=180):
    return subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout)


def fetch_debs(packages, name, cache=CACHE):
    """Downloads PACKAGES with `apt-get download` into CACHE (once) and extracts them
    with `dpkg-deb -x` into CACHE/NAME, which is returned. Unavailable on failure."""
    if os.geteuid() != 0:
        raise Unavailable('needs root (the MTA starts as root)')
    root = os.path.join(cache, name)
    stamp = os.path.join(root, '.extracted')
    if os.path.exists(stamp):
        return root
    os.makedirs(cache, exist_ok=True)
    debs = []
    for pkg in packages:
        have = sorted(f for f in os.listdir(cache)
                      if f.startswith(pkg + '_') and f.endswith('.deb'))
        for attempt in range(2):
            if have:
                break
            if attempt:  # no package lists yet (a fresh CI image): fetch them once
                _run(['apt-get', 'update', '-q'], timeout=300)
            r = _run(['apt-get', 'download', pkg], cwd=cache)
            have = sorted(f for f in os.listdir(cache)
                          if f.startswith(pkg + '_') and f.endswith('.deb'))
        if not have:
            raise Unavailable('apt-get download %s failed: %s' % (
                pkg, r.stderr.decode(errors='replace').strip()[-300:]))
        debs.append(os.path.join(cache, have[-1]))
    for deb in debs:
        r = _run(['dpkg-deb', '-x', deb, root])
        if r.returncode != 0:
            raise Unavailable('dpkg-deb -x %s failed: %s' % (deb, r.stderr.decode()))
    open(stamp, 'w').close()
    return root


def check_libraries(binary, hint):
    """Unavailable when BINARY lacks shared libraries (HINT says what installs them)."""
    r = _run(['ldd', binary])
    missing = re.findall(r'^\s*(\S+) => not found', r.stdout.decode(), re.M)
    if missing:
        raise Unavailable('%s needs %s (%s)' % (os.path.basename(binary),
                                                ', '.join(missing), hint))


def exim_root(cache=CACHE):
    """The directory holding usr/sbin/exim4 of Debian's package, downloaded and
    extracted on first use. Raises Unavailable with the reason."""
    root = fetch_debs([PACKAGE], 'exim-root', cache)
    check_libraries(os.path.join(root, 'usr', 'sbin', 'exim4'),
                    'scripts/install-deps.sh installs them')
    if _need_namespace() and _run(['unshare', '-m', 'true']).returncode != 0:
        raise Unavailable('user %s does not exist and no mount namespace can be '
                          'made (unshare -m) to add it' % EXIM_USER)
    return root


def _need_namespace():
    try:
        pwd.getpwnam(EXIM_USER)
        grp.getgrnam(EXIM_USER)
        return False
    except KeyError:
        return True


def _unused_id():
    for uid in range(64990, 64000, -1):
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(uid)
        except KeyError:
            return uid
    raise Unavailable('no free uid for %s' % EXIM_USER)


def make_searchable(path):
    """o+x on PATH and its ancestors (mkdtemp makes 0700 directories), so an MTA's
    unprivileged user reaches its spool."""
    for _ in range(64):
        mode = os.stat(path).st_mode
        if not mode & 0o001:
            os.chmod(path, (mode & 0o7777) | 0o001)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent


_CONFIG = """\
# private test instance, generated by tests/integration/harness/exim.py
exim_path = {binary}
primary_hostname = sender.test
qualify_domain = sender.test
spool_directory = {work}/spool
log_file_path = {work}/log/%slog
pid_file_path = {work}/exim.pid
daemon_smtp_ports = {smtp_port}
local_interfaces = 127.0.0.1
acl_smtp_rcpt = acl_check_rcpt
host_lookup =
rfc1413_hosts =
keep_environment =
tls_advertise_hosts =
log_selector = +all
{extra}

begin acl
acl_check_rcpt:
  accept hosts = 127.0.0.1
  deny

begin routers
smarthost:
  driver = manualroute
  transport = remote_smtp
  route_list = * 127.0.0.1::{relay_port} byname
  self = send
  no_more

begin transports
remote_smtp:
  driver = smtp
  allow_localhost
  hosts_avoid_tls = *

begin retry
* * {retry}
"""


def stop_process_group(proc, timeout=10):
    """SIGTERM, then SIGKILL, to PROC's process group (a daemon and the children it
    forked for deliveries or queue runs), waiting TIMEOUT after each."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout)
            break
        except subprocess.TimeoutExpired:
            continue


def listening(port):
    """True when something listens on TCP 127.0.0.1:PORT (from /proc/net/tcp)."""
    want = '0100007F:%04X' % port
    with open('/proc/net/tcp') as f:
        return any(line.split()[1] == want and line.split()[3] == '0A'
                   for line in f.readlines()[1:])


class MtaDaemon:
    """What the private MTAs (Exim here, Sendmail in harness/sendmail.py) share: the
    daemon runs in a process group of its own (stop() ends the group), writes its
    output to WORK/daemon.out and is ready once it listens on 127.0.0.1:smtp_port. A
    subclass sets name, work, smtp_port and proc (None) and gives argv(*args) and
    daemon_args(); log_text() is the MTA's own log, if it keeps one. find_root() (a
    static method) returns the packages' root directory, or raises Unavailable."""

    name = 'mta'
    find_root = None

    def daemon_args(self):
        """The arguments that run the daemon (for argv())."""
        raise NotImplementedError

    def log_text(self):
        """The MTA's own log ('' for one that keeps none here)."""
        return ''

    def _read(self, name):
        try:
            with open(os.path.join(self.work, name), 'rb') as f:
                return f.read().decode(errors='replace')
        except FileNotFoundError:
            return ''

    def start(self, timeout=20):
        out = open(os.path.join(self.work, 'daemon.out'), 'ab')
        self.proc = subprocess.Popen(self.argv(*self.daemon_args()),
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                     start_new_session=True)
        out.close()

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError('%s exited %s: %s\n%s' % (
                    self.name, self.proc.returncode, self._read('daemon.out'),
                    self.log_text()))
            return listening(self.smtp_port)
        wait_until(ready, timeout, lambda: '%s not listening on %d: %s' % (
            self.name, self.smtp_port, self.log_text()))

    def stop(self, timeout=10):
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        stop_process_group(proc, timeout)


class Exim(MtaDaemon):
    """One private Exim daemon. Attributes: smtp_port, mainlog, proc."""

    name = 'exim'
    find_root = staticmethod(exim_root)

    def __init__(self, workdir, relay_port, root, retry='F,1m,1s', extra_config=''):
        self.work = os.path.abspath(workdir)
        self.root = root
        self.binary = os.path.join(root, 'usr', 'sbin', 'exim4')
        self.smtp_port = free_port()
        self.mainlog = os.path.join(self.work, 'log', 'mainlog')
        self.config = os.path.join(self.work, 'exim.conf')
        self.proc = None
        for d in ('spool', 'log'):
            os.makedirs(os.path.join(self.work, d), exist_ok=True)
        with open(self.config, 'w') as f:
            f.write(_CONFIG.format(binary=self.binary, work=self.work,
                                   smtp_port=self.smtp_port, relay_port=relay_port,
                                   retry=retry, extra=extra_config))
        self.namespace = _need_namespace()
        if self.namespace:
            uid = _unused_id()
            self._fake_ids(uid)
        else:
            uid = pwd.getpwnam(EXIM_USER).pw_uid
        for d in ('spool', 'log'):
            os.chown(os.path.join(self.work, d), uid, uid)
        make_searchable(self.work)

    def _fake_ids(self, uid):
        with open('/etc/passwd') as f:
            passwd = f.read()
        with open('/etc/group') as f:
            group = f.read()
        with open(os.path.join(self.work, 'passwd'), 'w') as f:
            f.write(passwd + '%s:x:%d:%d::/nonexistent:/usr/sbin/nologin\n'
                    % (EXIM_USER, uid, uid))
        with open(os.path.join(self.work, 'group'), 'w') as f:
            f.write(group + '%s:x:%d:\n' % (EXIM_USER, uid))

    def argv(self, *args):
        """The command line running exim with ARGS (in the namespace when needed)."""
        exim = [self.binary, '-C', self.config] + list(args)
        if not self.namespace:
            return exim
        script = ('mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && '
                  'shift 2 && exec "$@"')
        return ['unshare', '-m', '--propagation', 'private', 'sh', '-c', script, 'sh',
                os.path.join(self.work, 'passwd'), os.path.join(self.work, 'group')] + exim

    def daemon_args(self):
        return ('-bdf', '-q1s')

    def send(self, sender, rcpts, body):
        """Submits over SMTP; returns Exim's message id."""
        with smtplib.SMTP('127.0.0.1', self.smtp_port, timeout=10) as s:
            s.ehlo('client.test')
            s.mail(sender)
            for r in rcpts:
                code, text = s.rcpt(r)
                if code != 250:
                    raise AssertionError('exim refused %s: %d %s' % (r, code, text))
            code, text = s.data(body)
            if code != 250:
                raise AssertionError('exim refused the message: %d %s' % (code, text))
        m = re.search(r'id=(\S+)', text.decode())
        return m.group(1) if m else None

    def log_text(self):
        return self._read(os.path.join('log', 'mainlog'))

    def wait_log(self, regex, timeout=30):
        rx = re.compile(regex, re.M)
        return wait_until(lambda: rx.search(self.log_text()), timeout,
                          lambda: 'exim log never matched %r in %ss:\n%s' % (
                              regex, timeout, self.log_text()))

    def attempts(self, rcpt):
        """Every delivery attempt for RCPT, in order: dicts with time (seconds since
        the epoch, ms precision), kind ('=>' delivered, '==' deferred, '**' bounced),
        continued (True when made on a connection already used, Exim's '*' after the
        host) and line."""
        out = []
        rx = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) .*? (=>|==|\*\*) '
                        + re.escape(rcpt) + r' (.*)$', re.M)
        for m in rx.finditer(self.log_text()):
            t = time.mktime(time.strptime(m.group(1), '%Y-%m-%d %H:%M:%S'))
            out.append({'time': t + int(m.group(2)) / 1000.0, 'kind': m.group(3),
                        'continued': re.search(r'H=\S+ \[[^\]]+\]:\d+\*', m.group(4))
                        is not None, 'line': m.group(0)})
        return out
