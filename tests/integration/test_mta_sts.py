#!/usr/bin/python3
"""MTA-STS (RFC 8461) for domains without a policy.table entry, with the policy cache
persisted in <state_dir>/policies.sqlite3.

Fixtures: mx1.example.test (127.0.0.2, STARTTLS, CA-signed certificate for its name),
the policy host mta-sts.<domain> (DNS A 127.0.0.1) served by HttpsPolicyServer on a
free port with a CA-signed certificate for mta-sts.example.test and the other test
domains; mta_sts.ca_file is the test CA (also outbound.tls.ca_file), mta_sts.port the
fixture's port, fetch_timeout 2 s. DNS answers carry no AD bit (no DANE) unless a test
says otherwise; the default level is may.

An enforce policy whose checks fail for every MX host gives the client 451 4.7.5 on
RCPT, naming the hosts; the MX never sees MAIL. A policy that cannot be fetched (and
is not cached) is no policy: delivery as at may. Tests of fetch failures publish an
enforce policy that lists no MX of the domain, so a policy wrongly accepted would
show as a deferral.
"""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestBase, is_asan_build, main, message, proxy_config  # noqa: E402
from harness.httpsserver import policy_text  # noqa: E402
from harness.proxy import deep_merge, proxy_binary  # noqa: E402

RCPT = 'rcpt@example.test'
DOMAIN = 'example.test'
OTHER_DOMAINS = ('two.test', 'other.test')
POLICY_IP = '127.0.0.1'
# An enforce policy that lists no MX host of example.test.
UNLISTED = dict(mode='enforce', mx=('mx9.example.test',))


class StsCase(TestBase):
    """mx1 + the policy server; the proxy's config carries the mta_sts section."""

    def setup_fixtures(self):
        self.mx1 = self.add_mx('mx1', '127.0.0.2')
        self.https = self.add_policy_server(
            *['mta-sts.%s' % d for d in (DOMAIN,) + OTHER_DOMAINS], ip=POLICY_IP)

    def sts_config(self):
        return {'mta_sts': {'enabled': 'yes', 'ca_file': self.pki.ca_file,
                            'port': self.https.port, 'fetch_timeout': 2,
                            'allow_private_addresses': 'yes'}}

    def start_the_proxy(self, extra=None):
        return super().start_the_proxy(deep_merge(self.sts_config(), extra))

    # ---- fixtures ----------------------------------------------------------------------
    def txt_name(self, domain=DOMAIN):
        return '_mta-sts.%s' % domain

    def publish(self, sts_id='1', text=None, domain=DOMAIN, ttl=None, **serve):
        """TXT "v=STSv1; id=STS_ID" at _mta-sts.DOMAIN (replacing earlier TXT records,
        TTL seconds) and the policy TEXT (default: enforce, mx1.example.test) on the
        policy server with SERVE (set_policy keywords). TEXT may be a dict of
        policy_text keywords."""
        if text is None:
            text = policy_text()
        elif isinstance(text, dict):
            text = policy_text(**text)
        self.set_txt(['v=STSv1; id=%s' % sts_id], domain, ttl)
        self.https.set_policy(domain, text, **serve)

    def set_txt(self, records, domain=DOMAIN, ttl=None):
        """Replaces the TXT RRset of _mta-sts.DOMAIN by RECORDS (each a str or a list
        of character strings). The proxy caches the RRset for its TTL: a test that
        changes it after a lookup gives it a short TTL and send_until_txt_asked()."""
        self.dns.remove(self.txt_name(domain), 'TXT')
        for r in records:
            self.dns.add(self.txt_name(domain), 'TXT', r, ttl=ttl)

    def send_until_txt_asked(self, n, rcpt=None):
        """Sends to RCPT until the proxy asked for the _mta-sts TXT N times (its
        cached answer expired); returns the reply dict of the last transaction."""
        from harness import wait_until
        last = {}

        def asked():
            last['out'] = self.send(rcpt or RCPT)
            return self.dns.queried(self.txt_name(), 'TXT') >= n
        wait_until(asked, 15, lambda: 'TXT not asked again: %r' % self.dns.queries,
                   interval=0.2)
        return last['out']

    def serve(self, mx, **issue):
        """MX now serves a fresh certificate for its name (pki.issue keywords)."""
        cert, key = self.pki.issue(mx.cfg['name'], **issue)
        mx.configure(starttls=(cert, key))
        return cert

    def cli(self, *args):
        return subprocess.run([proxy_binary(), '-c', self.proxy.config_path, 'policy']
                              + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=30)

    # ---- assertions --------------------------------------------------------------------
    def assertDelivered(self, out, mx, policy=None, n=1, rcpt=RCPT, verdict=None):
        """Delivered over TLS 1.3 to MX (its Nth message); the delivery line names
        POLICY (when given) and the TLS verdict (a regex, when given)."""
        self.assertReply(out['rcpt'][0], 250)
        self.assertReply(out['data'], 250)
        m = mx.wait_messages(n)[n - 1]
        self.assertEqual(m.tls_version, 'TLSv1.3')
        self.assertEqual(m.rcpts, [rcpt])
        if verdict:
            self.assertLog(r'(%s) TLS connection established to %s: TLSv1\.3 with cipher'
                           % (verdict, self.relay(mx)))
        if policy:
            self.assertLog(r'(?m)to=<%s>, relay=%s, .*status=sent \(250.*, policy=%s$'
                           % (re.escape(rcpt), self.relay(mx), re.escape(policy)))
        return m

    def assertNoPolicy(self, out, mx=None, n=1):
        """Delivered (MX's Nth message) as without MTA-STS: 250s, TLS, no mta-sts
        policy on any delivery line."""
        m = self.assertDelivered(out, mx or self.mx1, n=n)
        self.assertLog(r'to=<%s>, relay=.*status=sent' % re.escape(RCPT))
        for line in self.proxy.log_text().splitlines():
            if 'status=sent' in line and 'to=<%s>' % RCPT in line:
                self.assertNotIn('policy=mta-sts', line)
        return m

    def fetch_lines(self, domain=DOMAIN, failed=None):
        """Log lines naming mta-sts, DOMAIN and a fetch (failed: only those that say
        fail; False: only those that do not)."""
        out = []
        for line in self.proxy.log_text().splitlines():
            low = line.lower()
            if 'mta-sts' in low and domain in low and 'fetch' in low:
                if failed is None or failed == ('fail' in low):
                    out.append(line)
        return out

    def assertFetchFailedLogged(self, domain=DOMAIN, *words):
        """A line names mta-sts, DOMAIN, the fetch, a failure and every one of WORDS."""
        def found():
            return [ln for ln in self.fetch_lines(domain, failed=True)
                    if all(w.lower() in ln.lower() for w in words)]
        from harness import wait_until
        return wait_until(found, 10, lambda: 'no failed-fetch line for %s %r; log:\n%s'
                          % (domain, words, self.proxy.log_text()))

    def assertNotCached(self, domain=DOMAIN):
        r = self.cli('show', domain)
        self.assertEqual(r.returncode, 1, 'policy show %s: %s%s' % (domain, r.stdout,
                                                                    r.stderr))


