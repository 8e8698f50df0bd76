"""Idle MX connections are reused by later inbound connections to the same domain
(outbound.connection_cache_time), and expire when idle. The cache keeps as many as the
destination's concurrency needed (not a fixed few), within the per-domain and total
bounds, hands out the most recently parked one, and never hands a connection judged
under one policy to a transaction under another."""
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness.util import TestBase, proxy_config, wait_until  # noqa: E402


def deliver(test, rcpt='bob@example.test'):
    """One message on a new inbound session, then QUIT and the proxy closes."""
    finish(test, hold(test, rcpt), 'cached', closed=True)


def hold(test, rcpt='bob@example.test'):
    """An inbound session stopped after RCPT TO: it holds its own MX connection."""
    return test.begin_transaction(rcpt=rcpt)


def finish(test, c, tag='held', closed=False):
    """DATA, the message (Subject: TAG), 250, QUIT, 221 on C; then CLOSED: the proxy
    closes the connection, else the client does."""
    test.assertEqual(c.cmd('DATA')[0], 354)
    c.send_raw(('Subject: %s\r\n\r\nbody\r\n.\r\n' % tag).encode())
    test.assertEqual(c.read_reply()[0], 250)
    test.assertEqual(c.cmd('QUIT')[0], 221)
    if closed:
        c.expect_closed()
    c.close()


def burst(test, n, rcpt='bob@example.test'):
    """N inbound sessions to one destination at once, each holding an MX connection
    until all have one; then each delivers and quits, in the order they came."""
    held = [hold(test, rcpt) for _ in range(n)]
    for c in held:
        finish(test, c)


