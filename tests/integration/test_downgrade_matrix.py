#!/usr/bin/python3
"""The adversarial MX matrix: no level that requires TLS can be talked into plaintext
or into an unauthenticated session, whatever the MX answers or the DNS does.

Every cell is one real transaction through the real proxy binary to scripted MX
fixtures on loopback. Rows are MX behaviours (and DNS behaviours); columns are the
levels: the policy table's encrypt, dane, dane-only, fingerprint, verify, secure
(Postfix semantics), MTA-STS enforce ("sts"), and the opportunistic may and none.

Each cell has its own recipient domain <row>-<level>.test with two MX hosts, mx1 (pref
10) and mx2 (pref 20), mapped by the DNS fixture to the row's two MxServers (one pair
per row, shared by the row's cells, which run one after another; the rows run
concurrently). Each cell's MAIL FROM, RCPT and body carry a unique marker. Per cell:

  - at a level that requires TLS, the marker never reaches any MX in plaintext, and
    never reaches an MX whose TLS session did not pass the level;
  - a cell that must fail gets 4xx on RCPT naming the reason, a "status=deferred"
    delivery line, no MAIL/RCPT/DATA at any MX (only EHLO/HELO/STARTTLS/QUIT), and
    both MX hosts were connected to (unless the DNS made a host unusable);
  - a cell that must deliver does so at the expected MX, over TLS with the expected
    verdict (or in plaintext where the level allows it);
  - the TLS-RPT failure type counted for the domain (RFC 8460) is the expected one
    (read from the proxy's counter table, policies.sqlite3).

The outcomes are printed as a table (rows: behaviours, columns: levels) and written
to the file named by $SP_MATRIX_TABLE when set. A cell that differs from its
expectation is marked "!" and fails the test with a message naming it; a cell where
a marker reached an MX that did not pass the level is a DOWNGRADE.
"""

import concurrent.futures
import fnmatch
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Client, TestBase, main, message  # noqa: E402
from harness.httpsserver import HttpsPolicyServer, policy_text  # noqa: E402
from harness.mxserver import MxServer  # noqa: E402
from harness.util import reserve_port  # noqa: E402

LEVELS = ['encrypt', 'dane', 'dane-only', 'fingerprint', 'verify', 'secure', 'sts',
          'may', 'none']
MANDATORY = LEVELS[:7]
AUTH = {'dane', 'dane-only', 'fingerprint', 'verify', 'secure', 'sts'}
CERT_CHECKED = {'verify', 'secure', 'sts'}   # PKIX + name
MX_IPS = ['127.0.2.%d' % i for i in range(1, 80)]
POLICY_IP = '127.0.0.1'
WORKERS = 8
SAFE_VERBS = {'EHLO', 'HELO', 'STARTTLS', 'QUIT'}

NOT_OFFERED = 'TLS is required, but was not offered by host'
NOT_VERIFIED = 'Server certificate not verified'