class Enforce(StsCase):

    def test_enforce_listed_valid_delivered(self):
        """enforce, mx1 listed, CA-signed certificate for its name: delivered over TLS,
        Verified, policy=mta-sts/enforce; the policy was fetched once, with SNI and Host
        mta-sts.example.test, from the well-known path; the fetch is logged."""
        self.publish('20240101T0001')
        out = self.send(RCPT, message('sts-enforce'))
        self.assertDelivered(out, self.mx1, 'mta-sts/enforce', verdict='Verified')
        self.assertEqual(self.https.fetches(DOMAIN), 1)
        entry = self.https.log[0]
        self.assertEqual(entry['path'], '/.well-known/mta-sts.txt')
        self.assertEqual(entry['sni'], 'mta-sts.example.test')
        self.assertEqual(entry['host'].split(':')[0].lower(), 'mta-sts.example.test')
        self.assertGreater(self.dns.queried(self.txt_name(), 'TXT'), 0)
        self.assertTrue(self.fetch_lines(failed=False), self.proxy.log_text())
        self.assertLog(r'mta-sts.*example\.test.*id=20240101T0001')
        self.assertTrue(os.path.isfile(os.path.join(self.proxy.state_dir,
                                                    'policies.sqlite3')))

    def test_enforce_not_listed_451(self):
        """enforce listing only mx9.example.test: mx1 is not used: 451 4.7.5 naming
        mx1 with "not listed in the MTA-STS policy"; mx1 never sees MAIL."""
        self.publish(text=UNLISTED)
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertReason(out, 'mx1.example.test', 'not listed in the MTA-STS policy')
        self.assertNoMail(self.mx1)

    def test_enforce_skips_unlisted_uses_listed(self):
        """Two MX: mx1 (pref 10) not listed, mx2 (pref 20) listed: delivered to mx2."""
        mx2 = self.add_mx('mx2', '127.0.0.3', pref=20)
        self.publish(text=dict(mx=('mx2.example.test',)))
        out = self.send(RCPT)
        self.assertDelivered(out, mx2, 'mta-sts/enforce')
        self.assertNoMail(self.mx1)

    def test_enforce_wrong_name_cert_451(self):
        """enforce, mx1 listed, its CA-signed certificate names another host: 4.7.5,
        "Server certificate not verified"."""
        self.serve(self.mx1, wrong_name='other.example.test')
        self.publish()
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', policy='mta-sts/enforce')
        self.assertReason(out, 'mx1.example.test', 'Server certificate not verified')
        self.assertNoMail(self.mx1)

    def test_enforce_untrusted_cert_451(self):
        """enforce with a self-signed certificate for the right name: 4.7.5."""
        self.serve(self.mx1, self_signed=True)
        self.publish()
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertReason(out, 'mx1.example.test', 'Server certificate not verified')
        self.assertNoMail(self.mx1)

    def test_enforce_no_starttls_451(self):
        """enforce, mx1 listed but without STARTTLS: 4.7.5, "TLS is required, but was
        not offered"; no MAIL in plaintext."""
        self.mx1.configure(starttls=None)
        self.publish()
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', policy='mta-sts/enforce')
        self.assertReason(out, 'mx1.example.test', 'TLS is required, but was not offered')
        self.assertNoMail(self.mx1)

    def test_enforce_tls11_only_451(self):
        """enforce requires TLS 1.2+: an MX that only speaks TLS 1.1 gets no mail."""
        self.mx1.configure(tls_max='TLSv1.1')
        self.publish()
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertNoMail(self.mx1)

    def test_enforce_never_5xx_all_hosts_named(self):
        """Two MX, one unlisted, one with a wrong-name certificate: 451 (not 5xx)
        naming both."""
        self.add_mx('mx2', '127.0.0.3', pref=20)
        self.serve(self.mx1, wrong_name='other.example.test')
        self.publish(text=dict(mx=('mx1.example.test',)))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', 'mx2.example.test')
        self.assertNoMail(self.mx1)
        self.assertNoMail(self.mxs['mx2.example.test'])

    def test_wildcard_matches_one_label(self):
        """mx: *.example.test matches mx1.example.test."""
        self.publish(text=dict(mx=('*.example.test',)))
        out = self.send(RCPT)
        self.assertDelivered(out, self.mx1, 'mta-sts/enforce', verdict='Verified')

    def test_wildcard_not_two_labels(self):
        """mx: *.example.test does not match a.b.example.test (one label only)."""
        deep = self.add_mx('a.b', '127.0.0.3', pref=5)
        self.publish(text=dict(mx=('*.example.test',)))
        out = self.send(RCPT)
        # a.b.example.test (pref 5) is skipped; mx1 (pref 10) matches and gets it
        self.assertDelivered(out, self.mx1, 'mta-sts/enforce')
        self.assertNoMail(deep)

    def test_mx_match_case_insensitive(self):
        """Pattern and host names compare case-insensitively."""
        self.publish(text=dict(mx=('MX1.Example.TEST',)))
        self.assertDelivered(self.send(RCPT), self.mx1, 'mta-sts/enforce')

    def test_many_patterns_listed_40th(self):
        """A policy of 60 mx patterns (RFC 8461 sets no limit), mx2 the 40th: mx2 gets
        the message over verified TLS; mx1 (pref 10, not listed) is skipped."""
        mx2 = self.add_mx('mx2', '127.0.0.3', pref=20)
        others = ['mx%d.other.test' % i for i in range(59)]
        self.publish(text=dict(mx=others[:39] + ['mx2.example.test'] + others[39:]))
        out = self.send(RCPT)
        self.assertDelivered(out, mx2, 'mta-sts/enforce', verdict='Verified')
        self.assertNoMail(self.mx1)
        self.assertLog(r'mx1\.example\.test .*not listed in the MTA-STS policy')
        self.assertFalse(self.fetch_lines(failed=True), self.proxy.log_text())

    def test_many_patterns_unlisted_451(self):
        """A policy of 60 mx patterns, none of them mx1: enforced, 451 4.7.5."""
        self.publish(text=dict(mx=['mx%d.other.test' % i for i in range(60)]))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertReason(out, 'mx1.example.test', 'not listed in the MTA-STS policy')
        self.assertNoMail(self.mx1)


