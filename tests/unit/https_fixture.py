#!/usr/bin/python3
"""Scripted HTTPS server for tests/unit/test_http.c.

usage: https_fixture.py CERT KEY PORT

Listens on 127.0.0.1:PORT (0 = any free port), prints the port on stdout once
listening, and serves the paths in ROUTES. Exits when stdin reaches EOF, so it never
outlives the test that started it.
"""

import http.server
import os
import ssl
import sys
import threading
import time

OK_BODY = b"version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n"
SLOW_SECONDS = 5  # longer than any client timeout in the test


def text(body, ctype="text/plain"):
    return 200, [("Content-Type", ctype)], body


ROUTES = {
    "/ok": text(OK_BODY),
    "/charset": text(b"charset ok\n", "TEXT/Plain; charset=utf-8"),
    "/html": text(b"<p>hello</p>\n", "text/html"),
    "/notype": (200, [], b"no type\n"),
    "/404": (404, [("Content-Type", "text/plain")], b"not found\n"),
    "/redirect": (302, [("Location", "/ok"), ("Content-Type", "text/plain")], b"moved\n"),
    "/big": text(b"a" * 70000),
    "/empty": text(b""),
}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client reuses connections
    timeout = 30

    def do_GET(self):
        if self.path == "/slow":
            time.sleep(SLOW_SECONDS)
            self.reply(*text(OK_BODY))
        elif self.path == "/big-stream":
            self.stream_big()
        elif self.path in ROUTES:
            self.reply(*ROUTES[self.path])
        else:
            self.reply(404, [("Content-Type", "text/plain")], b"no such path\n")

    def reply(self, status, headers, body):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def stream_big(self):
        """70000 bytes with no Content-Length: the client must stop on its own."""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for _ in range(70):
            self.wfile.write(b"b" * 1000)

    def log_message(self, format, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def finish_request(self, request, client_address):
        request.settimeout(10)
        request.do_handshake()  # in the worker thread, not in accept()
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        pass  # clients that time out or reject our certificate are expected


def main():
    cert, key, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = Server(("127.0.0.1", port), Handler)
    server.socket = ctx.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.buffer.read()  # EOF: the test ended
    os._exit(0)


if __name__ == "__main__":
    main()
