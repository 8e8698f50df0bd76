#!/usr/bin/python3
"""The local policy table with Postfix's levels (none, may, encrypt, fingerprint,
verify, secure), from YAML (policy.table) and from a Postfix-syntax file
(policy.table_file): every scenario of Levels runs twice, once per form (class
LevelsTableFile). DNS answers carry no AD bit, so DANE plays no part.

When no MX host satisfies the policy the client gets 451 4.7.5 on RCPT naming the
hosts; the MX gets no message and never sees MAIL. Config errors are reported as
file:line:col by --check-config, and the proxy refuses to start.
"""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestBase, main  # noqa: E402
from harness.proxy import proxy_binary  # noqa: E402

RCPT = 'rcpt@example.test'


def colon(hexdigest):
    """'ab12..' -> 'AB:12:..' (Postfix's fingerprint spelling)."""
    h = hexdigest.upper()
    return ':'.join(h[i:i + 2] for i in range(0, len(h), 2))


class Levels(TestBase):
    """mx1.example.test (127.0.0.2, STARTTLS, CA-signed certificate for its name);
    the proxy is started by each test through start_policy()."""

    start_proxy = False
    use_file = False   # LevelsTableFile: the same table as a Postfix-syntax file

    # ---- fixtures ----------------------------------------------------------------------
    def start_policy(self, table, default_level=None, extra=None):
        """TABLE: {key: value}, value a Postfix string used in both forms, or a pair
        (YAML value, table-file value) with the same meaning."""
        cfg = {}
        if self.use_file:
            path = os.path.join(self.tmpdir, 'tls_policy')
            with open(path, 'w') as f:
                f.write('# Postfix smtp_tls_policy_maps syntax\n\n')
                for k, v in table.items():
                    f.write('%s %s\n' % (k, v[1] if isinstance(v, tuple) else v))
            cfg['policy'] = {'table_file': path}
        else:
            cfg['policy'] = {'table': {k: (v[0] if isinstance(v, tuple) else v)
                                       for k, v in table.items()}}
        if default_level:
            cfg['outbound'] = {'tls': {'default_level': default_level}}
        from harness.proxy import deep_merge
        return self.start_the_proxy(deep_merge(cfg, extra))

    def serve(self, mx, **issue):
        """MX now serves a fresh certificate for its name (pki.issue keywords)."""
        cert, key = self.pki.issue(mx.cfg['name'], **issue)
        mx.configure(starttls=(cert, key))
        return cert

    def mx_cert(self, mx=None):
        return (mx or self.mx1).cfg['starttls'][0]

    # ---- assertions --------------------------------------------------------------------
    def assertTLS(self, out, mx, verdict, policy, rcpt=RCPT):
        """Delivered to MX over TLS 1.3; TLS and delivery log lines with VERDICT (a
        regex) and POLICY."""
        self.assertReply(out['rcpt'][0], 250)
        self.assertReply(out['data'], 250)
        m = mx.wait_messages(1)[0]
        self.assertEqual(m.tls_version, 'TLSv1.3')
        self.assertLog(r'(%s) TLS connection established to %s: TLSv1\.3 with cipher'
                       % (verdict, self.relay(mx)))
        self.assertLog(r'(?m)to=<%s>, relay=%s, .*status=sent \(250.*\), '
                       r'tls=TLSv1\.3/(%s), policy=%s$' % (re.escape(rcpt), self.relay(mx),
                                                           verdict, re.escape(policy)))
        return m

    def assertPlain(self, out, mx, policy, rcpt=RCPT):
        self.assertReply(out['rcpt'][0], 250)
        self.assertReply(out['data'], 250)
        m = mx.wait_messages(1)[0]
        self.assertIsNone(m.tls_version)
        self.assertNotIn('STARTTLS', [c.upper() for c in mx.all_commands()])
        self.assertLog(r'(?m)to=<%s>, relay=%s, .*status=sent \(250.*, policy=%s$'
                       % (re.escape(rcpt), self.relay(mx), re.escape(policy)))
        return m

    # ---- fingerprint -------------------------------------------------------------------
    def test_fingerprint_cert_pass(self):
        """SHA-256 of the certificate pinned: delivered, Verified, policy=table/fingerprint."""
        fp = colon(self.pki.fingerprint(self.mx_cert(), 'cert'))
        self.start_policy({'example.test': ({'level': 'fingerprint', 'fingerprints': [fp]},
                                            'fingerprint match=%s' % fp)})
        self.assertTLS(self.send(RCPT), self.mx1, 'Verified', 'table/fingerprint')

    def test_fingerprint_pubkey_pass(self):
        """SHA-256 of the public key pinned (after a pin that does not match); the
        certificate is self-signed (pinning needs no CA)."""
        cert = self.serve(self.mx1, self_signed=True)
        stale = colon(self.pki.fingerprint(self.pki.issue('old.example.test')[0], 'pubkey'))
        fp = colon(self.pki.fingerprint(cert, 'pubkey'))
        self.start_policy({'example.test': ({'level': 'fingerprint',
                                             'fingerprints': [stale, fp]},
                                            'fingerprint match=%s|%s' % (stale, fp))})
        self.assertTLS(self.send(RCPT), self.mx1, 'Verified', 'table/fingerprint')

    def test_fingerprint_postfix_string_in_yaml(self):
        """The YAML table also takes the Postfix value string."""
        fp = colon(self.pki.fingerprint(self.mx_cert(), 'cert'))
        self.start_policy({'example.test': 'fingerprint match=%s' % fp})
        self.assertTLS(self.send(RCPT), self.mx1, 'Verified', 'table/fingerprint')

    def test_fingerprint_wrong_pin_451(self):
        """A pin of another certificate: 451 4.7.5, certificate not verified, no MAIL."""
        fp = colon(self.pki.fingerprint(self.pki.issue('mx1.example.test')[0], 'cert'))
        self.start_policy({'example.test': ({'level': 'fingerprint', 'fingerprints': [fp]},
                                            'fingerprint match=%s' % fp)})
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', policy='table/fingerprint')
        self.assertReason(out, 'mx1.example.test', 'Server certificate not verified')
        self.assertNoMail(self.mx1)

    # ---- secure ------------------------------------------------------------------------
    def test_secure_nexthop_match(self):
        """secure, default match nexthop:dot-nexthop: mx1.example.test is a subdomain of
        the recipient domain example.test: delivered, Verified, policy=table/secure."""
        self.start_policy({'example.test': ('secure', 'secure match=nexthop:dot-nexthop')})
        self.assertTLS(self.send(RCPT), self.mx1, 'Verified', 'table/secure')

    def test_secure_yaml_match_list(self):
        """YAML mapping form with an explicit match list."""
        self.start_policy({'example.test': ({'level': 'secure',
                                             'match': ['nexthop', 'dot-nexthop']},
                                            'secure match=nexthop:dot-nexthop')})
        self.assertTLS(self.send(RCPT), self.mx1, 'Verified', 'table/secure')

    def test_secure_mismatch_451(self):
        """secure match=other.test: the certificate names mx1.example.test: 4.7.5."""
        self.start_policy({'example.test': ({'level': 'secure', 'match': ['other.test']},
                                            'secure match=other.test')})
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', policy='table/secure')
        self.assertReason(out, 'mx1.example.test', 'Server certificate not verified')
        self.assertNoMail(self.mx1)

    def test_secure_untrusted_ca_451(self):
        """secure with a self-signed certificate for the right name: 4.7.5."""
        self.serve(self.mx1, self_signed=True)
        self.start_policy({'example.test': 'secure'})
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertNoMail(self.mx1)

    # ---- verify ------------------------------------------------------------------------
    def test_verify_hostname_delivered(self):
        """verify, default match hostname: delivered, Verified, policy=table/verify."""
        self.start_policy({'example.test': ({'level': 'verify'}, 'verify')})
        self.assertTLS(self.send(RCPT), self.mx1, 'Verified', 'table/verify')

    def test_verify_explicit_match_delivered(self):
        self.start_policy({'example.test': ({'level': 'verify',
                                             'match': ['mx1.example.test']},
                                            'verify match=mx1.example.test')})
        self.assertTLS(self.send(RCPT), self.mx1, 'Verified', 'table/verify')

    def test_verify_expired_451(self):
        """An expired (otherwise valid) certificate fails verify: 4.7.5, no MAIL."""
        self.serve(self.mx1, expired=True)
        self.start_policy({'example.test': 'verify'})
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', policy='table/verify')
        self.assertReason(out, 'mx1.example.test', 'Server certificate not verified')
        self.assertNoMail(self.mx1)

    def test_verify_wrong_name_451(self):
        """A CA-signed certificate for another name fails verify: 4.7.5."""
        self.serve(self.mx1, wrong_name='other.example.test')
        self.start_policy({'example.test': 'verify'})
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertNoMail(self.mx1)

    # ---- names: wildcards, and the name the policy says -----------------------------------
    def test_verify_wildcard_certificate(self):
        """A certificate for *.example.test (only) covers mx1.example.test: Verified,
        by OpenSSL's host check (RFC 6125: the wildcard is one whole label)."""
        self.serve(self.mx1, wrong_name='*.example.test')
        self.start_policy({'example.test': 'verify'})
        self.assertTLS(self.send(RCPT), self.mx1, 'Verified', 'table/verify')

    def test_wildcard_one_whole_label_only(self):
        """*.deep.test does not cover a.mx.deep.test (two labels), and a partial
        wildcard mx*.part.test does not cover mx1.part.test: both fail verify."""
        deep = self.add_mx('a.mx', '127.0.0.4', domain='deep.test')
        deep.configure(starttls=self.pki.issue('a.mx.deep.test', wrong_name='*.deep.test'))
        part = self.add_mx('mx1', '127.0.0.5', domain='part.test')
        part.configure(starttls=self.pki.issue('mx1.part.test', wrong_name='mx*.part.test'))
        self.start_policy({'deep.test': 'verify', 'part.test': 'verify'})
        for mx, rcpt in ((deep, 'rcpt@deep.test'), (part, 'rcpt@part.test')):
            out = self.send(rcpt)
            self.assertDeferred(out, mx.cfg['name'], policy='table/verify', rcpt=rcpt)
            self.assertReason(out, mx.cfg['name'], 'Server certificate not verified')
            self.assertNoMail(mx)

    def test_secure_matches_the_nexthop_not_the_mx_hostname(self):
        """An MX outside the recipient domain with a certificate for its own name:
        verify (match hostname) accepts it, secure (match nexthop:dot-nexthop, the
        recipient domain) does not: the MX name came from insecure DNS."""
        mx = self.add_mx('mx', '127.0.0.4', domain='provider.test', pref=None)
        self.dns.add('ver.test', 'MX', (10, 'mx.provider.test'))
        self.dns.add('sec.test', 'MX', (10, 'mx.provider.test'))
        self.start_policy({'ver.test': 'verify', 'sec.test': 'secure'})
        out = self.send('rcpt@sec.test')
        self.assertDeferred(out, 'mx.provider.test', policy='table/secure',
                            rcpt='rcpt@sec.test')
        self.assertReason(out, 'mx.provider.test', 'Server certificate not verified')
        self.assertNoMail(mx)
        self.assertTLS(self.send('rcpt@ver.test'), mx, 'Verified', 'table/verify',
                       rcpt='rcpt@ver.test')

    def test_verify_ignores_the_name_the_server_announces(self):
        """The MX greets and answers EHLO as evil.test and presents a valid certificate
        for evil.test: verify checks the MX name from DNS (mx1.example.test), never
        the name the server gives itself."""
        self.mx1.configure(name='evil.test', starttls=self.pki.issue('evil.test'))
        self.start_policy({'example.test': 'verify'})
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', policy='table/verify')
        self.assertReason(out, 'mx1.example.test', 'Server certificate not verified')
        self.assertNoMail(self.mx1)

    # ---- encrypt -----------------------------------------------------------------------
    def test_encrypt_plaintext_mx_451(self):
        """encrypt and an MX without STARTTLS: 4.7.5 "TLS is required, but was not
        offered"; the MX never saw MAIL."""
        self.mx1.configure(starttls=None)
        self.start_policy({'example.test': 'encrypt'})
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', policy='table/encrypt')
        self.assertReason(out, 'mx1.example.test', 'TLS is required, but was not offered')
        self.assertNoMail(self.mx1)

    def test_helo_fallback_never_plaintext_at_mandatory_levels(self):
        """An MX (or an attacker on the path) that refuses EHLO with 502 and accepts
        HELO offers no STARTTLS: at every level that requires TLS the host fails like
        one that does not offer STARTTLS (4.7.5, Postfix's wording); MAIL is never
        sent. At may the HELO session delivers in plaintext, as Postfix does."""
        fp = colon(self.pki.fingerprint(self.mx_cert(), 'cert'))
        self.mx1.configure(ehlo=(502, '5.5.1 EHLO not here'))
        mandatory = {
            'enc.test': 'encrypt',
            'fp.test': ({'level': 'fingerprint', 'fingerprints': [fp]},
                        'fingerprint match=%s' % fp),
            'ver.test': ({'level': 'verify', 'match': ['mx1.example.test']},
                         'verify match=mx1.example.test'),
            'sec.test': ({'level': 'secure', 'match': ['mx1.example.test']},
                         'secure match=mx1.example.test'),
        }
        for d in mandatory:
            self.dns.add(d, 'MX', (10, 'mx1.example.test'))
        self.start_policy(dict(mandatory, **{'example.test': 'may'}))
        for d, v in mandatory.items():
            rcpt = 'rcpt@' + d
            level = v[0]['level'] if isinstance(v, tuple) else v
            out = self.send(rcpt)
            self.assertDeferred(out, 'mx1.example.test', policy='table/' + level,
                                rcpt=rcpt)
            self.assertReason(out, 'mx1.example.test',
                              'TLS is required, but was not offered by host')
            self.assertNoMail(self.mx1)
        self.assertIn('HELO', [c.split()[0].upper() for c in self.mx1.all_commands()])
        self.assertPlain(self.send(RCPT), self.mx1, 'table/may')

    def test_encrypt_untrusted_cert_delivered(self):
        """encrypt does not authenticate: a self-signed certificate is fine (Untrusted)."""
        self.serve(self.mx1, self_signed=True)
        self.start_policy({'example.test': 'encrypt'})
        self.assertTLS(self.send(RCPT), self.mx1, 'Untrusted|Anonymous', 'table/encrypt')

    def test_encrypt_skips_plaintext_mx(self):
        """encrypt: mx1 (pref 10) has no STARTTLS, mx2 (pref 20) has: delivered via mx2."""
        self.mx1.configure(starttls=None)
        mx2 = self.add_mx('mx2', '127.0.0.3', pref=20)
        self.start_policy({'example.test': 'encrypt'})
        self.assertTLS(self.send(RCPT), mx2, 'Trusted|Untrusted|Anonymous', 'table/encrypt')
        self.assertNoMail(self.mx1)

    def test_encrypt_handshake_failure_no_plaintext_retry(self):
        """A failed handshake under encrypt is not retried in plaintext: 4.7.5."""
        self.mx1.configure(tls_garbage=True)
        self.start_policy({'example.test': 'encrypt'})
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertNoMail(self.mx1)

    # ---- none / may ----------------------------------------------------------------------
    def test_none_plaintext_despite_starttls(self):
        """none: delivered in plaintext although the MX offers STARTTLS."""
        self.start_policy({'example.test': 'none'})
        self.assertPlain(self.send(RCPT), self.mx1, 'table/none')

    def test_default_level_may_logged(self):
        """No entry for the domain: the default level (may), policy=default/may."""
        self.start_policy({'other.test': 'encrypt'})
        self.assertTLS(self.send(RCPT), self.mx1, 'Trusted', 'default/may')

    def test_table_may_beats_default_encrypt(self):
        """default_level encrypt, table example.test may: a plaintext MX gets the mail;
        another domain without an entry is held to encrypt (4.7.5)."""
        self.mx1.configure(starttls=None)
        other = self.add_mx('mx', '127.0.0.4', domain='other.test', tls=False)
        self.start_policy({'example.test': 'may'}, default_level='encrypt')
        self.assertPlain(self.send(RCPT), self.mx1, 'table/may')
        out = self.send('rcpt@other.test')
        self.assertDeferred(out, 'mx.other.test', policy='default/encrypt',
                            rcpt='rcpt@other.test')
        self.assertNoMail(other)

    # ---- keys ----------------------------------------------------------------------------
    def test_table_precedence(self):
        """'example.test' matches only that domain, '.example.test' only its
        subdomains, and the longest suffix wins ('.deep.example.test')."""
        top = self.mx1                                            # STARTTLS offered
        sub = self.add_mx('mx', '127.0.0.4', domain='sub.example.test', tls=False)
        deep = self.add_mx('mx', '127.0.0.5', domain='deep.example.test', tls=False)
        a_deep = self.add_mx('mx', '127.0.0.6', domain='a.deep.example.test', tls=False)
        self.start_policy({'example.test': 'none', '.example.test': 'encrypt',
                           '.deep.example.test': 'may'})
        # exact key: none, although STARTTLS is offered
        self.assertPlain(self.send(RCPT), top, 'table/none')
        # '.example.test' for sub.example.test: encrypt, and its MX has no STARTTLS
        out = self.send('rcpt@sub.example.test')
        self.assertDeferred(out, 'mx.sub.example.test')
        self.assertNoMail(sub)
        # '.deep.example.test' does not cover deep.example.test itself: encrypt
        out = self.send('rcpt@deep.example.test')
        self.assertDeferred(out, 'mx.deep.example.test')
        self.assertNoMail(deep)
        # the longer suffix wins for a.deep.example.test: may
        self.assertPlain(self.send('rcpt@a.deep.example.test'), a_deep, 'table/may',
                         rcpt='rcpt@a.deep.example.test')


