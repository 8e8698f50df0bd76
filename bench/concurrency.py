#!/usr/bin/python3
"""Real concurrency (bench/README.md, "Concurrency"): the proxy with 32 and 256 inbound
sessions at once, against direct plaintext to the sink and against stunnel, in the
same round; one destination domain, and 20 destination domains with the sessions
spread over them. Run through bench/run.sh concurrency (or make bench).

Per row: msgs/s, the ratio to direct plaintext and to stunnel, the relay's CPU per
message against stunnel's, new MX (sink) connections per message, and how many of
those resumed TLS (the sink counts full and resumed handshakes).

Environment (defaults in brackets): ROUNDS [3]  MESSAGES [10000] (per load run)
  CSESSIONS [32,256]  MODES [one,persistent]  CDOMAINS [1,20]  CCERT [ecdsa]
  CRELAYS [proxy,auto,stunnel] ('auto': the proxy with `workers: auto`)
  CRESULTS [bench/results-concurrency.md]  and run.py's PROXY_BIN, SINK_BIN, TIME_LIMIT.
"""

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run  # noqa: E402
from run import (DOMAIN, MESSAGES, MX_NAME, ROUNDS, SINK_ADDR, SMTP_SOURCE,  # noqa: E402
                 TIME_LIMIT, Dns, ProxyRelay, Sink, StunnelRelay, env_list,
                 extra_domain, free_port, group_cpu, log)

SESSIONS = [int(x) for x in env_list('CSESSIONS', '32,256')]
MODES = env_list('MODES', 'one,persistent')
DOMAINS = [int(x) for x in env_list('CDOMAINS', '1,20')]
CERT = os.environ.get('CCERT', 'ecdsa')
RELAYS = env_list('CRELAYS', 'proxy,auto,stunnel')
RESULTS = os.environ.get('CRESULTS', os.path.join(HERE, 'results-concurrency.md'))
SIZE = 10240


def domains_for(ndomains):
    if ndomains == 1:
        return [DOMAIN[CERT]]
    return [extra_domain(CERT, i) for i in range(ndomains)]


def spread(total, parts):
    """total split into parts as evenly as possible (none zero when total >= parts)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def source(addr, sessions, n, persistent, domains):
    """smtp-source, one process per destination domain, the sessions and messages
    spread over them, all at once. Returns the wall time."""
    k = min(len(domains), sessions)
    procs = []
    t0 = time.monotonic()
    for dom, s, m in zip(domains, spread(sessions, k), spread(n, k)):
        argv = [SMTP_SOURCE, '-s', str(s), '-m', str(m), '-l', str(SIZE),
                '-M', 'client.bench.test', '-f', 'a@client.bench.test', '-t', 'b@' + dom]
        if persistent:
            argv.append('-d')
        argv.append(addr)
        procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    errors = []
    for p in procs:
        out = p.communicate(timeout=TIME_LIMIT)[0]
        if p.returncode != 0:
            errors.append('smtp-source failed (%d): %s' % (p.returncode, out.decode()[-300:]))
    if errors:
        raise RuntimeError('; '.join(errors))
    return time.monotonic() - t0


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(sink, addr, pgid, sessions, mode, domains, plain):
    """One load run through addr (the sink itself when plain). Figures per message;
    path_cpu_per_msg: load generator + relay + sink, what the machine's CPUs carry."""
    s0 = sink.stats()
    cpu0 = group_cpu(pgid) if pgid else 0
    other0 = children_cpu() + group_cpu(sink.proc.pid)
    secs = source(addr, sessions, MESSAGES, mode == 'persistent', domains)
    s1 = sink.stats()
    cpu1 = group_cpu(pgid) if pgid else 0
    other1 = children_cpu() + group_cpu(sink.proc.pid)
    d = {k: s1[k] - s0[k] for k in s0}
    if d['messages'] < MESSAGES:
        raise RuntimeError('sink received %d of %d messages' % (d['messages'], MESSAGES))
    if not plain and d['messages_plain']:
        raise RuntimeError('messages reached the sink without TLS')
    tls = d['handshakes'] + d['resumed']
    return {'msgs_per_s': d['messages'] / secs,
            'cpu_per_msg': (cpu1 - cpu0) / d['messages'],
            'path_cpu_per_msg': (cpu1 - cpu0 + other1 - other0) / d['messages'],
            'conns_per_msg': d['connections'] / d['messages'],
            'resumed_pct': 100.0 * d['resumed'] / tls if tls else None}


def start_relays(tmp, sink, ca_file, dns_port):
    relays = {}
    for name in RELAYS:
        if name == 'stunnel':
            r = StunnelRelay(tmp, CERT, sink, ca_file, dns_port)
        else:
            r = ProxyRelay(tmp, CERT, sink, ca_file, dns_port)
            r.workers = '1' if name == 'proxy' else 'auto'
        r.start()
        relays[name] = r
    return relays


