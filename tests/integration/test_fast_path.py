"""The fast path, observed at the MX: one TLS connection carries many transactions from
many inbound connections; a new TLS connection to the same MX resumes the session; a
reply that reaches the proxy in pieces is still read whole; and concurrent clients'
messages never mix."""
import os
import sqlite3
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness.util import (TestBase, message, proxy_config, split_received,  # noqa: E402
                          wait_until)

CACHE = {'outbound': {'connection_cache_time': 30}}


class FastPath(TestBase):
    def body_of(self, msg):
        """The message as the client sent it: the MX's copy without our Received:."""
        return split_received(msg.data)[1]

    @proxy_config(CACHE)
    def test_one_tls_connection_carries_transactions_of_many_inbound_connections(self):
        bodies = []
        c = self.client()
        for i in range(3):  # three transactions on one inbound connection
            bodies.append(message('same connection %d' % i))
            out = c.send_message('a@client.test', ['r%d@example.test' % i], bodies[-1])
            self.assertReply(out['data'], 250)
        c.cmd('QUIT')
        for i in range(3, 5):  # then two more inbound connections
            bodies.append(message('new connection %d' % i))
            self.assertReply(self.send(['r%d@example.test' % i], bodies[-1])['data'], 250)
        self.mx1.wait_messages(5)
        self.assertEqual(self.mx1.connections, 1)
        self.assertEqual(len(self.mx1.sessions[0].messages), 5)
        self.assertEqual([m.rcpts for m in self.mx1.messages],
                         [['r%d@example.test' % i] for i in range(5)])
        self.assertEqual([self.body_of(m) for m in self.mx1.messages], bodies)
        self.assertEqual(self.proxy.log_text().count('TLS connection established'), 1)

    @proxy_config({'outbound': {'connection_cache_time': 0}})
    def test_a_new_tls_connection_to_the_same_mx_resumes_the_session(self):
        for i in range(3):
            self.assertReply(self.send(['r@example.test'], message('m%d' % i))['data'],
                             250)
        self.mx1.wait_messages(3)
        self.assertEqual(self.mx1.connections, 3)
        self.assertEqual([s.tls_resumed for s in self.mx1.sessions], [False, True, True])
        self.assertEqual(self.proxy.log_text().count('(resumed)'), 2)

    @proxy_config({'outbound': {'connection_cache_time': 60}})
    def test_a_burst_of_new_connections_all_resume_with_tls13_tickets(self):
        """Each TLS 1.3 ticket is used once, and an MX may send several per connection
        (here four after a full handshake, one after a resumption): the proxy keeps
        them all, per MX address, so four inbound sessions at once (four new MX
        connections started together, before any of them brings new tickets) all
        resume, each with a ticket of its own; and so does the next one, with a ticket
        a resumed connection brought."""
        self.mx1.configure(tls_tickets=4)
        first = self.client()  # the full handshake: four tickets
        self.assertEqual(first.cmd('MAIL FROM:<a@client.test>')[0], 250)
        self.assertEqual(first.cmd('RCPT TO:<r@example.test>')[0], 250)
        gate = threading.Barrier(4)
        replies = []

        def rcpt(c):
            gate.wait(10)
            replies.append(c.cmd('RCPT TO:<r@example.test>')[0])

        burst = [self.client() for _ in range(4)]
        for c in burst:
            self.assertEqual(c.cmd('MAIL FROM:<a@client.test>')[0], 250)
        threads = [threading.Thread(target=rcpt, args=(c,)) for c in burst]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(replies, [250] * 4)
        last = self.client()
        self.assertEqual(last.cmd('MAIL FROM:<a@client.test>')[0], 250)
        self.assertEqual(last.cmd('RCPT TO:<r@example.test>')[0], 250)
        self.assertEqual(self.mx1.connections, 6)
        self.assertEqual([s.tls_version for s in self.mx1.sessions], ['TLSv1.3'] * 6)
        self.assertEqual([s.tls_resumed for s in self.mx1.sessions],
                         [False] + [True] * 5)
        self.assertEqual(self.proxy.log_text().count('(resumed)'), 5)

    @proxy_config({'outbound': {'connection_cache_time': 0},
                   'policy': {'table': {'other.test': 'verify'}}})
    def test_a_session_is_never_resumed_under_another_policy(self):
        """example.test (level may) and other.test (verify) share the MX host. A
        session made under may is not offered to the verify connection, which makes
        its own full handshake and judges the certificate; each policy then resumes
        its own sessions."""
        self.dns.add('other.test', 'MX', (10, 'mx1.example.test'))
        for rcpt in ['a@example.test', 'b@other.test', 'c@other.test', 'd@example.test']:
            self.assertReply(self.send([rcpt])['data'], 250)
        self.mx1.wait_messages(4)
        self.assertEqual([s.tls_resumed for s in self.mx1.sessions],
                         [False, False, True, True])
        log = self.proxy.log_text()
        self.assertRegex(log, r'Verified TLS connection established to '
                              r'mx1\.example\.test\[127\.0\.0\.2\]:\d+: TLSv1\.3 [^\n]*'
                              r'(?<!\(resumed\))\n')
        self.assertIn('policy=table/verify', log)

    def test_a_reply_split_across_reads_is_read_whole(self):
        """On the first MX connection every multi-line reply (both EHLO replies, with
        STARTTLS in the first, and a three-line 550) trickles in line by line, TLS
        records 50 ms apart. Meanwhile a second client delivers a message over a
        second MX connection, whose replies the proxy reads in those gaps. The slow
        replies are still read whole and on their own."""
        three = ['5.1.1 no such user', 'second line', 'third line']
        self.mx1.configure(split_replies=0.05, fault_connections=1,
                           rcpt=(550, '\n'.join(three)))
        slow = {}

        def run():
            try:
                c = self.client()
                slow['rcpt'] = c.send_message('a@client.test', ['a@example.test'],
                                              message())['rcpt'][0]
            except Exception as e:  # reported below, in the test's thread
                slow['error'] = repr(e)

        t = threading.Thread(target=run)
        t.start()
        wait_until(lambda: self.mx1.connections == 1, 10, 'no MX connection')
        self.assertReply(self.send(['b@example.test'])['data'], 250)
        t.join(30)
        self.assertEqual(slow, {'rcpt': (550, three)})
        self.mx1.wait_messages(1)
        self.assertEqual(self.mx1.messages[0].rcpts, ['b@example.test'])
        self.assertEqual(self.mx1.connections, 2)
        self.assertEqual([s.tls_version for s in self.mx1.sessions], ['TLSv1.3'] * 2)

    @proxy_config(CACHE)
    def test_concurrent_clients_messages_never_mix(self):
        """Eight clients at once, three messages each, bodies of different sizes (up
        to 200 KiB, several reads and TLS records): every message at the MX has
        exactly its own envelope and body."""
        clients, per = 8, 3
        sent = {}
        errors = []

        def run(k):
            try:
                c = self.client()
                for j in range(per):
                    tag = 'c%dm%d' % (k, j)
                    filler = ('%s ' % tag) * (1 + (k * per + j) * 2500)
                    body = message(tag, body='\r\n'.join(
                        filler[i:i + 76] for i in range(0, len(filler), 76)) + '\r\n')
                    sent[tag] = body
                    out = c.send_message('%s@client.test' % tag, ['%s@example.test' % tag],
                                         body, timeout=30)
                    if out['data'] is None or out['data'][0] != 250:
                        errors.append('%s: %r' % (tag, out))
                c.cmd('QUIT')
            except Exception as e:  # reported below, in the test's thread
                errors.append('client %d: %r' % (k, e))

        threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        self.mx1.wait_messages(clients * per, timeout=30)
        self.assertEqual(len(self.mx1.messages), clients * per)
        for m in self.mx1.messages:
            tag = m.mail_from.split('@')[0]
            self.assertEqual(m.rcpts, ['%s@example.test' % tag])
            self.assertEqual(self.body_of(m), sent[tag], tag)
        self.assertEqual(sorted(m.mail_from for m in self.mx1.messages),
                         sorted('%s@client.test' % t for t in sent))
        # The cache worked: fewer MX connections than messages.
        self.assertLess(self.mx1.connections, clients * per)


    @proxy_config({'workers': 'auto'})
    def test_workers_auto_leaves_one_cpu(self):
        """workers: auto runs one loop per CPU the proxy may use but one, and at least
        one: on up to 2 CPUs, exactly what workers: 1 runs."""
        cpus = len(os.sched_getaffinity(self.proxy.pid))
        loops = 1 if cpus < 3 else min(cpus - 1, 256)
        self.assertReply(self.send(['r@example.test'])['data'], 250)
        if loops > 1:
            self.proxy.wait_log(r'%d event loops \(workers\)' % loops)
        else:
            self.assertNotIn('event loops', self.proxy.log_text())


