#!/usr/bin/python3
"""DNSSEC/DANE for SMTP (RFC 7672) with Postfix's dane and dane-only levels.

The DNS fixture's AD bit stands for "DNSSEC-validated" (dns.trust_ad: auto trusts it,
the resolver being on 127.0.0.1). TLSA records live at _<outbound.port>._tcp.<mx host>
(the harness's MX port, not 25). Unless a test says otherwise the default level is dane
and every answer carries AD.

Failures of every usable MX host give the client 451 4.7.5 on RCPT, naming each host;
the MX gets no message and never sees MAIL.
"""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestBase, TestPKI, main, message, proxy_config  # noqa: E402

RCPT = 'rcpt@example.test'


def hexdata(rec):
    return rec[3].hex()


class DaneCase(TestBase):
    """mx1.example.test (pref 10, 127.0.0.2, CA-signed EC certificate), every DNS answer
    with AD, default_level dane."""

    proxy_extra = {'outbound': {'tls': {'default_level': 'dane'}}}

    def setup_fixtures(self):
        self.dns.ad = True
        self.mx1 = self.add_mx('mx1', '127.0.0.2')

    # ---- fixtures ----------------------------------------------------------------------
    def tlsa_name(self, host):
        return '_%d._tcp.%s' % (self.mx_port, host)

    def publish(self, host, *records):
        """TLSA records (usage, selector, mtype, data), or raw RDATA (bytes), for HOST
        at the MX port."""
        for r in records:
            self.dns.add(self.tlsa_name(host), 'TLSA', r)

    @staticmethod
    def cert(mx):
        return mx.cfg['starttls'][0]

    def unrelated_cert(self):
        """A certificate (and key) that no MX serves."""
        return self.pki.issue('unrelated.example.test')[0]

    def mx_with(self, host, ip, cert_key, pref=10):
        """An MX serving CERT_KEY ((cert or chain, key))."""
        return self.add_mx(host, ip, pref=pref, starttls=cert_key)

    # ---- assertions --------------------------------------------------------------------
    def assertDelivered(self, out, mx, verdict='Verified', policy='dane', tlsa=None):
        """Delivered over TLS 1.3 to MX with the log's verdict, policy and (TLSA) the
        matched-record line."""
        self.assertReply(out['rcpt'][0], 250)
        self.assertReply(out['data'], 250)
        m = mx.wait_messages(1)[0]
        self.assertEqual(m.tls_version, 'TLSv1.3')
        self.assertEqual(m.rcpts, [RCPT])
        relay = r'%s\[%s\]:%d' % (re.escape(mx.cfg['name']), re.escape(mx.ip), self.mx_port)
        self.assertLog(r'%s TLS connection established to %s: TLSv1\.3 with cipher'
                       % (verdict, relay))
        self.assertLog(r'(?m)to=<%s>, relay=%s, .*status=sent \(250.*\), tls=TLSv1\.3/%s, '
                       r'policy=%s$' % (re.escape(RCPT), relay, verdict, policy))
        if tlsa:
            self.assertLog(r'matched TLSA record %s\b' % re.escape(tlsa))
        return m


