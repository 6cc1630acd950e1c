"""The API against its own description: schemathesis fuzzes the local stack with booking_api/openapi.json, and the
defects it found stay found (each has a focused test here that failed before its fix).

The fuzz run is schemathesis's CLI with tests/integration/schemathesis.toml: every operation, every phase (the
document's examples, coverage of each parameter's bounds, random fuzzing, and stateful sequences that follow the
document's links, e.g. POST /v1/bookings → GET its status URL → GET the booking). It signs in as a user of its own
and books a listing of its own (tests/integration/fuzz_hooks.py), so the bookings it really makes cannot meet
another test's listings, dates or lists.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.conftest import ROOT
from tests.support import add_users, sql_rows, wait_for

FUZZ_USER_ID = 2001  # beyond the demo users (1-24) and the crowd (1001-1050)
CONFIG = ROOT / "tests" / "integration" / "schemathesis.toml"
DOCUMENT = ROOT / "booking_api" / "openapi.json"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _raw(stack: str, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    """status, headers and body of one request, whatever it answers."""
    request = urllib.request.Request(stack + path, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


# ---- defects the fuzzer found --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["TRACE", "QUERY"])
def test_a_method_no_route_has_answers_405_json_with_allow_not_the_servers_501_page(stack, method):
    """The local server answered methods it has no handler for (TRACE, QUERY) with http.server's own 501 HTML
    page; like any other unrouted method they now reach the gateway: 405, JSON, Allow naming the route's."""
    status, headers, body = _raw(stack, method, "/health")
    assert (status, headers.get("Content-Type"), headers.get("Allow")) == (405, "application/json", "GET")
    assert json.loads(body)["Code"] == "MethodNotAllowedError"


def test_an_unsupported_content_type_gets_the_documented_415(stack, tokens):
    """The fuzzer sends only the document's request media types; this answer is documented all the same."""
    import jsonschema

    doc = json.loads(DOCUMENT.read_text())
    status, headers, body = _raw(stack, "POST", "/v1/bookings", {
        "Authorization": f"Bearer {tokens.id_token(1)}", "Content-Type": "application/xml"})
    documented = doc["paths"]["/v1/bookings"]["post"]["responses"][str(status)]
    assert status == 415 and headers["Content-Type"] in documented["content"]
    schema = documented["content"][headers["Content-Type"]]["schema"]
    jsonschema.validate(json.loads(body), {**schema, "components": doc["components"]})


# ---- the fuzz run --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_subject(stack, tokens):
    """The run's own user and listing, both in the read model; (user's ID token, listing id)."""
    from booking_core import config
    from booking_core.adapters.mysql import connect

    add_users(stack, range(FUZZ_USER_ID, FUZZ_USER_ID + 1))
    conn = connect(config.mysql_settings(), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO listings (host_id, title, city, max_guests, nightly_price_cents)"
                        " VALUES (%s, 'Fuzzed loft', 'Fuzzville', 50, 99999)", (FUZZ_USER_ID,))
            listing_id = cur.lastrowid
    finally:
        conn.close()
    token = tokens.id_token(FUZZ_USER_ID)
    assert wait_for(lambda: _raw(stack, "GET", f"/v1/listings/{listing_id}")[0] == 200
                    and _raw(stack, "GET", "/v1/me", {"Authorization": f"Bearer {token}"})[0] == 200, timeout=90)
    return token, listing_id


def test_the_api_serves_its_document(stack):
    status, headers, body = _raw(stack, "GET", "/openapi.json")
    assert (status, headers.get("Content-Type")) == (200, "application/json")
    assert json.loads(body) == json.loads(DOCUMENT.read_text())


def test_schemathesis_finds_nothing_the_document_does_not_say(stack, fuzz_subject, tmp_path):
    token, listing_id = fuzz_subject
    # The served document, from a file: schemathesis leaves out the operation that served the document it loaded
    # by URL, and GET /openapi.json is fuzzed like the rest.
    document = tmp_path / "openapi.json"
    document.write_bytes(_raw(stack, "GET", "/openapi.json")[2])
    operations = sum(1 for item in json.loads(document.read_text())["paths"].values() for method in item
                     if method in HTTP_METHODS)
    env = {**os.environ, "FUZZ_ID_TOKEN": token, "FUZZ_USER_ID": str(FUZZ_USER_ID), "FUZZ_LISTING_ID": str(listing_id),
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "layer")])}
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--no-color", "--config-file", str(CONFIG), "run",
         str(document), "--url", stack],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = run.stdout + run.stderr
    summary = output[output.find("=== SUMMARY"):] if "=== SUMMARY" in output else output[-3000:]
    print(summary)
    assert run.returncode == 0, output[-20000:]
    assert f"Tested: {operations}" in output, summary
    # The fuzzer's own bookings stayed on its own listing.
    assert not sql_rows("SELECT id FROM bookings WHERE user_id=%s AND listing_id<>%s", FUZZ_USER_ID, listing_id)
