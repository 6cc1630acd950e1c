"""Helpers shared by the tests."""
from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass

# Every night a test books comes from here, so no two tests of a run meet on a listing's calendar by accident:
# future_stay() hands out short stays from 400 days ahead (40 days per call: year ~2100 after a whole suite),
# own_nights() whole stretches from the year 3000 on. A test that picks its own dates (a random day "far ahead")
# will, in some run, land on nights another test already took on the same listing.
_dates = itertools.count()
_stretches_lock = threading.Lock()
STRETCHES_START = dt.date(3000, 1, 1)
_next_stretch = STRETCHES_START


@dataclass
class HttpResponse:
    status: int
    body: dict
    headers: dict


class HttpClient:
    """A small JSON HTTP client; signed in as one user (their ID token on every request) or anonymous."""

    def __init__(self, base_url: str, timeout: float = 30, tokens: TokenCache | None = None,
                 user_id: int | None = None):
        self.base_url = base_url
        self.timeout = timeout
        self.tokens = tokens
        self.user_id = user_id

    def as_user(self, user_id: int) -> HttpClient:
        """The same client signed in as another demo user."""
        return HttpClient(self.base_url, self.timeout, self.tokens, user_id)

    def anonymous(self) -> HttpClient:
        return HttpClient(self.base_url, self.timeout, self.tokens, None)

    def auth_headers(self) -> dict[str, str]:
        if self.user_id is None or self.tokens is None:
            return {}
        return {"Authorization": f"Bearer {self.tokens.id_token(self.user_id)}"}

    def request(self, method: str, path: str, body=None, headers=None, raw: bytes | None = None) -> HttpResponse:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **self.auth_headers(),
                                              **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                return HttpResponse(response.status, json.loads(response.read() or b"{}"), dict(response.headers))
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            return HttpResponse(exc.code, json.loads(payload) if payload else {}, dict(exc.headers))

    def get(self, path: str, **kw) -> HttpResponse:
        return self.request("GET", path, **kw)

    def post(self, path: str, body=None, **kw) -> HttpResponse:
        return self.request("POST", path, body, **kw)

    def delete(self, path: str, **kw) -> HttpResponse:
        return self.request("DELETE", path, **kw)


def unverified_claims_header(user_id: int) -> dict[str, str]:
    """An Authorization header for Chalice's in-process test client, which decodes a Cognito token's claims
    without checking its signature (as its local mode does): enough to name the caller in unit tests."""
    import base64

    parts = ({"alg": "none"}, {"cognito:username": f"u{user_id}", "custom:user_id": str(user_id)})
    encoded = [base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=") for part in parts]
    return {"Authorization": "Bearer " + ".".join(encoded) + ".unsigned"}


class TokenCache:
    """ID tokens of the demo users (user{n}@example.com, the demo password), from the stack's Cognito endpoint
    (found through its /config.json, as a web client finds it); each fetched once."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self._tokens: dict[int, str] = {}

    def id_token(self, user_id: int) -> str:
        if user_id not in self._tokens:
            from infra.local.token import id_token

            self._tokens[user_id] = id_token(f"user{user_id}@example.com", base_url=self.base_url)
        return self._tokens[user_id]


CROWD_FIRST_ID = 1001


def add_users(base_url: str, user_ids: range) -> list[int]:
    """Users beyond the 24 demo users (for tests that need more people than requests one user may have pending):
    each a MySQL row and a Cognito user user{id}@example.com with the demo password, as a sign-up would leave them."""
    import boto3

    from infra.local.aws_endpoint import demo_password
    from infra.local.token import web_config

    settings = web_config(base_url)
    idp = boto3.client("cognito-idp", region_name=settings["region"], endpoint_url=settings["cognitoEndpoint"],
                       aws_access_key_id="local", aws_secret_access_key="local")
    from booking_core import config
    from booking_core.adapters.mysql import connect

    conn = connect(config.mysql_settings(), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.executemany("INSERT IGNORE INTO users (id, email, name) VALUES (%s, %s, %s)",
                            [(i, f"user{i}@example.com", f"Crowd {i}") for i in user_ids])
    finally:
        conn.close()
    for i in user_ids:
        email = f"user{i}@example.com"
        try:
            idp.admin_create_user(UserPoolId=settings["userPoolId"], Username=email, MessageAction="SUPPRESS",
                                  UserAttributes=[{"Name": "email", "Value": email},
                                                  {"Name": "custom:user_id", "Value": str(i)}])
        except idp.exceptions.UsernameExistsException:
            continue
        idp.admin_set_user_password(UserPoolId=settings["userPoolId"], Username=email, Password=demo_password(),
                                    Permanent=True)
    return list(user_ids)


def own_nights(days: int) -> dt.date:
    """The first of `days` consecutive nights that no other caller in this test run is given, on any listing."""
    global _next_stretch
    with _stretches_lock:
        first, _next_stretch = _next_stretch, _next_stretch + dt.timedelta(days=days)
    return first


def future_stay(nights: int = 3, offset_days: int | None = None) -> tuple[str, str]:
    """Dates far enough apart per call that tests sharing a listing do not collide by accident."""
    start = dt.date.today() + dt.timedelta(days=400 + (offset_days if offset_days is not None else next(_dates) * 40))
    end = start + dt.timedelta(days=nights)
    assert end <= STRETCHES_START, "future_stay() ran into own_nights()' stretches: give it a later start"
    return start.isoformat(), end.isoformat()


def booking_body(listing_id: int = 1, user_id: int = 1, nights: int = 3, token: str = "tok_visa", guests: int = 1,
                 stay: tuple[str, str] | None = None) -> dict:
    check_in, check_out = stay or future_stay(nights)
    return {"user_id": user_id, "listing_id": listing_id, "check_in": check_in, "check_out": check_out,
            "guests": guests, "payment_token": token}


def sql_rows(sql: str, *args) -> list[dict]:
    """Rows of a query on this test run's database (a fresh connection: sees every commit)."""
    from booking_core import config
    from booking_core.adapters.mysql import connect

    conn = connect(config.mysql_settings())
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def outbox_row(booking_id: int) -> dict | None:
    """The email outbox row of a booking (status, attempts, last_error, recipient, subject, body, message_id)."""
    rows = sql_rows("SELECT status, attempts, last_error, recipient, subject, body, message_id"
                    " FROM email_outbox WHERE booking_id=%s", booking_id)
    return rows[0] if rows else None


@contextmanager
def moto_ses(monkeypatch, sender: str, region: str):
    """Amazon SES under moto with `sender` verified; yields moto's backend, whose sent_messages tests read."""
    import boto3
    from moto import mock_aws
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        boto3.client("sesv2", region_name=region).create_email_identity(EmailIdentity=sender)
        yield ses_backends[DEFAULT_ACCOUNT_ID][region]


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy or `timeout` passes; return its last value."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


@contextmanager
def running_stack(env: dict, log_path, timeout: float = 90):
    """`python -m infra.local.stack run` with `env`, up ("stack up in" logged) for the block, then stopped
    (SIGTERM, SIGKILL of its process group after 30 s). Fails the test with the log's tail if it does not start."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import pytest

    root = Path(__file__).resolve().parents[1]
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "infra.local.stack", "run"], cwd=root, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if not wait_for(lambda: "stack up in" in log_path.read_text() or process.poll() is not None, timeout) \
                    or "stack up in" not in log_path.read_text():
                pytest.fail("local stack did not start:\n" + log_path.read_text()[-3000:])
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
