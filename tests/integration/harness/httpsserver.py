"""A scriptable HTTPS server playing the MTA-STS policy hosts (RFC 8461 §3.3).

    https = HttpsPolicyServer('127.0.0.1', 0, cert, key)   # port 0: the kernel's pick
    https.port
    https.set_policy('example.test', 'version: STSv1\\r\\nmode: enforce\\r\\n...')
    https.set_policy('b.test', None, status=404)                  # HTTP 404, empty body
    https.set_policy('c.test', text, content_type='text/html')
    https.set_policy('d.test', text, redirect='https://mta-sts.e.test/x')  # 301 Location
    https.set_policy('e.test', text, delay=5)        # the answer comes 5 s late
    https.set_cert('f.test', cert, key)              # another certificate for this SNI name
    https.requests['example.test']   # GETs received for the domain (after TLS and headers)
    https.log                        # dicts: domain, host, path, sni, status
    https.tls_errors                 # handshake failures (text), e.g. the client refused
    https.connections                # TCP connections accepted
    https.accept_posts('/tlsrpt', status=200)   # POST /tlsrpt answers 200 (TLS-RPT)
    https.posts                      # POSTs received: dicts host, path, sni, headers,
                                     # content_type, body (bytes), status
    https.stop()

One server answers for every mta-sts.<domain>: the domain is the Host header (port
stripped) without the "mta-sts." prefix. Only GET /.well-known/mta-sts.txt is served
from the scripted answers; other paths get 404, unknown domains 404. POSTs (RFC 8460
report submissions) are recorded whatever the path, and answered with the status given
to accept_posts() for that path (405 for paths never given). The default
certificate is (cert, key); set_cert() adds per-SNI-name certificates
("mta-sts.<domain>"), chosen in the SNI callback. Every connection runs in its own
thread; handshakes and reads have a 10 s deadline; stop() ends delays early.
"""

import http.server
import ssl
import threading

from .util import shutdown_sockets

WELL_KNOWN = '/.well-known/mta-sts.txt'


def policy_text(mode='enforce', mx=('mx1.example.test',), max_age=86400, eol='\r\n',
                extra=()):
    """A policy file: version, mode, mx lines, max_age, then EXTRA lines."""
    lines = ['version: STSv1', 'mode: %s' % mode]
    lines += ['mx: %s' % m for m in mx]
    lines += ['max_age: %d' % max_age] + list(extra)
    return eol.join(lines) + eol


def _domain_of(host):
    host = (host or '').strip().lower().rstrip('.')
    if host.startswith('['):
        return host
    host = host.rsplit(':', 1)[0] if host.count(':') == 1 else host
    host = host.rstrip('.')
    return host[len('mta-sts.'):] if host.startswith('mta-sts.') else host


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'test-mta-sts/1'

    def log_message(self, fmt, *args):  # quiet
        pass

    def _send(self, status, body=b'', content_type=None, location=None):
        self.send_response(status)
        if content_type:
            self.send_header('Content-Type', content_type)
        if location:
            self.send_header('Location', location)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Connection', 'close')
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)
        self.close_connection = True

    def do_GET(self):
        owner = self.server.owner
        domain = _domain_of(self.headers.get('Host'))
        sni = getattr(self.request, '_sts_sni', None)
        path = self.path.split('?', 1)[0]
        with owner._lock:
            spec = owner._policies.get(domain)
            owner.requests[domain] = owner.requests.get(domain, 0) + 1
        entry = {'domain': domain, 'host': self.headers.get('Host'), 'path': self.path,
                 'sni': sni, 'status': None}
        owner.log.append(entry)
        if spec is None or path != WELL_KNOWN:
            entry['status'] = 404
            self._send(404, b'not found\n', 'text/plain')
            return
        if spec['delay']:
            owner._stop.wait(spec['delay'])  # ends early on stop()
        entry['status'] = spec['status']
        body = spec['text']
        if body is None:
            body = b''
        elif isinstance(body, str):
            body = body.encode()
        self._send(spec['status'], body, spec['content_type'], spec['redirect'])

    do_HEAD = do_GET

    def do_POST(self):
        owner = self.server.owner
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length) if length > 0 else b''
        path = self.path.split('?', 1)[0]
        with owner._lock:
            status = owner._post_status.get(path, 405)
            owner.posts.append({
                'host': self.headers.get('Host'), 'path': self.path,
                'sni': getattr(self.request, '_sts_sni', None),
                'headers': dict(self.headers.items()),
                'content_type': self.headers.get('Content-Type'), 'body': body,
                'status': status})
        self._send(status)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr, owner):
        self.owner = owner
        super().__init__(addr, _Handler)

    def process_request(self, request, client_address):
        with self.owner._lock:
            self.owner.connections += 1
            self.owner._socks.add(request)
        super().process_request(request, client_address)

    def finish_request(self, request, client_address):
        """Runs in the connection's thread: the TLS handshake first (so a client that
        refuses the certificate never blocks the accept loop)."""
        owner = self.owner
        request.settimeout(10)
        try:
            tls = owner._ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            owner.tls_errors.append(str(e))
            return
        tls._sts_sni = owner._last_sni.pop(threading.get_ident(), None)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (ssl.SSLError, OSError):
            pass
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def shutdown_request(self, request):
        with self.owner._lock:
            self.owner._socks.discard(request)
        super().shutdown_request(request)


