"""A scriptable authoritative DNS server for tests (UDP and TCP, dnslib).

    dns = DnsServer()                      # 127.0.0.1, ephemeral port, both UDP and TCP
    dns.add('example.test', 'MX', (10, 'mx1.example.test'))
    dns.add('mx1.example.test', 'A', '127.0.0.2')
    dns.add('mx1.example.test', 'AAAA', '::1')
    dns.add('alias.example.test', 'CNAME', 'mx1.example.test')
    dns.add('_mta-sts.example.test', 'TXT', 'v=STSv1; id=1')   # or a list of strings
    dns.add('_25._tcp.mx1.example.test', 'TLSA', (3, 1, 1, bytes_or_hex))
    dns.add('_25._tcp.mx1.example.test', 'TLSA', b'\x03\x01')   # raw RDATA, any length
    dns.servfail('broken.test')            # SERVFAIL for every type (or qtype='MX')
    dns.drop('slow.test')                  # never answer: the client times out
    dns.refuse('x.test'); dns.truncate('big.test')  # REFUSED; TC=1 over UDP
    dns.hold('new.test'); dns.release('new.test')    # keep UDP answers back, then send
    DnsServer(neg_ttl=2)                   # negative answers carry an SOA (RFC 2308)
    dns.ad = True                          # AD bit on answers (dns.set_ad(name, b) per name)
    dns.port; dns.queries                  # [(name, type), ...] in arrival order
    dns.stop()

Answers: NOERROR with the records; NOERROR/NODATA when the name exists (or is an empty
non-terminal) without records of the type; NXDOMAIN otherwise. CNAMEs are followed
inside the server's data. The question is echoed; a query carrying an EDNS0 OPT record
gets an OPT back (DO echoed, udp size 1232); UDP answers larger than the client's limit
(512 without EDNS) are sent truncated (TC=1, no records) so the client retries over TCP.
Names are case-insensitive and may be given with or without the trailing dot.
"""

import binascii
import selectors
import socket
import struct
import threading

from dnslib import (AAAA, CNAME, EDNS0, MX, QTYPE, RCODE, RD, RR, SOA, TLSA, TXT, A,
                    DNSHeader, DNSRecord)

_OPT = 41


def _norm(name):
    return str(name).rstrip('.').lower()


def _rdata(rtype, value):
    if rtype == 'A':
        return A(value)
    if rtype == 'AAAA':
        return AAAA(value)
    if rtype == 'CNAME':
        return CNAME(value)
    if rtype == 'MX':
        pref, host = value
        return MX(host if host.endswith('.') else host + '.', pref)
    if rtype == 'TXT':
        if isinstance(value, (str, bytes)):
            value = [value]
        return TXT([v.encode() if isinstance(v, str) else v for v in value])
    if rtype == 'TLSA':
        if isinstance(value, bytes):  # the whole RDATA as given, malformed or not
            return RD(value)
        usage, selector, mtype, data = value
        if isinstance(data, str):
            data = binascii.unhexlify(data)
        return TLSA(usage, selector, mtype, data)
    raise ValueError('unsupported record type %r' % (rtype,))


