"""The local API serves the web client and /config.json on its own origin, and its API routes as before."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from infra.local.web import WEB_ROOT

pytestmark = pytest.mark.integration


def fetch(url: str, method: str = "GET", headers: dict | None = None, data: bytes | None = None):
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.mark.parametrize(("path", "content_type", "file"), [
    ("/", "text/html; charset=utf-8", "index.html"),
    ("/js/app.js", "text/javascript; charset=utf-8", "js/app.js"),
    ("/sw.js", "text/javascript; charset=utf-8", "sw.js"),
    ("/styles.css", "text/css; charset=utf-8", "styles.css"),
    ("/manifest.webmanifest", "application/manifest+json", "manifest.webmanifest"),
    ("/icons/icon.svg", "image/svg+xml", "icons/icon.svg"),
    ("/icons/icon-192.png", "image/png", "icons/icon-192.png"),
])
def test_the_stack_serves_the_clients_files_with_their_types(stack, path, content_type, file):
    status, headers, body = fetch(stack + path)
    assert (status, headers["Content-Type"]) == (200, content_type)
    assert body == (WEB_ROOT / file).read_bytes()
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, _, body = fetch(stack + path, headers={"If-None-Match": headers["ETag"]})
    assert (status, body) == (304, b"")


def test_the_stack_answers_config_json_for_its_own_api(stack):
    status, headers, body = fetch(stack + "/config.json")
    config = json.loads(body)
    assert status == 200
    assert config["apiUrl"] == stack
    assert set(config) == {"apiUrl", "region", "userPoolId", "userPoolClientId", "cognitoEndpoint"}


def test_the_api_answers_as_before_next_to_the_files(stack, http):
    status, headers, body = fetch(stack + "/v1/listings?city=Lisbon&limit=2")
    assert status == 200 and headers["Content-Type"] == "application/json" and len(json.loads(body)["items"]) == 2
    status, _, body = fetch(stack + "/v1/bookings", "POST", {"Content-Type": "application/json", **http.auth_headers()},
                            b"{not json")
    assert status == 400 and json.loads(body)["fields"] == {"body": "must be valid JSON"}
    assert fetch(stack + "/v1/me")[0] == 401
    assert fetch(stack + "/v1/listings/abc")[0] == 400
    # paths that are neither the API's nor the client's are still the gateway's answer, not a file
    assert fetch(stack + "/nothing-here.js")[0] == fetch(stack + "/v1/nothing-here")[0] == 403
    assert fetch(stack + "/", "POST", {"Content-Type": "application/json"}, b"{}")[0] == 403
