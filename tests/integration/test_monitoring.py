#!/usr/bin/python3
"""The monitoring that ships in packaging/monitoring: the Prometheus alert rules pass
`promtool check rules` and the unit tests of tests/monitoring/rules_test.yml (synthetic
series, `promtool test rules`), and every metric the rules and the Grafana dashboard
query, with every label value they match on and every label they group by, exists in
a live /metrics scrape of the proxy after a few deliveries and failures.

promtool comes from Debian's prometheus package, downloaded and extracted once
(harness/exim.py's fetch_debs; never installed, so no Prometheus server is set up or
started), or from PATH when it is there. Without it the promtool tests skip.

Fixtures: mx1.example.test (127.0.0.2, STARTTLS) as in TestBase; broken.test answers
SERVFAIL (a deferral and a DNS failure); plain.test's MX offers no STARTTLS and its
table entry is encrypt (a TLS failure); sts.test publishes an _mta-sts TXT record whose
policy host has no address (a failed policy fetch).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import unittest

import yaml  # python3-yaml (scripts/install-deps.sh)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import main, wait_until  # noqa: E402
from harness.exim import Unavailable, fetch_debs  # noqa: E402
from harness.metrics import MetricsCase  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = os.path.join(REPO, 'packaging', 'monitoring', 'starttls-proxy.rules.yml')
DASHBOARD = os.path.join(REPO, 'packaging', 'monitoring', 'grafana-dashboard.json')
RULES_TEST = os.path.join(REPO, 'tests', 'monitoring', 'rules_test.yml')
# Series Prometheus makes itself, and the labels it adds to every scraped one.
PROMETHEUS_SERIES = {'up'}
TARGET_LABELS = {'instance', 'job'}

_promtool = []


def promtool():
    """The path of promtool; unittest.SkipTest when it cannot be had."""
    if not _promtool:
        path = shutil.which('promtool')
        if not path:
            try:
                path = os.path.join(fetch_debs(['prometheus'], 'prometheus-root'),
                                    'usr', 'bin', 'promtool')
            except Unavailable as e:
                path = 'unavailable: %s' % e
        _promtool.append(path)
    if _promtool[0].startswith('unavailable: '):
        raise unittest.SkipTest('promtool ' + _promtool[0])
    return _promtool[0]


def rule_exprs():
    """(alert or record name, expr) of every rule."""
    with open(RULES) as f:
        doc = yaml.safe_load(f)
    return [(r.get('alert') or r.get('record'), r['expr'])
            for g in doc['groups'] for r in g['rules']]


def dashboard_exprs():
    """(panel title, expr) of every query of the dashboard, variables included."""
    with open(DASHBOARD) as f:
        dash = json.load(f)
    out = []
    for p in dash['panels']:
        for t in p.get('targets', []):
            out.append((p['title'], t['expr']))
    for v in dash['templating']['list']:
        if v['type'] == 'query':
            out.append(('variable ' + v['name'], v['definition']))
    return out


def http_get(port, path):
    with socket.create_connection(('127.0.0.1', port), timeout=5) as s:
        s.sendall(('GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' % path).encode())
        data = b''
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b'\r\n\r\n')
    return int(head.split()[1]), body.decode()


def parse_scrape(text):
    """{metric name: [ {label: value} of each series ]} of a text exposition."""
    series = {}
    for line in text.splitlines():
        if not line or line.startswith('#'):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$', line)
        assert m, 'not a sample line: %r' % line
        labels = dict(re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', m.group(2) or ''))
        series.setdefault(m.group(1), []).append(labels)
    return series


# The metric names in an expression (ours by their prefix, and Prometheus's own "up"),
# each with its selector when it has one.
NAME = re.compile(r'\b(starttls_proxy_\w+|up)\b(\s*\{[^}]*\})?')
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r'\b(?:by|without)\s*\(([^)]*)\)')


class Promtool(unittest.TestCase):
    """The rules file alone (no proxy)."""

    def test_rules_check(self):
        r = subprocess.run([promtool(), 'check', 'rules', RULES], capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        found = int(re.search(r'SUCCESS: (\d+) rules found', r.stdout).group(1))
        self.assertEqual(found, len(rule_exprs()), 'the test reads every rule')

    def test_rules_unit_tests(self):
        r = subprocess.run([promtool(), 'test', 'rules', RULES_TEST], capture_output=True,
                           text=True, timeout=120, cwd=os.path.dirname(RULES_TEST))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('SUCCESS', r.stdout)

    def test_rules_cover_the_issue(self):
        names = {n for n, _ in rule_exprs()}
        for alert in ('StarttlsProxyDown', 'StarttlsProxyNoDeliveries',
                      'StarttlsProxyDeferralRatioHigh',
                      'StarttlsProxyTLSPolicyFailuresRising',
                      'StarttlsProxyMTASTSFetchFailures',
                      'StarttlsProxyCacheBackendDown',
                      'StarttlsProxyConnectionsNearLimit'):
            self.assertIn(alert, names)


class LiveScrape(MetricsCase):
    """The names of the rules and the dashboard against the running proxy."""

    def setup_fixtures(self):
        super().setup_fixtures()
        self.dns.servfail('broken.test')
        self.add_mx('mx', '127.0.0.3', domain='plain.test', tls=False)
        self.add_mx('mx', '127.0.0.4', domain='sts.test')
        self.dns.add('_mta-sts.sts.test', 'TXT', 'v=STSv1; id=1')

    # ---- the names against a live scrape --------------------------------------------
    def drive_traffic(self):
        """A delivery, a bounce, a DNS deferral, a TLS failure and a failed policy
        fetch; returns the scrape once every session has closed."""
        self.assertReply(self.send('rcpt@example.test')['data'], 250)
        self.mx1.configure(rcpt=(550, '5.1.1 no such user'))
        self.assertReply(self.send('nobody@example.test')['rcpt'][0], 550)
        self.assertReply(self.send('rcpt@broken.test')['rcpt'][0], 451, '4.4.3')
        self.assertReply(self.send('rcpt@plain.test')['rcpt'][0], 451, '4.7.5')
        self.assertReply(self.send('rcpt@sts.test')['data'], 250)

        def settled():
            status, body = http_get(self.metrics_port, '/metrics')
            self.assertEqual(status, 200, body)
            return body if re.search(r'^starttls_proxy_sessions_open 0$', body,
                                     re.M) else None
        return wait_until(settled, 10, 'sessions_open never went back to 0')

    def check_expr(self, where, expr, scraped):
        used = NAME.findall(expr)
        self.assertTrue(used, '%s: no metric in %r' % (where, expr))
        names = set()
        for name, selector in used:
            names.add(name)
            if name in PROMETHEUS_SERIES:
                continue
            self.assertTrue(name in scraped, '%s: %s is not in the scrape' % (where, name))
            series = scraped[name]
            for label, op, value in MATCHER.findall(selector):
                if label in TARGET_LABELS:
                    continue
                self.assertTrue(any(label in s for s in series),
                                '%s: %s has no label %s' % (where, name, label))
                if op == '=':
                    self.assertTrue(any(s.get(label) == value for s in series),
                                    '%s: no series %s{%s="%s"} in the scrape'
                                    % (where, name, label, value))
        ours = [n for n in names if n not in PROMETHEUS_SERIES]
        for group in GROUPING.findall(expr):
            for label in filter(None, (g.strip() for g in group.split(','))):
                if label in TARGET_LABELS:
                    continue
                self.assertTrue(any(label in s for n in ours for s in scraped[n]),
                                '%s: grouped by %s, which %s lack' % (where, label, ours))

    def test_every_name_in_a_live_scrape(self):
        scraped = parse_scrape(self.drive_traffic())
        exprs = [('rule ' + n, e) for n, e in rule_exprs()]
        exprs += [('panel ' + t, e) for t, e in dashboard_exprs()]
        self.assertGreater(len(exprs), 20)
        used = set()
        for where, expr in exprs:
            with self.subTest(where=where):
                self.check_expr(where, expr, scraped)
            used.update(n for n, _ in NAME.findall(expr))
        # Every family the proxy exports is on the dashboard.
        families = {re.sub(r'_(bucket|sum|count)$', '', n) for n in scraped}
        shown = {re.sub(r'_(bucket|sum|count)$', '', n) for n in used}
        self.assertEqual(families - shown, set(), 'metrics the dashboard does not show')


if __name__ == '__main__':
    main()