class LevelsTableFile(Levels):
    """Every scenario above with policy.table_file in Postfix syntax instead of YAML."""
    use_file = True

    def test_postfix_file_comments_and_continuation(self):
        """Comments, blank lines and a continuation line (leading whitespace)."""
        path = os.path.join(self.tmpdir, 'tls_policy')
        with open(path, 'w') as f:
            f.write('# comment\n\nexample.test   verify\n    match=mx1.example.test\n'
                    '   # indented comment\nother.test encrypt\n')
        self.start_the_proxy({'policy': {'table_file': path}})
        self.assertTLS(self.send(RCPT), self.mx1, 'Verified', 'table/verify')


def run_binary(*args):
    return subprocess.run([proxy_binary(), *args], capture_output=True, text=True,
                          timeout=30)


class ConfigErrors(TestBase):
    """--check-config and start-up refusal for bad policy settings."""

    start_proxy = False

    def write(self, name, text):
        path = os.path.join(self.tmpdir, name)
        with open(path, 'w') as f:
            f.write(text)
        return path

    def check(self, text, name='bad.yaml'):
        path = self.write(name, text)
        r = run_binary('--check-config', path)
        return path, r

    def assertRejected(self, r, regex):
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn('configuration OK', r.stdout)
        self.assertNotIn('unknown key', r.stderr)  # the key itself must be known
        self.assertRegex(r.stderr, re.compile(regex, re.M))

    def test_unknown_level_yaml(self):
        path, r = self.check('listen:\n  - 127.0.0.1:10025\npolicy:\n  table:\n'
                             '    example.test: bogus\n')
        self.assertRejected(r, r'^%s:5:\d+: policy\.table' % re.escape(path))
        self.assertIn('bogus', r.stderr)

    def test_unknown_level_yaml_mapping(self):
        path, r = self.check('policy:\n  table:\n    example.test:\n'
                             '      level: bogus\n')
        self.assertRejected(r, r'^%s:4:\d+: policy\.table' % re.escape(path))

    def test_unknown_attribute_yaml(self):
        """Postfix attributes with no effect here (ciphers=) are errors, not ignored."""
        path, r = self.check('policy:\n  table:\n    example.test: encrypt ciphers=high\n')
        self.assertRejected(r, r'^%s:3:\d+: policy\.table' % re.escape(path))

    def test_bad_fingerprint_yaml(self):
        path, r = self.check('policy:\n  table:\n    example.test: fingerprint match=AB:CD\n')
        self.assertRejected(r, r'^%s:3:\d+: policy\.table' % re.escape(path))

    def test_unknown_level_table_file(self):
        """An error in the table file names the file and line."""
        table = self.write('tls_policy', '# policy\nexample.test bogus\n')
        path, r = self.check('policy:\n  table_file: %s\n' % table)
        self.assertNotEqual(r.returncode, 0)
        self.assertNotIn('configuration OK', r.stdout)
        self.assertNotIn('unknown key', r.stderr)
        self.assertRegex(r.stderr, r'%s:2\b' % re.escape(table))
        self.assertIn('bogus', r.stderr)

    def test_missing_table_file(self):
        path, r = self.check('policy:\n  table_file: %s\n'
                             % os.path.join(self.tmpdir, 'does-not-exist'))
        self.assertRejected(r, r'^%s:2:\d+: policy\.table_file' % re.escape(path))

    def test_bad_default_level(self):
        path, r = self.check('outbound:\n  tls:\n    default_level: sometimes\n')
        self.assertRejected(r, r'^%s:3:\d+: outbound\.tls\.default_level' % re.escape(path))

    def test_bad_trust_ad(self):
        path, r = self.check('dns:\n  trust_ad: maybe\n')
        self.assertRejected(r, r'^%s:2:\d+: dns\.trust_ad' % re.escape(path))

    def test_good_policy_config_ok(self):
        table = self.write('tls_policy', 'example.test secure match=nexthop:dot-nexthop\n'
                           '.example.test fingerprint match=%s\n'
                           % colon('ab' * 32))
        _, r = self.check('outbound:\n  tls:\n    default_level: dane\n'
                          'dns:\n  trust_ad: auto\n'
                          'policy:\n  table_file: %s\n' % table)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), 'configuration OK')
        _, r = self.check('outbound:\n  tls:\n    default_level: dane-only\n'
                          'dns:\n  trust_ad: "yes"\n'
                          'policy:\n  table:\n'
                          '    example.test: secure match=nexthop:dot-nexthop\n'
                          '    .example.test:\n      level: verify\n'
                          '      match:\n        - mx1.example.test\n'
                          '    other.test:\n      level: fingerprint\n'
                          '      fingerprints:\n        - "%s"\n' % colon('cd' * 32),
                          name='good.yaml')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), 'configuration OK')

    def test_proxy_refuses_to_start(self):
        """The daemon does not start with an unknown level in the table (while it
        does start with a known one)."""
        self.start_the_proxy({'policy': {'table': {'example.test': 'encrypt'}}}).stop()
        with self.assertRaisesRegex(AssertionError, 'exited'):
            self.start_the_proxy({'policy': {'table': {'example.test': 'bogus'}}})


if __name__ == '__main__':
    main()
