"""Serves the template's Api function (the Chalice app) over HTTP, like API Gateway would in front of it
(the Cognito authorizer and throttling of infra/local/gateway.py included).

    python -m infra.local.api BookingApiFunction [--port 8000]
"""
from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import socketserver
from http.server import HTTPServer
from pathlib import Path

from booking_core import config, logs
from infra.local import gateway, template, web


class _Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    # The stdlib default backlog (5) drops connections under 32 concurrent clients: SYN retries cost 1 s.
    request_queue_size = 512
    allow_reuse_address = True

    def get_request(self):
        conn, address = super().get_request()
        conn.setblocking(True)  # the listening socket is non-blocking when workers share it
        # Nagle would hold a small response segment until the client ACKs the previous one, and the client
        # delays that ACK by up to 40 ms on a keep-alive connection.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, address


def _buffered(handler_cls):
    """The handler with a buffered wfile: status line, headers and body leave in one send().

    BaseHTTPRequestHandler flushes wfile after every request, so nothing waits in the buffer."""
    return type(handler_cls.__name__, (handler_cls,), {"wbufsize": 64 * 1024})


def api_function(functions: dict[str, template.Function]) -> template.Function:
    for function in functions.values():
        if any(e.type == "Api" for e in function.events):
            return function
    raise SystemExit("template.yaml has no function with an Api event")


def make_server(app, host: str, port: int):
    """Chalice's local server behind the local API gateway (Cognito authorizer, throttling, /config.json)."""
    from chalice.config import Config
    from chalice.local import LocalDevServer

    return LocalDevServer(app, Config.create(lambda_timeout=30), host, port,
                          handler_cls=_buffered(web.serving_web(gateway.handler_class())), server_cls=_Server)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("function", nargs="?")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--template", default=str(template.TEMPLATE))
    args = parser.parse_args(argv)
    functions = template.functions(Path(args.template))
    function = functions[args.function] if args.function else api_function(functions)
    function.apply_environment()
    logs.setup(function.logical_id)
    app = function.load_handler()
    server = make_server(app, args.host, args.port or config.api_port())
    serve(server, int(os.environ.get("LOCAL_API_WORKERS", str(DEFAULT_WORKERS))))


DEFAULT_WORKERS = 2


def serve(server, workers: int) -> None:
    """Serve on `workers` processes sharing the listening socket (forked before any client or thread exists).

    One Python process serves its threads one at a time (GIL); a second one uses the second core. Each
    worker builds its own Kafka/Redis clients on first use. Workers end with the first process (PDEATHSIG).
    """
    if workers > 1:
        # Every worker waits on the socket; the ones that lose a connection to another get EAGAIN, not a block.
        server.server.socket.setblocking(False)
        parent = os.getpid()
        for _ in range(workers - 1):
            if os.fork() == 0:
                _end_with(parent)
                try:
                    server.serve_forever()
                finally:
                    os._exit(0)
    server.serve_forever()


def _end_with(parent: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


if __name__ == "__main__":
    main()
