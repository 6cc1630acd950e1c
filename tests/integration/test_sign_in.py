"""Sign-in and per-user access on the running stack: tokens from its local Cognito endpoint, checked by the local
API gateway as API Gateway's Cognito authorizer checks them, the user always the token's."""
from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support import booking_body, sql_rows

pytestmark = pytest.mark.integration


def test_concurrent_requests_each_see_their_own_caller(http):
    """The local server is threaded: each view must see its own request (Chalice keeps `current_request` on the
    shared app object; Lambda runs one request per container, the local stack many per process)."""
    users = list(range(1, 21))
    for user in users:  # sign in first
        http.as_user(user).auth_headers()
    with ThreadPoolExecutor(max_workers=40) as pool:
        answers = list(pool.map(lambda u: (u, http.as_user(u).get("/v1/me")), users * 15))
    wrong = [(user, response.status, response.body.get("id")) for user, response in answers
             if response.status != 200 or response.body["id"] != user]
    assert wrong == []


# -- the token ------------------------------------------------------------------------------------------------

PRIVATE = [("POST", "/v1/bookings"), ("GET", "/v1/bookings/requests/1.some-key"), ("GET", "/v1/bookings/1"),
           ("GET", "/v1/users/1"), ("GET", "/v1/users/1/bookings"), ("GET", "/v1/users/1/payments"),
           ("GET", "/v1/me")]
PUBLIC = ["/v1/listings", "/v1/listings/7", "/v1/listings/7/availability?from=2031-01-01&to=2031-01-03",
          "/health", "/config.json"]


def _moto_signing_key():
    """moto's Cognito signs every pool's tokens with one key shipped in the package: a test can forge with it what
    Cognito would sign (an expired token, another audience) to see the gateway refuse what it must."""
    import gzip
    import importlib.resources
    import json

    from jwt.algorithms import RSAAlgorithm

    raw = importlib.resources.files("moto.cognitoidp.resources").joinpath("jwks-private.json.gz").read_bytes()
    return RSAAlgorithm.from_jwk(json.dumps(json.loads(gzip.decompress(raw))))


def _forged(http, **overrides) -> str:
    """A token signed like the pool's, with the claims of user 1's real ID token changed by `overrides`."""
    import jwt

    real = http.tokens.id_token(1)
    claims = {**jwt.decode(real, options={"verify_signature": False}), **overrides}
    return jwt.encode(claims, _moto_signing_key(), algorithm="RS256", headers={"kid": jwt.get_unverified_header(real)["kid"]})


def _bad_tokens(http) -> dict[str, str | None]:
    real = http.tokens.id_token(1)
    head, payload, signature = real.split(".")
    tampered = ".".join([head, payload, ("A" if signature[0] != "A" else "B") + signature[1:]])
    return {
        "missing": None,
        "malformed": "Bearer not-a-jwt",
        "not bearer": real,
        "badly signed": f"Bearer {tampered}",
        "expired": f"Bearer {_forged(http, exp=int(time.time()) - 60)}",
        "wrong audience": f"Bearer {_forged(http, aud='another-client')}",
        "wrong issuer": f"Bearer {_forged(http, iss='https://cognito-idp.us-east-1.amazonaws.com/us-east-1_other')}",
        "access token": f"Bearer {_forged(http, token_use='access')}",
    }


def test_every_private_route_answers_401_to_a_missing_or_invalid_token(http):
    anonymous = http.anonymous()
    for name, value in _bad_tokens(http).items():
        headers = {"Authorization": value} if value else {}
        for method, path in PRIVATE:
            body = booking_body(listing_id=8) if method == "POST" else None
            response = anonymous.request(method, path, body, headers=headers)
            assert (response.status, response.body.get("error")) == (401, "unauthorized"), (name, method, path)


def test_the_forged_token_passes_when_only_its_signature_is_the_pools(http):
    """The forged tokens above fail for their claims, not because forging fails: one with the real claims passes."""
    response = http.anonymous().get("/v1/me", headers={"Authorization": f"Bearer {_forged(http)}"})
    assert (response.status, response.body["id"]) == (200, 1)


def test_public_routes_answer_without_a_token(http):
    for path in PUBLIC:
        assert http.anonymous().get(path).status == 200, path


def test_config_json_tells_a_web_client_where_to_sign_in(http):
    config_json = http.anonymous().get("/config.json").body
    assert set(config_json) == {"apiUrl", "region", "userPoolId", "userPoolClientId", "cognitoEndpoint"}
    assert config_json["apiUrl"] == http.base_url and config_json["userPoolId"].startswith("us-east-1_")


# -- the user is the token's --------------------------------------------------------------------------------

def test_a_booking_is_the_token_users_and_a_body_naming_another_user_is_refused(http):
    mine = http.as_user(4).post("/v1/bookings", {k: v for k, v in booking_body(listing_id=29).items()
                                                   if k != "user_id"})
    assert mine.status == 201, mine.body
    (booking,) = sql_rows("SELECT user_id, booking_key FROM bookings WHERE id=%s", mine.body["booking_id"])
    assert booking == {"user_id": 4, "booking_key": mine.body["booking_key"]}  # the key the API answered is stored

    theirs = http.as_user(4).post("/v1/bookings", booking_body(listing_id=29, user_id=5))
    assert (theirs.status, theirs.body["error"]) == (403, "forbidden")