class Modes(StsCase):

    def test_testing_wrong_name_delivered(self):
        """testing: a failing check (wrong-name certificate) does not stop delivery:
        delivered, policy=mta-sts/testing."""
        self.serve(self.mx1, wrong_name='other.example.test')
        self.publish(text=dict(mode='testing'))
        self.assertDelivered(self.send(RCPT), self.mx1, 'mta-sts/testing')

    def test_testing_not_listed_delivered(self):
        """testing with mx1 not listed: delivered, policy=mta-sts/testing."""
        self.publish(text=dict(mode='testing', mx=('mx9.example.test',)))
        self.assertDelivered(self.send(RCPT), self.mx1, 'mta-sts/testing')

    def test_testing_valid_delivered(self):
        self.publish(text=dict(mode='testing'))
        self.assertDelivered(self.send(RCPT), self.mx1, 'mta-sts/testing')

    def test_mode_none_delivered(self):
        """mode none (no mx lines): nothing is enforced: delivered to mx1."""
        self.publish(text='version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n')
        out = self.send(RCPT)
        self.assertDelivered(out, self.mx1)
        line = self.assertLog(r'to=<%s>, relay=.*status=sent' % re.escape(RCPT))
        self.assertNotRegex(line.group(0), r'policy=mta-sts/(enforce|testing)')

    def test_lf_line_ends_accepted(self):
        """A policy with bare LF line ends is valid (§3.2)."""
        self.publish(text=dict(mx=('mx9.example.test',), eol='\n'))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertNoMail(self.mx1)

    def test_content_type_with_charset_accepted(self):
        """text/plain; charset=utf-8 is text/plain."""
        self.publish(text=UNLISTED, content_type='text/plain; charset=utf-8')
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertNoMail(self.mx1)


