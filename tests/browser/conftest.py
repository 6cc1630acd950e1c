"""Browser tests: Debian's headless Chromium driven by selenium against the local stack serving web/.

The browser's origin is `front_door`: it forwards every request to the `stack` and records what reached it.

Two parts here are TEMPORARY, until the stack signs users in itself (issue 11), and marked so:
- `cognito`: a moto_server on a free port standing in for the stack's local Cognito endpoint, with a pool, an app
  client and demo users mapped to their MySQL ids (custom:user_id). At merge: a fixture with the same attributes
  (endpoint, user(id)) read from the stack's /config.json and demo password.
- `SignInStandIn`: does in the front door what the stack's gateway will do with the token (the booking's user
  from `custom:user_id`, GET /v1/me, 401 without a token) and answers /config.json for the moto endpoint. At
  merge it goes, and the front door forwards everything unchanged.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, _free_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--lang=en-US"]
LAPTOP = {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
# Screenshots land in .local/screenshots on every run; `make screenshots` (UPDATE_SCREENSHOTS=1) refreshes the
# committed ones in docs/screenshots, so an ordinary test run leaves the work tree clean.
SCREENSHOTS = ROOT / ("docs/screenshots" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else ".local/screenshots")
DEMO_PASSWORD = os.environ.get("DEMO_PASSWORD", "Demo-pass-2030!")
BROWSER_USERS = range(20, 25)  # demo users no other test books for


# ---- Chromium ------------------------------------------------------------------------------------------------

def ensure_chromium() -> None:
    """Chromium and its driver from Debian, installed with apt-get when missing; a clear failure when not possible."""
    if all(os.access(path, os.X_OK) for path in (CHROMIUM, CHROMEDRIVER)):
        return
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.fail(f"{CHROMIUM} / {CHROMEDRIVER} are missing and this user cannot install them: "
                    "run `apt-get install chromium chromium-driver` as root (see .ci/run)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            pytest.fail(f"could not install Chromium for the browser tests ({' '.join(command)} exited "
                        f"{result.returncode}):\n{(result.stdout + result.stderr)[-2000:]}")
    if not all(os.access(path, os.X_OK) for path in (CHROMIUM, CHROMEDRIVER)):
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} or {CHROMEDRIVER} is still missing")


@pytest.fixture(scope="session")
def chromium():
    ensure_chromium()
    return CHROMIUM


# ---- TEMPORARY: a Cognito endpoint until the stack starts its own (issue 11) ------------------------------------

@dataclass
class Cognito:
    endpoint: str
    pool_id: str
    client_id: str
    region: str
    client: object  # boto3 cognito-idp client against the endpoint

    def user(self, user_id: int) -> tuple[str, str]:
        """(email, password) of a demo user."""
        return f"user{user_id}@example.com", DEMO_PASSWORD


@pytest.fixture(scope="session")
def cognito():
    """TEMPORARY: moto_server as the local Cognito endpoint, with demo users 20-24 (the stack will create all 24)."""
    import boto3

    port = _free_port()
    log = ROOT / ".local" / "logs" / f"moto-browser-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as output:
        moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)], stdout=output,
                                stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    try:
        client = boto3.client("cognito-idp", endpoint_url=endpoint, region_name=region,
                              aws_access_key_id="local", aws_secret_access_key="local")
        deadline = time.monotonic() + 30
        while True:
            try:
                client.list_user_pools(MaxResults=1)
                break
            except Exception:
                if time.monotonic() > deadline or moto.poll() is not None:
                    pytest.fail("moto_server did not start:\n" + log.read_text()[-2000:])
                time.sleep(0.2)
        pool = client.create_user_pool(
            PoolName="stays-browser-tests", UsernameAttributes=["email"], AutoVerifiedAttributes=["email"],
            Schema=[{"Name": "user_id", "AttributeDataType": "String", "Mutable": True}])["UserPool"]
        app_client = client.create_user_pool_client(
            UserPoolId=pool["Id"], ClientName="web", GenerateSecret=False,
            ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"])["UserPoolClient"]
        for user_id in BROWSER_USERS:
            email = f"user{user_id}@example.com"
            client.admin_create_user(UserPoolId=pool["Id"], Username=email, MessageAction="SUPPRESS",
                                     UserAttributes=[{"Name": "email", "Value": email},
                                                     {"Name": "email_verified", "Value": "true"},
                                                     {"Name": "custom:user_id", "Value": str(user_id)}])
            client.admin_set_user_password(UserPoolId=pool["Id"], Username=email, Password=DEMO_PASSWORD,
                                           Permanent=True)
        yield Cognito(endpoint, pool["Id"], app_client["ClientId"], region, client)
    finally:
        moto.terminate()
        moto.wait(timeout=10)


# ---- the browser's origin: the stack, through a recording front door ------------------------------------------

@dataclass
class Seen:
    method: str
    path: str
    headers: dict
    body: dict | None


@dataclass
class FrontDoor:
    """Forwards every request to the stack and records what reached it: what the browser sent (headers, JSON
    body) and, offline, that nothing was sent at all. /config.json names the door as the API."""

    url: str
    stack_url: str
    seen: list[Seen] = field(default_factory=list)
    stand_in: SignInStandIn | None = None

    def bookings_posted(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and s.path == "/v1/bookings"]


def _front_door_handler(door: FrontDoor):
    stack = urlsplit(door.stack_url)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _answer(self, status: int, body: bytes, headers: dict) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _handle(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path, body = self.path, None
            if raw and self.headers.get("Content-Type", "").startswith("application/json"):
                try:
                    body = json.loads(raw)
                except ValueError:
                    pass
            door.seen.append(Seen(self.command, path.split("?")[0], dict(self.headers), body))
            if door.stand_in:
                outcome = door.stand_in.request(self.command, path, self.headers, body, raw)
                if isinstance(outcome[0], int):
                    status, answer = outcome
                    return self._answer(status, json.dumps(answer).encode(), {"Content-Type": "application/json"})
                path, raw = outcome
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            connection = http.client.HTTPConnection(stack.hostname, stack.port, timeout=60)
            try:
                connection.request(self.command, path, body=raw or None, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                reply_headers = dict(response.getheaders())
            finally:
                connection.close()
            if door.stand_in:
                reply_headers = door.stand_in.reply_headers(reply_headers)
            if path == "/config.json" and response.status == 200:
                # The page's API is its own origin, this door (as a reverse proxy rewrites its upstream's URLs).
                answer = json.dumps({**json.loads(answer), "apiUrl": door.url}).encode()
            self._answer(response.status, answer, reply_headers)

        do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = _handle

    return Handler


def _read_model_loaded(stack_url: str) -> bool:
    """The stack has loaded the demo listings into its read model (it answers before the first load is done)."""
    from tests.support import HttpClient

    api = HttpClient(stack_url)
    return api.get("/v1/listings/40").status == 200 and api.get(f"/v1/users/{max(BROWSER_USERS)}").status == 200


@pytest.fixture(scope="session")
def front_door(cognito, stack):
    from tests.support import wait_for

    if not wait_for(lambda: _read_model_loaded(stack), timeout=60, interval=0.2):
        pytest.fail("the stack's read model has not loaded the demo listings after 60 s")
    port = _free_port()
    door = FrontDoor(f"http://127.0.0.1:{port}", stack)
    door.stand_in = SignInStandIn(door.url, cognito)  # TEMPORARY (issue 11): remove with the class below
    server = ThreadingHTTPServer(("127.0.0.1", port), _front_door_handler(door))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield door
    server.shutdown()
    server.server_close()


# ---- TEMPORARY: the gateway's part of sign-in, until the stack does it (issue 11) ------------------------------

class SignInStandIn:
    """What the stack's gateway will do with the ID token: 401 without one on a private route, the booking's user
    from `custom:user_id` (a body naming a user is refused), GET /v1/me; plus /config.json and the page's CSP for
    the temporary moto endpoint."""

    PRIVATE = ("/v1/me", "/v1/users", "/v1/bookings")

    def __init__(self, origin: str, cognito: Cognito):
        from infra.local.web import web_config

        self.config = web_config({**os.environ, "API_URL": origin, "COGNITO_ENDPOINT": cognito.endpoint + "/",
                                  "COGNITO_USER_POOL_ID": cognito.pool_id, "COGNITO_CLIENT_ID": cognito.client_id,
                                  "AWS_REGION": cognito.region})

    @staticmethod
    def claims(authorization: str | None) -> dict | None:
        """The claims of a Bearer JWT, unverified (the gateway will check signature, exp, iss and audience)."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        try:
            payload = authorization[7:].split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            return None
        if claims.get("exp", 0) < time.time() or "custom:user_id" not in claims:
            return None
        return claims

    def request(self, method: str, path: str, headers, body, raw: bytes):
        """(status, answer) to answer here, or (path, raw body) to forward."""
        if path == "/config.json":
            return 200, self.config
        if not path.startswith(self.PRIVATE):
            return path, raw
        claims = self.claims(headers.get("Authorization"))
        if claims is None:
            return 401, {"error": "unauthorized", "message": "sign in first"}
        user_id = int(claims["custom:user_id"])
        if path == "/v1/me":
            return f"/v1/users/{user_id}", raw
        if path.startswith("/v1/users/") and not path.startswith(f"/v1/users/{user_id}/"):
            return 403, {"error": "forbidden"}
        if method == "POST" and path == "/v1/bookings":
            if not isinstance(body, dict) or "user_id" in body:
                return 400, {"error": "invalid_request", "fields": {"user_id": "the user comes from the token"}}
            return path, json.dumps({**body, "user_id": user_id}).encode()
        return path, raw

    def reply_headers(self, headers: dict) -> dict:
        from infra.local.web import content_security_policy

        if headers.get("Content-Type", "").startswith("text/html"):
            headers["Content-Security-Policy"] = content_security_policy(self.config)
        return headers


@pytest.fixture
def web(front_door):
    """The URL the browser opens (at merge: the `stack` URL itself); this test's requests only in `seen`."""
    front_door.seen.clear()
    return front_door


# ---- the browser ---------------------------------------------------------------------------------------------

@pytest.fixture
def browser(chromium):
    """A fresh headless Chromium (its own profile: no cookies, storage or service worker from another test)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", LAPTOP)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver, name: str, phone_scroll_to: str | None = None) -> list[Path]:
    """The page at laptop and phone width: PNGs named `<name>-laptop.png` and `<name>-phone.png`; on the phone the
    element `phone_scroll_to` (a CSS selector) is scrolled to the top, as a person would scroll to it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    paths = []
    for width, metrics in (("laptop", LAPTOP), ("phone", PHONE)):
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        target = phone_scroll_to if width == "phone" else None
        driver.execute_script(
            "const target = arguments[0] && document.querySelector(arguments[0]);"
            "if (target) target.scrollIntoView({block: 'start'}); else window.scrollTo(0, 0);"
            "return new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))", target)
        path = SCREENSHOTS / f"{name}-{width}.png"
        driver.save_screenshot(str(path))
        paths.append(path)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", LAPTOP)
    return paths
