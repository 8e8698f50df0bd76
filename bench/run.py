#!/usr/bin/python3
"""The side-by-side benchmark (bench/README.md): starttls-proxy vs stunnel vs Postfix,
all relaying to one STARTTLS sink on loopback. Run through bench/run.sh.

Environment (defaults in brackets):
  PROXY_BIN [build/starttls-proxy]  SINK_BIN [built by bench/build.sh]
  ROUNDS [3]  MESSAGES [10000] (10 KiB runs)  MESSAGES_LARGE [1000] (1 MiB runs)
  POSTFIX_DIVISOR [5] (Postfix, ~20x slower, gets MESSAGES/5: same rates, less time)
  SESSIONS [10] (smtp-source -s)  LAT_MESSAGES [200]  LAT_MESSAGES_LARGE [50]
  IDLE [1000] (idle connections for memory)  TIME_LIMIT [120] (seconds per load run)
  CONC [10000] (inbound sessions held open at once through the proxy, first round only;
  0: skip)  NOFILE [65536] (RLIMIT_NOFILE the bench raises itself and its children to)
  PROXY_WORKERS [1] (the proxy's `workers`)
  MODES [one,persistent]  SIZES [10240,1048576]  CERTS [ecdsa,rsa]
  RELAYS [proxy,stunnel,postfix]  RESULTS [bench/results.md]
  BASELINE_BIN [unset] another build of the proxy, run as relay "baseline" in the same
  rounds (add it to RELAYS): the summary then gives proxy/baseline ratios
"""

import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
sys.path.insert(0, HERE)

import client  # noqa: E402
from harness.pki import TestPKI  # noqa: E402
from harness.postfix import Postfix  # noqa: E402


def env_int(name, default):
    return int(os.environ.get(name, default))


def env_list(name, default):
    return [x for x in os.environ.get(name, default).split(',') if x]


PROXY_BIN = os.environ.get('PROXY_BIN', os.path.join(ROOT, 'build', 'starttls-proxy'))
BASELINE_BIN = os.environ.get('BASELINE_BIN')
SINK_BIN = os.environ.get('SINK_BIN', '/tmp/starttls-bench-bin/sink')
ROUNDS = env_int('ROUNDS', 3)
MESSAGES = env_int('MESSAGES', 10000)
MESSAGES_LARGE = env_int('MESSAGES_LARGE', 1000)
POSTFIX_DIVISOR = env_int('POSTFIX_DIVISOR', 5)
SESSIONS = env_int('SESSIONS', 10)
LAT_MESSAGES = env_int('LAT_MESSAGES', 200)
LAT_MESSAGES_LARGE = env_int('LAT_MESSAGES_LARGE', 50)
IDLE = env_int('IDLE', 1000)
CONC = env_int('CONC', 10000)
NOFILE = env_int('NOFILE', 65536)
PROXY_WORKERS = os.environ.get('PROXY_WORKERS', '1')
TIME_LIMIT = env_int('TIME_LIMIT', 120)
MODES = env_list('MODES', 'one,persistent')
SIZES = [int(s) for s in env_list('SIZES', '10240,1048576')]
CERTS = env_list('CERTS', 'ecdsa,rsa')
RELAYS = env_list('RELAYS', 'proxy,stunnel,postfix')
RESULTS = os.environ.get('RESULTS', os.path.join(HERE, 'results.md'))
SMTP_SOURCE = '/usr/sbin/smtp-source'
STUNNEL = shutil.which('stunnel4') or shutil.which('stunnel') or '/usr/bin/stunnel4'
SINK_ADDR = {'ecdsa': '127.0.0.2', 'rsa': '127.0.0.3'}
MX_NAME = {c: 'mx-%s.bench.test' % c for c in SINK_ADDR}
DOMAIN = {c: '%s.bench.test' % c for c in SINK_ADDR}
TICK = os.sysconf('SC_CLK_TCK')


def log(*a):
    print(time.strftime('%H:%M:%S'), *a, flush=True)


def free_port(host='127.0.0.1'):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=20, what='server'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError('%s exited with %s during start-up' % (what, proc.returncode))
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError('%s not listening on %d after %ss' % (what, port, timeout))


# ---------------------------------------------------------------- process-tree figures
def _group_stats(pgid):
    """[(pid, stat fields after comm)] of live processes in process group PGID."""
    out = []
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % d) as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rfind(')') + 2:].split()
        if int(fields[2]) == pgid and fields[0] != 'Z':
            out.append((int(d), fields))
    return out


def group_cpu(pgid):
    """CPU seconds of the whole tree: utime+stime of every live process in the group
    plus cutime+cstime (children it has reaped, e.g. Postfix daemons that exited)."""
    t = 0
    for _, f in _group_stats(pgid):
        t += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return t / TICK


def group_pss_kib(pgid):
    """Proportional set size of the whole tree (shared pages split between processes;
    for a single process it is its RSS minus its share of shared libraries)."""
    total = 0
    for pid, _ in _group_stats(pgid):
        try:
            with open('/proc/%d/smaps_rollup' % pid) as f:
                for line in f:
                    if line.startswith('Pss:'):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