class Cache(StsCase):

    # The proxy parks MX connections for reuse by the next transaction to the same
    # domain (no new route, hence no TXT lookup); the cache tests start from
    # deferrals (no MX connection at all) so that every transaction is routed.

    def test_same_id_one_fetch(self):
        """Two transactions with the same TXT id: the TXT record is looked up once
        (the second answer comes from the DNS cache), the policy is fetched once; both
        use it."""
        self.publish('abc1', UNLISTED)
        self.assertDeferred(self.send(RCPT, message('one')), 'mx1.example.test')
        self.assertDeferred(self.send(RCPT, message('two')), 'mx1.example.test')
        self.assertEqual(self.dns.queried(self.txt_name(), 'TXT'), 1)
        self.assertEqual(self.https.fetches(DOMAIN), 1)
        self.assertEqual(len(self.fetch_lines(failed=False)), 1, self.proxy.log_text())
        self.assertNoMail(self.mx1)

    def test_same_id_delivered_twice(self):
        """A listed MX: two deliveries with policy=mta-sts/enforce, one fetch."""
        self.publish('abc2')
        self.assertDelivered(self.send(RCPT, message('one')), self.mx1, 'mta-sts/enforce')
        self.assertDelivered(self.send(RCPT, message('two')), self.mx1, 'mta-sts/enforce',
                             n=2)
        self.assertEqual(self.https.fetches(DOMAIN), 1)

    def test_new_id_refetch(self):
        """A cached policy is used while the id stays (a changed file is not seen);
        a new id makes the proxy fetch again and use the new policy."""
        self.publish('1', UNLISTED, ttl=1)
        self.assertDeferred(self.send(RCPT), 'mx1.example.test')
        self.https.set_policy(DOMAIN, policy_text())  # same id: not fetched
        self.assertDeferred(self.send(RCPT), 'mx1.example.test')
        self.assertEqual(self.https.fetches(DOMAIN), 1)
        self.assertNoMail(self.mx1)
        self.publish('2', ttl=1)
        out = self.send_until_txt_asked(self.dns.queried(self.txt_name(), 'TXT') + 1)
        self.assertEqual(self.https.fetches(DOMAIN), 2)
        self.assertDelivered(out, self.mx1, 'mta-sts/enforce')
        self.assertLog(r'mta-sts.*example\.test.*id=2\b')

    def test_new_id_fetch_fails_keeps_cached(self):
        """A new id whose fetch fails (404): the cached policy stays in force."""
        self.publish('1', UNLISTED, ttl=1)
        self.assertDeferred(self.send(RCPT), 'mx1.example.test')
        self.publish('2', None, ttl=1, status=404)
        out = self.send_until_txt_asked(2)
        self.assertEqual(self.https.fetches(DOMAIN), 2)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertFetchFailedLogged(DOMAIN)
        self.assertNoMail(self.mx1)

    def test_restart_https_down_still_enforced(self):
        """The key property: a cached enforce policy survives a restart of the proxy;
        with the policy server gone the restarted proxy still defers for an unlisted
        MX (a restart never reopens the trust-on-first-use window)."""
        self.publish('1', UNLISTED)
        self.assertDeferred(self.send(RCPT), 'mx1.example.test')
        self.assertEqual(self.https.fetches(DOMAIN), 1)
        self.https.stop()
        self.restart_proxy()
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertReason(out, 'mx1.example.test', 'not listed in the MTA-STS policy')
        self.assertNoMail(self.mx1)

    def test_restart_new_id_https_down_still_enforced(self):
        """After a restart a new id whose fetch cannot connect keeps the cached
        policy."""
        self.publish('1', UNLISTED)
        self.assertDeferred(self.send(RCPT), 'mx1.example.test')
        self.https.stop()
        self.restart_proxy()
        self.set_txt(['v=STSv1; id=2'])
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertNoMail(self.mx1)

    def test_restart_same_id_no_refetch(self):
        """After a restart the same id is served from the sqlite cache: no fetch."""
        self.publish('1')
        self.assertDelivered(self.send(RCPT), self.mx1, 'mta-sts/enforce')
        self.restart_proxy()
        self.assertDelivered(self.send(RCPT), self.mx1, 'mta-sts/enforce', n=2)
        self.assertEqual(self.https.fetches(DOMAIN), 1)

    @proxy_config({'mta_sts': {'cache_entries': 1}, 'log': {'level': 'debug'}})
    def test_dropped_from_memory_still_enforced(self):
        """mta_sts.cache_entries: 1. An enforce policy dropped from memory (another
        domain looked up) is read back from the state_dir file on its next lookup:
        with the policy server gone, the unlisted MX is still refused. A bounded
        cache never reopens the trust-on-first-use window."""
        self.publish('1', UNLISTED)
        self.assertDeferred(self.send(RCPT), 'mx1.example.test')
        self.assertEqual(self.https.fetches(DOMAIN), 1)
        self.https.stop()
        self.send('rcpt@two.test')  # its lookup takes the only place in memory
        self.assertLog(r'mta-sts: example\.test: dropped from memory \(1 domains held\)')
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertReason(out, 'mx1.example.test', 'not listed in the MTA-STS policy')
        self.assertLog(r'mta-sts: two\.test: dropped from memory')
        self.assertNoMail(self.mx1)
        self.assertEqual(self.https.fetches(DOMAIN), 1)

    def test_txt_servfail_cached_still_enforced(self):
        """TXT SERVFAIL with a cached policy: still enforced, no fetch."""
        self.publish('1', UNLISTED, ttl=1)
        self.assertDeferred(self.send(RCPT), 'mx1.example.test')
        self.dns.servfail(self.txt_name(), 'TXT')
        out = self.send_until_txt_asked(2)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertEqual(self.https.fetches(DOMAIN), 1)
        self.assertNoMail(self.mx1)

    def test_txt_gone_cached_still_enforced(self):
        """The TXT record removed while a cached policy is valid: still enforced
        (§5.1: the record's absence does not end a cached policy)."""
        self.publish('1', UNLISTED, ttl=1)
        self.assertDeferred(self.send(RCPT), 'mx1.example.test')
        self.set_txt([])
        out = self.send_until_txt_asked(2)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertNoMail(self.mx1)

    @proxy_config({'outbound': {'connection_cache_time': 0}})
    def test_failed_fetch_new_id_fetched_at_once(self):
        """A fetch that failed (404, nothing cached) is not retried for that id for a
        while, but a new id is fetched at once (§3.3: the back-off is per version
        id): the repaired policy applies as soon as its id is seen."""
        self.publish('1', None, ttl=1, status=404)
        self.assertNoPolicy(self.send(RCPT))
        self.publish('2', UNLISTED, ttl=1)
        out = self.send_until_txt_asked(2)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertEqual(self.https.fetches(DOMAIN), 2)

    def test_max_age_zero_applies_not_cached(self):
        """max_age 0 (§3.2 allows 0..31557600): the policy fetched for a message is
        the one applied to it (§5.1), and it is not cached: the next message fetches
        it again."""
        self.publish('1', dict(UNLISTED, max_age=0))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertReason(out, 'mx1.example.test', 'not listed in the MTA-STS policy')
        self.assertDeferred(self.send(RCPT), 'mx1.example.test')
        self.assertEqual(self.https.fetches(DOMAIN), 2)
        self.assertNoMail(self.mx1)

    def test_mode_none_new_id_ends_enforcement(self):
        """§8.3: a domain leaves MTA-STS by publishing mode none under a new id: the
        cached enforce policy is replaced and mail goes on without it."""
        self.publish('1', UNLISTED, ttl=1)
        self.assertDeferred(self.send(RCPT), 'mx1.example.test')
        self.publish('2', 'version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n', ttl=1)
        out = self.send_until_txt_asked(2)
        self.assertNoPolicy(out)
        self.assertEqual(self.https.fetches(DOMAIN), 2)

    def test_no_cache_fetch_fails_no_policy(self):
        """No cached policy and the policy server down: no policy, delivered."""
        self.publish('1', UNLISTED)
        self.https.stop()
        out = self.send(RCPT)
        self.assertNoPolicy(out)
        self.assertFetchFailedLogged(DOMAIN)
        self.assertNotCached()


