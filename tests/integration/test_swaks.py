#!/usr/bin/python3
"""swaks as a real SMTP client of the proxy."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestBase, main, split_received  # noqa: E402


class Swaks(TestBase):

    def swaks(self, *args):
        cmd = ['swaks', '--server', '127.0.0.1:%d' % self.proxy.port,
               '--from', 'sender@client.test', '--helo', 'swaks.test',
               '--timeout', '30'] + list(args)
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=120)
        return p.returncode, p.stdout.decode('utf-8', 'replace')

    def test_swaks_pipeline(self):
        """swaks --pipeline: exit 0, the MX gets the message over TLS 1.3."""
        rc, out = self.swaks('--to', 'x@example.test', '--pipeline',
                             '--header', 'Subject: swaks pipelined')
        self.assertEqual(rc, 0, out)
        m = self.mx1.wait_messages(1)[0]
        self.assertEqual((m.mail_from, m.rcpts), ('sender@client.test', ['x@example.test']))
        self.assertEqual(m.tls_version, 'TLSv1.3')
        self.assertIn(b'Subject: swaks pipelined', m.data)
        self.assertIn(m.session.replies[-1][1], out)  # the MX's final reply text

    def test_swaks_two_recipients_dot_lines(self):
        """Without pipelining, two recipients, a body with dot lines."""
        body = 'first\n.\n..two\n.three\nlast'
        rc, out = self.swaks('--to', 'a@example.test,b@example.test', '--body', body)
        self.assertEqual(rc, 0, out)
        m = self.mx1.wait_messages(1)[0]
        self.assertEqual(m.rcpts, ['a@example.test', 'b@example.test'])
        rest = split_received(m.data)[1]
        self.assertIn(b'\r\nfirst\r\n.\r\n..two\r\n.three\r\nlast\r\n', rest)


if __name__ == '__main__':
    main()