class DnsServer:
    """Authoritative test DNS server on HOST, UDP and TCP on the same ephemeral port,
    served by one background thread (plus one short-lived thread per TCP client).

    Behaviours are looked up by (name, type) then (name, None):
    'servfail', 'drop', 'refuse', 'truncate' (UDP only; TCP answers normally)."""

    def __init__(self, host='127.0.0.1', ad=False, ttl=300, neg_ttl=None):
        self.host = host
        self.ad = ad
        self.ttl = ttl
        self.neg_ttl = neg_ttl    # NXDOMAIN/NODATA: an authority SOA with this MINIMUM
        self._held = []           # (request, peer) kept back by hold()
        self.queries = []         # (name, type) in arrival order
        self.query_log = []       # dicts: name, type, proto, do, rd, cd
        self._records = {}        # name -> [(type, rdata)]
        self._behaviour = {}      # (name, type|None) -> str
        self._ad_override = {}    # name -> bool
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self._tcp_conns = set()
        self.udp, self.tcp = self._bind()
        self.port = self.udp.getsockname()[1]
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.udp, selectors.EVENT_READ, 'udp')
        self._sel.register(self.tcp, selectors.EVENT_READ, 'tcp')
        self._thread = threading.Thread(target=self._serve, name='dns', daemon=True)
        self._thread.start()

    def _bind(self):
        last = None
        for _ in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((self.host, 0))
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((self.host, udp.getsockname()[1]))
                tcp.listen(16)
                return udp, tcp
            except OSError as e:
                last = e
                udp.close()
                tcp.close()
        raise RuntimeError('no port free for UDP and TCP: %s' % last)

    # ---- data ----------------------------------------------------------------------
    def add(self, name, rtype, value, ttl=None):
        """Adds one record. rtype: 'A', 'AAAA', 'CNAME', 'MX' ((pref, host)),
        'TXT' (str or list of str), 'TLSA' ((usage, selector, mtype, bytes|hex), or
        bytes: the raw RDATA, sent as is)."""
        rtype = rtype.upper()
        rr = RR(_norm(name) + '.', getattr(QTYPE, rtype), rdata=_rdata(rtype, value),
                ttl=self.ttl if ttl is None else ttl)
        with self._lock:
            self._records.setdefault(_norm(name), []).append((rtype, rr))

    def remove(self, name, rtype=None):
        """Removes NAME's records (of RTYPE only, when given)."""
        with self._lock:
            recs = self._records.get(_norm(name), [])
            recs = [r for r in recs if rtype is not None and r[0] != rtype.upper()]
            if recs:
                self._records[_norm(name)] = recs
            else:
                self._records.pop(_norm(name), None)

    def _set(self, name, qtype, what):
        with self._lock:
            key = (_norm(name), qtype.upper() if qtype else None)
            if what is None:
                self._behaviour.pop(key, None)
            else:
                self._behaviour[key] = what

    def servfail(self, name, qtype=None):
        """Answer SERVFAIL for NAME (of QTYPE only, when given)."""
        self._set(name, qtype, 'servfail')

    def drop(self, name, qtype=None):
        """Never answer queries for NAME (of QTYPE): the client times out."""
        self._set(name, qtype, 'drop')

    def refuse(self, name, qtype=None):
        """Answer REFUSED for NAME (of QTYPE)."""
        self._set(name, qtype, 'refuse')

    def truncate(self, name, qtype=None):
        """Answer over UDP with TC=1 and no records (forces a TCP retry)."""
        self._set(name, qtype, 'truncate')

    def hold(self, name, qtype=None):
        """Keep UDP queries for NAME (of QTYPE) unanswered until release()."""
        self._set(name, qtype, 'hold')

    def release(self, name, qtype=None):
        """Answers the queries hold() kept back, as the data stands now."""
        self._set(name, qtype, None)
        with self._lock:
            held, self._held = self._held, []
        for request, peer in held:
            self._udp_reply(request, self._reply(request, 'udp'), peer)

    def clear(self, name, qtype=None):
        """Removes a behaviour set by servfail/drop/refuse/truncate."""
        self._set(name, qtype, None)

    def set_ad(self, name, ad):
        """Per-name AD bit, overriding .ad; ad=None removes the override."""
        with self._lock:
            if ad is None:
                self._ad_override.pop(_norm(name), None)
            else:
                self._ad_override[_norm(name)] = bool(ad)

    def queried(self, name, rtype=None):
        """How many queries for NAME (of RTYPE) arrived so far."""
        n = _norm(name)
        return sum(1 for q in list(self.queries)
                   if q[0] == n and (rtype is None or q[1] == rtype.upper()))

    # ---- answering -------------------------------------------------------------------
    def _exists(self, name):
        if name in self._records:
            return True
        suffix = '.' + name
        return any(k.endswith(suffix) for k in self._records)  # empty non-terminal

    def answer(self, request, proto, peer=None):
        """Returns the reply DNSRecord for REQUEST, or None to stay silent."""
        q = request.q
        name, qtype = _norm(q.qname), QTYPE.get(q.qtype)
        opt = [r for r in request.ar if r.rtype == _OPT]
        do = bool(opt and (opt[0].ttl & 0x8000))
        self.queries.append((name, qtype))
        self.query_log.append({'name': name, 'type': qtype, 'proto': proto, 'do': do,
                               'rd': request.header.rd, 'cd': request.header.cd})
        with self._lock:
            beh = self._behaviour.get((name, qtype)) or self._behaviour.get((name, None))
            if beh == 'hold' and proto == 'udp':
                self._held.append((request, peer))
                return None
        return self._reply(request, proto)

    def _reply(self, request, proto):
        q = request.q
        name, qtype = _norm(q.qname), QTYPE.get(q.qtype)
        opt = [r for r in request.ar if r.rtype == _OPT]
        do = bool(opt and (opt[0].ttl & 0x8000))
        with self._lock:
            beh = self._behaviour.get((name, qtype)) or self._behaviour.get((name, None))
            ad = self._ad_override.get(name, self.ad)
            reply = DNSRecord(DNSHeader(id=request.header.id, qr=1, aa=1, ra=1,
                                        rd=request.header.rd, cd=request.header.cd,
                                        opcode=request.header.opcode), q=q)
            if opt:
                reply.add_ar(EDNS0(udp_len=1232, flags='do' if do else ''))
            if beh == 'drop':
                return None
            if beh in ('servfail', 'refuse'):
                reply.header.rcode = RCODE.SERVFAIL if beh == 'servfail' else RCODE.REFUSED
                return reply
            if beh == 'truncate' and proto == 'udp':
                reply.header.tc = 1
                return reply
            if q.qclass != 1:
                reply.header.rcode = RCODE.REFUSED
                return reply
            cur, seen = name, set()
            for _ in range(16):  # CNAME chain, bounded
                recs = self._records.get(cur, [])
                cname = [rr for t, rr in recs if t == 'CNAME']
                if cname and qtype != 'CNAME' and cur not in seen:
                    seen.add(cur)
                    reply.add_answer(cname[0])
                    cur = _norm(cname[0].rdata.label)
                    continue
                for t, rr in recs:
                    if t == qtype or qtype == 'ANY':
                        reply.add_answer(rr)
                if not reply.rr and not self._exists(cur):
                    reply.header.rcode = RCODE.NXDOMAIN
                break
            if self.neg_ttl is not None and not any(rr.rtype == q.qtype for rr in reply.rr):
                reply.add_auth(RR(cur.split('.', 1)[-1] + '.', QTYPE.SOA, ttl=self.neg_ttl,
                                  rdata=SOA('ns.test.', 'hostmaster.test.',
                                            (1, 3600, 600, 86400, self.neg_ttl))))
            reply.header.ad = 1 if ad else 0
            return reply

    # ---- transport -------------------------------------------------------------------
    def _serve(self):
        while not self._stop.is_set():
            for key, _ in self._sel.select(timeout=0.2):
                if key.data == 'udp':
                    self._udp_one()
                else:
                    try:
                        conn, _ = self.tcp.accept()
                    except OSError:
                        continue
                    t = threading.Thread(target=self._tcp_client, args=(conn,),
                                         name='dns-tcp', daemon=True)
                    self._threads.append(t)
                    t.start()

    def _udp_one(self):
        try:
            data, peer = self.udp.recvfrom(65535)
        except OSError:
            return
        try:
            request = DNSRecord.parse(data)
        except Exception:
            return
        self._udp_reply(request, self.answer(request, 'udp', peer), peer)

    def _udp_reply(self, request, reply, peer):
        if reply is None:
            return
        limit = 512
        opt = [r for r in request.ar if r.rtype == _OPT]
        if opt:
            limit = max(512, opt[0].rclass)
        wire = reply.pack()
        if len(wire) > limit:
            reply.rr, reply.auth = [], []
            reply.header.tc = 1
            wire = reply.pack()
        try:
            self.udp.sendto(wire, peer)
        except OSError:
            pass

    def _tcp_client(self, conn):
        self._tcp_conns.add(conn)
        conn.settimeout(10)
        buf = b''
        try:
            for _ in range(1000):  # queries per connection, bounded
                while len(buf) < 2 or len(buf) < 2 + struct.unpack('!H', buf[:2])[0]:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                n = struct.unpack('!H', buf[:2])[0]
                msg, buf = buf[2:2 + n], buf[2 + n:]
                try:
                    request = DNSRecord.parse(msg)
                except Exception:
                    return
                reply = self.answer(request, 'tcp')
                if reply is None:
                    continue  # dropped: the client waits for its own timeout
                wire = reply.pack()
                conn.sendall(struct.pack('!H', len(wire)) + wire)
        except OSError:
            pass
        finally:
            self._tcp_conns.discard(conn)
            conn.close()

    def stop(self):
        """Stops the server thread and closes every socket (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        for c in list(self._tcp_conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        for t in self._threads:
            t.join(5)
        self._sel.close()
        self.udp.close()
        self.tcp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
