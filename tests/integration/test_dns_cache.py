#!/usr/bin/python3
"""The resolver's answer cache, seen from the DNS server: answers are asked once while
their TTL lasts (negative ones for the SOA's minimum), again once it ran out; an
answer keeps the DNSSEC status it had until it expires; a SERVFAIL is not kept;
concurrent transactions to a new domain share one query; a reload with other
dns.servers asks the new servers. The connection cache is off, so every transaction
routes its destination again."""

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import DnsServer, TestBase, free_port, main, message, proxy_config  # noqa: E402
from harness.metrics import metrics_config, samples, scrape_text  # noqa: E402
from harness.util import wait_until  # noqa: E402

RCPT = 'rcpt@example.test'


class DnsCacheCase(TestBase):

    proxy_extra = {'outbound': {'connection_cache_time': 0}}

    def delivered(self, rcpt=RCPT):
        out = self.send(rcpt)
        self.assertReply(out['data'], 250)
        return out

    def queried(self, *names_types):
        return [self.dns.queried(n, t) for n, t in names_types]


class DnsCache(DnsCacheCase):

    def setUp(self):
        self.metrics_port = free_port()
        self.proxy_extra = dict(self.proxy_extra, **metrics_config(self.metrics_port))
        super().setUp()

    def metrics(self):
        return samples(scrape_text(self.metrics_port))

    def test_ten_messages_one_lookup_each(self):
        """Ten transactions to one domain: MX, A and AAAA (NODATA) of its host and the
        _mta-sts TXT are each asked once; the metrics count one query per question
        the server saw and the rest as cache hits."""
        for _ in range(10):
            self.delivered()
        self.assertEqual(len(self.mx1.wait_messages(10)), 10)
        self.assertEqual(self.queried(('example.test', 'MX'), ('mx1.example.test', 'A'),
                                      ('mx1.example.test', 'AAAA'),
                                      ('_mta-sts.example.test', 'TXT')), [1, 1, 1, 1])
        m = self.metrics()
        self.assertEqual(m['starttls_proxy_dns_queries_total'], len(self.dns.queries))
        self.assertGreaterEqual(m['starttls_proxy_dns_cache_hits_total{inflight="false"}'],
                                9 * 4)

    def test_concurrent_transactions_share_one_query(self):
        """Five transactions to a domain nobody asked for yet, while its MX answer is
        held back: one MX query on the wire, every transaction delivered."""
        self.dns.add('new.test', 'MX', (10, 'mx1.example.test'))
        self.dns.hold('new.test', 'MX')
        clients = []
        for i in range(5):
            c = self.client()
            self.assertReply(c.cmd('MAIL FROM:<s%d@client.test>' % i), 250)
            c.send_raw('RCPT TO:<r%d@new.test>\r\n' % i)
            clients.append(c)
        wait_until(lambda: self.dns.queried('new.test', 'MX') >= 1, 10)
        wait_until(lambda: self.metrics().get(
            'starttls_proxy_dns_cache_hits_total{inflight="true"}', 0) >= 4, 10,
            'the other lookups did not wait on the first one')
        self.dns.release('new.test', 'MX')
        for i, c in enumerate(clients):
            self.assertReply(c.read_reply(), 250)
            self.assertReply(c.data(message('concurrent %d' % i)), 250)
        self.mx1.wait_messages(5)
        self.assertEqual(self.queried(('new.test', 'MX'), ('mx1.example.test', 'A')), [1, 1])

    def test_servfail_not_cached(self):
        """A SERVFAIL defers the message and is not kept: once the server answers
        again, the next transaction is delivered."""
        self.dns.servfail('example.test', 'MX')
        self.assertReply(self.send(RCPT)['rcpt'][0], 4)
        self.dns.clear('example.test', 'MX')
        self.delivered()
        self.assertEqual(self.dns.queried('example.test', 'MX'), 2)


class DnsCacheShortTtl(DnsCacheCase):
    """Records with a 2-second TTL and an SOA with a 2-second minimum on negative
    answers."""

    def setup_fixtures(self):
        self.dns.ttl = 2
        self.dns.neg_ttl = 2
        super().setup_fixtures()

    def test_asked_again_after_ttl(self):
        """Once the TTLs ran out, MX, A and the negative AAAA (by the SOA's minimum,
        not dns.cache_negative_ttl's 60 s) are asked again."""
        self.delivered()
        names = (('example.test', 'MX'), ('mx1.example.test', 'A'),
                 ('mx1.example.test', 'AAAA'))
        self.assertEqual(self.queried(*names), [1, 1, 1])

        def asked_again():
            self.delivered()
            return min(self.queried(*names)) >= 2
        wait_until(asked_again, 20, lambda: 'not asked again: %r' % self.dns.queries,
                   interval=0.3)

    @proxy_config({'outbound': {'tls': {'default_level': 'dane'}}})
    def test_insecure_answer_not_upgraded(self):
        """The zone is unsigned at the first transaction and signed (AD, TLSA) right
        after: while the cached answers last, deliveries stay without DANE; once they
        expired, the secure answers are used and DANE applies."""
        self.delivered()
        self.dns.ad = True
        self.dns.add('_%d._tcp.mx1.example.test' % self.mx_port, 'TLSA',
                     self.pki.tlsa(self.mx1.cfg['starttls'][0], 3, 1, 1))
        self.delivered()
        if self.dns.queried('example.test', 'MX') == 1:  # answered from the cache
            self.assertNotIn('policy=dane', self.proxy.log_text())

        def dane_used():
            self.delivered()
            return 'policy=dane' in self.proxy.log_text()
        wait_until(dane_used, 20, lambda: 'DANE never applied; log:\n' +
                   self.proxy.log_text(), interval=0.3)
        self.assertGreaterEqual(self.dns.queried('example.test', 'MX'), 2)


class DnsCacheReload(DnsCacheCase):

    def test_reload_with_new_servers_asks_them(self):
        """SIGHUP with other dns.servers: the cached answers from the old server are
        dropped and the new server is asked."""
        self.delivered()
        dns2 = DnsServer()
        self.addCleanup(dns2.stop)
        dns2.add('example.test', 'MX', (10, 'mx1.example.test'))
        dns2.add('mx1.example.test', 'A', '127.0.0.2')
        self.proxy.write_config({'outbound': {'connection_cache_time': 0},
                                 'dns': {'servers': ['127.0.0.1:%d' % dns2.port]}})
        self.proxy.reload()
        self.proxy.wait_log(r'configuration reloaded from')
        self.delivered()
        self.assertEqual(dns2.queried('example.test', 'MX'), 1)
        self.assertEqual(dns2.queried('mx1.example.test', 'A'), 1)
        self.assertEqual(self.dns.queried('example.test', 'MX'), 1)
        self.assertEqual(len(self.mx1.wait_messages(2)), 2)


if __name__ == '__main__':
    threading.current_thread().name = 'main'
    main()