def one_round(rnd, tmp, sink, ca_file, dns, put):
    relays = start_relays(tmp, sink, ca_file, dns.port)
    try:
        for sessions in SESSIONS:
            for mode in MODES:
                for nd in DOMAINS:
                    key = (sessions, mode, nd)
                    doms = domains_for(nd)
                    names = ['direct'] + list(relays)
                    k = (rnd + len(put.done)) % len(names)
                    put.done.append(key)
                    for name in names[k:] + names[:k]:  # rotate: noise falls on all
                        r = relays.get(name)
                        addr = ('127.0.0.1:%d' % r.port if r else
                                '%s:%d' % (sink.addr, sink.port))
                        if r:  # warm-up: pool and ticket stock in this configuration
                            source(addr, sessions, 4 * sessions, mode == 'persistent', doms)
                        m = measure(sink, addr, r.pgid if r else 0, sessions, mode, doms,
                                    r is None)
                        for mk, v in m.items():
                            put(mk, key + (name,), rnd, v)
                        log('  %4d %-10s %2d dom %-8s %6.0f msgs/s  cpu %.3f ms/msg  '
                            'new conns/msg %.4f  resumed %s%%' % (
                                sessions, mode, nd, name, m['msgs_per_s'],
                                m['cpu_per_msg'] * 1000, m['conns_per_msg'],
                                '-' if m['resumed_pct'] is None else
                                '%.0f' % m['resumed_pct']))
    finally:
        for r in relays.values():
            r.stop()


def report(R, meta):
    def vals(metric, key):
        return R.get((metric,) + key, {})

    def med(metric, key):
        xs = [x for x in vals(metric, key).values() if x is not None]
        return statistics.median(xs) if xs else None

    def ratio(metric, key, base):
        a, b = vals(metric, key), vals(metric, key[:3] + (base,))
        rs = [a[r] / b[r] for r in a if r in b and b[r] and a[r] is not None]
        if not rs:
            return 'n/a'
        return '%.2f (%.2f–%.2f)' % (statistics.median(rs), min(rs), max(rs))

    def f(x, fmt):
        return 'n/a' if x is None else fmt % x

    out = ['Command: `%s`  ' % meta['command'], 'Proxy: %s  ' % meta['proxy'],
           'Run: %s' % meta['run'], '',
           'Medians over rounds; ratios are per round (median and range). "auto": the '
           'proxy with `workers: auto`. CPU: the relay\'s process tree, ms per message; '
           'path CPU: load generator + relay + sink, ms per message (on a saturated '
           'machine msgs/s is about CPUs / path CPU). '
           'New MX conns/msg: connections the sink accepted per message; resumed: % of '
           'their TLS handshakes that resumed a session.', '',
           '| sessions | inbound | domains | relay | msgs/s | ×plaintext | ×stunnel '
           '| CPU ms/msg | CPU ×stunnel | path CPU ms/msg | new MX conns/msg | resumed |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|']
    for sessions in SESSIONS:
        for mode in MODES:
            for nd in DOMAINS:
                for name in ['direct'] + RELAYS:
                    key = (sessions, mode, nd, name)
                    if not vals('msgs_per_s', key):
                        continue
                    relay = name != 'direct'
                    out.append('| %d | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |' % (
                        sessions, mode, nd, 'plaintext' if not relay else name,
                        f(med('msgs_per_s', key), '%.0f'),
                        ratio('msgs_per_s', key, 'direct') if relay else '1',
                        ratio('msgs_per_s', key, 'stunnel') if relay else '',
                        f(med('cpu_per_msg', key) * 1000, '%.3f') if relay else '',
                        ratio('cpu_per_msg', key, 'stunnel') if relay else '',
                        f(med('path_cpu_per_msg', key) * 1000, '%.3f'),
                        f(med('conns_per_msg', key), '%.4f') if relay else '',
                        f(med('resumed_pct', key), '%.0f%%') if relay else ''))
    return '\n'.join(out) + '\n'


def main():
    run.raise_nofile()
    started = time.strftime('%Y-%m-%d %H:%M')
    t0 = time.monotonic()
    tmp = tempfile.mkdtemp(prefix='starttls-conc-', dir=os.environ.get('BENCH_TMP',
                                                                      '/var/tmp'))
    os.chmod(tmp, 0o755)
    from harness.pki import TestPKI
    pki = TestPKI(tmp, ca_name='Bench CA')
    cert, key = pki.issue(MX_NAME[CERT], key='ec' if CERT == 'ecdsa' else 'rsa')
    dns = Dns(tmp, free_port(), extra_domains=max(DOMAINS))
    sink = Sink(tmp, cert, key, SINK_ADDR[CERT], free_port(SINK_ADDR[CERT]))
    R = {}

    def put(metric, key, rnd, value):
        R.setdefault((metric,) + key, {})[rnd] = value
    put.done = []
    try:
        for rnd in range(ROUNDS):
            log('concurrency round %d' % (rnd + 1))
            one_round(rnd, tmp, sink, pki.ca_file, dns, put)
    finally:
        sink.stop()
        dns.stop()
    meta = run.run_meta(os.environ.get('BENCH_COMMAND', 'make bench') + ' (concurrency)',
                        started, time.monotonic() - t0)
    meta['run'] = '%s, %d round(s), %.0f s; %s sink; %d×10 KiB messages per load run' % (
        started, ROUNDS, time.monotonic() - t0, CERT.upper(), MESSAGES)
    text = report(R, meta)
    with open(RESULTS, 'w') as f:
        f.write(text)
    with open(os.path.splitext(RESULTS)[0] + '.json', 'w') as f:
        json.dump({'meta': meta, 'data': [{'key': list(k), 'rounds': v}
                                          for k, v in R.items()]}, f, indent=1)
    print()
    print(text)
    log('wrote', RESULTS)
    if os.environ.get('KEEP_TMP') != '1':
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
