"""Browser tests: Debian's headless Chromium driven by selenium against the local stack serving web/.

The browser's origin is `front_door`: it forwards every request to the `stack` unchanged and records what reached
it (what the browser sent, and that nothing was sent while offline). Sign-in is the stack's own: its local
Cognito endpoint and demo users, found through its /config.json as the web client finds them.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import tempfile
import threading
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


# ---- the stack's Cognito endpoint and demo users ---------------------------------------------------------------

@dataclass
class Cognito:
    endpoint: str

    def user(self, user_id: int) -> tuple[str, str]:
        """(email, password) of a demo user."""
        from infra.local.aws_endpoint import demo_password

        return f"user{user_id}@example.com", demo_password()


@pytest.fixture(scope="session")
def cognito(stack):
    """Where the stack's web client signs in (its /config.json), without the trailing slash."""
    from infra.local.token import web_config

    return Cognito(web_config(stack)["cognitoEndpoint"].rstrip("/"))


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
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            connection = http.client.HTTPConnection(stack.hostname, stack.port, timeout=60)
            try:
                connection.request(self.command, path, body=raw or None, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                reply_headers = dict(response.getheaders())
            finally:
                connection.close()
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
    return api.get("/v1/listings/40").status == 200


@pytest.fixture(scope="session")
def front_door(stack):
    from tests.support import wait_for

    if not wait_for(lambda: _read_model_loaded(stack), timeout=60, interval=0.2):
        pytest.fail("the stack's read model has not loaded the demo listings after 60 s")
    port = _free_port()
    door = FrontDoor(f"http://127.0.0.1:{port}", stack)
    server = ThreadingHTTPServer(("127.0.0.1", port), _front_door_handler(door))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield door
    server.shutdown()
    server.server_close()


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
