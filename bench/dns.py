"""A small, fast authoritative DNS responder for the benchmark (UDP only).

    /usr/bin/python3 bench/dns.py PORT STATSFILE NAME=TYPE:VALUE ...
    e.g. ecdsa.bench.test=MX:mx-ecdsa.bench.test mx-ecdsa.bench.test=A:127.0.0.2

Answers with the given records, NODATA for other types of a known name, NXDOMAIN
otherwise. Each distinct query (everything but the ID) is answered through dnslib once
and then from a cache, so the responder costs a few microseconds per query and never
becomes the bottleneck of a run. SIGUSR1 writes "queries=N" to STATSFILE.
"""

import signal
import socket
import sys

from dnslib import MX, QTYPE, RCODE, RR, A, AAAA, DNSRecord

port, stats_path = int(sys.argv[1]), sys.argv[2]
zone = {}
for spec in sys.argv[3:]:
    name, _, rest = spec.partition('=')
    rtype, _, value = rest.partition(':')
    zone.setdefault(name.lower().rstrip('.'), []).append((rtype, value))

queries = 0


def stats(*_):
    with open(stats_path + '.tmp', 'w') as f:
        f.write('queries=%d\n' % queries)
    import os
    os.replace(stats_path + '.tmp', stats_path)


signal.signal(signal.SIGUSR1, stats)
signal.signal(signal.SIGTERM, lambda *_: (stats(), sys.exit(0)))


def answer(data):
    q = DNSRecord.parse(data)
    r = q.reply()
    name = str(q.q.qname).lower().rstrip('.')
    qt = QTYPE[q.q.qtype]
    recs = zone.get(name)
    if recs is None:
        r.header.rcode = RCODE.NXDOMAIN
    for rtype, value in recs or ():
        if rtype != qt:
            continue
        if rtype == 'MX':
            rd = MX(value.rstrip('.') + '.', 10)
        elif rtype == 'A':
            rd = A(value)
        else:
            rd = AAAA(value)
        r.add_answer(RR(q.q.qname, QTYPE.reverse[rtype], rdata=rd, ttl=300))
    return r.pack()


s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('127.0.0.1', port))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
cache = {}
stats()
while True:
    data, peer = s.recvfrom(4096)
    if len(data) < 12:
        continue
    queries += 1
    key = data[2:]
    resp = cache.get(key)
    if resp is None:
        try:
            resp = answer(data)[2:]
        except Exception:
            continue
        cache[key] = resp
    s.sendto(data[:2] + resp, peer)
