"""The floor of the local API's server technology: http.server with the local API's server settings (a thread per
connection, forked workers sharing the socket, TCP_NODELAY, buffered writes, no access line) answering a fixed
JSON body, with no gateway, Chalice or Redis behind it. Drive it with wrk; the server's CPU per request is what
any route costs before its own work (bench/results/reads15-http-server-floor.txt).

    python bench/http_server_floor.py PORT WORKERS
"""
from __future__ import annotations

import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn

BODY = b'{"status":"ok"}'


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024

    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_request(self, code="-", size="-"):
        pass

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except ConnectionResetError:  # wrk closing its connections at the end
            self.close_connection = True


class Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def get_request(self):
        conn, address = super().get_request()
        conn.setblocking(True)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, address


def main() -> None:
    server = Server(("127.0.0.1", int(sys.argv[1])), Handler)
    server.socket.setblocking(False)
    for _ in range(int(sys.argv[2]) - 1):
        if os.fork() == 0:
            break
    server.serve_forever()


if __name__ == "__main__":
    main()
