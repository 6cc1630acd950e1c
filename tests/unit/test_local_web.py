"""Which paths the local API answers with the web client's files, and the config the client reads."""
from __future__ import annotations

import json

import pytest

from infra.local import web

CONFIG = {"apiUrl": "http://127.0.0.1:8123", "region": "us-east-1", "userPoolId": "pool", "userPoolClientId": "client",
          "cognitoEndpoint": "http://127.0.0.1:9999"}


@pytest.fixture
def root(tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html><title>t</title>")
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "app.js").write_text("export {};")
    (tmp_path / ".secret").write_text("no")
    (tmp_path / "notes.py").write_text("no")
    return tmp_path


@pytest.mark.parametrize(("path", "name"), [
    ("/", "index.html"), ("/index.html", "index.html"), ("/js/app.js", "app.js"), ("/js/app.js?v=2", "app.js"),
])
def test_the_clients_own_files_are_found(root, path, name):
    assert web.web_file(path, root).name == name


@pytest.mark.parametrize("path", [
    "/v1/listings", "/v1/index.html", "/health", "/.secret", "/notes.py", "/js/", "/js//app.js", "/../index.html",
    "/js/../../etc/passwd", "/%2e%2e/index.html", "/missing.js",
])
def test_api_paths_hidden_files_unknown_types_and_escapes_are_not_served(root, path):
    assert web.web_file(path, root) is None


def test_a_file_is_served_with_its_type_an_etag_and_a_revalidating_cache_header(root):
    status, headers, body = web.response_for("/js/app.js", {}, CONFIG, root)
    assert (status, body) == (200, b"export {};")
    assert headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache" and headers["ETag"]
    again = web.response_for("/js/app.js", {"If-None-Match": headers["ETag"]}, CONFIG, root)
    assert again[0] == 304 and again[2] == b""


def test_the_page_may_connect_only_to_itself_the_api_and_the_cognito_endpoint(root):
    _, headers, _ = web.response_for("/", {}, CONFIG, root)
    policy = dict(part.split(" ", 1) for part in headers["Content-Security-Policy"].split("; "))
    assert policy["connect-src"] == "'self' http://127.0.0.1:8123 http://127.0.0.1:9999"
    assert policy["default-src"] == "'self'" and policy["script-src"] == "'self'"


def test_every_file_of_the_client_has_a_known_type_and_the_service_worker_caches_files_that_exist():
    files = [p for p in web.WEB_ROOT.rglob("*") if p.is_file()]
    assert files and all(p.suffix in web.CONTENT_TYPES for p in files)
    sw = (web.WEB_ROOT / "sw.js").read_text()
    shell = json.loads("[" + sw.split("const SHELL = [", 1)[1].split("];", 1)[0].rstrip().rstrip(",") + "]")
    for name in shell:
        assert name in ("./", "config.json") or (web.WEB_ROOT / name).is_file(), name
    modules = {f"js/{p.name}" for p in (web.WEB_ROOT / "js").glob("*.js")}
    assert modules <= set(shell), "a module the app imports would be missing offline"