class CacheBound(StsCase):
    """The memory cache holds at most mta_sts.cache_entries domains, whatever the mail
    flow: a stream of distinct recipient domains without a policy (no _mta-sts TXT:
    NXDOMAIN) leaves the proxy's resident memory flat."""

    proxy_extra = {'mta_sts': {'cache_entries': 100}}
    WARMUP = 300
    DOMAINS = 2000
    # 100 entries of ~110 bytes are nothing; the slack is for the allocator and the
    # sessions. Without the bound each domain kept an 8.5 KB entry (2000: ~20 MB).
    GROWTH_MAX_KB = 4096

    def route_domains(self, start, n, batch=100):
        """Routes N distinct domains d<i>.bound.test from START: MAIL, RCPT, RSET
        pipelined, BATCH transactions per connection. Each domain's MX host has no
        address, so every RCPT is refused without a connection, after the route
        has its MTA-STS answer (an MX NXDOMAIN would end the route first)."""
        for i in range(start, start + n):
            self.dns.add('d%d.bound.test' % i, 'MX', (10, 'nowhere.bound.test'))
        for b in range(start, start + n, batch):
            c = self.client()
            lines = []
            for i in range(b, min(b + batch, start + n)):
                lines += ['MAIL FROM:<s@client.test>', 'RCPT TO:<r@d%d.bound.test>' % i,
                          'RSET']
            replies = c.pipeline(lines, timeout=30)
            for rcpt in replies[1::3]:
                self.assertIn(rcpt[0] // 100, (4, 5), rcpt)
            c.cmd('QUIT')
            c.close()
        last = start + n - 1
        self.assertGreaterEqual(self.dns.queried('_mta-sts.d%d.bound.test' % last,
                                                 'TXT'), 1)

    def test_distinct_domains_memory_flat(self):
        self.route_domains(0, self.WARMUP)
        before = self.proxy.rss_kb()
        self.route_domains(self.WARMUP, self.DOMAINS)
        after = self.proxy.rss_kb()
        sys.stderr.write('\n  proxy VmRSS after %d domains: %d kB, after %d more: %d kB '
                         '(+%d kB)\n' % (self.WARMUP, before, self.DOMAINS, after,
                                         after - before))
        if not is_asan_build():  # ASan's quarantine keeps freed memory resident
            self.assertLess(after - before, self.GROWTH_MAX_KB)
        self.assertTrue(self.proxy.running())


class FetchFailures(StsCase):
    """Each policy host misbehaves; the policy (enforce, mx1 unlisted) must not be
    accepted: delivered as at may, the failure logged, nothing cached."""

    def check_no_policy(self, *words, fetched=True):
        out = self.send(RCPT)
        self.assertNoPolicy(out)
        self.assertFetchFailedLogged(DOMAIN, *words)
        if fetched:
            self.assertEqual(self.https.fetches(DOMAIN), 1)
        self.assertNotCached()

    def test_http_404(self):
        self.publish('1', UNLISTED, status=404)
        self.check_no_policy('404')

    def test_http_500(self):
        self.publish('1', UNLISTED, status=500)
        self.check_no_policy('500')

    def test_content_type_html(self):
        self.publish('1', UNLISTED, content_type='text/html')
        self.check_no_policy()

    def test_no_content_type(self):
        self.publish('1', UNLISTED, content_type=None)
        self.check_no_policy()

    def test_redirect_not_followed(self):
        """301 to another policy host that serves a valid policy: not followed."""
        target = 'https://mta-sts.other.test:%d/.well-known/mta-sts.txt' % self.https.port
        self.https.set_policy('other.test', policy_text(**UNLISTED))
        self.publish('1', UNLISTED, redirect=target)
        self.check_no_policy()
        self.assertEqual(self.https.fetches('other.test'), 0)

    def test_oversize(self):
        """A well-formed policy padded past 64 KiB with unknown keys: refused."""
        pad = ['x-pad%d: %s' % (i, 'a' * 1000) for i in range(70)]
        text = policy_text(extra=pad, **UNLISTED)
        self.assertGreater(len(text), 65536)
        self.publish('1', text)
        self.check_no_policy()

    def test_wrong_name_cert(self):
        """The policy host's certificate names another host: no request is made."""
        self.https.set_cert(DOMAIN, *self.pki.issue('mta-sts.example.test',
                                                    wrong_name='www.example.test'))
        self.publish('1', UNLISTED)
        self.check_no_policy(fetched=False)
        self.assertEqual(self.https.fetches(DOMAIN), 0)

    def test_untrusted_cert(self):
        """A self-signed certificate for the right name: not trusted."""
        self.https.set_cert(DOMAIN, *self.pki.issue('mta-sts.example.test',
                                                    self_signed=True))
        self.publish('1', UNLISTED)
        self.check_no_policy(fetched=False)
        self.assertEqual(self.https.fetches(DOMAIN), 0)

    def test_expired_cert(self):
        self.https.set_cert(DOMAIN, *self.pki.issue('mta-sts.example.test', expired=True))
        self.publish('1', UNLISTED)
        self.check_no_policy(fetched=False)

    def test_timeout(self):
        """The answer comes after fetch_timeout (2 s): given up, no policy."""
        self.publish('1', UNLISTED, delay=8)
        self.check_no_policy()

    def test_invalid_policy_syntax(self):
        """version missing: not a policy."""
        self.publish('1', 'mode: enforce\r\nmx: mx9.example.test\r\nmax_age: 86400\r\n')
        self.check_no_policy()

    def test_bad_mode(self):
        self.publish('1', policy_text(mode='strict', mx=('mx9.example.test',)))
        self.check_no_policy()

    def test_no_policy_host_address(self):
        """mta-sts.example.test does not resolve: no policy."""
        self.dns.remove('mta-sts.%s' % DOMAIN)
        self.publish('1', UNLISTED)
        out = self.send(RCPT)
        self.assertNoPolicy(out)
        self.assertEqual(self.https.fetches(DOMAIN), 0)
        self.assertNotCached()


class NonGlobalPolicyHost(StsCase):
    """mta_sts.allow_private_addresses: no (the default; the other tests allow their
    loopback fixture): mta-sts.example.test resolves to 127.0.0.1, where the proxy
    must never connect, since a destination's DNS would otherwise aim its fetches at
    the operator's own network. A refused fetch is a failed fetch: no policy when none
    is cached, the cached one when there is."""

    def start_the_proxy(self, extra=None):
        return super().start_the_proxy(deep_merge(
            {'mta_sts': {'allow_private_addresses': 'no'}}, extra))

    def assertRefusedLogged(self):
        self.assertFetchFailedLogged(DOMAIN, 'refused non-global address 127.0.0.1',
                                     '(mta_sts.allow_private_addresses: no)')

    def test_no_cache_refused_no_policy(self):
        self.publish('1', UNLISTED)
        out = self.send(RCPT)
        self.assertNoPolicy(out)
        self.assertRefusedLogged()
        self.assertEqual(self.https.connections, 0)
        self.assertNotCached()

    def test_refused_refetch_keeps_cached_policy(self):
        """Policy id=1 (mx1 unlisted) cached while loopback was allowed; after a
        restart with the default, id=2 (mx1 listed) is announced: its fetch is refused
        without a connection, and id=1 still defers."""
        self.restart_proxy({'mta_sts': {'allow_private_addresses': 'yes'}})
        self.publish('1', UNLISTED)
        self.assertDeferred(self.send(RCPT), 'mx1.example.test')
        self.assertEqual(self.https.fetches(DOMAIN), 1)
        self.restart_proxy()
        connections = self.https.connections
        self.publish('2')
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertReason(out, 'mx1.example.test', 'not listed in the MTA-STS policy')
        self.assertRefusedLogged()
        self.assertLog(r'mta-sts: example\.test: keeping the cached policy id=1')
        self.assertEqual(self.https.connections, connections)
        self.assertNoMail(self.mx1)


class Txt(StsCase):

    def test_two_sts_records_no_policy(self):
        """Two v=STSv1 TXT records: invalid, no policy, no fetch."""
        self.https.set_policy(DOMAIN, policy_text(**UNLISTED))
        self.set_txt(['v=STSv1; id=1', 'v=STSv1; id=2'])
        self.assertNoPolicy(self.send(RCPT))
        self.assertEqual(self.https.fetches(DOMAIN), 0)

    def test_other_txt_records_ignored(self):
        """Records not starting with v=STSv1; are discarded; the remaining one is
        used."""
        self.https.set_policy(DOMAIN, policy_text(**UNLISTED))
        self.set_txt(['v=spf1 -all', 'v=STSv1; id=7', 'v=STSv10; id=8'])
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertEqual(self.https.fetches(DOMAIN), 1)

    def test_split_txt_strings_joined(self):
        """A record of several character strings is read as their concatenation."""
        self.https.set_policy(DOMAIN, policy_text(**UNLISTED))
        self.set_txt([['v=STSv1; ', 'id=split1']])
        self.assertDeferred(self.send(RCPT), 'mx1.example.test')
        self.assertEqual(self.https.fetches(DOMAIN), 1)

    def test_bad_id_chars_no_policy(self):
        """An id with a non-alphanumeric character: invalid, no fetch."""
        self.https.set_policy(DOMAIN, policy_text(**UNLISTED))
        self.set_txt(['v=STSv1; id=abc-def'])
        self.assertNoPolicy(self.send(RCPT))
        self.assertEqual(self.https.fetches(DOMAIN), 0)

    def test_id_too_long_no_policy(self):
        """An id of 33 characters: invalid, no fetch (32 is the limit)."""
        self.https.set_policy(DOMAIN, policy_text(**UNLISTED))
        self.set_txt(['v=STSv1; id=%s' % ('a' * 33)])
        self.assertNoPolicy(self.send(RCPT))
        self.assertEqual(self.https.fetches(DOMAIN), 0)

    def test_id_32_chars_ok(self):
        """An id of exactly 32 alphanumerics is valid."""
        self.https.set_policy(DOMAIN, policy_text(**UNLISTED))
        self.set_txt(['v=STSv1; id=%s' % ('A1' * 16)])
        self.assertDeferred(self.send(RCPT), 'mx1.example.test')
        self.assertEqual(self.https.fetches(DOMAIN), 1)

    def test_missing_id_no_policy(self):
        self.https.set_policy(DOMAIN, policy_text(**UNLISTED))
        self.set_txt(['v=STSv1;'])
        self.assertNoPolicy(self.send(RCPT))
        self.assertEqual(self.https.fetches(DOMAIN), 0)

    def test_no_txt_no_fetch(self):
        """No _mta-sts record: no policy, the policy host is never asked."""
        self.https.set_policy(DOMAIN, policy_text(**UNLISTED))
        self.assertNoPolicy(self.send(RCPT))
        self.assertEqual(self.https.fetches(DOMAIN), 0)
        self.assertEqual(self.https.connections, 0)


class Precedence(StsCase):

    def test_policy_table_entry_wins(self):
        """A policy.table entry (may) for the domain: MTA-STS is not used."""
        self.restart_proxy({'policy': {'table': {DOMAIN: 'may'}}})
        self.publish('1', UNLISTED)
        out = self.send(RCPT)
        self.assertDelivered(out, self.mx1, 'table/may')
        self.assertEqual(self.https.fetches(DOMAIN), 0)

    def test_failing_dane_is_not_rescued(self):
        """DANE applies to mx1 and its TLSA record does not match the certificate,
        while the MTA-STS enforce policy lists mx1 and its certificate is PKIX-valid:
        451 4.7.5, no MAIL at mx1 (RFC 8461 §2: DANE wins, and a failed DANE check is
        never rescued by MTA-STS)."""
        self.dns.ad = True
        other = self.pki.issue('unrelated.example.test')[0]
        self.dns.add('_%d._tcp.mx1.example.test' % self.mx_port, 'TLSA',
                     self.pki.tlsa(other, 3, 1, 1))
        self.restart_proxy({'outbound': {'tls': {'default_level': 'dane'}}})
        self.publish('1')
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertNoMail(self.mx1)

    def test_dane_wins(self):
        """DANE applies to mx1 (signed answers, a matching TLSA record, default level
        dane): delivered with policy=dane although the enforce policy does not list
        mx1."""
        self.dns.ad = True
        cert = self.mx1.cfg['starttls'][0]
        self.dns.add('_%d._tcp.mx1.example.test' % self.mx_port, 'TLSA',
                     self.pki.tlsa(cert, 3, 1, 1))
        self.restart_proxy({'outbound': {'tls': {'default_level': 'dane'}}})
        self.publish('1', UNLISTED)
        out = self.send(RCPT)
        self.assertDelivered(out, self.mx1, 'dane')

    def test_disabled(self):
        """mta_sts.enabled: no: the TXT record is not even looked up."""
        self.restart_proxy({'mta_sts': {'enabled': 'no'}})
        self.publish('1', UNLISTED)
        self.assertNoPolicy(self.send(RCPT))
        self.assertEqual(self.https.fetches(DOMAIN), 0)
        self.assertEqual(self.dns.queried(self.txt_name(), 'TXT'), 0)

    def test_other_domain(self):
        """Per domain: two.test has an enforce policy naming its own MX (delivered),
        example.test has none (delivered, no policy)."""
        mx2 = self.add_mx('mx2', '127.0.0.3', domain='two.test')
        self.publish('t1', dict(mx=('mx2.two.test',)), domain='two.test')
        out = self.send('rcpt@two.test')
        self.assertReply(out['data'], 250)
        self.assertEqual(mx2.wait_messages(1)[0].tls_version, 'TLSv1.3')
        self.assertLog(r'(?m)to=<rcpt@two\.test>, relay=mx2\.two\.test.*status=sent .*, '
                       r'policy=mta-sts/enforce$')
        self.assertNoPolicy(self.send(RCPT))
        self.assertEqual(self.https.fetches('two.test'), 1)
        self.assertEqual(self.https.fetches(DOMAIN), 0)


class Cli(StsCase):

    def test_show_and_purge(self):
        """policy show prints the cached id and policy text (exit 0); an unknown domain
        exits 1; policy purge exits 0 and the domain is gone afterwards."""
        self.publish('cli42')
        self.assertDelivered(self.send(RCPT), self.mx1, 'mta-sts/enforce')
        r = self.cli('show', DOMAIN)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('id:', r.stdout)
        self.assertIn('cli42', r.stdout)
        self.assertIn('mode: enforce', r.stdout)
        self.assertIn('mx1.example.test', r.stdout)
        r = self.cli('show', 'unknown.test')
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        r = self.cli('purge', DOMAIN)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = self.cli('show', DOMAIN)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)

    def test_show_after_stop(self):
        """The cache is on disk: show works with the proxy stopped."""
        self.publish('disk1', UNLISTED)
        self.assertDeferred(self.send(RCPT), 'mx1.example.test')
        self.proxy.stop()
        r = self.cli('show', DOMAIN)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('disk1', r.stdout)
        self.assertIn('mx9.example.test', r.stdout)


if __name__ == '__main__':
    main()
