#!/usr/bin/python3
"""The proxy dies or restarts while mail flows, and nothing is lost or doubled: the
MTA only ever sees 250 for a message the MX accepted, so whatever it did not see
250 for it sends again, and the MX ends with each message exactly once."""

import collections
import os
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Client, TestBase, is_asan_build, main  # noqa: E402

MSGID = re.compile(rb'^Message-ID: <([^>]+)>', re.M | re.I)


def msgids(mx):
    """Counter of the Message-IDs of every message the MX holds."""
    out = collections.Counter()
    for m in list(mx.messages):
        found = MSGID.search(m.data if m.data is not None else m.head)
        out[found.group(1).decode() if found else None] += 1
    return out


def body(i, tag, kb=4):
    """Message I of kind TAG, about KB KiB, with Message-ID <TAG-I@client.test>."""
    head = ('From: <sender@client.test>\r\nTo: <rcpt@example.test>\r\n'
            'Subject: %s %d\r\nMessage-ID: <%s-%d@client.test>\r\n\r\n' % (tag, i, tag, i))
    line = '%s %d ' % (tag, i) + 'x' * 70 + '\r\n'
    return (head + line * max(1, kb * 1024 // len(line))).encode()


class Sender(threading.Thread):
    """Sends each message of its share until it gets 250, over one reused
    connection, reconnecting after any fault, like an MTA's queue runner: a 4xx, a
    closed or refused connection or a timeout means "try again"; a 5xx is a
    failure. Bounded by a deadline and an attempt count per message."""

    def __init__(self, port, items, deadline, stop):
        super().__init__(daemon=True)
        self.port, self.items, self.deadline, self.stop = port, items, deadline, stop
        self.delivered = []  # (i, attempts)
        self.faults = collections.Counter()  # what made a retry necessary
        self.failures = []
        self.client = None

    def _drop(self):
        if self.client is not None:
            self.client.close()
            self.client = None

    def _attempt(self, i, data):
        """One try; returns None on 250, else the reason for a retry."""
        try:
            if self.client is None:
                self.client = Client(self.port, timeout=20)
                if self.client.read_reply()[0] != 220:
                    return 'greeting'
                if self.client.cmd('EHLO client.test')[0] != 250:
                    return 'ehlo'
            out = self.client.send_message('sender@client.test', ['rcpt@example.test'],
                                           data)
        except (AssertionError, OSError) as e:  # Closed, Timeout, refused, reset
            return 'connection: %s' % type(e).__name__
        replies = [out['mail']] + out['rcpt'] + ([out['data']] if out['data'] else [])
        last = replies[-1][0]
        if last == 250 and out['data'] is not None:
            return None
        if any(r[0] >= 500 for r in replies):
            self.failures.append((i, replies))
            return 'fatal'
        try:
            self.client.cmd('RSET')
        except (AssertionError, OSError):
            self._drop()
        return 'reply %d' % last

    def run(self):
        for i in self.items:
            data = body(i, 'load')
            for attempt in range(1, 501):
                if time.monotonic() > self.deadline:
                    self.failures.append((i, 'deadline'))
                    return
                why = self._attempt(i, data)
                if why is None:
                    self.delivered.append((i, attempt))
                    break
                if why == 'fatal':
                    break
                self.faults[why.split(':')[0]] += 1
                self._drop()
                self.stop.wait(0.02)  # the MTA's retry interval, shortened
            else:
                self.failures.append((i, 'too many attempts'))
        self._drop()


class Crash(TestBase):

    def test_sigkill_mid_data_then_resend(self):
        """SIGKILL while the body streams: the client gets no reply at all, only
        the connection drop; the MX's session ends without the final dot and it
        holds nothing. A new proxy on the same config (and state) starts, and the
        client's resend is delivered exactly once."""
        c = self.client()
        self.assertReply(c.cmd('MAIL FROM:<sender@client.test>'), 250)
        self.assertReply(c.cmd('RCPT TO:<rcpt@example.test>'), 250)
        self.assertReply(c.cmd('DATA'), 354)
        data = body(1, 'killed', kb=256)
        c.send_raw(data[:len(data) // 2])
        self.mx1.wait_for(lambda: self.mx1.sessions and
                          self.mx1.sessions[-1].commands[-1:] == ['DATA'])
        pid = self.proxy.pid
        self.proxy.kill()  # SIGKILL to its process group, and wait
        self.assertEqual(self.proxy.proc.returncode, -signal.SIGKILL)
        self.proxy.proc = None  # nothing left for the cleanup to stop
        self.assertFalse(os.path.exists('/proc/%d' % pid))
        self.assertTrue(c.expect_closed(), 'the client got bytes instead of a drop')
        self.mx1.wait_for(lambda: all(s.closed for s in self.mx1.sessions), 10,
                          'the MX session outlived the proxy')
        self.assertEqual(self.mx1.messages, [], 'a partial message was delivered')

        self.proxy.start()
        c2 = self.client()
        out = c2.send_message('sender@client.test', ['rcpt@example.test'], data)
        self.assertReply(out['data'], 250)
        self.mx1.wait_messages(1)
        self.assertEqual(msgids(self.mx1), {'killed-1@client.test': 1})
        self.assertTrue(self.mx1.messages[0].data.endswith(data))

    def test_sigterm_restart_under_load(self):
        """200 messages (100 under ASan) over 10 client threads; once half are
        delivered the proxy gets SIGTERM (it must exit 0 within 10 s, no sanitizer
        report) and a new one is started. Clients resend whatever did not get 250.
        At the end the MX holds every message exactly once, and the restart did hit
        the load (some sends had to be retried)."""
        n = 100 if is_asan_build() else 200
        threads = 10
        t0 = time.monotonic()
        stop = threading.Event()
        self.addCleanup(stop.set)
        deadline = t0 + 120
        senders = [Sender(self.proxy.port, list(range(k, n, threads)), deadline, stop)
                   for k in range(threads)]
        for s in senders:
            s.start()
        self.mx1.wait_for(lambda: len(self.mx1.messages) >= n // 2, 60,
                          'half the messages never arrived')
        at_restart = len(self.mx1.messages)
        t1 = time.monotonic()
        self.proxy.stop()  # SIGTERM; fails on a bad exit or a sanitizer report
        self.proxy.start()
        restart = time.monotonic() - t1
        for s in senders:
            s.join(max(1, deadline - time.monotonic()))
            self.assertFalse(s.is_alive(), 'a sender is stuck')
        elapsed = time.monotonic() - t0
        failures = [f for s in senders for f in s.failures]
        self.assertEqual(failures, [])
        delivered = sorted(i for s in senders for i, _ in s.delivered)
        self.assertEqual(delivered, list(range(n)))
        ids = msgids(self.mx1)
        want = collections.Counter({'load-%d@client.test' % i: 1 for i in range(n)})
        self.assertEqual(ids - want, collections.Counter(), 'duplicates or strays')
        self.assertEqual(want - ids, collections.Counter(), 'lost messages')
        faults = sum((s.faults for s in senders), collections.Counter())
        retried = sum(1 for s in senders for _, a in s.delivered if a > 1)
        self.assertLess(at_restart, n, 'everything was delivered before the restart')
        self.assertGreater(sum(faults.values()), 0, 'the restart hit no sender')
        sys.stderr.write('\n  %d messages, %d threads: %.2fs; %d at the MX at SIGTERM, '
                         'stop+start %.2fs; %d messages needed a resend; faults %s\n'
                         % (n, threads, elapsed, at_restart, restart, retried,
                            dict(faults)))


if __name__ == '__main__':
    main()
