#!/usr/bin/python3
"""A fleet of proxies sharing one Redis (cache.backend: redis): MTA-STS policies
fetched once for the fleet, no first-use window on a new host, TLS-RPT counts summed
over the fleet and reported once, and delivery that goes on while Redis is down.

Fixtures: mx1.example.test (127.0.0.2, STARTTLS, CA-signed), the MTA-STS policy host
and the TLS-RPT endpoint on one HttpsPolicyServer (127.0.0.1), Debian's redis-server
on a free loopback port (no persistence: a killed Redis forgets everything), and two
or three proxy processes with their own state_dir each. Outbound connection reuse is
off so that every message is one TLS session (one TLS-RPT count).
"""

import gzip
import json
import os
import shutil
import sys
import threading
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestBase, main, message, wait_until  # noqa: E402
from harness.httpsserver import policy_text  # noqa: E402
from harness.proxy import Proxy, deep_merge  # noqa: E402
from harness.redis import RedisServer  # noqa: E402

DOMAIN = 'example.test'
RCPT = 'rcpt@example.test'
REPORT_HOST = 'reports.example.test'
PREFIX = 'starttls-proxy:'


class FleetCase(TestBase):
    start_proxy = False
    redis_kw = {}
    tlsrpt_interval = 3600

    def setup_fixtures(self):
        self.mx1 = self.add_mx('mx1', '127.0.0.2')
        self.https = self.add_policy_server('mta-sts.%s' % DOMAIN, REPORT_HOST,
                                            posts=['/tlsrpt'])
        self.redis = self.make_redis()
        self.proxies = {}

    def make_redis(self):
        r = RedisServer(self.tmpdir, **self.redis_kw)
        self.addCleanup(r.stop)
        return r

    def publish_sts(self, sts_id='1', mx=('mx1.example.test',)):
        self.dns.remove('_mta-sts.%s' % DOMAIN, 'TXT')
        self.dns.add('_mta-sts.%s' % DOMAIN, 'TXT', 'v=STSv1; id=%s' % sts_id)
        self.https.set_policy(DOMAIN, policy_text(mode='enforce', mx=mx))

    def publish_rua(self):
        self.dns.add('_smtp._tls.%s' % DOMAIN, 'TXT', 'v=TLSRPTv1; rua=https://%s:%d/tlsrpt'
                     % (REPORT_HOST, self.https.port))

    def cache_config(self, url=None):
        return {'cache': {'backend': 'redis', 'redis': {'url': url or self.redis.url(),
                                                        'timeout': 1}}}

    def fleet_config(self, extra=None):
        base = {'mta_sts': {'enabled': 'yes', 'ca_file': self.pki.ca_file,
                            'port': self.https.port, 'fetch_timeout': 2,
                            'allow_private_addresses': 'yes'},
                'tlsrpt': {'enabled': 'yes', 'interval': self.tlsrpt_interval,
                           'ca_file': self.pki.ca_file, 'organization': 'Fleet',
                           'allow_private_addresses': 'yes'},
                'outbound': {'connection_cache_time': 0},
                'log': {'level': 'debug'}}
        return deep_merge(deep_merge(base, self.cache_config()), extra)

    def start_member(self, name, extra=None, wipe=False):
        """Starts (or restarts) fleet member NAME; WIPE: a new host (empty state)."""
        old = self.proxies.get(name)
        if old is not None and old.running():
            old.stop()
        p = Proxy(self.tmpdir, self.dns.port, self.mx_port, self.pki.ca_file,
                  extra=self.fleet_config(extra), start=False, name=name)
        if wipe:
            shutil.rmtree(p.state_dir)
            os.makedirs(p.state_dir)
        self.addCleanup(self._stop_proxy, p)
        p.start()
        self.proxies[name] = p
        self.proxy = p  # the log printed on failure, assertLog
        p.wait_log(r'cache: redis .* (connected|unavailable)')
        return p

    def send_via(self, p, subject='fleet'):
        self.proxy = p
        return self.send(RCPT, message(subject))

    def metrics(self, p):
        with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % p.metrics_port,
                                    timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith('starttls_proxy_cache_'):
                k, v = line.rsplit(' ', 1)
                out[k] = float(v)
        return out

    def with_metrics(self):
        from harness.util import free_port
        port = free_port()
        return port, {'metrics': {'listen': '127.0.0.1:%d' % port}}

    def redis_counts(self):
        """Sum of every TLS-RPT counter in Redis, by result ('' = success)."""
        total = {}
        for key in self.redis.keys(PREFIX + 'tlsrpt:*'):
            if key.endswith(':periods') or ':lock:' in key:
                continue
            for field, v in self.redis.hgetall(key).items():
                parts, pos = [], 0
                while pos < len(field):
                    colon = field.index(b':', pos)
                    n = int(field[pos:colon])
                    parts.append(field[colon + 1:colon + 1 + n].decode())
                    pos = colon + 2 + n
                total[parts[4]] = total.get(parts[4], 0) + int(v)
        return total

    def assertEnforcedDelivery(self, out, p, n):
        self.assertReply(out['rcpt'][0], 250)
        self.assertReply(out['data'], 250)
        self.mx1.wait_messages(n)
        p.wait_log(r'(?m)to=<%s>, relay=mx1\.example\.test.*status=sent .*, '
                   r'policy=mta-sts/enforce$' % RCPT)


