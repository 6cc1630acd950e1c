"""The local API server's request handler (infra/local/api.py): what it writes per request."""
from __future__ import annotations

import email.utils
import socket
import threading
from http.server import BaseHTTPRequestHandler

from infra.local import api


class _Plain(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - http.server's name
        status = 500 if self.path == "/fail" else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _serve(paths: list[str]) -> None:
    """`paths` as keep-alive GETs through the handler api.make_server uses around the app's handler."""
    client, server = socket.socketpair()
    handler = api.server_handler(_Plain)
    thread = threading.Thread(target=handler, args=(server, ("127.0.0.1", 1), None))
    thread.start()
    for path in paths:
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert client.recv(4096).startswith(b"HTTP/1.1")
    client.shutdown(socket.SHUT_WR)
    thread.join(timeout=5)
    client.close()


def test_a_request_answered_without_a_server_error_writes_no_access_line(capsys):
    """http.server writes a plain-text line to stderr for every request: about 18 us of the API's CPU each, and 12.8 MB
    of log in 15 minutes of `make bench`; API Gateway's access log is the stage's, not the function's."""
    _serve(["/ok", "/ok"])
    assert capsys.readouterr().err == ""


def test_a_5xx_is_still_written(capsys):
    _serve(["/fail"])
    assert '"GET /fail HTTP/1.1" 500' in capsys.readouterr().err


def test_the_date_header_is_http_servers_for_the_current_second(monkeypatch):
    """Formatted once a second for every request; what it says is what http.server would write."""
    handler = api.server_handler(_Plain)
    for now in (1_800_000_000.2, 1_800_000_000.9, 1_800_000_001.0, 1_800_000_061.5, 1_799_999_999.99):
        monkeypatch.setattr(api.time, "time", lambda now=now: now)
        assert handler.date_time_string(None) == email.utils.formatdate(now, usegmt=True)
    assert handler.date_time_string(None, 86400.0) == "Fri, 02 Jan 1970 00:00:00 GMT"