def test_another_users_profile_is_403_and_their_booking_and_request_are_404(http):
    decision = http.as_user(6).post("/v1/bookings", booking_body(listing_id=30, user_id=6)).body
    intruder = http.as_user(7)
    for path in ["/v1/users/6", "/v1/users/6/bookings", "/v1/users/6/payments"]:
        assert intruder.get(path).status == 403, path
    assert intruder.get(f"/v1/bookings/{decision['booking_id']}").status == 404
    assert intruder.get(decision["status_url"]).status == 404
    # ... while the owner sees them, and /v1/me is the owner's profile
    owner = http.as_user(6)
    assert owner.get(decision["status_url"]).status == 200
    assert _eventually(lambda: owner.get(f"/v1/bookings/{decision['booking_id']}").status == 200)
    assert owner.get("/v1/me").body == owner.get("/v1/users/6").body


def test_two_users_with_the_same_idempotency_key_each_get_their_own_decision(http):
    key = f"shared-{uuid.uuid4().hex[:8]}"
    first = http.as_user(8).post("/v1/bookings", booking_body(listing_id=31, user_id=8),
                                 headers={"Idempotency-Key": key})
    second = http.as_user(9).post("/v1/bookings", booking_body(listing_id=32, user_id=9),
                                  headers={"Idempotency-Key": key})
    assert first.status == second.status == 201, (first.body, second.body)
    assert (first.body["booking_key"], second.body["booking_key"]) == (f"8.{key}", f"9.{key}")
    assert first.body["booking_id"] != second.body["booking_id"]
    rows = sql_rows("SELECT booking_key FROM decisions WHERE booking_key IN (%s, %s)", f"8.{key}", f"9.{key}")
    assert len(rows) == 2


def test_the_confirmation_email_carries_no_text_the_caller_chose(http):
    from booking_core import config
    from tests.support import outbox_row

    key = f"PLEASE-WIRE-MONEY-{uuid.uuid4().hex[:8]}"
    decision = http.as_user(10).post("/v1/bookings", booking_body(listing_id=33, user_id=10),
                                     headers={"Idempotency-Key": key}).body
    row = _eventually(lambda: outbox_row(decision["booking_id"]))
    assert key not in row["body"] and key not in row["subject"]
    assert f"booking #{decision['booking_id']}" in row["body"]
    assert config.mail_mode() == "outbox"


# -- sign-up ------------------------------------------------------------------------------------------------

def test_a_new_user_signs_up_confirms_and_books_within_seconds(http):
    import boto3

    from infra.local.token import initiate_auth, web_config

    settings = web_config(http.base_url)
    idp = boto3.client("cognito-idp", region_name=settings["region"], endpoint_url=settings["cognitoEndpoint"],
                       aws_access_key_id="local", aws_secret_access_key="local")
    email, password = f"newcomer-{uuid.uuid4().hex[:8]}@example.com", "Newcomer-pass-1"
    idp.sign_up(ClientId=settings["userPoolClientId"], Username=email, Password=password,
                UserAttributes=[{"Name": "email", "Value": email}, {"Name": "name", "Value": "New Comer"}])
    started = time.monotonic()
    idp.confirm_sign_up(ClientId=settings["userPoolClientId"], Username=email, ConfirmationCode="123456")
    (user,) = sql_rows("SELECT id, name FROM users WHERE email=%s", email)  # the trigger ran inside the confirm
    assert user["name"] == "New Comer"

    token = initiate_auth(settings["cognitoEndpoint"], settings["userPoolClientId"], email, password)["IdToken"]
    booked = http.anonymous().post("/v1/bookings", {k: v for k, v in booking_body(listing_id=34).items()
                                                    if k != "user_id"},
                                   headers={"Authorization": f"Bearer {token}"})
    assert booked.status == 201, booked.body
    assert sql_rows("SELECT user_id FROM bookings WHERE id=%s", booked.body["booking_id"]) == [{"user_id": user["id"]}]
    print(f"\nconfirm → signed in → booked in {time.monotonic() - started:.2f}s")


def test_a_weak_password_is_refused_at_sign_up(http):
    import boto3

    from infra.local.token import web_config

    settings = web_config(http.base_url)
    idp = boto3.client("cognito-idp", region_name=settings["region"], endpoint_url=settings["cognitoEndpoint"],
                       aws_access_key_id="local", aws_secret_access_key="local")
    with pytest.raises(idp.exceptions.InvalidPasswordException):
        idp.sign_up(ClientId=settings["userPoolClientId"], Username=f"weak-{uuid.uuid4().hex[:6]}@example.com",
                    Password="short")