# ---------------------------------------------------------------- fixtures
class Sink:
    def __init__(self, tmp, cert, key, addr, port):
        self.stats_path = os.path.join(tmp, 'sink-%s.stats' % addr)
        self.proc = subprocess.Popen(
            [SINK_BIN, '-a', addr, '-p', str(port), '-c', cert, '-k', key,
             '-s', self.stats_path, '-n', 'sink.bench.test'],
            stdin=subprocess.DEVNULL, start_new_session=True)
        self.addr, self.port = addr, port
        deadline = time.monotonic() + 10
        while not os.path.exists(self.stats_path):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError('sink did not start')
            time.sleep(0.02)

    def stats(self):
        try:
            os.unlink(self.stats_path)
        except FileNotFoundError:
            pass
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while True:
            try:
                with open(self.stats_path) as f:
                    return {k: int(v) for k, v in
                            (kv.split('=') for kv in f.read().split())}
            except FileNotFoundError:
                if time.monotonic() > deadline:
                    raise RuntimeError('sink does not answer SIGUSR1')
                time.sleep(0.005)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def extra_domain(cert, i):
    """The i-th of the extra destination domains whose MX is cert's sink (the
    many-destinations rows of bench/concurrency.py)."""
    return 'd%d.%s' % (i, DOMAIN[cert])


class Dns:
    def __init__(self, tmp, port, extra_domains=0):
        self.stats_path = os.path.join(tmp, 'dns.stats')
        self.port = port
        zone = []
        for c, addr in SINK_ADDR.items():
            zone += ['%s=MX:%s' % (DOMAIN[c], MX_NAME[c]), '%s=A:%s' % (MX_NAME[c], addr)]
            zone += ['%s=MX:%s' % (extra_domain(c, i), MX_NAME[c])
                     for i in range(extra_domains)]
        self.proc = subprocess.Popen(
            ['/usr/bin/python3', os.path.join(HERE, 'dns.py'), str(port), self.stats_path]
            + zone, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.stats_path):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError('dns responder did not start')
            time.sleep(0.02)

    def queries(self):
        os.unlink(self.stats_path)
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while True:
            try:
                with open(self.stats_path) as f:
                    return int(f.read().split('=')[1])
            except (FileNotFoundError, IndexError, ValueError):
                if time.monotonic() > deadline:
                    raise RuntimeError('dns responder does not answer SIGUSR1')
                time.sleep(0.005)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class Relay:
    """Something smtp-source talks plain SMTP to and that relays with STARTTLS."""
    name = None
    inline = True

    def __init__(self, tmp, cert, sink, ca_file, dns_port):
        self.dir = tempfile.mkdtemp(prefix='%s-%s-' % (self.name, cert), dir=tmp)
        self.cert, self.sink, self.ca_file, self.dns_port = cert, sink, ca_file, dns_port
        self.port = free_port()
        self.proc = None

    @property
    def pgid(self):
        return self.proc.pid

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