class SharedPolicy(FleetCase):

    def test_two_proxies_one_fetch(self):
        """Proxy a fetches the enforce policy; proxy b, which never saw the domain,
        uses it from Redis: the policy server sees one fetch."""
        self.publish_sts()
        a = self.start_member('a')
        b = self.start_member('b')
        self.assertEnforcedDelivery(self.send_via(a), a, 1)
        self.assertEnforcedDelivery(self.send_via(b), b, 2)
        self.assertEqual(self.https.fetches(DOMAIN), 1)
        b.wait_log(r'mta-sts: example\.test: policy id=1 mode=enforce from the shared '
                   r'cache')
        fields = self.redis.hgetall(PREFIX + 'sts:policy:' + DOMAIN)
        self.assertEqual(fields[b'id'], b'1')
        self.assertIn(b'mode: enforce', fields[b'policy'])
        ttl = self.redis.cmd('TTL', PREFIX + 'sts:policy:' + DOMAIN)
        self.assertTrue(0 < ttl <= 86400, ttl)

    def test_concurrent_first_use_one_fetch(self):
        """Three proxies see the domain at the same moment while the policy server
        takes 1 s to answer: one takes the lease and fetches, the others wait for it
        and use what it published. One fetch; three enforced deliveries."""
        self.publish_sts()
        self.https.set_policy(DOMAIN, policy_text(mode='enforce',
                                                  mx=('mx1.example.test',)), delay=1)
        members = [self.start_member(n) for n in ('a', 'b', 'c')]
        outs = {}

        def one(p):
            from harness.smtpclient import Client
            with Client(p.port) as c:
                c.read_reply()
                c.cmd('EHLO client.test')
                outs[p.port] = c.send_message('sender@client.test', [RCPT],
                                               message('concurrent'))
        threads = [threading.Thread(target=one, args=(p,)) for p in members]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for p in members:
            self.assertReply(outs[p.port]['data'], 250)
        self.mx1.wait_messages(3)
        self.assertEqual(self.https.fetches(DOMAIN), 1)
        waited = [p for p in members if 'fetch lease -> wait' in p.log_text()]
        self.assertEqual(len(waited), 2, [p.log_text() for p in members])

    def test_new_host_web_down_still_enforces(self):
        """Proxy a fetched the policy. Proxy a is replaced by a new host (empty
        state_dir) while the policy server is down: it still enforces the policy from
        Redis: delivered to the good MX with policy=mta-sts/enforce, and refused
        (451, nothing delivered) once mx1 presents a certificate for another name."""
        self.publish_sts()
        a = self.start_member('a')
        self.assertEnforcedDelivery(self.send_via(a), a, 1)
        self.https.stop()
        a = self.start_member('a', wipe=True)
        self.assertEnforcedDelivery(self.send_via(a), a, 2)
        a.wait_log(r'policy id=1 mode=enforce from the shared cache')
        cert, key = self.pki.issue('mx1.example.test', wrong_name='other.example.test')
        self.mx1.configure(starttls=(cert, key))
        out = self.send_via(a, 'bad cert')
        self.assertReply(out['rcpt'][0], 451, 'mx1.example.test')
        self.assertEqual(len(self.mx1.messages), 2)
        self.assertEqual(self.https.fetches(DOMAIN), 1)


