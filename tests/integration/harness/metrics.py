"""The proxy's /metrics listener, as the tests read it.

    extra = metrics_config(port)            # proxy config: metrics.listen on loopback
    wait_metrics_ready(proxy)               # it is up once the proxy logged "ready"
    samples(scrape_text(port))              # {'name{labels}': value}
"""

import unittest
import urllib.request

from .util import TestBase, free_port, wait_until


class MetricsCase(TestBase):
    """A proxy with its metrics listener (self.metrics_port), an MTA-STS policy port
    on loopback (nothing listens: fetches fail) and plain.test at level encrypt, so a
    test can make deliveries, DNS and TLS failures and policy-fetch failures; setUp
    returns once /metrics answers."""

    def setUp(self):
        if type(self) is MetricsCase:
            raise unittest.SkipTest('a base class')
        self.metrics_port = free_port()
        self.proxy_extra = dict(self.proxy_extra, **metrics_config(self.metrics_port))
        self.proxy_extra.update({
            'mta_sts': {'enabled': 'yes', 'port': free_port(), 'fetch_timeout': 2,
                        'allow_private_addresses': 'yes'},
            'policy': {'table': {'plain.test': 'encrypt'}},
        })
        super().setUp()
        wait_metrics_ready(self.proxy)


def metrics_config(port):
    """The proxy config fragment that opens the metrics listener on 127.0.0.1:PORT."""
    return {'metrics': {'listen': '127.0.0.1:%d' % port}}


def wait_metrics_ready(proxy, timeout=10):
    """The harness polls the SMTP listener, which is up before the metrics listener;
    the proxy logs "ready" once every listener is."""
    wait_until(lambda: ' ready' in proxy.log_text(), timeout, 'the proxy did not log ready')


def scrape_text(port, timeout=5):
    """The body of GET /metrics."""
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port,
                                timeout=timeout) as r:
        return r.read().decode()


def samples(text):
    """{'name{labels}': value} for every sample line of a Prometheus text scrape."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith('#'):
            key, _, value = line.rpartition(' ')
            out[key] = float(value)
    return out
