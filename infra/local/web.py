"""The web client (web/), served by the local API on the API's own origin (the gateway answers /config.json).

On AWS the same files sit in a bucket with config.json written at deploy time; locally the API server answers
GET/HEAD of `/` and the files under web/ itself and hands every other request to the gateway and the Chalice app
exactly as before (see `serving_web`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import unquote, urlsplit

WEB_ROOT = Path(__file__).resolve().parents[2] / "web"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
# No build step means no content-hashed file names: the shell is revalidated on every load (ETag → 304), so a
# changed file is never served stale; only icons, which do not change, are cached for a day.
REVALIDATE = "no-cache"
LONG_LIVED = {".png": "public, max-age=86400", ".ico": "public, max-age=86400"}


def content_security_policy(config: dict) -> str:
    """The page may talk to itself, the API and the Cognito endpoint, and load nothing from anywhere else."""
    origins = sorted({_origin(config["apiUrl"]), _origin(config["cognitoEndpoint"])} - {""})
    return "; ".join([
        "default-src 'self'",
        "connect-src 'self' " + " ".join(origins),
        "img-src 'self' data:",
        "script-src 'self'",
        "style-src 'self'",
        "manifest-src 'self'",
        "worker-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def web_file(path: str, root: Path = WEB_ROOT) -> Path | None:
    """The file under `root` that a request path names (`/` is index.html), or None: the API's paths, hidden
    files, unknown types and anything outside `root` are not ours."""
    path = unquote(urlsplit(path).path)
    if path == "/":
        path = "/index.html"
    if path.startswith("/v1/") or "\x00" in path:
        return None
    parts = path.lstrip("/").split("/")
    if any(not part or part.startswith(".") for part in parts):
        return None
    candidate = (root / Path(*parts)).resolve()
    if root.resolve() not in candidate.parents or not candidate.is_file():
        return None
    return candidate if candidate.suffix in CONTENT_TYPES else None


def response_for(path: str, headers, config: dict, root: Path = WEB_ROOT) -> tuple[int, dict, bytes] | None:
    """(status, headers, body) for a GET of one of the web client's files, or None when it is not one;
    `config` is what /config.json answers (the page's CSP names its API and Cognito endpoint)."""
    file = web_file(path, root)
    if file is None:
        return None
    body = file.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    answer = {"Content-Type": CONTENT_TYPES[file.suffix], "ETag": etag,
              "Cache-Control": LONG_LIVED.get(file.suffix, REVALIDATE), "X-Content-Type-Options": "nosniff"}
    if file.suffix == ".html":
        answer["Content-Security-Policy"] = content_security_policy(config)
        answer["Referrer-Policy"] = "no-referrer"
    if etag in (headers.get("If-None-Match") or ""):
        return 304, answer, b""
    return 200, answer, body


def serving_web(handler_cls):
    """`handler_cls` (Chalice's local request handler) answering GET/HEAD of the web client's files itself.

    Only paths that `response_for` claims are answered here; every other request, and every method but GET and
    HEAD, reaches the Chalice app unchanged."""
    from infra.local import gateway

    config = gateway.web_config(gateway.cognito_settings())

    def _web_or_app(self):
        answer = response_for(self.path, self.headers, config)
        if answer is None:
            return handler_cls._generic_handle(self)
        status, headers, body = answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status == 200:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET" and status == 200:
            self.wfile.write(body)

    return type(handler_cls.__name__, (handler_cls,), {"do_GET": _web_or_app, "do_HEAD": _web_or_app})
