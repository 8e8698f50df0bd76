#!/usr/bin/python3
"""metrics.listen: /metrics in Prometheus's text format, /healthz, 404 and 405, and a
listener that survives malformed, oversized and abandoned requests.

Fixtures: mx1.example.test (127.0.0.2, STARTTLS) as in TestBase; broken.test answers
SERVFAIL (a DNS failure); plain.test's MX offers no STARTTLS and its table entry is
encrypt (a TLS failure); example.test publishes an _mta-sts TXT record whose policy
host has no address (a failed policy fetch, then delivery as at may).
"""

import os
import re
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import main, wait_until  # noqa: E402
from harness.metrics import MetricsCase, samples  # noqa: E402


def exchange(port, pieces, timeout=5):
    """Sends each of PIECES (bytes) in a write of its own, then reads until the server
    closes; returns what it read."""
    with socket.create_connection(('127.0.0.1', port), timeout=timeout) as s:
        for piece in pieces:
            s.sendall(piece)
        data = b''
        for _ in range(10000):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def http(port, request, timeout=5):
    """Sends REQUEST (bytes) and reads until the server closes; returns
    (status, headers dict, body str)."""
    head, _, body = exchange(port, [request], timeout).partition(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n')
    status = int(lines[0].split()[1])
    headers = dict((k.lower(), v.strip()) for k, _, v in
                   (line.partition(':') for line in lines[1:]))
    return status, headers, body.decode()


def get(port, path):
    return http(port, ('GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' % path).encode())


class Metrics(MetricsCase):

    def setup_fixtures(self):
        super().setup_fixtures()
        self.dns.servfail('broken.test')
        self.dns.add('_mta-sts.example.test', 'TXT', 'v=STSv1; id=1')
        self.add_mx('mx', '127.0.0.3', domain='plain.test', tls=False)

    def scrape(self):
        status, headers, body = get(self.metrics_port, '/metrics')
        self.assertEqual(status, 200, body)
        self.assertEqual(headers['content-type'],
                         'text/plain; version=0.0.4; charset=utf-8')
        self.assertEqual(int(headers['content-length']), len(body.encode()))
        return body

    def test_counters_after_delivery_and_failures(self):
        # The harness's readiness probe was a session already.
        sessions = samples(self.scrape())['starttls_proxy_sessions_total']
        out = self.send('rcpt@example.test')
        self.assertReply(out['data'], 250)
        self.mx1.configure(rcpt=(550, '5.1.1 no such user'))
        out = self.send('nobody@example.test')
        self.assertReply(out['rcpt'][0], 550)
        out = self.send('rcpt@broken.test')
        self.assertReply(out['rcpt'][0], 451, '4.4.3')
        out = self.send('rcpt@plain.test')
        self.assertReply(out['rcpt'][0], 451, '4.7.5')
        # Sessions close after QUIT: wait until the gauge says so.
        body = wait_until(lambda: (lambda b: b if re.search(
            r'^starttls_proxy_sessions_open 0$', b, re.M) else None)(self.scrape()), 10,
            'sessions_open never went back to 0')
        s = samples(body)
        self.assertEqual(s['starttls_proxy_sessions_total'], sessions + 4)
        self.assertEqual(s['starttls_proxy_deliveries_total{status="sent",verdict='
                           '"Trusted",policy="default"}'], 1)
        self.assertEqual(s['starttls_proxy_deliveries_total{status="bounced",verdict='
                           '"Trusted",policy="default"}'], 1)
        self.assertEqual(s['starttls_proxy_deliveries_total{status="deferred",verdict='
                           '"none",policy="default"}'], 1)
        # Three MX connections were needed (example.test twice, plain.test once);
        # example.test's second may have reused the first from the cache.
        opened = s['starttls_proxy_mx_connections_total{reused="false"}']
        reused = s['starttls_proxy_mx_connections_total{reused="true"}']
        self.assertGreaterEqual(opened, 2)
        self.assertEqual(opened + reused, 3)
        handshakes = opened - 1  # none with plain.test
        # example.test announces an MTA-STS policy its (absent) policy host cannot
        # serve: each session there counts as that failure, not as a success.
        self.assertEqual(s['starttls_proxy_tls_results_total{policy_type="default",'
                           'result="sts-policy-fetch-error"}'], handshakes)
        self.assertEqual(s.get('starttls_proxy_tls_results_total{policy_type="default",'
                               'result="success"}', 0), 0)
        self.assertEqual(s['starttls_proxy_handshake_seconds_count'], handshakes)
        self.assertEqual(s['starttls_proxy_handshake_seconds_bucket{le="+Inf"}'],
                         handshakes)
        self.assertGreaterEqual(s['starttls_proxy_handshake_seconds_sum'], 0)
        self.assertEqual(s['starttls_proxy_deliveries_total{status="deferred",verdict='
                           '"none",policy="table"}'], 1)
        self.assertEqual(s['starttls_proxy_tls_results_total{policy_type="table",'
                           'result="starttls-not-supported"}'], 1)
        self.assertEqual(s['starttls_proxy_delivery_seconds_count'], 4)
        self.assertEqual(s['starttls_proxy_dns_failures_total'], 1)
        self.assertEqual(s['starttls_proxy_sts_fetches_total{result="failed"}'], 1)
        self.assertEqual(s['starttls_proxy_sts_fetches_total{result="ok"}'], 0)
        # Buckets are cumulative and end with the count.
        buckets = [v for k, v in s.items()
                   if k.startswith('starttls_proxy_delivery_seconds_bucket')]
        self.assertEqual(buckets, sorted(buckets))
        self.assertEqual(buckets[-1], 4)
        for name in ('sessions_open gauge', 'deliveries_total counter',
                     'handshake_seconds histogram', 'delivery_seconds histogram'):
            self.assertIn('# TYPE starttls_proxy_%s\n' % name, body)
        # Bounded labels: no domain or host name ever becomes a label value.
        self.assertNotIn('example.test', body)
        self.assertNotIn('broken.test', body)

    def test_healthz_404_405(self):
        self.assertEqual(get(self.metrics_port, '/healthz')[0::2], (200, 'ok\n'))
        self.assertEqual(get(self.metrics_port, '/metrics?x=1')[0], 200)
        self.assertEqual(get(self.metrics_port, '/nope')[0], 404)
        self.assertEqual(get(self.metrics_port, '/')[0], 404)
        status, headers, _ = http(self.metrics_port,
                                  b'POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n')
        self.assertEqual((status, headers['allow']), (405, 'GET'))
        status, headers, _ = get(self.metrics_port, '/healthz')
        self.assertEqual(headers['connection'], 'close')

    def test_malformed_requests(self):
        for bad in (b'\x00\x01\x02\r\n\r\n', b'GET /metrics\r\n\r\n',
                    b'GET /metrics HTTP/9.9\r\n\r\n', b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
                    b'GET /metrics HTTP/1.1\r\n folded\r\n\r\n',
                    b'GET /metrics HTTP/1.1\r\nX-Pad: ' + b'a' * 8000 + b'\r\n\r\n'):
            self.assertEqual(http(self.metrics_port, bad)[0], 400, bad[:40])
        # Abandoned connections (half a request, or nothing) do not stop others.
        idle = [socket.create_connection(('127.0.0.1', self.metrics_port))
                for _ in range(3)]
        idle[0].sendall(b'GET /metr')
        self.assertEqual(get(self.metrics_port, '/healthz')[0], 200)
        for s in idle:
            s.close()
        self.assertTrue(self.proxy.running())
        self.assertEqual(get(self.metrics_port, '/healthz')[0], 200)

    def test_request_in_pieces(self):
        data = exchange(self.metrics_port, (b'GET /hea', b'lthz HTTP/1.1\r\n',
                                            b'Host: x\r\n', b'\r\n'))
        self.assertTrue(data.startswith(b'HTTP/1.1 200 OK\r\n'), data)
        self.assertTrue(data.endswith(b'\r\n\r\nok\n'), data)


if __name__ == '__main__':
    main()
