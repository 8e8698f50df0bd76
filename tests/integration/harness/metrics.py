"""The proxy's /metrics listener, as the tests read it.

    extra = metrics_config(port)            # proxy config: metrics.listen on loopback
    wait_metrics_ready(proxy)               # it is up once the proxy logged "ready"
    samples(scrape_text(port))              # {'name{labels}': value}
"""

import urllib.request

from .util import wait_until


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