# ---- the rows ------------------------------------------------------------------------
# name: row label; mx: MxServer options of both MX hosts (mx2='good': mx2 behaves and
# has a good certificate); cert: pki.issue keywords; tlsa: 'match' | 'mismatch'
# (3 1 1 records at the dane levels); fails: levels (of MANDATORY) where the cell must
# be refused (default: all), the others deliver over TLS (Verified at authenticating
# levels; at mx2 when it is good); expect: {level: outcome pattern (fnmatch)}
# overrides; reason: text a required level's 4xx must carry; rpt: the TLS-RPT failure
# type a refused cell must count. DNS rows also have dns (what the DNS does, see
# cell_dns), v6 (the MX hosts are on [::1]), undialled (levels where no MX host is
# usable, so none may be connected to) and undialled_mx1. unseen: text the MTA must
# never get in a reply; logged: a regex the proxy must log about the cell's mx1
# (unless at none).
ROWS = [
    dict(name='STARTTLS not advertised', mx=dict(offer_starttls=False),
         reason=NOT_OFFERED, rpt='starttls-not-supported',
         expect={'may': 'sent plain', 'none': 'sent plain'}),
    dict(name='EHLO 5xx, HELO 250', mx=dict(ehlo=(502, '5.5.2 EHLO not supported')),
         reason=NOT_OFFERED, rpt='starttls-not-supported',
         expect={'may': 'sent plain', 'none': 'sent plain'}),
    dict(name='EHLO 4xx', mx=dict(ehlo=(451, '4.3.0 try again later')),
         reason='451 4.3.0', rpt=None,
         expect={'may': '4xx', 'none': '4xx'}),
    dict(name='STARTTLS 454', mx=dict(starttls_reply=(454, '4.7.0 TLS not available')),
         reason='454 4.7.0', rpt='starttls-not-supported',
         expect={'may': 'sent plain', 'none': 'sent plain'}),
    dict(name='STARTTLS 502', mx=dict(starttls_reply=(502, '5.5.1 not implemented')),
         reason='502 5.5.1', rpt='starttls-not-supported',
         expect={'may': 'sent plain', 'none': 'sent plain'}),
    # the 220 and the injection in one write: discarded, TLS goes on (as Postfix does)
    dict(name='220 + injected bytes', mx=dict(
        pipeline_after_starttls=b'250-INJECTED\r\n250 OK\r\n'), fails=(),
         unseen='INJECTED', logged=r'discarded 22 bytes sent in plaintext after STARTTLS',
         expect={'may': 'sent TLS *', 'none': 'sent plain'}),
    dict(name='bytes injected in handshake', mx=dict(
        tls_inject=b'250 2.0.0 Ok injected\r\n'),
         reason='TLS', rpt='validation-failure',
         expect={'may': 'sent plain', 'none': 'sent plain'}),
    dict(name='handshake garbage', mx=dict(tls_garbage=True),
         reason='TLS', rpt='validation-failure',
         expect={'may': 'sent plain', 'none': 'sent plain'}),
    dict(name='TLS 1.0/1.1 only', mx=dict(tls_max='TLSv1.1'),
         reason='TLS', rpt='validation-failure',
         expect={'may': 'sent plain', 'none': 'sent plain'}),
    dict(name='RSA key exchange only', mx=dict(tls_max='TLSv1.2',
                                               tls_ciphers='AES128-GCM-SHA256'),
         cert=dict(key='rsa'), reason='TLS', rpt='validation-failure',
         expect={'may': 'sent plain', 'none': 'sent plain'}),
    dict(name='wrong name', cert=dict(wrong_name='wrong.invalid'), fails=CERT_CHECKED,
         reason=NOT_VERIFIED, rpt='certificate-host-mismatch',
         expect={'may': 'sent TLS *', 'none': 'sent plain', 'encrypt': 'sent TLS *'}),
    dict(name='expired certificate', cert=dict(expired=True), fails=CERT_CHECKED,
         reason=NOT_VERIFIED, rpt='certificate-expired',
         expect={'may': 'sent TLS *', 'none': 'sent plain', 'encrypt': 'sent TLS *'}),
    dict(name='self-signed', cert=dict(self_signed=True), fails=CERT_CHECKED,
         reason=NOT_VERIFIED, rpt='certificate-not-trusted',
         expect={'may': 'sent TLS *', 'none': 'sent plain', 'encrypt': 'sent TLS *'}),
    dict(name='TLSA mismatch (else good)', tlsa='mismatch', fails=('dane', 'dane-only'),
         reason=NOT_VERIFIED, rpt='validation-failure',
         expect={'may': 'sent TLS *', 'none': 'sent plain', 'encrypt': 'sent TLS *'}),
    dict(name='drop after handshake', mx=dict(reset_at='tls_done'),
         reason='', rpt=None,
         expect={'may': '4xx', 'none': 'sent plain'}),
    dict(name='EHLO refused inside TLS', mx=dict(ehlo_tls=(550, '5.7.0 go away')),
         reason='550 5.7.0', rpt=None,
         expect={'may': '4xx', 'none': 'sent plain'}),
    dict(name='greeting 421', mx=dict(greeting=(421, '4.3.2 busy')),
         reason='421 4.3.2', rpt=None,
         expect={'may': '4xx', 'none': '4xx'}),
    dict(name='greeting 554', mx=dict(greeting=(554, '5.3.2 no service')),
         reason='554 5.3.2', rpt=None,
         expect={'may': '4xx', 'none': '4xx'}),
    # the second MX good: the mail goes there, never to mx1
    dict(name='no STARTTLS; mx2 good', mx=dict(offer_starttls=False), mx2='good',
         expect={'may': 'sent plain', 'none': 'sent plain'}),
    dict(name='EHLO 5xx/HELO; mx2 good', mx=dict(ehlo=(502, '5.5.2 no EHLO')),
         mx2='good', expect={'may': 'sent plain', 'none': 'sent plain'}),
    dict(name='handshake garbage; mx2 good', mx=dict(tls_garbage=True), mx2='good',
         expect={'may': 'sent plain', 'none': 'sent plain'}),
    dict(name='wrong name; mx2 good', cert=dict(wrong_name='wrong.invalid'),
         mx2='good', fails=CERT_CHECKED,
         expect={'may': 'sent TLS *', 'none': 'sent plain', 'encrypt': 'sent TLS *'}),
]