class ProxyRelay(Relay):
    name = 'proxy'
    workers = PROXY_WORKERS
    binary = PROXY_BIN

    def start(self):
        cfg = os.path.join(self.dir, 'proxy.yaml')
        state = os.path.join(self.dir, 'state')
        os.makedirs(state)
        with open(cfg, 'w') as f:
            f.write('''hostname: proxy.bench.test
listen: [127.0.0.1:%d]
limits:
  connections: %d
dns:
  servers: [127.0.0.1:%d]
  timeout: 2
  tries: 2
outbound:
  port: %d
  helo_name: proxy.bench.test
  tls:
    ca_file: %s
    default_level: encrypt
state_dir: %s
mta_sts:
  enabled: no
log:
  level: warning
workers: %s
''' % (self.port, max(IDLE, CONC) + 1000, self.dns_port, self.sink.port, self.ca_file,
       state, self.workers))
        self.log = open(os.path.join(self.dir, 'proxy.log'), 'ab')
        self.proc = subprocess.Popen([self.binary, '-c', cfg], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        wait_port(self.port, self.proc, what='starttls-proxy')


class StunnelRelay(Relay):
    name = 'stunnel'

    def start(self):
        cfg = os.path.join(self.dir, 'stunnel.conf')
        with open(cfg, 'w') as f:
            f.write('''foreground = yes
pid =
syslog = no
debug = warning
output = %s/stunnel.log
[smtp]
client = yes
accept = 127.0.0.1:%d
connect = %s:%d
protocol = smtp
sni = %s
sslVersionMin = TLSv1.2
CAfile = %s
verifyChain = yes
checkHost = %s
''' % (self.dir, self.port, self.sink.addr, self.sink.port, MX_NAME[self.cert],
                self.ca_file, MX_NAME[self.cert]))
        self.proc = subprocess.Popen([STUNNEL, cfg], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_port(self.port, self.proc, what='stunnel')


class PostfixRelay(Relay):
    name = 'postfix'
    inline = False

    def start(self):
        self.pf = Postfix(os.path.join(self.dir, 'pf'), relay_host=self.sink.addr,
                          relay_port=self.sink.port, smtp_port=self.port, extra_main_cf={
                              'smtp_tls_security_level': 'encrypt',
                              'smtp_tls_CAfile': self.ca_file,
                              'smtp_tls_session_cache_database':
                                  'btree:${data_directory}/smtp_scache',
                              'smtp_tls_loglevel': '0',
                              'default_process_limit': str(IDLE + 100),
                              'smtpd_client_connection_count_limit': '0',
                          })
        self.pf.start()
        self.proc = self.pf.proc

    def stop(self):
        self.pf.stop()


class BaselineRelay(ProxyRelay):
    """Another build of the proxy (BASELINE_BIN), e.g. before a change, side by side."""
    name = 'baseline'
    binary = BASELINE_BIN


RELAY_CLASSES = {'proxy': ProxyRelay, 'stunnel': StunnelRelay, 'postfix': PostfixRelay,
                 'baseline': BaselineRelay}


# ---------------------------------------------------------------- measurements
def load_run(relay, mode, size, n, dns):
    """One bounded smtp-source run; returns a dict of figures or raises."""
    sink = relay.sink
    s0, q0 = sink.stats(), dns.queries()
    cpu0 = group_cpu(relay.pgid)
    argv = [SMTP_SOURCE, '-s', str(SESSIONS), '-m', str(n), '-l', str(size),
            '-M', 'client.bench.test', '-f', 'a@client.bench.test',
            '-t', 'b@%s' % DOMAIN[relay.cert]]
    if mode == 'persistent':
        argv.append('-d')
    argv.append('127.0.0.1:%d' % relay.port)
    t0 = time.monotonic()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=TIME_LIMIT)
    if p.returncode != 0:
        raise RuntimeError('smtp-source failed (%d): %s' % (p.returncode,
                                                          p.stdout.decode()[-500:]))
    s1 = sink.stats()
    if not relay.inline:  # Postfix queues: wait until the sink has them all (bounded)
        deadline = t0 + TIME_LIMIT
        while s1['messages'] - s0['messages'] < n and time.monotonic() < deadline:
            time.sleep(0.05)
            s1 = sink.stats()
    t1 = time.monotonic()
    cpu1 = group_cpu(relay.pgid)
    got = s1['messages'] - s0['messages']
    if got < n:
        raise RuntimeError('sink received %d of %d messages' % (got, n))
    if s1['messages_plain'] != s0['messages_plain']:
        raise RuntimeError('messages reached the sink without TLS')
    d = {k: s1[k] - s0[k] for k in ('connections', 'handshakes', 'resumed')}
    return {'msgs_per_s': got / (t1 - t0), 'cpu_per_1k': (cpu1 - cpu0) / got * 1000,
            'conns_per_msg': d['connections'] / got, 'full_hs_per_msg': d['handshakes'] / got,
            'resumed_per_msg': d['resumed'] / got,
            'dns_per_msg': (dns.queries() - q0) / got}


def pct(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def idle_run(relay):
    """PSS growth of the relay's process tree per idle relayed connection."""
    sink = relay.sink
    pss0 = group_pss_kib(relay.pgid)
    open0 = sink.stats()['open']
    res = {}

    async def hold(opened, errors):
        await asyncio.sleep(1.0)
        res['pss'] = group_pss_kib(relay.pgid)
        res['opened'] = opened
        res['errors'] = len(errors)
        res['sink_open'] = sink.stats()['open'] - open0
    client.idle('127.0.0.1', relay.port, 'b@%s' % DOMAIN[relay.cert], IDLE, hold)
    if res['opened'] < IDLE * 0.9:
        raise RuntimeError('only %d of %d idle connections opened' % (res['opened'], IDLE))
    return {'kib_per_conn': (res['pss'] - pss0) / res['opened'],
            'upstream_open': res['sink_open'] / res['opened']}


def conc_stage():
    """'rcpt' (each session holds an MX connection too: two sockets per session in the
    proxy) when the descriptor limit allows it, else 'mail' (sessions stopped after
    MAIL FROM: one socket each)."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 'rcpt' if 2 * CONC + 200 <= limit else 'mail'


def conc_run(relay, dns):
    """CONC inbound sessions held open at once, stopped after RCPT TO or MAIL FROM
    (conc_stage). Bounded: 60 s per protocol step, at most 200 sessions opening at a
    time."""
    sink = relay.sink
    pss0 = group_pss_kib(relay.pgid)
    open0 = sink.stats()['open']
    t0 = time.monotonic()
    res = {}

    async def hold(opened, errors):
        res['conc_secs'] = time.monotonic() - t0
        res['conc_opened'] = opened
        res['conc_errors'] = len(errors)
        res['conc_kib_per_conn'] = (group_pss_kib(relay.pgid) - pss0) / max(1, opened)
        res['conc_sink_open'] = sink.stats()['open'] - open0
        res['conc_alive'] = 1 if relay.proc.poll() is None else 0
        if errors:
            log('  first error: %r' % (errors[0],))
    client.idle('127.0.0.1', relay.port, 'b@%s' % DOMAIN[relay.cert], CONC, hold,
                parallel=200, timeout=60, stage=conc_stage())
    # Still serving after they all closed?
    res['conc_after_ok'] = 1 if load_run(relay, "one", 10240, 50, dns)['msgs_per_s'] else 0
    return res


# ---------------------------------------------------------------- report
def fmt(xs, digits):
    xs = [x for x in xs if x is not None]
    if not xs:
        return 'n/a'
    med = statistics.median(xs)
    f = '%%.%df' % digits
    if len(xs) == 1:
        return f % med
    return '%s (%s–%s)' % (f % med, f % min(xs), f % max(xs))


def digits_for(xs):
    m = max((abs(x) for x in xs if x is not None), default=0)
    return 0 if m >= 100 else 1 if m >= 10 else 2


def git_state():
    if os.environ.get('PROXY_REV'):
        return os.environ['PROXY_REV']
    try:
        head = subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              timeout=10).stdout.decode().strip()
        dirty = subprocess.run(['git', '-C', ROOT, 'status', '--porcelain', '--',
                                'proxy', 'certs', 'policy', 'CMakeLists.txt'],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               timeout=10).stdout.decode().strip()
        return 'commit %s%s' % (head, ' with uncommitted changes' if dirty else '')
    except Exception:
        return 'an unknown revision'


def size_name(size):
    return '10 KiB' if size == 10240 else '1 MiB' if size == 1048576 else '%d B' % size


def cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return 'unknown CPU'


def run_meta(command, started, elapsed):
    # The binary as the reader's clone names it: relative to the repository when in it.
    rel = os.path.relpath(os.path.abspath(PROXY_BIN), ROOT)
    shown = PROXY_BIN if rel.startswith('..') else rel
    return {'command': command, 'proxy': '`%s` built from %s, workers: %s' % (
                shown, git_state(), PROXY_WORKERS),
            'machine': '%d CPU(s) (nproc), %s; kernel %s' % (
                len(os.sched_getaffinity(0)), cpu_model(), os.uname().release),
            'conc_stage': conc_stage(),
            'nofile': resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            'run': '%s, %d round(s), %.0f s; kernel %s; %d CPU(s); smtp-source -s %d; '
                   '%d×10 KiB / %d×1 MiB messages per load run (Postfix: 1/%d of that); '
                   'latency %d / %d sequential messages; %d idle connections.' % (
                       started, ROUNDS, elapsed, os.uname().release, os.cpu_count(),
                       SESSIONS, MESSAGES, MESSAGES_LARGE, POSTFIX_DIVISOR, LAT_MESSAGES,
                       LAT_MESSAGES_LARGE, IDLE)}


def report(R, meta):
    """R[(metric, cert, mode, size, relay)] = {round: value}."""
    relays = [r for r in RELAYS]
    out = []
    out.append('Command: `%s`  ' % meta['command'])
    out.append('Proxy: %s  ' % meta['proxy'])
    if meta.get('machine'):
        out.append('Machine: %s  ' % meta['machine'])
    out.append('Run: %s' % meta['run'])
    out.append('')

    def med(metric, key):
        xs = list(R.get((metric,) + key, {}).values())
        return statistics.median(xs) if xs else None

    def mratio(metric, cert, mode, size, relay):
        a = R.get((metric, cert, mode, size, relay), {})
        b = R.get((metric, cert, mode, size, 'stunnel'), {})
        rs = [a[r] / b[r] for r in a if r in b and b[r]]
        return statistics.median(rs) if rs else None

    def f(x, d=2):
        return 'n/a' if x is None else ('%%.%df' % d) % x

    out.append('Summary (medians over rounds; ×stunnel = ratio to stunnel in the same round; '
               'latency = added ms per message versus sending directly, p50 / p99):')
    out.append('')
    out.append('| sink cert | inbound | size | proxy msgs/s | ×stunnel | proxy CPU/1k msgs '
               '| ×stunnel | Postfix msgs/s ×stunnel | proxy +ms p50 / p99 '
               '| stunnel +ms p50 / p99 |')
    out.append('|---|---|---|---|---|---|---|---|---|---|')
    for cert in CERTS:
        for mode in MODES:
            for size in SIZES:
                k = (cert, mode, size)
                out.append('| %s | %s | %s | %s | %s | %s s | %s | %s | %s / %s | %s / %s |' % (
                    cert.upper() if cert == 'rsa' else 'ECDSA', mode, size_name(size),
                    f(med('msgs_per_s', k + ('proxy',)), 0),
                    f(mratio('msgs_per_s', *k, 'proxy')),
                    f(med('cpu_per_1k', k + ('proxy',))),
                    f(mratio('cpu_per_1k', *k, 'proxy')),
                    f(mratio('msgs_per_s', *k, 'postfix')),
                    f(med('lat_p50', k + ('proxy',))), f(med('lat_p99', k + ('proxy',))),
                    f(med('lat_p50', k + ('stunnel',))), f(med('lat_p99', k + ('stunnel',)))))
    if 'baseline' in relays:
        out.append('')
        out.append('Against the baseline build (%s), proxy/baseline in the same round, '
                   'median (min–max):' % BASELINE_BIN)
        out.append('')
        out.append('| sink cert | inbound | size | msgs/s ratio | CPU/1k msgs ratio |')
        out.append('|---|---|---|---|---|')
        for cert in CERTS:
            for mode in MODES:
                for size in SIZES:
                    cells = []
                    for metric in ('msgs_per_s', 'cpu_per_1k'):
                        a = R.get((metric, cert, mode, size, 'proxy'), {})
                        b = R.get((metric, cert, mode, size, 'baseline'), {})
                        rs = [a[r] / b[r] for r in a if r in b and b[r]]
                        cells.append('%s (%s–%s)' % (f(statistics.median(rs)), f(min(rs)),
                                                     f(max(rs))) if rs else 'n/a')
                    out.append('| %s | %s | %s | %s | %s |' % (
                        cert.upper() if cert == 'rsa' else 'ECDSA', mode, size_name(size),
                        cells[0], cells[1]))
        out.append('')
    mem = ['%s %s KiB (×%s)' % (c.upper() if c == 'rsa' else 'ECDSA',
                                f(med('kib_per_conn', (c, 'idle', 0, 'proxy')), 0),
                                f(mratio('kib_per_conn', c, 'idle', 0, 'proxy')))
           for c in CERTS]
    out.append('')
    out.append('Memory per idle relayed connection, proxy: %s; stunnel %s KiB; Postfix %s KiB '
               '(one smtpd process per connection).' % (
                   ', '.join(mem), f(med('kib_per_conn', (CERTS[0], 'idle', 0, 'stunnel')), 0),
                   f(med('kib_per_conn', (CERTS[0], 'idle', 0, 'postfix')), 0)))
    for c in CERTS:
        k = (c, 'conc', 0, 'proxy')
        if R.get(('conc_opened',) + k):
            out.append('')
            stage = ('after RCPT TO, each with its own MX connection: %s at the sink'
                     % f(med('conc_sink_open', k), 0) if meta.get('conc_stage') == 'rcpt'
                     else 'after MAIL FROM: the descriptor limit, %s, leaves no room for '
                     'an MX connection each' % meta.get('nofile'))
            out.append('%s sink: %s of %d inbound sessions held open at once through the '
                       'proxy (%s), %s errors, all open after %s s, %s KiB per session; '
                       'proxy alive %s, relaying again after they closed: %s.' % (
                           c.upper() if c == 'rsa' else 'ECDSA',
                           f(med('conc_opened', k), 0), CONC, stage,
                           f(med('conc_errors', k), 0), f(med('conc_secs', k), 1),
                           f(med('conc_kib_per_conn', k), 1),
                           'yes' if med('conc_alive', k) else 'no',
                           'yes' if med('conc_after_ok', k) else 'no'))
    out.append('')
    out.append('Full table:')
    out.append('')
    out.append('Each cell: median (min–max) over rounds; ×stunnel: the ratio to stunnel in '
               'the same round (median and range). CPU: relay process tree, seconds per '
               '1000 messages. Latency: added to one message versus sending it directly '
               '(plaintext) to the sink, ms.')
    out.append('')

    def vals(metric, key):
        d = R.get((metric,) + key, {})
        return d

    def ratio(metric, cert, mode, size, relay):
        a, b = vals(metric, (cert, mode, size, relay)), vals(metric, (cert, mode, size, 'stunnel'))
        return [a[r] / b[r] for r in a if r in b and b[r]]

    out.append('| sink cert | inbound | size | relay | msgs/s | ×stunnel | CPU s/1k msgs '
               '| ×stunnel | +p50 ms | ×stunnel | +p99 ms | ×stunnel |')
    out.append('|---|---|---|---|---|---|---|---|---|---|---|---|')
    for cert in CERTS:
        for mode in MODES:
            for size in SIZES:
                for relay in relays:
                    k = (cert, mode, size, relay)
                    row = [cert.upper() if cert == 'rsa' else 'ECDSA', mode,
                           size_name(size), relay]
                    for metric in ('msgs_per_s', 'cpu_per_1k'):
                        xs = list(vals(metric, k).values())
                        row.append(fmt(xs, digits_for(xs)))
                        row.append(fmt(ratio(metric, *k), 2))
                    for metric in ('lat_p50', 'lat_p99'):
                        xs = list(vals(metric, k).values())
                        row.append(fmt(xs, 2))
                        row.append(fmt(ratio(metric, *k), 2))
                    out.append('| ' + ' | '.join(row) + ' |')
    out.append('')
    out.append('Memory per relayed connection: growth of the relay\'s process tree (PSS) '
               'with %d sessions idle after RCPT TO, KiB per connection. "upstream" is '
               'the number of sink connections held per idle session (Postfix queues, so '
               'its idle sessions hold no MX connection).' % IDLE)
    out.append('')
    out.append('| sink cert | relay | KiB/conn | ×stunnel | upstream |')
    out.append('|---|---|---|---|---|')
    for cert in CERTS:
        for relay in relays:
            k = (cert, 'idle', 0, relay)
            xs = list(vals('kib_per_conn', k).values())
            a, b = vals('kib_per_conn', k), vals('kib_per_conn', (cert, 'idle', 0, 'stunnel'))
            rs = [a[r] / b[r] for r in a if r in b and b[r]]
            up = list(vals('upstream_open', k).values())
            out.append('| %s | %s | %s | %s | %s |' % (cert, relay, fmt(xs, 1), fmt(rs, 2),
                                                    fmt(up, 2)))
    out.append('')
    out.append('Per message, at the sink (median over rounds): sink connections, full TLS '
               'handshakes, resumed handshakes; DNS queries the relay made.')
    out.append('')
    out.append('| sink cert | inbound | size | relay | conns/msg | full hs/msg | resumed/msg '
               '| DNS q/msg |')
    out.append('|---|---|---|---|---|---|---|---|')
    for cert in CERTS:
        for mode in MODES:
            for size in SIZES:
                for relay in relays:
                    k = (cert, mode, size, relay)
                    cells = []
                    for m in ('conns_per_msg', 'full_hs_per_msg', 'resumed_per_msg',
                              'dns_per_msg'):
                        xs = list(vals(m, k).values())
                        cells.append('%.3f' % statistics.median(xs) if xs else 'n/a')
                    out.append('| %s | %s | %s | %s | %s |' % (
                        cert, mode, '10 KiB' if size == 10240 else '1 MiB', relay,
                        ' | '.join(cells)))
    lat_direct = {k: v for k, v in R.items() if k[0] in ('direct_p50', 'direct_p99')}
    if lat_direct:
        out.append('')
        out.append('Baselines (ms, median over rounds): direct plaintext p50/p99; direct '
                   'with STARTTLS done by the client itself (resumed sessions) p50/p99.')
        out.append('')
        out.append('| sink cert | inbound | size | direct p50 | direct p99 | direct+TLS p50 '
                   '| direct+TLS p99 |')
        out.append('|---|---|---|---|---|---|---|')
        for cert in CERTS:
            for mode in MODES:
                for size in SIZES:
                    k = (cert, mode, size, 'direct')
                    cells = [fmt(list(R.get((m,) + k, {}).values()), 2) for m in
                             ('direct_p50', 'direct_p99', 'directtls_p50', 'directtls_p99')]
                    out.append('| %s | %s | %s | %s |' % (
                        cert, mode, '10 KiB' if size == 10240 else '1 MiB', ' | '.join(cells)))
    return '\n'.join(out) + '\n'


# ---------------------------------------------------------------- main
def raise_nofile():
    """The bench (its client sockets) and every relay and sink it starts get NOFILE
    descriptors: the 10,000-session run needs 20,000 in the proxy alone. Only the bench
    does this; the tests run with the default limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(NOFILE, hard), max(NOFILE, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main():
    raise_nofile()
    for p in (PROXY_BIN, SINK_BIN, SMTP_SOURCE, STUNNEL):
        if not os.access(p, os.X_OK):
            sys.exit('bench: %s is missing' % p)
    if 'baseline' in RELAYS and not (BASELINE_BIN and os.access(BASELINE_BIN, os.X_OK)):
        sys.exit('bench: RELAYS names baseline: set BASELINE_BIN to a proxy binary')
    started = time.strftime('%Y-%m-%d %H:%M')
    t_start = time.monotonic()
    tmp = tempfile.mkdtemp(prefix='starttls-bench-', dir=os.environ.get('BENCH_TMP', '/var/tmp'))
    os.chmod(tmp, 0o755)
    log('work directory', tmp)
    pki = TestPKI(tmp, ca_name='Bench CA')
    certs = {'ecdsa': pki.issue(MX_NAME['ecdsa'], key='ec'),
             'rsa': pki.issue(MX_NAME['rsa'], key='rsa')}
    sink_port = free_port('127.0.0.2')
    dns = Dns(tmp, free_port())
    sinks = {c: Sink(tmp, certs[c][0], certs[c][1], SINK_ADDR[c], sink_port) for c in CERTS}
    R = {}
    failures = []

    def put(metric, key, rnd, value):
        R.setdefault((metric,) + key, {})[rnd] = value

    try:
        for rnd in range(ROUNDS):
            for ci, cert in enumerate(CERTS):
                order = RELAYS[(rnd + ci) % len(RELAYS):] + RELAYS[:(rnd + ci) % len(RELAYS)]
                log('round %d, %s sink, relays %s' % (rnd + 1, cert, order))
                relays = [RELAY_CLASSES[r](tmp, cert, sinks[cert], pki.ca_file, dns.port)
                          for r in order]
                try:
                    for r in relays:
                        r.start()
                    for r in relays:  # warm-up: processes, caches, TLS sessions
                        load_run(r, 'one', 10240, 50, dns)
                    for r in relays:
                        try:
                            m = idle_run(r)
                            for k, v in m.items():
                                put(k, (cert, 'idle', 0, r.name), rnd, v)
                            log('  idle %-8s %.1f KiB/conn, upstream %.2f' % (
                                r.name, m['kib_per_conn'], m['upstream_open']))
                        except Exception as e:
                            failures.append('round %d %s idle %s: %s' % (rnd + 1, cert,
                                                                         r.name, e))
                            log('  FAILED', failures[-1])
                    for r in relays:
                        if rnd > 0 or not CONC or r.name != 'proxy':
                            continue
                        try:
                            m = conc_run(r, dns)
                            for k, v in m.items():
                                put(k, (cert, 'conc', 0, r.name), rnd, v)
                            log('  %d concurrent %-8s %d opened, %d errors, %.1f s, '
                                '%.1f KiB/session, sink connections %d, alive %d, '
                                'serving after %d' % (
                                    CONC, r.name, m['conc_opened'], m['conc_errors'],
                                    m['conc_secs'], m['conc_kib_per_conn'],
                                    m['conc_sink_open'], m['conc_alive'],
                                    m['conc_after_ok']))
                            if m['conc_errors'] or m['conc_opened'] < CONC:
                                failures.append('round %d %s: %d concurrent sessions: %d '
                                                'opened, %d errors' % (
                                                    rnd + 1, cert, CONC, m['conc_opened'],
                                                    m['conc_errors']))
                        except Exception as e:
                            failures.append('round %d %s %d concurrent %s: %s' % (
                                rnd + 1, cert, CONC, r.name, e))
                            log('  FAILED', failures[-1])
                    cfg_i = 0
                    for mode in MODES:
                        for size in SIZES:
                            cfg_i += 1
                            k = (rnd + cfg_i) % len(relays)
                            for r in relays[k:] + relays[:k]:
                                key = (cert, mode, size, r.name)
                                n = MESSAGES if size <= 65536 else MESSAGES_LARGE
                                if not r.inline:
                                    n = max(1, n // POSTFIX_DIVISOR)
                                try:
                                    m = load_run(r, mode, size, n, dns)
                                except Exception as e:
                                    failures.append('round %d %s: %s' % (rnd + 1, key, e))
                                    log('  FAILED', failures[-1])
                                    continue
                                for mk, v in m.items():
                                    put(mk, key, rnd, v)
                                log('  %-10s %-7d %-8s %7.0f msgs/s  %.2f CPU s/1k  '
                                    'conns/msg %.2f full %.2f resumed %.2f dns %.1f' % (
                                        mode, size, r.name, m['msgs_per_s'], m['cpu_per_1k'],
                                        m['conns_per_msg'], m['full_hs_per_msg'],
                                        m['resumed_per_msg'], m['dns_per_msg']))
                            # latency: sequential single messages, direct first
                            ln = LAT_MESSAGES if size <= 65536 else LAT_MESSAGES_LARGE
                            deadline = time.monotonic() + TIME_LIMIT
                            sink = sinks[cert]
                            rcpt = 'b@%s' % DOMAIN[cert]
                            direct = client.latency(sink.addr, sink.port, rcpt, size, ln,
                                                    mode == 'persistent', deadline=deadline)
                            dtls = client.latency(sink.addr, sink.port, rcpt, size, ln,
                                                  mode == 'persistent', tls_name=MX_NAME[cert],
                                                  cafile=pki.ca_file, deadline=deadline)
                            dkey = (cert, mode, size, 'direct')
                            d50, d99 = pct(direct, 50), pct(direct, 99)
                            put('direct_p50', dkey, rnd, d50 * 1000)
                            put('direct_p99', dkey, rnd, d99 * 1000)
                            put('directtls_p50', dkey, rnd, pct(dtls, 50) * 1000)
                            put('directtls_p99', dkey, rnd, pct(dtls, 99) * 1000)
                            for r in relays[k:] + relays[:k]:
                                key = (cert, mode, size, r.name)
                                try:
                                    lat = client.latency(
                                        '127.0.0.1', r.port, rcpt, size, ln,
                                        mode == 'persistent',
                                        deadline=time.monotonic() + TIME_LIMIT)
                                except Exception as e:
                                    failures.append('round %d %s latency: %s' % (rnd + 1,
                                                                                key, e))
                                    log('  FAILED', failures[-1])
                                    continue
                                put('lat_p50', key, rnd, (pct(lat, 50) - d50) * 1000)
                                put('lat_p99', key, rnd, (pct(lat, 99) - d99) * 1000)
                                log('  %-10s %-7d %-8s latency +%.2f ms p50, +%.2f ms p99 '
                                    '(direct %.2f/%.2f)' % (
                                        mode, size, r.name, (pct(lat, 50) - d50) * 1000,
                                        (pct(lat, 99) - d99) * 1000, d50 * 1000, d99 * 1000))
                finally:
                    for r in relays:
                        try:
                            r.stop()
                        except Exception as e:
                            log('stopping %s: %s' % (r.name, e))
    finally:
        for s in sinks.values():
            s.stop()
        dns.stop()
    elapsed = time.monotonic() - t_start
    meta = run_meta(os.environ.get('BENCH_COMMAND', 'make bench'), started, elapsed)
    text = report(R, meta)
    if failures:
        text += '\nFailures:\n\n' + '\n'.join('- ' + f for f in failures) + '\n'
    with open(RESULTS, 'w') as f:
        f.write(text)
    with open(os.path.splitext(RESULTS)[0] + '.json', 'w') as f:
        json.dump({'meta': meta, 'failures': failures,
                   'data': [{'metric': k[0], 'cert': k[1], 'mode': k[2], 'size': k[3],
                             'relay': k[4], 'rounds': v} for k, v in R.items()]},
                  f, indent=1)
    print()
    print(text)
    log('wrote', RESULTS)
    if os.environ.get('KEEP_TMP') != '1':
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


def profile(mode='persistent', size=1048576, seconds=10):
    """perf profile of the proxy under one load configuration (ECDSA sink): top
    functions by self time, by library, and syscalls per message (strace -c)."""
    import threading
    raise_nofile()
    tmp = tempfile.mkdtemp(prefix='starttls-prof-', dir=os.environ.get('BENCH_TMP', '/var/tmp'))
    os.chmod(tmp, 0o755)
    pki = TestPKI(tmp, ca_name='Bench CA')
    cert, key = pki.issue(MX_NAME['ecdsa'], key='ec')
    dns = Dns(tmp, free_port())
    sink = Sink(tmp, cert, key, SINK_ADDR['ecdsa'], free_port('127.0.0.2'))
    relay = ProxyRelay(tmp, 'ecdsa', sink, pki.ca_file, dns.port)
    relay.start()
    n = MESSAGES if size <= 65536 else MESSAGES_LARGE
    stop = threading.Event()
    done = [0]

    def load():
        end = time.monotonic() + 3 * seconds + 30
        while not stop.is_set() and time.monotonic() < end:
            load_run(relay, mode, size, n, dns)
            done[0] += n
    th = threading.Thread(target=load, daemon=True)
    try:
        th.start()
        time.sleep(1)
        data = os.path.join(tmp, 'perf.data')
        s0 = sink.stats()['messages']
        subprocess.run(['perf', 'record', '-F', '1999', '--call-graph', 'dwarf,16384', '-q',
                        '-o', data, '-p', str(relay.proc.pid), '--', 'sleep', str(seconds)],
                       check=True, stdout=subprocess.DEVNULL)
        s1 = sink.stats()['messages']
        print('== %s %d B: %d messages relayed during the %d s profile' % (
            mode, size, s1 - s0, seconds))
        for sort in ('dso', 'dso,symbol'):
            r = subprocess.run(['perf', 'report', '-i', data, '--no-children', '--stdio',
                                '-g', 'none', '--percent-limit', '1', '--sort', sort],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            print('\n'.join(l for l in r.stdout.decode().splitlines()
                            if l.strip() and not l.startswith('#')))
        r = subprocess.run(['perf', 'report', '-i', data, '--children', '--stdio', '-g',
                            'none', '--percent-limit', '4', '--sort', 'symbol'],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        print('-- inclusive (children) --')
        print('\n'.join(l for l in r.stdout.decode().splitlines()
                        if l.strip() and not l.startswith('#')))
        trace = os.path.join(tmp, 'strace.txt')
        s0 = sink.stats()['messages']
        subprocess.run(['timeout', '-s', 'INT', str(seconds), 'strace', '-c', '-f', '-o',
                        trace, '-p', str(relay.proc.pid)])
        s1 = sink.stats()['messages']
        got = max(1, s1 - s0)
        print('== syscalls per message (strace -c, %d messages)' % got)
        with open(trace) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 5 and parts[3].isdigit():
                    calls = int(parts[3])
                    print('%-16s %8.2f /msg' % (parts[-1], calls / got))
                elif len(parts) >= 4 and parts[-1] == 'total':
                    print('%-16s %8.2f /msg' % ('total', int(parts[2]) / got))
    finally:
        stop.set()
        th.join(3 * seconds + 60)
        relay.stop()
        sink.stop()
        dns.stop()
        if os.environ.get('KEEP_TMP') != '1':
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    if sys.argv[1:2] == ['report']:  # re-render RESULTS from its .json
        with open(os.path.splitext(RESULTS)[0] + '.json') as f:
            js = json.load(f)
        R = {(d['metric'], d['cert'], d['mode'], d['size'], d['relay']):
             {int(r): v for r, v in d['rounds'].items()} for d in js['data']}
        text = report(R, js['meta'])
        if js.get('failures'):
            text += '\nFailures:\n\n' + '\n'.join('- ' + x for x in js['failures']) + '\n'
        with open(RESULTS, 'w') as f:
            f.write(text)
        print(text)
        sys.exit(0)
    if sys.argv[1:2] == ['profile']:
        a = sys.argv[2:]
        profile(a[0] if a else 'persistent', int(a[1]) if len(a) > 1 else 1048576,
                int(a[2]) if len(a) > 2 else 10)
        sys.exit(0)
    sys.exit(main())
