#!/usr/bin/python3
"""LMTP fan-out benchmark: one message to recipients at 10 domains through the proxy's
LMTP listener, against the bench STARTTLS sink (bench/README.md). For comparison the
same deliveries through the SMTP listener, where one transaction serves one domain
(10 transactions per message, as an MTA must send them).

    make bench-lmtp            # or: SINK_BIN=... PROXY_BIN=... bench/lmtp_fanout.py

Environment (defaults in brackets): PROXY_BIN [build/starttls-proxy], SINK_BIN [built
by bench/build.sh], MESSAGES [300] per mode, SESSIONS [4] concurrent inbound
connections, DOMAINS [10], SIZE [10240] bytes, TIME_LIMIT [60] seconds per mode,
KEEP_TMP [0] (1 keeps the work directory with the proxy's log).

Prints, per mode, messages/s (one message = DOMAINS recipient deliveries), recipient
deliveries/s and CPU seconds of the proxy per 1000 deliveries, then the LMTP/SMTP ratio.
Every run is checked: every reply 250, the sink got every delivery, all over TLS.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
sys.path.insert(0, HERE)

import run  # noqa: E402  (the side-by-side benchmark's sink and process helpers)
from harness.pki import TestPKI  # noqa: E402
from run import Sink, free_port, group_cpu, wait_port  # noqa: E402

PROXY_BIN = os.environ.get('PROXY_BIN', os.path.join(ROOT, 'build', 'starttls-proxy'))
MESSAGES = int(os.environ.get('MESSAGES', 300))
SESSIONS = int(os.environ.get('SESSIONS', 4))
DOMAINS = int(os.environ.get('DOMAINS', 10))
SIZE = int(os.environ.get('SIZE', 10240))
TIME_LIMIT = float(os.environ.get('TIME_LIMIT', 60))
MX = 'mx-ecdsa.bench.test'
SINK_IP = '127.0.0.2'


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=30)
        self.buf = b''

    def reply(self):
        while True:
            i = self.buf.find(b'\n')
            if i >= 0:
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                if line[3:4] != b'-':
                    return int(line[:3]), line
                continue
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError('connection closed by the proxy')
            self.buf += data

    def expect(self, code, n=1):
        for _ in range(n):
            got, line = self.reply()
            if got != code:
                raise RuntimeError('expected %d, got %r' % (code, line))


def body():
    line = b'x' * 78 + b'\r\n'
    text = b'Subject: lmtp fan-out bench\r\n\r\n' + line * (SIZE // len(line))
    return text + b'.\r\n'


def worker(port, lmtp, count, errors, deadline):
    try:
        c = Conn(port)
        c.expect(220)
        c.sock.sendall(b'LHLO bench.test\r\n' if lmtp else b'EHLO bench.test\r\n')
        c.expect(250)
        msg = body()
        rcpts = [b'RCPT TO:<b@d%d.bench.test>\r\n' % i for i in range(DOMAINS)]
        for _ in range(count):
            if time.monotonic() > deadline:
                raise RuntimeError('time limit reached')
            # LMTP: one transaction, DOMAINS recipients, DOMAINS replies after the dot.
            # SMTP: one transaction per domain (the proxy serves one per transaction).
            groups = [rcpts] if lmtp else [[r] for r in rcpts]
            for group in groups:
                c.sock.sendall(b'MAIL FROM:<a@client.bench.test>\r\n' + b''.join(group)
                               + b'DATA\r\n')
                c.expect(250, 1 + len(group))
                c.expect(354)
                c.sock.sendall(msg)
                c.expect(250, len(group) if lmtp else 1)
        c.sock.sendall(b'QUIT\r\n')
        c.sock.close()
    except Exception as e:  # reported by the main thread
        errors.append(repr(e))


def run_mode(proxy, port, lmtp, sink):
    s0, cpu0 = sink.stats(), group_cpu(proxy.pid)
    per = [MESSAGES // SESSIONS + (1 if i < MESSAGES % SESSIONS else 0)
           for i in range(SESSIONS)]
    errors = []
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(port, lmtp, n, errors,
                                                      t0 + TIME_LIMIT)) for n in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIME_LIMIT + 30)
    t1 = time.monotonic()
    if errors:
        raise RuntimeError('%s: %s' % ('LMTP' if lmtp else 'SMTP', errors[0]))
    s1, cpu1 = sink.stats(), group_cpu(proxy.pid)
    got = s1['messages'] - s0['messages']
    want = MESSAGES * DOMAINS
    if got != want:
        raise RuntimeError('sink received %d of %d deliveries' % (got, want))
    if s1['messages_plain'] != s0['messages_plain']:
        raise RuntimeError('deliveries reached the sink without TLS')
    return {'msgs_per_s': MESSAGES / (t1 - t0), 'deliveries_per_s': got / (t1 - t0),
            'cpu_per_1k': (cpu1 - cpu0) / got * 1000,
            'conns_per_delivery': (s1['connections'] - s0['connections']) / got}


def main():
    sink_bin = os.environ.get('SINK_BIN') or subprocess.run(
        [os.path.join(HERE, 'build.sh')], check=True, stdout=subprocess.PIPE,
        text=True).stdout.strip()
    run.SINK_BIN = sink_bin
    tmp = tempfile.mkdtemp(prefix='lmtp-bench-')
    pki = TestPKI(tmp, ca_name='Bench CA')
    cert, key = pki.issue(MX, key='ec')
    mx_port = free_port(SINK_IP)
    sink = Sink(tmp, cert, key, SINK_IP, mx_port)
    dns_port = free_port()
    zone = ['d%d.bench.test=MX:%s' % (i, MX) for i in range(DOMAINS)]
    dns_stats = os.path.join(tmp, 'dns.stats')
    dns = subprocess.Popen(['/usr/bin/python3', os.path.join(HERE, 'dns.py'),
                            str(dns_port), dns_stats, '%s=A:%s' % (MX, SINK_IP)] + zone,
                           stdin=subprocess.DEVNULL, start_new_session=True)
    smtp_port, lmtp_port = free_port(), free_port()
    cfg = os.path.join(tmp, 'proxy.yaml')
    with open(cfg, 'w') as f:
        f.write('''hostname: proxy.bench.test
listen:
  - 127.0.0.1:%d
  - {address: "127.0.0.1:%d", protocol: lmtp}
dns: {servers: ["127.0.0.1:%d"], timeout: 2, tries: 2}
outbound:
  port: %d
  helo_name: proxy.bench.test
  tls: {ca_file: %s, default_level: encrypt}
state_dir: %s
mta_sts: {enabled: "no"}
log: {level: warning}
''' % (smtp_port, lmtp_port, dns_port, mx_port, pki.ca_file, tmp))
    logf = open(os.path.join(tmp, 'proxy.log'), 'ab')
    proxy = subprocess.Popen([PROXY_BIN, '-c', cfg], stdin=subprocess.DEVNULL,
                             stdout=logf, stderr=logf, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(dns_stats) and time.monotonic() < deadline:
            time.sleep(0.02)
        wait_port(smtp_port, proxy, what='starttls-proxy')
        wait_port(lmtp_port, proxy, what='starttls-proxy (LMTP)')
        # Warm-up: DNS answers cached, a pooled connection per domain.
        saved = MESSAGES
        globals()['MESSAGES'] = SESSIONS
        run_mode(proxy, lmtp_port, True, sink)
        globals()['MESSAGES'] = saved
        res = {}
        for name, port, lmtp in (('LMTP', lmtp_port, True), ('SMTP', smtp_port, False)):
            res[name] = run_mode(proxy, port, lmtp, sink)
        print('LMTP fan-out: %d messages x %d domains, %d B, %d sessions, one sink'
              % (MESSAGES, DOMAINS, SIZE, SESSIONS))
        print('%-32s %10s %14s %16s %14s' % ('mode', 'msgs/s', 'deliveries/s',
                                            'CPU s/1k deliv', 'conns/deliv'))
        for name, what in (('LMTP', '1 transaction, %d rcpts' % DOMAINS),
                           ('SMTP', '%d transactions' % DOMAINS)):
            r = res[name]
            print('%-32s %10.1f %14.1f %16.3f %14.3f' % (
                '%s (%s)' % (name, what), r['msgs_per_s'], r['deliveries_per_s'],
                r['cpu_per_1k'], r['conns_per_delivery']))
        print('LMTP/SMTP deliveries/s: %.2fx'
              % (res['LMTP']['deliveries_per_s'] / res['SMTP']['deliveries_per_s']))
        return 0
    finally:
        proxy.terminate()
        proxy.wait(10)
        dns.terminate()
        dns.wait(10)
        sink.stop()
        logf.close()
        if os.environ.get('KEEP_TMP') != '1':
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
