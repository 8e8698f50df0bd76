"""Idle MX connections are reused by later inbound connections to the same domain
(outbound.connection_cache_time), and expire when idle."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness.util import TestBase, proxy_config, wait_until  # noqa: E402


def deliver(test, rcpt='bob@example.test'):
    c = test.client()
    test.assertEqual(c.cmd('MAIL FROM:<alice@client.test>')[0], 250)
    test.assertEqual(c.cmd('RCPT TO:<%s>' % rcpt)[0], 250)
    test.assertEqual(c.cmd('DATA')[0], 354)
    c.send_raw(b'Subject: cached\r\n\r\nbody\r\n.\r\n')
    test.assertEqual(c.read_reply()[0], 250)
    test.assertEqual(c.cmd('QUIT')[0], 221)
    c.expect_closed()


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

if __name__ == '__main__':
    unittest.main()