# DNS rows: only the DANE columns; both MX hosts good, the DNS varies (see dns_setup).
DNS_LEVELS = ('dane', 'dane-only')


def tlsa_pair(match, mismatch, **row):
    """The rows MATCH and MISMATCH (names) of one DNS case ROW: a TLSA record that
    matches is Verified at both levels, one that does not is never accepted (4xx, the
    certificate not verified, TLS-RPT validation-failure)."""
    return [dict(row, name=match, tlsa='match',
                 expect={'dane': 'sent TLS Verified', 'dane-only': 'sent TLS Verified'}),
            dict(row, name=mismatch, tlsa='mismatch', reason=NOT_VERIFIED,
                 rpt='validation-failure')]


DNS_ROWS = [
    *tlsa_pair('AAAA SERVFAIL, TLSA match', 'AAAA SERVFAIL, TLSA mismatch',
               dns='aaaa-servfail'),
    *tlsa_pair('AAAA timeout, TLSA match', 'AAAA timeout, TLSA mismatch', dns='aaaa-drop'),
    *tlsa_pair('A SERVFAIL, AAAA ::1, TLSA match', 'A SERVFAIL, AAAA ::1, TLSA mism.',
               dns='a-servfail', v6=True),
    dict(name='host A insecure, TLSA mismatch', dns='a-insecure', tlsa='mismatch',
         undialled=('dane-only',), rpt='dnssec-invalid',
         expect={'dane': 'sent TLS Trusted'}),
    dict(name='TLSA SERVFAIL', dns='tlsa-servfail', tlsa='match', undialled=DNS_LEVELS,
         rpt='dnssec-invalid'),
    dict(name='TLSA SERVFAIL mx1; mx2 match', dns='tlsa-servfail-mx1', tlsa='match',
         undialled_mx1=DNS_LEVELS,
         expect={'dane': 'sent TLS Verified (mx2)',
                 'dane-only': 'sent TLS Verified (mx2)'}),
    dict(name='TLSA without AD, mismatch', dns='tlsa-insecure', tlsa='mismatch',
         undialled=('dane-only',), rpt='dane-required',
         expect={'dane': 'sent TLS Trusted'}),
    *tlsa_pair('CNAME, TLSA at target (match)', 'CNAME, TLSA at target (mism.)',
               dns='cname-target'),
    *tlsa_pair('CNAME, TLSA at original (match)', 'CNAME, TLSA at original (mism.)',
               dns='cname-original'),
    dict(name='CNAME, TLSA at neither', dns='cname-none', tlsa='match',
         undialled=('dane-only',), rpt='dane-required',
         expect={'dane': 'sent TLS Trusted'}),
]

def slug(text):
    return re.sub(r'[^a-z0-9]+', '-', text.lower()).strip('-')[:40].strip('-')


def colon(hexdigest):
    h = hexdigest.upper()
    return ':'.join(h[i:i + 2] for i in range(0, len(h), 2))


def expected(row, level):
    """The outcome pattern (fnmatch) a cell must have."""
    if level in row.get('expect', {}):
        return row['expect'][level]
    where = ''
    if level in row.get('fails', MANDATORY):
        if row.get('mx2') != 'good':
            return '4xx'
        where = ' (mx2)'
    return ('sent TLS Verified' if level in AUTH else 'sent TLS *') + where