class HttpsPolicyServer:
    """See the module docstring. Attributes: ip, port, requests ({domain: count}),
    log, tls_errors, connections, posts."""

    def __init__(self, ip, port, cert, key):
        self.ip = ip
        self.requests = {}
        self.log = []
        self.tls_errors = []
        self.connections = 0
        self.posts = []
        self._post_status = {}
        self._policies = {}
        self._ctxs = {}
        self._last_sni = {}
        self._socks = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ctx = self._make_ctx(cert, key)
        self._ctx.sni_callback = self._on_sni
        self._httpd = _Server((ip, port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={'poll_interval': 0.05},
                                        name='https-%s' % ip, daemon=True)
        self._thread.start()

    @staticmethod
    def _make_ctx(cert, key):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        return ctx

    def _on_sni(self, sslobj, server_name, _ctx):
        name = (server_name or '').lower()
        self._last_sni[threading.get_ident()] = name
        ctx = self._ctxs.get(name)
        if ctx is not None:
            sslobj.context = ctx
        return None

    # ---- scripting -------------------------------------------------------------------
    def set_policy(self, domain, text, status=200, content_type='text/plain',
                   redirect=None, delay=None):
        """The answer to GET https://mta-sts.DOMAIN/.well-known/mta-sts.txt: STATUS with
        TEXT (str or bytes; None: empty) as the body and CONTENT_TYPE (None: no header).
        REDIRECT: a Location header (give status=301/302/307 with it; the default status
        becomes 301). DELAY: seconds before answering."""
        if redirect and status == 200:
            status = 301
        with self._lock:
            self._policies[domain.lower()] = {
                'text': text, 'status': status, 'content_type': content_type,
                'redirect': redirect, 'delay': delay}

    def accept_posts(self, path, status=200):
        """POSTs to PATH get STATUS from now on (405 before)."""
        with self._lock:
            self._post_status[path] = status

    def clear_policy(self, domain):
        """DOMAIN gets 404 from now on."""
        with self._lock:
            self._policies.pop(domain.lower(), None)

    def set_cert(self, domain, cert, key):
        """Serve (CERT, KEY) when the client asks for SNI mta-sts.DOMAIN (or DOMAIN when
        it already starts with "mta-sts.")."""
        name = domain.lower()
        if not name.startswith('mta-sts.'):
            name = 'mta-sts.' + name
        ctx = self._make_ctx(cert, key)
        with self._lock:
            self._ctxs[name] = ctx

    def fetches(self, domain):
        """GETs received for DOMAIN so far."""
        with self._lock:
            return self.requests.get(domain.lower(), 0)

    # ---- lifetime ----------------------------------------------------------------------
    def stop(self):
        """Stops accepting, ends delays, closes open connections (idempotent); the port
        then refuses connections."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._httpd.shutdown()
        self._thread.join(5)
        self._httpd.server_close()
        shutdown_sockets(self._lock, self._socks)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
