"""Serves the template's Api function (the Chalice app) over HTTP, like API Gateway would in front of it
(the Cognito authorizer and throttling of infra/local/gateway.py included).

    python -m infra.local.api BookingApiFunction [--port 8000]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import socketserver
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from booking_core import config, logs
from infra.local import gateway, template, web
from infra.local.lifetime import end_with_parent


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


def server_handler(handler_cls):
    """The handler as the server uses it: a buffered wfile (status line, headers and body leave in one send();
    BaseHTTPRequestHandler flushes wfile after every request, so nothing waits in the buffer), no access line
    per request, and the Date header formatted once a second."""
    return type(handler_cls.__name__, (handler_cls,), {"wbufsize": 64 * 1024, "log_request": _log_server_error,
                                                        "date_time_string": _date_time_string})


_date_now: tuple[int, str] = (0, "")


def _date_time_string(self, timestamp=None) -> str:
    """http.server's Date header value, formatted once per second for all requests (email.utils.formatdate costs
    about 4% of a simple read's CPU in the server; the header has a resolution of one second anyway)."""
    global _date_now
    if timestamp is not None:
        return BaseHTTPRequestHandler.date_time_string(self, timestamp)
    second = int(time.time())
    cached = _date_now  # one tuple: read and replaced whole, so threads never see half of it
    if cached[0] != second:
        cached = _date_now = (second, BaseHTTPRequestHandler.date_time_string(self, second))
    return cached[1]


def _log_server_error(self, code="-", size="-") -> None:
    """http.server writes a plain-text line to stderr for every request: about 18 us of CPU each (some 7% of what
    the local gateway and Chalice cost a request) and 12.8 MB of API log in 15 minutes of `make bench`. The
    stage's access log is API Gateway's (template AccessLogSetting), not the function's; a 5xx is still written."""
    if str(getattr(code, "value", code)).startswith("5"):
        BaseHTTPRequestHandler.log_request(self, code, size)


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
                          handler_cls=server_handler(web.serving_web(gateway.handler_class())), server_cls=_Server)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("function", nargs="?")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--template", default=str(template.TEMPLATE))
    parser.add_argument("--state-file", help="where the supervisor keeps its workers' pids and restart count")
    args = parser.parse_args(argv)
    functions = template.functions(Path(args.template))
    function = functions[args.function] if args.function else api_function(functions)
    function.apply_environment()
    logs.setup(function.logical_id)
    app = function.load_handler()
    server = make_server(app, args.host, args.port or config.api_port())
    serve(server, int(os.environ.get("LOCAL_API_WORKERS", str(DEFAULT_WORKERS))),
          Path(args.state_file) if args.state_file else None, function.logical_id)


DEFAULT_WORKERS = 2
WORKER_RESTART_S = 0.2
WORKER_CRASH_LOOP = (5, 60.0)  # deaths of workers within seconds: give up, so the stack sees the API die

log = logging.getLogger("api")


def serve(server, workers: int, state_file: Path | None = None, function: str = "") -> None:
    """Serve on `workers` forked processes sharing the listening socket; this process only supervises them.

    One Python process serves its threads one at a time (GIL); a second one uses the second core. Workers are
    forked from this process, which never builds a client or serves, so each worker builds its own Kafka/Redis
    clients on first use. A worker that dies (any signal, any exit) is forked again, as Lambda starts a new
    container; workers end with this process (PDEATHSIG).
    """
    # Every worker waits on the socket; the ones that lose a connection to another get EAGAIN, not a block.
    server.server.socket.setblocking(False)
    parent = os.getpid()
    stopping = False
    live: set[int] = set()
    restarts = 0

    def fork_worker() -> int:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            end_with_parent(parent)
            try:
                server.serve_forever()
            finally:
                os._exit(0)
        return pid

    def write_state() -> None:
        if state_file is not None:
            partial = state_file.with_name(state_file.name + ".part")
            partial.write_text(json.dumps({"function": function, "supervisor": parent, "workers": sorted(live),
                                           "restarts": restarts}))
            partial.replace(state_file)

    def on_stop(*_) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(live):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    for _ in range(max(1, workers)):
        live.add(fork_worker())
    write_state()
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    deaths: list[float] = []
    while live:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        live.discard(pid)
        if stopping:
            continue
        now = time.monotonic()
        deaths = [t for t in deaths if now - t < WORKER_CRASH_LOOP[1]] + [now]
        how = (f"killed by {signal.Signals(os.WTERMSIG(status)).name}" if os.WIFSIGNALED(status)
               else f"exited with status {os.waitstatus_to_exitcode(status)}")
        if len(deaths) >= WORKER_CRASH_LOOP[0]:
            log.error("API workers crash-looping; stopping", extra={"worker": pid, "exit": how})
            on_stop()
            raise SystemExit(1)
        time.sleep(WORKER_RESTART_S)
        live.add(fork_worker())
        restarts += 1
        write_state()
        log.warning("API worker died; started another", extra={"worker": pid, "exit": how, "restarts": restarts})


if __name__ == "__main__":
    main()
