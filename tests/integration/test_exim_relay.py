#!/usr/bin/python3
"""A real Exim (Debian's exim4-daemon-light 4.96, extracted into a private directory,
see harness/exim.py) uses the proxy as its smarthost: the README's Exim recipe, with
the fixtures of harness/relay.py, which skips the tests, with the reason, where the
package cannot be fetched or run. Measures how Exim reacts to the proxy's 452 4.5.3
for a second recipient domain."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness.exim import Exim  # noqa: E402
from harness.relay import RelayCase  # noqa: E402
from harness.util import main  # noqa: E402


class EximRelay(RelayCase):
    mta_class = Exim

    def test_delivers_over_tls(self):
        ex = self.start_mta()
        self.submit(ex, 'bob@example.test')
        line = ex.wait_log(r'=> bob@example\.test .*C="250 2\.0\.0').group(0)
        self.assertIn('H=127.0.0.1 [127.0.0.1]:%d' % self.proxy.port, line)
        msg = self.mx1.wait_messages(1)[0]
        self.assertIn(b'with esmtp (Exim 4.', msg.data)
        self.assertRelayedOverTls(msg)

    def test_rejection_bounces(self):
        self.mx1.configure(rcpt=(550, '5.1.1 no such user'))
        ex = self.start_mta()
        self.submit(ex, 'nobody@example.test')
        line = ex.wait_log(r'\*\* nobody@example\.test .*$').group(0)
        self.assertIn('550 5.1.1 no such user', line)

    def test_second_domain_452(self):
        """Exim gets 452 4.5.3 for carol@other.test in bob@example.test's transaction.
        Measured: right after bob's 250 it sends MAIL FROM and carol's RCPT again on
        the same connection (Exim's '*' in the log, and one proxy session); no queue
        run is involved."""
        ex = self.start_mta()
        self.submit(ex, 'bob@example.test', 'carol@other.test')
        ex.wait_log(r'=> carol@other\.test ', timeout=60)
        bob = [a for a in ex.attempts('bob@example.test') if a['kind'] == '=>'][0]
        carol = ex.attempts('carol@other.test')
        first = carol[0]
        self.assertTrue(first['continued'], first['line'])
        self.assertLess(first['time'] - bob['time'], 1.0)
        carol_sessions = self.sessions_with(re.escape('RCPT TO:<carol@other.test>'))
        self.assertEqual(carol_sessions[0], self.sessions_with(
            re.escape('RCPT TO:<bob@example.test>'))[0])
        self.assertGreaterEqual(len(self.mx_other.messages), 1)
        self.assertEqual(self.mx_other.messages[0].rcpts, ['carol@other.test'])
        delivered = [a for a in carol if a['kind'] == '=>'][0]
        print('exim: 452 4.5.3 recipient retried on the same connection %.3f s after the '
              'first delivery (%s); delivered %.3f s after it, after %d attempt(s)'
              % (first['time'] - bob['time'],
                 'delivered' if first['kind'] == '=>' else 'that attempt failed: '
                 + first['line'].rpartition(': ')[2],
                 delivered['time'] - bob['time'], len(carol)), file=sys.stderr)

    def test_quit_pipelined_and_half_closed(self):
        """Known bug (proxy/inbound/session.c): Exim pipelines QUIT after the final dot of the
        last message on a connection and then half-closes (shutdown SHUT_WR). The
        proxy treats that EOF, while it still awaits the MX's reply to the dot, as a
        lost connection and resets the MX connection: Exim defers, and an MX that had
        already accepted the message gets it again on the retry. With an MX slow to
        answer the dot (1 s here) this happens every time."""
        self.mx1.configure(delay_at=('data_end', 1), fault_connections=1)
        ex = self.start_mta()
        self.submit(ex, 'bob@example.test')
        ex.wait_log(r'(=>|==) bob@example\.test ')
        self.assertEqual([a['kind'] for a in ex.attempts('bob@example.test')], ['=>'])


if __name__ == '__main__':
    main()