class DaneEE(DaneCase):

    def test_ee_311_match_delivered(self):
        """3 1 1 for mx1's key: delivered, Verified, policy=dane, matched record logged;
        the TLSA name is _<port>._tcp.<mx host>."""
        self.publish('mx1.example.test', self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        out = self.send(RCPT, message('dane-ee'))
        m = self.assertDelivered(out, self.mx1, tlsa='3 1 1')
        self.assertEqual(m.session.sni, 'mx1.example.test')  # the TLSA base domain
        self.assertGreater(self.dns.queried(self.tlsa_name('mx1.example.test'), 'TLSA'), 0)
        self.assertEqual(self.dns.queried('_25._tcp.mx1.example.test'), 0)

    def test_ee_301_and_312_match_delivered(self):
        """Other selector/matching types of DANE-EE (full certificate SHA-256, public
        key SHA-512) match too; the log names the record that matched."""
        cert = self.cert(self.mx1)
        self.publish('mx1.example.test', self.pki.tlsa(cert, 3, 0, 1))
        self.assertDelivered(self.send(RCPT), self.mx1, tlsa='3 0 1')
        mx2 = self.add_mx('mx2', '127.0.0.3', domain='two.test')
        self.publish('mx2.two.test', self.pki.tlsa(self.cert(mx2), 3, 1, 2))
        out = self.send('rcpt@two.test')
        self.assertReply(out['data'], 250)
        self.assertEqual(mx2.wait_messages(1)[0].tls_version, 'TLSv1.3')
        self.assertLog(r'(?m)relay=mx2\.two\.test\[127\.0\.0\.3\]:%d, .*status=sent .*, '
                       r'tls=TLSv1\.3/Verified, policy=dane$' % self.mx_port)
        self.assertLog(r'matched TLSA record 3 1 2\b')

    def test_ee_one_of_several_records_matches(self):
        """An RRset with a stale record and the current one: the current one matches."""
        cert = self.cert(self.mx1)
        self.publish('mx1.example.test', self.pki.tlsa(self.unrelated_cert(), 3, 1, 1),
                     self.pki.tlsa(cert, 3, 0, 1))
        self.assertDelivered(self.send(RCPT), self.mx1, tlsa='3 0 1')

    def test_ee_wrong_name_delivered(self):
        """DANE-EE ignores the names in the certificate."""
        self.mx1.configure(starttls=self.pki.issue('mx1.example.test',
                                                   wrong_name='other.example.test'))
        self.publish('mx1.example.test', self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        self.assertDelivered(self.send(RCPT), self.mx1, tlsa='3 1 1')

    def test_ee_self_signed_delivered(self):
        """DANE-EE needs no CA: a self-signed certificate matching 3 1 1 is Verified."""
        self.mx1.configure(starttls=self.pki.issue('mx1.example.test', self_signed=True))
        self.publish('mx1.example.test', self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        self.assertDelivered(self.send(RCPT), self.mx1, tlsa='3 1 1')

    def test_ee_expired_delivered(self):
        """DANE-EE ignores the validity dates."""
        self.mx1.configure(starttls=self.pki.issue('mx1.example.test', expired=True))
        self.publish('mx1.example.test', self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        self.assertDelivered(self.send(RCPT), self.mx1, tlsa='3 1 1')

    def test_mismatch_first_mx_second_used(self):
        """mx1 (pref 10) does not match its TLSA, mx2 (pref 20) does: delivered via mx2;
        mx1 has no message and never saw MAIL."""
        mx2 = self.add_mx('mx2', '127.0.0.3', pref=20)
        self.publish('mx1.example.test', self.pki.tlsa(self.unrelated_cert(), 3, 1, 1))
        self.publish('mx2.example.test', self.pki.tlsa(self.cert(mx2), 3, 1, 1))
        out = self.send(RCPT)
        self.assertDelivered(out, mx2, tlsa='3 1 1')
        self.assertNoMail(self.mx1)
        self.assertGreater(self.mx1.connections, 0)  # it was tried first

    def test_all_mismatch_451(self):
        """Both MX hosts fail DANE: 451 4.7.5 naming both; no MAIL at either, no 5xx."""
        mx2 = self.add_mx('mx2', '127.0.0.3', pref=20)
        other = self.unrelated_cert()
        self.publish('mx1.example.test', self.pki.tlsa(other, 3, 1, 1))
        self.publish('mx2.example.test', self.pki.tlsa(other, 3, 1, 1))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', 'mx2.example.test', policy='dane')
        self.assertReason(out, 'mx1.example.test', 'Server certificate not verified')
        self.assertNoMail(self.mx1)
        self.assertNoMail(mx2)
        self.assertNotRegex(self.proxy.log_text(), r'status=sent')

    def test_handshake_failure_not_retried_in_plaintext(self):
        """TLS is required by DANE; a broken handshake is not followed by a plaintext
        attempt: 451 4.7.5, and the MX never saw MAIL."""
        self.publish('mx1.example.test', self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        self.mx1.configure(tls_garbage=True)
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertNoMail(self.mx1)
        for s in self.mx1.sessions:
            self.assertNotIn('MAIL', ' '.join(s.commands).upper())

    def test_tlsa_but_no_starttls_451(self):
        """TLSA published, MX offers no STARTTLS: 451 4.7.5, TLS-required reason."""
        self.publish('mx1.example.test', self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        self.mx1.configure(offer_starttls=False)
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', policy='dane')
        self.assertReason(out, 'mx1.example.test', 'TLS is required, but was not offered')
        self.assertNoMail(self.mx1)

    def test_tlsa_other_port_ignored(self):
        """A matching TLSA at _25._tcp is not the one for this port: no DANE (may)."""
        self.dns.add('_25._tcp.mx1.example.test', 'TLSA',
                     self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        out = self.send(RCPT)
        self.assertReply(out['data'], 250)
        self.mx1.wait_messages(1)
        self.assertLog(r'to=<%s>, .*status=sent .*, tls=TLSv1\.3/(Trusted|Untrusted), '
                       % re.escape(RCPT))
        self.assertNotIn('matched TLSA', self.proxy.log_text())


class DaneRRsets(DaneCase):
    """What the whole TLSA RRset says: every record is read, however many there are
    (RFC 6698 2.1: any usable record may match), and of several digests of one usage
    and selector only the strongest is used (RFC 7671 9, digest algorithm agility)."""

    def test_usable_record_after_many_unusable_still_authenticates(self):
        """Nine PKIX-EE(1) records (unusable in SMTP) ahead of one DANE-EE(3) record
        that does not match: the host must be authenticated by that record, so 4.7.5.
        Reading only the first records would make the RRset look unusable and give
        unauthenticated TLS ("encrypt") instead."""
        filler = [(1, 1, 1, bytes([i]) * 32) for i in range(1, 10)]
        self.publish('mx1.example.test', *filler,
                     self.pki.tlsa(self.unrelated_cert(), 3, 1, 1))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', policy='dane')
        self.assertReason(out, 'mx1.example.test', 'Server certificate not verified')
        self.assertNoMail(self.mx1)

    def test_matching_record_after_many_usable_delivered(self):
        """Twelve stale DANE-EE(3) records, then the one that matches: delivered,
        Verified by that record."""
        stale = [(3, 1, 1, bytes([i]) * 32) for i in range(1, 13)]
        self.publish('mx1.example.test', *stale, self.pki.tlsa(self.cert(self.mx1), 3, 0, 1))
        self.assertDelivered(self.send(RCPT), self.mx1, tlsa='3 0 1')

    def test_sha512_wins_over_sha256(self):
        """3 1 1 matches but 3 1 2 (same usage and selector, stronger digest) does not:
        only the SHA2-512 record counts, so 4.7.5."""
        cert = self.cert(self.mx1)
        self.publish('mx1.example.test', self.pki.tlsa(cert, 3, 1, 1),
                     self.pki.tlsa(self.unrelated_cert(), 3, 1, 2))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', policy='dane')
        self.assertNoMail(self.mx1)

    def test_sha512_match_used_sha256_ignored(self):
        """3 1 2 matches, 3 1 1 (weaker) does not: delivered by 3 1 2. Another selector
        is judged on its own: 3 0 1 matching next to a 3 1 2 that does not: delivered."""
        cert = self.cert(self.mx1)
        self.publish('mx1.example.test', self.pki.tlsa(self.unrelated_cert(), 3, 1, 1),
                     self.pki.tlsa(cert, 3, 1, 2))
        self.assertDelivered(self.send(RCPT), self.mx1, tlsa='3 1 2')
        mx2 = self.add_mx('mx2', '127.0.0.3', domain='two.test')
        self.publish('mx2.two.test', self.pki.tlsa(self.cert(mx2), 3, 0, 1),
                     self.pki.tlsa(self.unrelated_cert(), 3, 1, 2))
        out = self.send('rcpt@two.test')
        self.assertReply(out['data'], 250)
        mx2.wait_messages(1)
        self.assertLog(r'mx2\.two\.test\[127\.0\.0\.3\]:%d: matched TLSA record 3 0 1\b'
                       % self.mx_port)


class DaneTlsaAlias(DaneCase):
    """The TLSA name itself is an alias: _<port>._tcp.mx1.example.test CNAME
    _<port>._tcp.mx1.tlsa.test, where the records are (RFC 7671 7, RFC 7672 2.2.3:
    a validated CNAME chain is followed like any other answer)."""

    def alias(self):
        self.dns.add(self.tlsa_name('mx1.example.test'), 'CNAME',
                     self.tlsa_name('mx1.tlsa.test'))

    def test_records_behind_cname_match_delivered(self):
        self.alias()
        self.publish('mx1.tlsa.test', self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        self.assertDelivered(self.send(RCPT), self.mx1, tlsa='3 1 1')

    def test_records_behind_cname_mismatch_451(self):
        """Not matching: 4.7.5 (the records are not lost on the way, which would
        turn DANE off)."""
        self.alias()
        self.publish('mx1.tlsa.test', self.pki.tlsa(self.unrelated_cert(), 3, 1, 1))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', policy='dane')
        self.assertNoMail(self.mx1)

    def test_cname_to_nothing_no_dane(self):
        """The alias leads nowhere (NXDOMAIN at the target): no TLSA records, may."""
        self.alias()
        self.mx1.configure(offer_starttls=False)
        out = self.send(RCPT)
        self.assertReply(out['data'], 250)
        self.assertIsNone(self.mx1.wait_messages(1)[0].tls_version)


class DaneTA(DaneCase):
    """DANE-TA(2): the trust anchor is a CA of its own (not in outbound.tls.ca_file, so
    only DANE can make the chain Verified); the MX sends leaf + CA."""

    def setup_fixtures(self):
        super().setup_fixtures()
        self.ta = TestPKI(os.path.join(self.tmpdir, 'ta'), ca_name='DANE TA CA')

    def serve_ta_cert(self, name='mx1.example.test', **kw):
        cert, key = self.ta.issue(name, **kw)
        self.mx1.configure(starttls=(self.ta.chain(cert), key))
        return cert

    def test_ta_201_ca_cert_delivered(self):
        """2 0 1 of the CA certificate, chain sent: delivered, Verified."""
        self.serve_ta_cert()
        self.publish('mx1.example.test', self.ta.tlsa(self.ta.ca_file, 2, 0, 1))
        self.assertDelivered(self.send(RCPT), self.mx1, tlsa='2 0 1')

    def test_ta_211_ca_spki_delivered(self):
        """2 1 1 of the CA's public key: delivered, Verified."""
        self.serve_ta_cert()
        self.publish('mx1.example.test', self.ta.tlsa(self.ta.ca_file, 2, 1, 1))
        self.assertDelivered(self.send(RCPT), self.mx1, tlsa='2 1 1')

    def test_ta_other_ca_451(self):
        """2 0 1 of a CA that did not issue the certificate (the harness CA): 4.7.5."""
        self.serve_ta_cert()
        self.publish('mx1.example.test', self.pki.tlsa(self.pki.ca_file, 2, 0, 1))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertNoMail(self.mx1)

    def assertTaNameRefused(self, **cert):
        """mx1 serves a certificate from the anchor (CERT: serve_ta_cert keywords),
        2 0 1 of the anchor is published: 4.7.5, no MAIL."""
        self.serve_ta_cert(**cert)
        self.publish('mx1.example.test', self.ta.tlsa(self.ta.ca_file, 2, 0, 1))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertNoMail(self.mx1)

    def test_ta_wrong_name_451(self):
        """Unlike DANE-EE, DANE-TA checks names (RFC 7672 3.2.2): a certificate from the
        anchor naming another host fails: 4.7.5."""
        self.assertTaNameRefused(wrong_name='other.example.test')

    def test_ta_nexthop_name_is_not_a_reference_identifier_451(self):
        """A certificate from the anchor naming only the recipient domain (the
        next-hop, example.test), not the MX host: 4.7.5 (RFC 7672 3.2.2)."""
        self.assertTaNameRefused(name='example.test')

    def test_ta_wildcard_certificate_delivered(self):
        """*.example.test from the anchor covers mx1.example.test: Verified."""
        self.serve_ta_cert(name='*.example.test')
        self.publish('mx1.example.test', self.ta.tlsa(self.ta.ca_file, 2, 0, 1))
        self.assertDelivered(self.send(RCPT), self.mx1, tlsa='2 0 1')


class DaneFullCertificate(DaneCase):
    """TLSA records carrying a whole certificate (matching type 0): kilobytes of RDATA,
    more than the resolver's 1232-byte EDNS payload, so the UDP answer comes back
    truncated (TC) and the proxy must ask again over TCP. Until a record of over
    2,048 bytes was refused by the DNS parser, the host was unusable (451)."""

    UDP_PAYLOAD = 1232  # what the proxy's queries announce

    def big_cert(self, name):
        """An RSA certificate with enough names to weigh over 2 KB in DER."""
        alt = ['alt-%02d.%s' % (i, name) for i in range(80)]
        cert_key = self.pki.issue(name, key='rsa', alt_names=alt)
        self.assertGreater(len(self.pki.cert_der(cert_key[0])), 2048)
        return cert_key

    def assertCameOverTcp(self, host):
        """The TLSA query was answered truncated over UDP, then asked over TCP."""
        name = self.tlsa_name(host).lower()
        protos = [q['proto'] for q in self.dns.query_log
                  if q['name'] == name and q['type'] == 'TLSA']
        self.assertIn('udp', protos)
        self.assertIn('tcp', protos)

    def test_ee_300_full_certificate_over_tcp(self):
        """3 0 0 with mx1's whole certificate (over 2 KB): delivered, Verified, the
        matched record logged."""
        self.mx1.configure(starttls=self.big_cert('mx1.example.test'))
        rec = self.pki.tlsa(self.cert(self.mx1), 3, 0, 0)
        self.publish('mx1.example.test', rec)
        self.assertDelivered(self.send(RCPT), self.mx1, tlsa='3 0 0 ' + hexdata(rec)[:32])
        self.assertCameOverTcp('mx1.example.test')

    def test_ee_300_wrong_full_certificate_451(self):
        """3 0 0 with another host's whole certificate (also over 2 KB): 4.7.5, the MX
        gets no message."""
        self.mx1.configure(starttls=self.big_cert('mx1.example.test'))
        other = self.big_cert('other.example.test')[0]
        self.publish('mx1.example.test', self.pki.tlsa(other, 3, 0, 0))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', policy='dane')
        self.assertNoMail(self.mx1)
        self.assertCameOverTcp('mx1.example.test')
        # Refused by the DANE check in the handshake, not for want of a TLSA answer.
        self.assertLog(r'mx1\.example\.test\[127\.0\.0\.2\]:%d: Server certificate not '
                       r'verified \(dane\): .*no matching DANE TLSA records' % self.mx_port)
        self.assertNotIn('matched TLSA', self.proxy.log_text())

    def test_ta_200_full_ca_certificate_over_tcp(self):
        """2 0 0 with a whole RSA-4096 CA certificate that the MX does not send (only
        its leaf): the record itself is the trust anchor; delivered, Verified."""
        ta = TestPKI(os.path.join(self.tmpdir, 'bigta'), ca_name='Big DANE TA CA',
                     ca_key_type='rsa4096')
        self.assertGreater(len(ta.cert_der(ta.ca_file)), self.UDP_PAYLOAD)
        self.mx1.configure(starttls=ta.issue('mx1.example.test'))
        rec = ta.tlsa(ta.ca_file, 2, 0, 0)
        self.publish('mx1.example.test', rec)
        self.assertDelivered(self.send(RCPT), self.mx1, tlsa='2 0 0 ' + hexdata(rec)[:32])
        self.assertCameOverTcp('mx1.example.test')


class DaneFallbacks(DaneCase):

    def test_insecure_zone_falls_back_to_may(self):
        """No AD: the TLSA records (not matching) are not trusted; opportunistic TLS
        delivers (Trusted/Untrusted, not Verified; no TLSA matched)."""
        self.dns.ad = False
        self.mx1.configure(starttls=self.pki.issue('mx1.example.test', self_signed=True))
        self.publish('mx1.example.test', self.pki.tlsa(self.unrelated_cert(), 3, 1, 1))
        out = self.send(RCPT)
        self.assertReply(out['rcpt'][0], 250)
        self.assertReply(out['data'], 250)
        self.assertEqual(self.mx1.wait_messages(1)[0].tls_version, 'TLSv1.3')
        self.assertLog(r'(Trusted|Untrusted) TLS connection established to '
                       r'mx1\.example\.test\[127\.0\.0\.2\]:%d' % self.mx_port)
        self.assertLog(r'(?m)to=<%s>, .*status=sent \(250.*\), '
                       r'tls=TLSv1\.3/(Trusted|Untrusted), policy=[^,]+$' % re.escape(RCPT))
        self.assertNotIn('matched TLSA', self.proxy.log_text())
        self.assertNotIn('/Verified', self.proxy.log_text())

    def test_insecure_host_address_falls_back_to_may(self):
        """MX RRset secure but the host's A record not: may (RFC 7672 2.2.2)."""
        self.dns.set_ad('mx1.example.test', False)
        self.publish('mx1.example.test', self.pki.tlsa(self.unrelated_cert(), 3, 1, 1))
        out = self.send(RCPT)
        self.assertReply(out['data'], 250)
        self.mx1.wait_messages(1)
        self.assertNotIn('/Verified', self.proxy.log_text())

    def test_insecure_zone_plaintext_mx_delivered(self):
        """No AD, TLSA present, MX without STARTTLS: may delivers in plaintext."""
        self.dns.ad = False
        self.publish('mx1.example.test', self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        self.mx1.configure(offer_starttls=False)
        out = self.send(RCPT)
        self.assertReply(out['data'], 250)
        self.assertIsNone(self.mx1.wait_messages(1)[0].tls_version)

    def test_no_tlsa_falls_back_to_may(self):
        """Secure zone, no TLSA (NODATA): may; a plaintext-only MX still gets mail."""
        self.mx1.configure(offer_starttls=False)
        out = self.send(RCPT)
        self.assertReply(out['data'], 250)
        self.assertIsNone(self.mx1.wait_messages(1)[0].tls_version)
        self.assertGreater(self.dns.queried(self.tlsa_name('mx1.example.test'), 'TLSA'), 0)

    @proxy_config({'dns': {'trust_ad': 'no'}})
    def test_trust_ad_no_ignores_dnssec(self):
        """dns.trust_ad: no: AD bits are not believed, so a mismatching TLSA does not
        block delivery (may)."""
        self.publish('mx1.example.test', self.pki.tlsa(self.unrelated_cert(), 3, 1, 1))
        out = self.send(RCPT)
        self.assertReply(out['data'], 250)
        self.mx1.wait_messages(1)
        self.assertNotIn('/Verified', self.proxy.log_text())

    def test_tlsa_servfail_second_mx_used(self):
        """SERVFAIL for mx1's TLSA: mx1 skipped (not dialled), mx2 (matching) used."""
        mx2 = self.add_mx('mx2', '127.0.0.3', pref=20)
        self.publish('mx1.example.test', self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        self.dns.servfail(self.tlsa_name('mx1.example.test'), 'TLSA')
        self.publish('mx2.example.test', self.pki.tlsa(self.cert(mx2), 3, 1, 1))
        self.assertDelivered(self.send(RCPT), mx2, tlsa='3 1 1')
        self.assertNoMail(self.mx1)
        self.assertEqual(self.mx1.connections, 0)

    def test_tlsa_servfail_only_mx_451(self):
        """SERVFAIL for the only MX's TLSA: 451 4.7.5, no plaintext fallback."""
        self.mx1.configure(offer_starttls=False)
        self.dns.servfail(self.tlsa_name('mx1.example.test'), 'TLSA')
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertNoMail(self.mx1)

    def test_tlsa_timeout_only_mx_451(self):
        """No answer at all for the TLSA query: the host is skipped: 451 4.7.5."""
        self.dns.drop(self.tlsa_name('mx1.example.test'), 'TLSA')
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertNoMail(self.mx1)


class DaneAddressFamilies(DaneCase):
    """DNSSEC is judged per address RRset (RFC 7672 2.2, Postfix): an attacker who
    makes one family's lookup fail (bogus data makes a validating resolver answer
    SERVFAIL) or time out must not switch DANE off for the validated other family."""

    def test_aaaa_servfail_tlsa_mismatch_still_refused(self):
        """A secure, AAAA SERVFAIL, TLSA that does not match: 451 4.7.5 naming the
        certificate check, no MAIL (it was delivered as may before)."""
        self.dns.servfail('mx1.example.test', 'AAAA')
        self.publish('mx1.example.test', self.pki.tlsa(self.unrelated_cert(), 3, 1, 1))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', policy='dane')
        self.assertReason(out, 'mx1.example.test', 'Server certificate not verified')
        self.assertNoMail(self.mx1)
        self.assertLog(r'policy: example\.test: mx_secure=yes .*mx1\.example\.test dane')

    def test_aaaa_servfail_tlsa_match_delivered(self):
        """A secure, AAAA SERVFAIL, matching TLSA: Verified over the IPv4 address."""
        self.dns.servfail('mx1.example.test', 'AAAA')
        self.publish('mx1.example.test', self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        self.assertDelivered(self.send(RCPT), self.mx1, tlsa='3 1 1')

    def test_aaaa_timeout_tlsa_mismatch_still_refused(self):
        """A secure, no answer at all to AAAA (timeout): DANE still applies: 4.7.5."""
        self.dns.drop('mx1.example.test', 'AAAA')
        self.publish('mx1.example.test', self.pki.tlsa(self.unrelated_cert(), 3, 1, 1))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', policy='dane')
        self.assertNoMail(self.mx1)

    def test_aaaa_servfail_dane_only_without_tlsa_451(self):
        """dane-only, A secure, AAAA SERVFAIL, no TLSA records: the host is skipped for
        lack of TLSA records, not for insecure addresses; no connection at all."""
        self.restart_proxy({'outbound': {'tls': {'default_level': 'dane-only'}}})
        self.dns.servfail('mx1.example.test', 'AAAA')
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertReason(out, 'mx1.example.test', 'no TLSA records')
        self.assertEqual(self.mx1.connections, 0)


class DaneCname(DaneCase):
    """The MX host name is an alias: mx1.example.test CNAME mx1.hosting.test (A
    127.0.0.2), every answer secure. RFC 7672 2.2.2: TLSA records are looked up first
    at the expanded name, then (none there) at the original name; DANE-TA name checks
    accept both names."""

    def setup_fixtures(self):
        self.dns.ad = True
        self.mx1 = self.add_mx('mx1', '127.0.0.2', a_record=False)
        self.dns.add('mx1.example.test', 'CNAME', 'mx1.hosting.test')
        self.dns.add('mx1.hosting.test', 'A', '127.0.0.2')

    def test_tlsa_at_target_match_delivered(self):
        """TLSA only at the target: Verified, and the target's TLSA name was asked; SNI
        names the TLSA base domain, the target (RFC 7672 2.2.3, 8.1)."""
        self.publish('mx1.hosting.test', self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        m = self.assertDelivered(self.send(RCPT), self.mx1, tlsa='3 1 1')
        self.assertEqual(m.session.sni, 'mx1.hosting.test')
        self.assertGreater(self.dns.queried(self.tlsa_name('mx1.hosting.test'), 'TLSA'), 0)

    def test_tlsa_at_target_mismatch_451(self):
        """TLSA only at the target, not matching: 4.7.5 (was: may, delivered)."""
        self.publish('mx1.hosting.test', self.pki.tlsa(self.unrelated_cert(), 3, 1, 1))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', policy='dane')
        self.assertNoMail(self.mx1)

    def test_target_wins_over_original(self):
        """TLSA at both names: the target's RRset is the one used (a record only the
        original name publishes is not consulted)."""
        self.publish('mx1.hosting.test', self.pki.tlsa(self.unrelated_cert(), 3, 1, 1))
        self.publish('mx1.example.test', self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', policy='dane')
        self.assertNoMail(self.mx1)

    def test_tlsa_at_original_only_match_delivered(self):
        """No TLSA at the target (secure NXDOMAIN): the original name's records apply,
        and SNI names that TLSA base domain, the original name."""
        self.publish('mx1.example.test', self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        m = self.assertDelivered(self.send(RCPT), self.mx1, tlsa='3 1 1')
        self.assertEqual(m.session.sni, 'mx1.example.test')
        self.assertGreater(self.dns.queried(self.tlsa_name('mx1.hosting.test'), 'TLSA'), 0)

    def test_tlsa_at_original_only_mismatch_451(self):
        self.publish('mx1.example.test', self.pki.tlsa(self.unrelated_cert(), 3, 1, 1))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', policy='dane')
        self.assertNoMail(self.mx1)

    def test_tlsa_at_target_servfail_not_rescued_by_original(self):
        """A failed TLSA lookup at the target may hide a downgrade: the host is
        unusable, although the original name publishes a matching record."""
        self.dns.servfail(self.tlsa_name('mx1.hosting.test'), 'TLSA')
        self.publish('mx1.example.test', self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertReason(out, 'mx1.example.test', 'TLSA lookup failed')
        self.assertEqual(self.mx1.connections, 0)

    def test_tlsa_at_neither_may_and_dane_only(self):
        """No TLSA at either name: dane → opportunistic (delivered, not Verified);
        dane-only → 4.7.5 without a connection."""
        out = self.send(RCPT)
        self.assertReply(out['data'], 250)
        self.mx1.wait_messages(1)
        self.assertNotIn('/Verified', self.proxy.log_text())
        self.restart_proxy({'outbound': {'tls': {'default_level': 'dane-only'}}})
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertEqual(len(self.mx1.messages), 1)

    def _ta(self, cert_name):
        ta = TestPKI(os.path.join(self.tmpdir, 'ta'), ca_name='DANE TA CA')
        cert, key = ta.issue(cert_name)
        self.mx1.configure(starttls=(ta.chain(cert), key))
        return ta

    def test_ta_certificate_names_target_delivered(self):
        """DANE-TA at the target, certificate for the target name: Verified."""
        ta = self._ta('mx1.hosting.test')
        self.publish('mx1.hosting.test', ta.tlsa(ta.ca_file, 2, 0, 1))
        self.assertDelivered(self.send(RCPT), self.mx1, tlsa='2 0 1')

    def test_ta_certificate_names_original_delivered(self):
        """DANE-TA at the target, certificate for the MX name as written: Verified."""
        ta = self._ta('mx1.example.test')
        self.publish('mx1.hosting.test', ta.tlsa(ta.ca_file, 2, 0, 1))
        self.assertDelivered(self.send(RCPT), self.mx1, tlsa='2 0 1')

    def test_ta_certificate_names_neither_451(self):
        ta = self._ta('other.hosting.test')
        self.publish('mx1.hosting.test', ta.tlsa(ta.ca_file, 2, 0, 1))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertNoMail(self.mx1)


class DaneUnusable(DaneCase):
    """Only unusable TLSA records (PKIX-EE(1), PKIX-TA(0)): TLS required, not
    authenticated (RFC 7672 2.2)."""

    def assertTlsRequired(self, *records):
        """RECORDS published, mx1 offers no STARTTLS: 4.7.5, TLS-required reason."""
        self.publish('mx1.example.test', *records)
        self.mx1.configure(offer_starttls=False)
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertReason(out, 'mx1.example.test', 'TLS is required, but was not offered')
        self.assertNoMail(self.mx1)

    def assertUnauthenticatedTls(self, *records):
        """RECORDS published: delivered over TLS, not Verified, no record matched."""
        self.publish('mx1.example.test', *records)
        out = self.send(RCPT)
        self.assertReply(out['rcpt'][0], 250)
        self.assertReply(out['data'], 250)
        self.assertEqual(self.mx1.wait_messages(1)[0].tls_version, 'TLSv1.3')
        self.assertLog(r'to=<%s>, .*status=sent \(250.*\), '
                       r'tls=TLSv1\.3/(Trusted|Untrusted|Anonymous), ' % re.escape(RCPT))
        self.assertNotIn('matched TLSA', self.proxy.log_text())

    def test_unusable_only_no_starttls_451(self):
        self.assertTlsRequired(self.pki.tlsa(self.cert(self.mx1), 1, 1, 1))

    def test_unusable_only_starttls_delivered(self):
        """Even with records that would not match: delivered over TLS, not Verified."""
        self.assertUnauthenticatedTls(self.pki.tlsa(self.unrelated_cert(), 1, 1, 1),
                                      self.pki.tlsa(self.pki.ca_file, 0, 0, 1))

    def test_malformed_full_records_only_encrypt(self):
        """Records of matching type Full(0) whose data is no certificate (selector 0)
        or public key (selector 1) are as unusable as a digest of the wrong length:
        TLS required, not authenticated, delivered (was: no usable record, 4.7.5)."""
        self.assertUnauthenticatedTls((3, 0, 0, b'\x30\x03\x02\x01\x00'),
                                      (2, 1, 0, bytes(range(1, 91))))

    def test_malformed_full_record_only_no_starttls_451(self):
        self.assertTlsRequired((3, 1, 0, b'\x30\x03\x02\x01\x00'))

    def test_malformed_full_record_next_to_a_match_delivered(self):
        """A malformed 3 0 0 does not spoil the RRset: the matching 3 1 1 decides."""
        self.publish('mx1.example.test', (3, 0, 0, b'\x30\x03\x02\x01\x00'),
                     self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        self.assertDelivered(self.send(RCPT), self.mx1, tlsa='3 1 1')

    def test_short_rdata_only_encrypt(self):
        """TLSA RDATA of 2 bytes and of none, too short for usage, selector and matching
        type: unusable records, not a broken answer, so TLS required, not
        authenticated, delivered (was: the whole answer refused, 4.7.5)."""
        self.assertUnauthenticatedTls(b'\x03\x01', b'')

    def test_short_rdata_only_no_starttls_451(self):
        self.assertTlsRequired(b'\x03\x01')

    def test_short_rdata_next_to_a_match_delivered(self):
        """A 2-byte record does not spoil the RRset: the matching 3 1 1 decides."""
        self.publish('mx1.example.test', b'\x03\x01',
                     self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        self.assertDelivered(self.send(RCPT), self.mx1, tlsa='3 1 1')

    def test_short_rdata_next_to_a_mismatch_451(self):
        """Beside a usable record that does not match, the short one changes nothing:
        DANE applies and the host fails it."""
        self.publish('mx1.example.test', b'\x03\x01',
                     self.pki.tlsa(self.unrelated_cert(), 3, 1, 1))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', policy='dane')
        self.assertReason(out, 'mx1.example.test', 'Server certificate not verified')
        self.assertNoMail(self.mx1)


class DaneOnly(DaneCase):
    proxy_extra = {'outbound': {'tls': {'default_level': 'dane-only'}}}

    def test_dane_only_without_tlsa_451(self):
        """Secure zone without TLSA: dane-only skips the host: 451 4.7.5."""
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertNoMail(self.mx1)

    def test_dane_only_insecure_zone_451(self):
        """No AD, TLSA published and matching: not DANE, so 451 4.7.5."""
        self.dns.ad = False
        self.publish('mx1.example.test', self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test')
        self.assertNoMail(self.mx1)

    def test_dane_only_match_delivered(self):
        self.publish('mx1.example.test', self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        self.assertDelivered(self.send(RCPT), self.mx1, tlsa='3 1 1')


class DaneTableEntry(DaneCase):
    """The level can come from the policy table (default may): policy=table/dane."""
    proxy_extra = {'policy': {'table': {'example.test': 'dane'}}}

    def test_table_dane_match_delivered(self):
        self.publish('mx1.example.test', self.pki.tlsa(self.cert(self.mx1), 3, 1, 1))
        self.assertDelivered(self.send(RCPT), self.mx1, policy='table/dane', tlsa='3 1 1')

    def test_table_dane_mismatch_451(self):
        self.publish('mx1.example.test', self.pki.tlsa(self.unrelated_cert(), 3, 1, 1))
        out = self.send(RCPT)
        self.assertDeferred(out, 'mx1.example.test', policy='table/dane')
        self.assertNoMail(self.mx1)


class FixtureSelfCheck(TestBase):
    """The fixtures' TLSA data as OpenSSL's own DANE code sees it (openssl s_client
    against the MX fixture), independent of the proxy."""

    start_proxy = False

    def s_client(self, mx, rrdata, host='mx1.example.test'):
        p = subprocess.run(
            ['openssl', 's_client', '-connect', '%s:%d' % (mx.ip, self.mx_port),
             '-starttls', 'smtp', '-name', 'proxy.test', '-servername', host,
             '-dane_tlsa_domain', host, '-dane_tlsa_rrdata', rrdata,
             '-verify_return_error'],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        return p.returncode, p.stdout + p.stderr

    def rr(self, rec):
        return '%d %d %d %s' % (rec[0], rec[1], rec[2], hexdata(rec))

    def test_fixture_tlsa_ee_matches(self):
        cert = self.mx1.cfg['starttls'][0]
        for sel, mt in ((1, 1), (0, 1), (1, 2)):
            rc, out = self.s_client(self.mx1, self.rr(self.pki.tlsa(cert, 3, sel, mt)))
            self.assertIn('Verification: OK', out)
            self.assertRegex(out, r'DANE TLSA 3 %d %d .* matched EE certificate' % (sel, mt))

    def test_fixture_tlsa_ee_mismatch(self):
        other = self.pki.issue('unrelated.example.test')[0]
        rc, out = self.s_client(self.mx1, self.rr(self.pki.tlsa(other, 3, 1, 1)))
        self.assertNotIn('Verification: OK', out)

    def test_fixture_tlsa_ta_matches(self):
        ta = TestPKI(os.path.join(self.tmpdir, 'ta'), ca_name='DANE TA CA')
        cert, key = ta.issue('mx1.example.test')
        self.mx1.configure(starttls=(ta.chain(cert), key))
        for sel in (0, 1):
            rc, out = self.s_client(self.mx1, self.rr(ta.tlsa(ta.ca_file, 2, sel, 1)))
            self.assertIn('Verification: OK', out)
            self.assertRegex(out, r'DANE TLSA 2 %d 1 .* matched TA certificate' % sel)
        # the harness CA is no anchor for this chain
        rc, out = self.s_client(self.mx1, self.rr(self.pki.tlsa(self.pki.ca_file, 2, 0, 1)))
        self.assertNotIn('Verification: OK', out)


if __name__ == '__main__':
    main()