class Workers(TestBase):
    proxy_extra = {'workers': 2, 'outbound': {'connection_cache_time': 30}}

    def test_two_loops_relay_concurrently_through_a_reload(self):
        """workers: 2 — two event loops on two threads, both listening; eight
        clients at once, a SIGHUP in the middle: every message arrives once, with its
        own envelope and body, and the proxy stops cleanly (the harness checks the
        exit status and, under ASan, the sanitizer reports)."""
        self.proxy.wait_log(r'2 event loops \(workers\)')
        threads_of = os.listdir('/proc/%d/task' % self.proxy.pid)
        self.assertGreaterEqual(len(threads_of), 2)
        clients, per = 8, 4
        sent, errors = {}, []
        halfway = threading.Event()

        def run(k):
            try:
                for j in range(per):
                    tag = 'w%dm%d' % (k, j)
                    sent[tag] = message(tag, body=('%s\r\n' % tag) * (1 + 300 * k))
                    c = self.client()
                    out = c.send_message('%s@client.test' % tag, ['%s@example.test' % tag],
                                         sent[tag], timeout=30)
                    if out['data'] is None or out['data'][0] != 250:
                        errors.append('%s: %r' % (tag, out))
                    c.cmd('QUIT')
                    c.close()
                    if j == 1:
                        halfway.set()
            except Exception as e:  # reported below, in the test's thread
                errors.append('client %d: %r' % (k, e))

        threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        halfway.wait(30)
        self.proxy.reload()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        self.proxy.wait_log(r'worker 1: configuration reloaded')
        self.mx1.wait_messages(clients * per, timeout=30)
        self.assertEqual(len(self.mx1.messages), clients * per)
        for m in self.mx1.messages:
            tag = m.mail_from.split('@')[0]
            self.assertEqual(m.rcpts, ['%s@example.test' % tag])
            self.assertEqual(split_received(m.data)[1], sent[tag], tag)
        self.assertEqual(self.proxy.log_text().count('status=sent'), clients * per)


    def test_tls_results_of_every_loop_reach_tls_reporting(self):
        """TLS reporting runs on the main loop only: the sessions the other loop
        makes are handed over to it and counted too (twelve connections, no cache, so
        both loops make some)."""
        self.restart_proxy({'outbound': {'connection_cache_time': 0},
                            'tlsrpt': {'enabled': 'yes', 'organization': 'Test Org',
                                       'contact': 'tlsrpt@proxy.test', 'interval': 3600,
                                       'ca_file': self.pki.ca_file}})
        for i in range(12):
            self.assertReply(self.send(['r%d@example.test' % i])['data'], 250)
        path = os.path.join(self.proxy.state_dir, 'policies.sqlite3')

        def counted():
            if not os.path.exists(path):
                return 0
            db = sqlite3.connect('file:%s?mode=ro' % path, uri=True, timeout=5)
            try:
                return db.execute('SELECT SUM(count) FROM tlsrpt_count').fetchone()[0]
            except sqlite3.OperationalError:
                return 0
            finally:
                db.close()
        wait_until(lambda: counted() == 12, 15, lambda: 'counted %r' % counted())
        self.assertEqual(self.mx1.connections, 12)


if __name__ == '__main__':
    unittest.main()