class RedisDown(FleetCase):

    def test_redis_absent_at_start_then_back(self):
        """No Redis at start: the proxy starts, says so in the log and in metrics,
        fetches the policy itself and delivers. When Redis comes up it connects,
        publishes the policy it fetched, and the metric is back to 1."""
        self.redis.kill()
        self.publish_sts()
        mport, mcfg = self.with_metrics()
        a = self.start_member('a', mcfg)
        a.metrics_port = mport
        a.wait_log(r'cache: redis 127\.0\.0\.1:%d unavailable' % self.redis.port)
        self.assertEqual(self.metrics(a)['starttls_proxy_cache_backend_up'], 0)
        self.assertEnforcedDelivery(self.send_via(a), a, 1)
        a.wait_log(r'shared cache unavailable: policy id=1 kept here')
        errors = self.metrics(a)['starttls_proxy_cache_errors_total']
        self.assertGreater(errors, 0)
        self.redis.start()
        a.wait_log(r'cache: redis .* is back after')
        wait_until(lambda: self.metrics(a)['starttls_proxy_cache_backend_up'] == 1, 10)
        self.assertEnforcedDelivery(self.send_via(a), a, 2)
        a.wait_log(r'policy id=1 published to the shared cache')
        wait_until(lambda: self.redis.cmd('EXISTS', PREFIX + 'sts:policy:' + DOMAIN),
                   5)
        self.assertEqual(self.https.fetches(DOMAIN), 1)

    def test_redis_hangs_timeout_then_fetch(self):
        """Redis stops answering (SIGSTOP) before a proxy first needs a policy: its
        lookup gets no reply, the connection is dropped after cache.redis.timeout
        (1 s), and the proxy fetches the policy itself: delivered, enforced, within
        a few seconds, not stuck."""
        import time
        self.publish_sts()
        a = self.start_member('a')
        a.wait_log(r'cache: redis .* connected')
        self.redis.pause()
        t0 = time.monotonic()
        self.assertEnforcedDelivery(self.send_via(a), a, 1)
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 5)
        a.wait_log(r'cache: redis .* unavailable: no answer within 1000 ms')
        self.assertEqual(self.https.fetches(DOMAIN), 1)
        self.redis.resume()
        a.wait_log(r'cache: redis .* is back after')

    def test_known_enforce_policy_kept_while_redis_down(self):
        """Redis dies after the policy is known: the proxy keeps enforcing it from
        memory (a bad certificate is still refused), never falling back to may."""
        self.publish_sts()
        a = self.start_member('a')
        self.assertEnforcedDelivery(self.send_via(a), a, 1)
        self.redis.kill()
        self.https.stop()
        cert, key = self.pki.issue('mx1.example.test', wrong_name='other.example.test')
        self.mx1.configure(starttls=(cert, key))
        out = self.send_via(a, 'bad cert')
        self.assertReply(out['rcpt'][0], 451, 'mx1.example.test')
        self.assertEqual(len(self.mx1.messages), 1)

    def test_counts_kept_across_a_stop_while_redis_down(self):
        """A proxy stopped while Redis is down saves its counts in its own file and
        hands them to Redis at its next start: nothing counted is lost."""
        self.publish_sts()
        a = self.start_member('a')
        self.redis.kill()
        self.assertEnforcedDelivery(self.send_via(a), a, 1)
        a.wait_log(r'tlsrpt: shared cache unavailable: counts kept in memory')
        a.stop()
        self.assertRegex(a.log_text(), r'1 counter\(s\) saved locally')
        self.redis.start()
        a = self.start_member('a')
        a.wait_log(r'tlsrpt: 1 counter\(s\) saved locally go to the shared cache')
        wait_until(lambda: self.redis_counts() == {'': 1}, 10,
                   lambda: 'counts: %r' % self.redis_counts())

    def test_redis_killed_mid_load(self):
        """Two clients deliver 20 messages each, at once, one through each proxy;
        Redis is killed after 10 deliveries and restarted after 25. Every message gets
        250 (and the MX has it) or 4xx; none is lost. The TLS-RPT counts of every
        session started after the kill reach the new Redis once it is back (those
        before it died went with its memory)."""
        import time
        self.publish_sts()
        a = self.start_member('a')
        b = self.start_member('b')
        lock = threading.Lock()
        results = []  # (start time, final code)

        def load(p, tag):
            from harness.smtpclient import Client
            for i in range(20):
                t = time.monotonic()
                with Client(p.port) as c:
                    c.read_reply()
                    c.cmd('EHLO client.test')
                    out = c.send_message('sender@client.test', [RCPT],
                                         message('load %s%d' % (tag, i)))
                code = out['data'][0] if out.get('data') else out['rcpt'][0][0]
                with lock:
                    results.append((t, code))
        threads = [threading.Thread(target=load, args=(p, t))
                   for p, t in ((a, 'a'), (b, 'b'))]
        for t in threads:
            t.start()
        wait_until(lambda: len(results) >= 10, 60)
        killed_at = time.monotonic()
        self.redis.kill()
        wait_until(lambda: len(results) >= 25, 60)
        self.redis.start()
        for t in threads:
            t.join(60)
        self.assertEqual(len(results), 40)
        accepted = sum(1 for _, c in results if c == 250)
        for _, c in results:
            self.assertIn(c // 100, (2, 4), results)
        after_kill = sum(1 for t, c in results if c == 250 and t > killed_at)
        self.mx1.wait_messages(accepted)
        self.assertEqual(len(self.mx1.messages), accepted)
        self.assertGreaterEqual(accepted, 38)
        for p in (a, b):
            p.wait_log(r'cache: redis .* is back after')

        def caught_up():
            return self.redis_counts().get('', 0) >= after_kill
        wait_until(caught_up, 15, lambda: 'counts %r, expected >= %d' % (
            self.redis_counts(), after_kill))
        self.assertLessEqual(self.redis_counts().get('', 0), accepted)
        for p in (a, b):
            self.assertNotRegex(p.log_text(), r'policy=default')

    def test_reload_keeps_sharing(self):
        """SIGHUP builds a new runtime with its own Redis connection; the old one
        closes with it (no leak under ASan), and the fleet state is still shared."""
        self.publish_sts()
        a = self.start_member('a')
        self.assertEnforcedDelivery(self.send_via(a), a, 1)
        a.reload()
        wait_until(lambda: a.log_text().count('cache: redis 127.0.0.1:%d connected'
                                              % self.redis.port) >= 2, 10)
        b = self.start_member('b')
        self.assertEnforcedDelivery(self.send_via(b), b, 2)
        self.assertEnforcedDelivery(self.send_via(a), a, 3)
        self.assertEqual(self.https.fetches(DOMAIN), 1)


class FleetReport(FleetCase):

    tlsrpt_interval = 3

    def test_one_report_for_the_fleet(self):
        """Two proxies, 3 s periods: each delivers one message; per period exactly one
        proxy takes the lock and sends one report, which counts both sessions."""
        self.publish_sts()
        self.publish_rua()
        a = self.start_member('a')
        b = self.start_member('b')
        # Both sessions in one period: start right after a boundary.
        import time
        wait_until(lambda: time.time() % 3 < 0.3, 5, interval=0.01)
        self.assertEnforcedDelivery(self.send_via(a), a, 1)
        self.assertEnforcedDelivery(self.send_via(b), b, 2)

        def reported():
            return sum(self.report_totals()) >= 2
        wait_until(reported, 20, lambda: 'reports: %r' % self.reports())
        # One more period: no second report of the same sessions.
        for p in (a, b):
            p.wait_log(r'tlsrpt: (this|another) proxy reports for the fleet')
        n = len(self.https.posts)
        wait_until(lambda: all(p.log_text().count('reports for the fleet') >= 3
                               for p in (a, b)), 15)
        self.assertEqual(len(self.https.posts), n)
        # Each period end: exactly one proxy took the lock, the other one saw it held.
        import re
        took = [set(re.findall(r'this proxy reports for the fleet \(period end (\d+)',
                               p.log_text())) for p in (a, b)]
        saw = [set(re.findall(r'another proxy reports for the fleet \(period end '
                              r'(\d+)', p.log_text())) for p in (a, b)]
        both = (took[0] | saw[0]) & (took[1] | saw[1])
        self.assertGreaterEqual(len(both), 2, (took, saw))
        for end in both:
            self.assertEqual((end in took[0]) + (end in took[1]), 1, (end, took, saw))
        self.assertEqual(self.report_totals(), (2, 0))
        periods = [r['date-range']['start-datetime'] for r in self.reports()]
        self.assertEqual(len(periods), len(set(periods)), periods)
        self.assertEqual(self.redis_counts(), {})

    def reports(self):
        return [json.loads(gzip.decompress(p['body'])) for p in list(self.https.posts)]

    def report_totals(self):
        ok = bad = 0
        for rep in self.reports():
            for pol in rep['policies']:
                ok += pol['summary']['total-successful-session-count']
                bad += pol['summary']['total-failure-session-count']
        return ok, bad


class CliReport(FleetCase):

    def test_cli_send_reports_the_fleet(self):
        """Hour-long periods: two proxies count one session each into Redis;
        `starttls-proxy tlsrpt send` (any member's config) sends one report with
        both, and takes the counters off Redis."""
        import subprocess
        from harness.proxy import proxy_binary
        self.publish_sts()
        self.publish_rua()
        a = self.start_member('a')
        b = self.start_member('b')
        self.assertEnforcedDelivery(self.send_via(a), a, 1)
        self.assertEnforcedDelivery(self.send_via(b), b, 2)
        wait_until(lambda: self.redis_counts().get('', 0) == 2, 10,
                   lambda: 'counts: %r' % self.redis_counts())
        r = subprocess.run([proxy_binary(), '-c', b.config_path, 'tlsrpt', 'send'],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('1 report(s) sent', r.stdout)
        self.assertEqual(len(self.https.posts), 1)
        rep = json.loads(gzip.decompress(self.https.posts[0]['body']))
        self.assertEqual(rep['organization-name'], 'Fleet')
        self.assertEqual([p['summary']['total-successful-session-count']
                          for p in rep['policies']], [2])
        self.assertEqual(rep['policies'][0]['policy']['policy-type'], 'sts')
        wait_until(lambda: self.redis_counts() == {}, 5,
                   lambda: 'left: %r' % self.redis_counts())


class Access(FleetCase):

    redis_kw = {'password': 'fleet secret'}

    def test_password_db_and_prefix(self):
        """requirepass, database 3 and a key prefix: the policy lands under the prefix
        in that database; a wrong password is logged and delivery goes on."""
        self.publish_sts()
        url = self.redis.url(db=3, password='fleet%20secret')
        a = self.start_member('a', {'cache': {'redis': {'url': url,
                                                        'key_prefix': 'fleet1:'}}})
        a.wait_log(r'cache: redis 127\.0\.0\.1:%d connected' % self.redis.port)
        self.assertEnforcedDelivery(self.send_via(a), a, 1)
        key = 'fleet1:sts:policy:' + DOMAIN
        wait_until(lambda: self.redis.cmd('SELECT', 3) and self._exists_in(3, key), 5)
        self.assertFalse(self._exists_in(0, key))
        bad = self.redis.url(password='wrong')
        b = self.start_member('b', {'cache': {'redis': {'url': bad}}})
        b.wait_log(r'cache: redis .* unavailable: (WRONGPASS|ERR invalid password)')
        self.assertEnforcedDelivery(self.send_via(b), b, 2)

    def test_acl_user_with_the_documented_rights(self):
        """An ACL user limited to the prefix's keys and the commands the README lists
        (AUTH user password from the url) is enough for policies, counts and the
        report lock: TLS-RPT counts land, the policy is shared with a second proxy."""
        self.redis.cmd('ACL', 'SETUSER', 'fleet', 'on', '>fleet-pw', '~fleet2:*',
                       '-@all', '+ping', '+select', '+hmget', '+hgetall', '+smembers',
                       '+set', '+eval', '+hset', '+expireat', '+expire', '+hincrby',
                       '+hdel', '+hlen', '+sadd', '+srem', '+get', '+del')
        self.publish_sts()
        url = self.redis.url(password='fleet-pw', user='fleet')
        extra = {'cache': {'redis': {'url': url, 'key_prefix': 'fleet2:'}}}
        a = self.start_member('a', extra)
        a.wait_log(r'cache: redis 127\.0\.0\.1:%d connected' % self.redis.port)
        self.assertEnforcedDelivery(self.send_via(a), a, 1)
        b = self.start_member('b', extra)
        self.assertEnforcedDelivery(self.send_via(b), b, 2)
        self.assertEqual(self.https.fetches(DOMAIN), 1)
        wait_until(lambda: [k for k in self.redis.keys('fleet2:tlsrpt:*')
                            if k.endswith(':periods')], 10)
        for p in (a, b):
            self.assertNotIn('NOPERM', p.log_text())

    def _exists_in(self, db, key):
        with self.redis._connect() as s:
            f = s.makefile('rwb')
            for c in (('AUTH', self.redis.password), ('SELECT', str(db)),
                      ('EXISTS', key)):
                parts = [x.encode() for x in c]
                f.write(b'*%d\r\n' % len(parts))
                for x in parts:
                    f.write(b'$%d\r\n%s\r\n' % (len(x), x))
            f.flush()
            from harness.redis import _read_reply
            replies = [_read_reply(f) for _ in range(3)]
        return replies[2] == 1


class Tls(FleetCase):

    def make_redis(self):
        cert, key = self.pki.issue('localhost')
        r = RedisServer(self.tmpdir, tls=(cert, key), ca_file=self.pki.ca_file)
        self.addCleanup(r.stop)
        return r

    def cache_config(self, url=None):
        cfg = super().cache_config(url or 'rediss://localhost:%d' % self.redis.port)
        cfg['cache']['redis']['ca_file'] = self.pki.ca_file
        return cfg

    def test_rediss_verified(self):
        """rediss:// with the test CA: connected over TLS, the policy shared."""
        self.publish_sts()
        a = self.start_member('a')
        a.wait_log(r'cache: redis localhost:%d connected over TLS' % self.redis.port)
        self.assertEnforcedDelivery(self.send_via(a), a, 1)
        wait_until(lambda: self.redis.cmd('EXISTS', PREFIX + 'sts:policy:' + DOMAIN), 5)

    def test_rediss_outbound_ca_file(self):
        """No cache.redis.ca_file: outbound.tls.ca_file (the test CA) is trusted."""
        self.publish_sts()
        a = self.start_member('a', {'cache': {'redis': {'ca_file': None}}})
        self.assertEqual(a.config['outbound']['tls']['ca_file'], self.pki.ca_file)
        a.wait_log(r'cache: redis localhost:%d connected over TLS' % self.redis.port)
        self.assertEnforcedDelivery(self.send_via(a), a, 1)

    def test_rediss_untrusted_refused(self):
        """A Redis whose certificate the configured CA did not sign is not used."""
        self.publish_sts()
        other = os.path.join(self.tmpdir, 'other-ca.pem')
        cert, _ = self.pki.issue('localhost', self_signed=True)
        shutil.copy(cert, other)
        a = self.start_member('a', {'cache': {'redis': {'ca_file': other}}})
        a.wait_log(r'cache: redis localhost:%d unavailable: TLS handshake'
                   % self.redis.port)
        self.assertEnforcedDelivery(self.send_via(a), a, 1)
        self.assertEqual(self.redis.cmd('EXISTS', PREFIX + 'sts:policy:' + DOMAIN), 0)


if __name__ == '__main__':
    main()