class ConnectionCache(TestBase):
    @proxy_config({'outbound': {'connection_cache_time': 30}})
    def test_second_inbound_connection_reuses_mx_connection(self):
        deliver(self)
        deliver(self)
        deliver(self)
        self.mx1.wait_messages(3)
        self.assertEqual(self.mx1.connections, 1)
        # One TLS handshake for three messages from three inbound connections.
        self.assertEqual(self.proxy.log_text().count('TLS connection established'), 1)
        self.assertEqual(self.proxy.log_text().count('status=sent'), 3)

    @proxy_config({'outbound': {'connection_cache_time': 1}})
    def test_idle_connection_expires_with_quit(self):
        deliver(self)
        wait_until(lambda: any('QUIT' in c.upper() for c in self.mx1.all_commands()),
                   10, 'the idle MX connection was never closed with QUIT')
        deliver(self)
        self.mx1.wait_messages(2)
        self.assertEqual(self.mx1.connections, 2)

    @proxy_config({'outbound': {'connection_cache_time': 30}, 'log': {'level': 'debug'}})
    def test_sigterm_closes_idle_mx_connections_with_quit(self):
        """At SIGTERM a parked MX connection and one an idle inbound session still
        keeps between its transactions are both closed politely: QUIT, not a reset."""
        deliver(self)                       # parked in the cache
        c = hold(self)                      # takes the parked one
        other = hold(self)                  # a second MX connection
        finish(self, other)                 # ... parked
        self.assertEqual(c.cmd('RSET')[0], 250)  # c keeps its MX connection, idle
        # ... once the MX answered the RSET the proxy sent it (debug log: each reply).
        self.proxy.wait_log(r'smtp\[\d+\]: (?:\S+: )?< mx1\.example\.test\[127\.0\.0\.2\]:\d+: '
                            r'250 2\.0\.0 Ok$', flags=re.M)
        self.mx1.wait_messages(2)
        self.assertEqual(self.mx1.connections, 2)
        self.proxy.stop()
        wait_until(lambda: sum(any(cmd.upper().startswith('QUIT') for cmd in s.commands)
                               for s in self.mx1.sessions) == 2,
                   10, 'not every idle MX connection got QUIT')
        self.assertFalse(any(s.reset for s in self.mx1.sessions))

    @proxy_config({'outbound': {'connection_cache_time': 0}})
    def test_disabled(self):
        deliver(self)
        deliver(self)
        self.mx1.wait_messages(2)
        self.assertEqual(self.mx1.connections, 2)

    @proxy_config({'outbound': {'connection_cache_time': 30}})
    def test_mx_closing_a_parked_connection_is_harmless(self):
        """The MX drops the idle connection while it is parked: the next message opens
        a new one and is delivered; nothing is lost or doubled."""
        self.mx1.configure(idle_timeout=0.3)
        deliver(self)
        self.proxy.wait_log(r'connection lost: connection closed by server')
        deliver(self)
        self.mx1.wait_messages(2)
        self.assertEqual(len(self.mx1.messages), 2)
        self.assertEqual(self.mx1.connections, 2)

    @proxy_config({'outbound': {'connection_cache_time': 60}})
    def test_keeps_as_many_idle_as_the_concurrency_needed(self):
        """Twelve sessions at once to one destination, then idle: all twelve MX
        connections are kept (the old fixed bound was eight), so the next burst of
        twelve opens no new connection."""
        burst(self, 12)
        self.mx1.wait_messages(12)
        self.assertEqual(self.mx1.connections, 12)
        burst(self, 12)
        self.mx1.wait_messages(24)
        self.assertEqual(self.mx1.connections, 12)
        self.assertEqual(self.proxy.log_text().count('TLS connection established'), 12)

    @proxy_config({'outbound': {'connection_cache_time': 60,
                                'connection_cache_per_domain': 3}})
    def test_per_domain_bound(self):
        burst(self, 6)
        self.mx1.wait_messages(6)
        self.assertEqual(self.mx1.connections, 6)
        # Three were kept: a second burst of six opens three.
        burst(self, 6)
        self.mx1.wait_messages(12)
        self.assertEqual(self.mx1.connections, 9)

    @proxy_config({'outbound': {'connection_cache_time': 60}})
    def test_hands_out_the_most_recently_parked_connection(self):
        held = [hold(self) for _ in range(3)]
        for c in held:  # parked in order: MX sessions 0, 1, 2
            finish(self, c)
        for _ in range(2):
            deliver(self)
        self.mx1.wait_messages(5)
        self.assertEqual(self.mx1.connections, 3)
        self.assertEqual([len(s.messages) for s in self.mx1.sessions], [1, 1, 3])

    @proxy_config({'outbound': {'connection_cache_time': 60}})
    def test_a_reload_with_a_stronger_policy_never_takes_a_weaker_connection(self):
        """A connection made at level may (Untrusted would do) is parked; after a
        reload that raises the destination to verify, the next transaction opens a new
        connection and judges it (Verified), rather than taking the parked one."""
        deliver(self)
        self.proxy.wait_log(r'policy=default/may')
        self.proxy.write_config({'outbound': {'connection_cache_time': 60},
                                 'policy': {'table': {'example.test': 'verify'}}})
        self.proxy.reload()
        self.proxy.wait_log(r'configuration reloaded')
        deliver(self)
        self.mx1.wait_messages(2)
        self.assertEqual(self.mx1.connections, 2)
        self.proxy.wait_log(r'policy=table/verify')
        self.assertEqual([len(s.messages) for s in self.mx1.sessions], [1, 1])
        # And the verify transaction's connection is the one kept for verify.
        deliver(self)
        self.mx1.wait_messages(3)
        self.assertEqual(self.mx1.connections, 2)
        self.assertEqual([len(s.messages) for s in self.mx1.sessions], [1, 2])


class ConnectionCacheTwoDomains(TestBase):
    """example.test and other.test, each with its own MX."""

    def setup_fixtures(self):
        super().setup_fixtures()
        self.mx2 = self.add_mx('mx2', '127.0.0.3', domain='other.test')

    @proxy_config({'outbound': {'connection_cache_time': 60,
                                'connection_cache_size': 4}})
    def test_total_bound_drops_the_oldest(self):
        """Three at once to each domain, example.test's parked first: the bound of
        four keeps the newest four (one to example.test, three to other.test), so the
        next bursts (other.test first) open two new connections, both to
        example.test."""
        burst(self, 3)
        burst(self, 3, 'bob@other.test')
        self.mx1.wait_messages(3)
        self.mx2.wait_messages(3)
        burst(self, 3, 'bob@other.test')
        burst(self, 3)
        self.mx1.wait_messages(6)
        self.mx2.wait_messages(6)
        self.assertEqual((self.mx1.connections, self.mx2.connections), (5, 3))


if __name__ == '__main__':
    unittest.main()