def _eventually(predicate, within: float = 10.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def test_no_token_password_email_address_or_payment_token_in_any_log_line_of_the_stack(http, stack):
    """After sign-ins, a sign-up, bookings, a declined card and refused tokens, the stack's own log files (API
    workers, pollers, schedulers, the local AWS endpoint) hold none of them."""
    from booking_core import config
    from infra.local.aws_endpoint import demo_password
    from tests.conftest import ROOT

    http.as_user(11).post("/v1/bookings", booking_body(listing_id=35, user_id=11, token="tok_chargeDeclined"))
    http.as_user(11).post("/v1/bookings", booking_body(listing_id=35, user_id=11, token="tok_mastercard"))
    http.anonymous().get("/v1/me", headers={"Authorization": "Bearer " + http.tokens.id_token(11) + "x"})
    test_a_new_user_signs_up_confirms_and_books_within_seconds(http)
    time.sleep(1.5)  # let the pollers' and the endpoint's lines reach their files

    forbidden = ["eyJ", demo_password(), "Newcomer-pass-1", "@example.com", "tok_visa", "tok_mastercard",
                 "tok_chargeDeclined", http.tokens.id_token(11)[-40:]]
    logs = sorted((ROOT / ".local" / "logs").glob(f"stack-{config.api_port()}*.log"))
    assert len(logs) >= 5, logs  # the API, the pollers, the schedulers and the AWS endpoint write here
    found = [(path.name, secret) for path in logs for secret in forbidden if secret in path.read_text(errors="replace")]
    assert found == []


# -- limits -------------------------------------------------------------------------------------------------

def _stack_processes(name_prefix: str) -> list[int]:
    import json

    from infra.local.stack import RUN_DIR, stack_id

    children = json.loads((RUN_DIR / stack_id() / "children.json").read_text())
    return [pid for name, pid in children.items() if name.startswith(name_prefix)]


def test_a_user_with_ten_requests_awaiting_a_decision_gets_429_for_an_eleventh(http, redis_client):
    """The stack's payment pollers are paused (this run's own stack), so ten requests stay pending; the eleventh is
    refused with Retry-After, and once the pollers resume the ten are decided."""
    import os
    import signal

    from booking_core import config

    user, client = 12, http.as_user(12)
    client.auth_headers()
    pollers = _stack_processes("PaymentFunction-")
    assert pollers
    pending_set = f"{config.redis_prefix()}pending:{user}"
    for pid in pollers:
        os.kill(pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(max_workers=10) as pool:
            waiting = [pool.submit(client.post, "/v1/bookings", booking_body(listing_id=36, user_id=user))
                       for _ in range(10)]
            assert _eventually(lambda: redis_client.zcard(pending_set) == 10, within=15)
            eleventh = client.post("/v1/bookings", booking_body(listing_id=36, user_id=user))
            assert (eleventh.status, eleventh.body["error"]) == (429, "too_many_pending")
            assert int(eleventh.headers["Retry-After"]) >= 1
            other_user = http.as_user(13).post("/v1/bookings", booking_body(listing_id=37, user_id=13),
                                               headers={"Idempotency-Key": f"other-{uuid.uuid4().hex[:6]}"})
            assert other_user.status != 429  # the limit is per user
    finally:
        for pid in pollers:
            os.kill(pid, signal.SIGCONT)
    answers = [future.result() for future in waiting]
    # Paused longer than Redis's socket timeout (5 s): each wait still ends as 202 pending at DECISION_TIMEOUT_S,
    # with its status URL, never 503 (the request is published and will be decided).
    assert [(a.status, a.body["status"]) for a in answers] == [(202, "pending")] * 10
    assert all(a.headers["Location"] == a.body["status_url"] for a in answers)
    assert _eventually(lambda: redis_client.zcard(pending_set) == 0, within=30)  # all decided since


def test_the_local_gateway_throttles_like_the_stage_429_with_retry_after(stack, tmp_path):
    """The API process with the stage's throttling set low (THROTTLE_RATE_LIMIT / THROTTLE_BURST_LIMIT)."""
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    from infra.local import services
    from infra.local.stack import child_env_base
    from infra.local.token import web_config
    from tests.conftest import ROOT

    settings = web_config(stack)
    port = services.free_port()
    env = {**child_env_base(), "API_PORT": str(port), "LOCAL_API_WORKERS": "1", "THROTTLE_RATE_LIMIT": "2",
           "THROTTLE_BURST_LIMIT": "5", "COGNITO_ENDPOINT": settings["cognitoEndpoint"],
           "COGNITO_USER_POOL_ID": settings["userPoolId"], "COGNITO_CLIENT_ID": settings["userPoolClientId"]}
    with open(tmp_path / "api.log", "wb") as log:
        api = subprocess.Popen([sys.executable, "-m", "infra.local.api", "BookingApiFunction"], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        assert services.wait_port("127.0.0.1", port, 30, api), (tmp_path / "api.log").read_text()
        statuses, retry_after = [], []
        for _ in range(20):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/listings/7", timeout=5) as response:
                    statuses.append(response.status)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
                retry_after.append(exc.headers.get("Retry-After"))
        assert statuses[:5] == [200] * 5 and 429 in statuses  # the burst passes, then the rate holds
        assert all(value and int(value) >= 1 for value in retry_after)
    finally:
        api.terminate()
        api.wait(10)