class Cell:
    """One transaction: row × level."""

    def __init__(self, idx, row, level):
        self.row, self.level = row, level
        self.token = 'zmk%03dq' % idx
        self.domain = '%s-%s.test' % (slug(row['name']), level)
        self.mx_names = ['mx1.%s' % self.domain, 'mx2.%s' % self.domain]
        self.mail_from = 'm-%s@client.test' % self.token
        self.rcpt = 'r-%s@%s' % (self.token, self.domain)
        self.expect = expected(row, level)
        self.outcome = None
        self.problems = []
        self.t0 = self.t1 = None
        self.out = None

    def label(self):
        return '%s / %s' % (self.row['name'], self.level)


class DowngradeMatrix(TestBase):
    """One proxy, one MX pair per row, one HTTPS policy server, all cells at once."""

    start_proxy = False

    def setup_fixtures(self):
        pass  # built in build(), on addresses of their own

    def test_matrix(self):
        started = time.monotonic()
        self.mx_port, holder = reserve_port(MX_IPS)
        self.addCleanup(holder.close)
        cells, groups = self.build()
        self.start_the_proxy(self.config(cells))
        setup = time.monotonic() - started
        with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
            for f in [pool.submit(self.run_group, g) for g in groups]:
                f.result()
        self.check_tlsrpt(cells)
        table = self.table(cells)
        took = time.monotonic() - started
        slow = sorted(cells, key=lambda c: -((c.t1 or 0) - (c.t0 or 0)))[:5]
        sys.stdout.write('\n%s\n(%d cells in %.1f s, set-up %.1f s; slowest: %s)\n' % (
            table, len(cells), took, setup, ', '.join('%s %.1fs' % (c.label(), c.t1 - c.t0)
                                             for c in slow if c.t1)))
        sys.stdout.flush()
        path = os.environ.get('SP_MATRIX_TABLE')
        if path:
            with open(path, 'w') as f:
                f.write(table + '\n')
        bad = ['%s: %s' % (c.label(), '; '.join(c.problems)) for c in cells if c.problems]
        if bad:
            self.fail('%d of %d cells wrong:\n  %s' % (len(bad), len(cells),
                                                       '\n  '.join(bad)))

    # ---- fixtures ------------------------------------------------------------------------
    def build(self):
        """Starts every MX pair, fills the DNS; returns (cells, groups): a group is
        (servers, [cells]) run in order."""
        cells, groups = [], []
        ips = iter(MX_IPS)
        self.unrelated = self.pki.issue('unrelated.invalid')[0]
        self.good_names = []
        sts_domains = []
        for row in ROWS:
            rc = [Cell(len(cells) + i, row, lv) for i, lv in enumerate(LEVELS)]
            cells += rc
            names = [n for c in rc for n in c.mx_names]
            ck = row.get('cert', {})
            cert = self.pki.issue(names[0], alt_names=() if 'wrong_name' in ck
                                  else names[1:], **ck)
            if row.get('mx2') == 'good':
                good = self.pki.issue(names[0], alt_names=names[1:])
            else:
                good = cert
            kw = dict(row.get('mx', {}))
            mx1 = self.start_mx(next(ips), cert, **kw)
            mx2 = self.start_mx(next(ips), good, **({} if row.get('mx2') == 'good'
                                                     else kw))
            for c in rc:
                c.servers = (mx1, mx2)
                c.certs = (cert[0], good[0])
                self.cell_dns(c)
                if c.level == 'sts':
                    sts_domains.append(c.domain)
            groups.append(rc)
        # DNS rows: a CA-signed certificate naming no MX host, so only DANE makes the
        # verdict Verified (DANE-EE ignores names); without DANE it is Trusted.
        dns_cert = self.pki.issue('dns-rows.invalid')
        for row in DNS_ROWS:
            rc = [Cell(len(cells) + i, row, lv) for i, lv in enumerate(DNS_LEVELS)]
            cells += rc
            dns_servers = None if row.get('v6') else (
                self.start_mx(next(ips), dns_cert), self.start_mx(next(ips), dns_cert))
            for c in rc:
                if row.get('v6'):
                    c.servers = self.v6_server()
                else:
                    c.servers = dns_servers
                c.certs = (c.servers[0].cfg['starttls'][0], c.servers[1].cfg['starttls'][0])
                if c.servers[0] is None:
                    continue
                self.cell_dns(c)
            groups.append(rc)
        # the IPv6 rows share [::1]: one sequence
        v6 = [c for g in groups for c in g if c.row.get('v6')]
        groups = [g for g in groups if not g[0].row.get('v6')] + [v6]
        self.start_sts(sts_domains)
        return cells, groups

    def start_mx(self, ip, cert, **kw):
        mx = MxServer(ip, self.mx_port, starttls=cert, name='mx.matrix.test',
                      idle_timeout=20, **kw)
        if not self.__dict__.get('_servers'):
            self._servers = []
            self.addCleanup(self.stop_servers)
        self._servers.append(mx)
        return mx

    def stop_servers(self):
        """Stops every MX at once (one by one, each waits for its accept loop)."""
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda mx: mx.stop(), self._servers))

    def v6_server(self):
        """One good MX on [::1] for both hosts, or (None, None) without IPv6."""
        if not hasattr(self, '_v6'):
            try:
                mx = self.start_mx('::1', self.pki.issue('dns-rows-v6.invalid'))
                self._v6 = (mx, mx)
            except OSError:
                self._v6 = (None, None)
        return self._v6

    def tlsa_of(self, cert):
        """3 1 1 data for CERT (memoized: openssl runs are the slow part of set-up)."""
        memo = self.__dict__.setdefault('_tlsa', {})
        if cert not in memo:
            memo[cert] = self.pki.tlsa(cert, 3, 1, 1)
        return memo[cert]

    def fingerprint_of(self, cert):
        memo = self.__dict__.setdefault('_fp', {})
        if cert not in memo:
            memo[cert] = colon(self.pki.fingerprint(cert, 'cert'))
        return memo[cert]

    def tlsa_name(self, host):
        return '_%d._tcp.%s' % (self.mx_port, host)

    def cell_dns(self, c):
        """MX, A, TLSA, AD bits and (sts) the MTA-STS TXT record for cell C."""
        d, dns, row = c.domain, self.dns, c.row
        mode = row.get('dns')
        secure = c.level in ('dane', 'dane-only')
        for i, host in enumerate(c.mx_names):
            dns.add(d, 'MX', (10 * (i + 1), host))
            ip = c.servers[i].ip
            addr_name = host
            if mode and mode.startswith('cname'):
                addr_name = 't%d.%s' % (i + 1, d)
                dns.add(host, 'CNAME', addr_name)
            if ':' in ip:
                dns.add(addr_name, 'AAAA', ip)
                dns.add(addr_name, 'A', '127.0.0.1')  # answered SERVFAIL below
            else:
                dns.add(addr_name, 'A', ip)
            tlsa = self.tlsa_of(self.unrelated if row.get('tlsa') == 'mismatch'
                                else c.certs[i])
            if secure:
                for n in (host, addr_name, self.tlsa_name(host), self.tlsa_name(addr_name)):
                    dns.set_ad(n, True)
                if mode == 'cname-target':
                    dns.add(self.tlsa_name(addr_name), 'TLSA', tlsa)
                elif mode != 'cname-none':
                    dns.add(self.tlsa_name(host), 'TLSA', tlsa)
                if mode == 'aaaa-servfail':
                    dns.servfail(addr_name, 'AAAA')
                elif mode == 'aaaa-drop':
                    dns.drop(addr_name, 'AAAA')
                elif mode == 'a-servfail':
                    dns.servfail(addr_name, 'A')
                elif mode == 'a-insecure':
                    dns.set_ad(addr_name, False)
                elif mode == 'tlsa-servfail' or (mode == 'tlsa-servfail-mx1' and i == 0):
                    dns.servfail(self.tlsa_name(host), 'TLSA')
                elif mode == 'tlsa-insecure':
                    dns.set_ad(self.tlsa_name(host), False)
        if secure:
            dns.set_ad(d, True)
        if c.level == 'sts':
            dns.add('_mta-sts.%s' % d, 'TXT', 'v=STSv1; id=1')
            dns.add('mta-sts.%s' % d, 'A', POLICY_IP)

    def start_sts(self, domains):
        names = ['mta-sts.%s' % d for d in domains]
        cert, key = self.pki.issue(names[0], alt_names=names[1:])
        self.https = HttpsPolicyServer(POLICY_IP, 0, cert, key)
        self.addCleanup(self.https.stop)
        for d in domains:
            self.https.set_policy(d, policy_text(mode='enforce',
                                                 mx=('mx1.%s' % d, 'mx2.%s' % d)))

    def config(self, cells):
        table = {}
        for c in cells:
            if c.level == 'sts':
                continue
            if c.level == 'fingerprint':
                fps = sorted({self.fingerprint_of(p) for p in c.certs})
                table[c.domain] = {'level': 'fingerprint', 'fingerprints': fps}
            else:
                table[c.domain] = c.level
        return {
            'policy': {'table': table},
            'dns': {'timeout': 1, 'tries': 1},
            'timeouts': {'connect': 3, 'command': 5, 'data_done': 10},
            'outbound': {'connection_cache_time': 0},
            'mta_sts': {'enabled': 'yes', 'ca_file': self.pki.ca_file,
                        'port': self.https.port, 'fetch_timeout': 3,
                        'allow_private_addresses': 'yes'},  # the policy host is on loopback
            'tlsrpt': {'enabled': 'yes', 'interval': 86400, 'ca_file': self.pki.ca_file},
        }

    # ---- running -------------------------------------------------------------------------
    def run_group(self, group):
        for c in group:
            if c.servers[0] is None:
                c.outcome = 'n/a (no IPv6)'
                continue
            try:
                self.run_cell(c)
            except Exception as e:  # noqa: BLE001 -- a cell's failure is reported, not fatal
                c.problems.append('error: %r' % (e,))
                c.outcome = c.outcome or 'error'

    def run_cell(self, c):
        c.t0 = time.monotonic()
        body = message(subject='matrix %s' % c.token,
                       body='MARKER %s body\r\n' % c.token, mail_from=c.mail_from,
                       to=c.rcpt)
        with Client(self.proxy.port, timeout=30) as cl:
            code, lines = cl.read_reply()
            if code != 220:
                raise AssertionError('greeting %d %s' % (code, lines))
            cl.cmd('EHLO client.test')
            c.out = cl.send_message(c.mail_from, [c.rcpt], body)
            try:
                cl.cmd('QUIT', timeout=5)
            except AssertionError:
                pass
        c.t1 = time.monotonic()
        self.judge(c)

    def sessions(self, c, i):
        """Sessions the cell opened at its mx1 (I=0) or mx2 (I=1)."""
        mx = c.servers[i]
        return [s for s in list(mx.sessions) if c.t0 <= s.t_accept <= c.t1]

    def delivery_line(self, c):
        rx = re.compile(r'to=<%s>, relay=(\S*), delay=[\d.]+, dsn=([^,]*), '
                        r'status=(?P<status>\w+) \((.*)\), tls=(?P<tls>[^,]*), '
                        r'policy=([^,]*)$' % re.escape(c.rcpt), re.M)
        deadline = time.monotonic() + 5
        while True:
            m = rx.search(self.proxy.log_text())
            if m or time.monotonic() > deadline:
                return m
            time.sleep(0.02)

    def judge(self, c):
        out, tok = c.out, c.token.encode()
        rcpt_code, rcpt_lines = out['rcpt'][0] if out['rcpt'] else out['mail']
        rcpt_text = ' '.join(rcpt_lines)
        mandatory = c.level in MANDATORY
        # Where did the marker go?
        marked = []   # (i, session, plain?)
        for i in (0, 1):
            srv = c.servers[i]
            for s in list(srv.sessions):
                if tok in bytes(s.rx_plain):
                    marked.append((i, s, True))
                elif tok in bytes(s.rx_tls):
                    marked.append((i, s, False))
        line = self.delivery_line(c)
        replies = [out['mail']] + out['rcpt'] + [out['data'] or (0, [])]
        logged = c.row.get('logged')
        if logged and c.level != 'none' and not re.search(
                re.escape(c.mx_names[0]) + r'\S*: ' + logged,
                self.proxy.log_text()):
            c.problems.append('not logged: %r' % logged)
        unseen = c.row.get('unseen')
        if unseen and any(unseen in ' '.join(r[1]) for r in replies):
            c.problems.append('the MTA got the injected %r' % unseen)
        if out['data'] is not None and out['data'][0] == 250:
            deliv = [m for srv in c.servers for m in list(srv.messages)
                     if c.rcpt in m.rcpts]
            where = ''
            if deliv and deliv[0].session in c.servers[1].sessions and \
                    c.servers[0] is not c.servers[1]:
                where = ' (mx2)'
            verdict = ''
            if line and '/' in line.group('tls'):
                verdict = line.group('tls').split('/', 1)[1]
            if deliv and deliv[0].tls_version:
                c.outcome = 'sent TLS %s%s' % (verdict or '?', where)
            elif deliv:
                c.outcome = 'sent plain%s' % where
            else:
                c.outcome = 'sent ?'
                c.problems.append('250 after DATA but no MX has the message')
        elif 400 <= rcpt_code < 500:
            c.outcome = '4xx'
        elif 500 <= rcpt_code < 600:
            c.outcome = '5xx'
        else:
            c.outcome = '%d' % rcpt_code
        # The invariants first: a level that requires TLS never leaks the marker.
        if mandatory:
            for i, s, plain in marked:
                if plain:
                    c.problems.append('DOWNGRADE: marker reached mx%d in plaintext' % (i + 1))
            if c.expect == '4xx' and any(not p for _, _, p in marked):
                c.problems.append('DOWNGRADE: marker reached an MX over TLS that did '
                                  'not pass the level')
            if c.expect.endswith('(mx2)') and any(i == 0 for i, _, _ in marked):
                c.problems.append('DOWNGRADE: marker reached the bad mx1')
            if c.outcome.startswith('sent') and c.expect == '4xx':
                c.problems.append('DOWNGRADE: delivered (%s) where the level must refuse'
                                  % c.outcome)
            elif c.outcome.startswith('sent') and 'Verified' in c.expect and \
                    'Verified' not in c.outcome:
                c.problems.append('DOWNGRADE: delivered without authentication (%s)'
                                  % c.outcome)
        if not fnmatch.fnmatchcase(c.outcome, c.expect):
            c.problems.append('outcome %r, expected %r' % (c.outcome, c.expect))
        if c.expect == '4xx':
            self.judge_refusal(c, rcpt_text, line)
        else:
            self.judge_delivery(c, line)
        self.judge_sessions(c)

    def judge_delivery(self, c, line):
        """A cell that must deliver: the delivery line says sent; with a good mx2 the
        bad mx1 was tried first (unless the DNS made it unusable)."""
        if c.outcome.startswith('sent') and (not line or line.group('status') != 'sent'):
            c.problems.append('no "status=sent" delivery line')
        if c.expect.endswith('(mx2)') and c.servers[0] is not c.servers[1]:
            tried = bool(self.sessions(c, 0))
            if tried == (c.level in c.row.get('undialled_mx1', ())):
                c.problems.append('mx1 %s' % ('dialled, though unusable' if tried
                                              else 'never tried first'))

    def judge_sessions(self, c):
        """SNI names the cell's MX host (with DANE: the TLSA base domain, RFC 7672
        8.1, the CNAME target when the records are there); at none, STARTTLS is never
        sent."""
        names = list(c.mx_names)
        if c.row.get('dns') == 'cname-target' and c.level in ('dane', 'dane-only'):
            names = ['t1.%s' % c.domain, 't2.%s' % c.domain]
        for i in (0, 1):
            for s in self.sessions(c, i):
                if s.sni is not None and s.sni not in names:
                    c.problems.append('SNI %r at mx%d' % (s.sni, i + 1))
                if c.level == 'none' and any(cmd.upper() == 'STARTTLS'
                                             for cmd in s.commands):
                    c.problems.append('STARTTLS sent at level none')

    def judge_refusal(self, c, rcpt_text, line):
        """A cell that must be refused: only EHLO/HELO/STARTTLS/QUIT at any MX; both
        hosts tried (unless unusable); 4xx naming them and the reason; deferred."""
        row = c.row
        for i in (0, 1):
            if c.servers[0] is c.servers[1] and i == 1:
                break
            for s in self.sessions(c, i):
                verbs = {cmd.split(' ', 1)[0].upper() for cmd in s.commands}
                if verbs - SAFE_VERBS:
                    c.problems.append('mx%d got %s' % (i + 1, sorted(verbs - SAFE_VERBS)))
        if c.outcome != '4xx':
            return  # reported above; the reply and log checks below would only repeat it
        if c.level not in row.get('undialled', ()):
            if c.servers[0] is c.servers[1]:   # both hosts on one server ([::1])
                if len(self.sessions(c, 0)) < 2:
                    c.problems.append('mx1 and mx2 ([%s]) not both connected to'
                                      % c.servers[0].ip)
            else:
                for i in (0, 1):
                    if not self.sessions(c, i):
                        c.problems.append('mx%d never connected to' % (i + 1))
            for host in c.mx_names:
                if host not in rcpt_text:
                    c.problems.append('4xx does not name %s: %r' % (host, rcpt_text))
        elif any(self.sessions(c, i) for i in (0, 1)):
            c.problems.append('an unusable MX host was dialled')
        reason = row.get('reason')
        if reason and c.level in MANDATORY and reason not in rcpt_text:
            c.problems.append('4xx without reason %r: %r' % (reason, rcpt_text))
        if not line:
            c.problems.append('no delivery log line')
        elif line.group('status') != 'deferred':
            c.problems.append('log status=%s' % line.group('status'))

    # ---- TLS-RPT ---------------------------------------------------------------------------
    def tlsrpt_rows(self):
        return self.proxy.tlsrpt_counts()

    def check_tlsrpt(self, cells):
        want = [c for c in cells if c.row.get('rpt') and c.expect == '4xx'
                and c.level in MANDATORY]
        deadline = time.monotonic() + 10
        while True:
            rows = self.tlsrpt_rows()
            by_domain = {}
            for r in rows:
                if r['result_type'] not in ('', 'success'):
                    by_domain.setdefault(r['domain'], set()).add(r['result_type'])
            # a cell wrongly delivered may count nothing: wait only for the refused
            missing = [c for c in want if c.domain not in by_domain and c.outcome == '4xx']
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for c in cells:
            c.rpt = by_domain.get(c.domain, set())
        for c in want:
            if c.row['rpt'] not in c.rpt:
                c.problems.append('TLS-RPT %s expected, counted %s'
                                  % (c.row['rpt'], sorted(c.rpt) or 'none'))

    # ---- output ------------------------------------------------------------------------
    @staticmethod
    def table(cells):
        rows, order, rpt = {}, [], {}
        for c in cells:
            if c.row['name'] not in rows:
                order.append(c.row['name'])
            if c.level in MANDATORY:
                rpt.setdefault(c.row['name'], set()).update(getattr(c, 'rpt', ()))
            txt = c.outcome or '-'
            if c.problems:
                txt = '!' + txt
            rows.setdefault(c.row['name'], {})[c.level] = txt
        w0 = max(len(n) for n in order)
        widths = {lv: max([len(lv)] + [len(r.get(lv, '')) for r in rows.values()])
                  for lv in LEVELS}
        head = '%-*s | %s | %s' % (w0, 'MX behaviour \\ level',
                                   ' | '.join('%-*s' % (widths[lv], lv) for lv in LEVELS),
                                   'TLS-RPT failures (required levels)')
        out = [head, '-' * len(head)]
        for n in order:
            out.append('%-*s | %s | %s' % (w0, n, ' | '.join(
                '%-*s' % (widths[lv], rows[n].get(lv, '')) for lv in LEVELS),
                ' '.join(sorted(rpt.get(n, ()))) or '-'))
        out.append('("!": differs from the expectation; "(mx2)": delivered at the '
                   'second MX)')
        return '\n'.join(out)


if __name__ == '__main__':
    main()
