"""The local stack heals like Lambda: a function process that dies is started again with its event source, a
private MariaDB or Redis that restarts is reconnected to without restarting any function, and only a crash loop
stops the stack.

Everything killed or restarted here belongs to this module: a stack of its own on a private MariaDB, Redis and
broker (free ports, a temporary folder), never the suite's stack or the machine's shared services.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from infra.local import services
from tests.support import HttpClient, TokenCache, running_stack, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CRASH_LOOP_DEATHS = 3
_nights = itertools.count()


class HealingStack:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.mysql_port, self.redis_port = services.free_port(), services.free_port()
        self.kafka_port, self.api_port = services.free_port(), services.free_port()
        self.mysql = services.start_private_mariadb(self.mysql_port, tmp / "mysql")
        self.redis = services.start_private_redis(self.redis_port, tmp / "redis")
        self.kafka = services.start_tansu(self.kafka_port, tmp / "tansu.log")
        self.process: subprocess.Popen | None = None
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.run_dir = ROOT / ".local" / "run" / f"stack-{self.api_port}"
        self.log_path = ROOT / ".local" / "logs" / f"stack-heal-{self.api_port}.log"

    def env(self) -> dict[str, str]:
        from infra.local.stack import child_env_base

        env = child_env_base()
        for name in ("LOCAL_AWS_PORT", "AWS_ENDPOINT_URL", "COGNITO_ENDPOINT"):
            env.pop(name, None)
        env.update({
            "API_PORT": str(self.api_port), "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.kafka_port}",
            "MYSQL_PORT": str(self.mysql_port), "MYSQL_DATABASE": "booking_heal",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0", "REDIS_PREFIX": "heal:",
            "MAIL_OUTBOX_DIR": str(self.tmp / "outbox"), "STACK_START_PRIVATE": "0",
            "LOCAL_CRASH_LOOP_DEATHS": str(CRASH_LOOP_DEATHS), "LOCAL_CRASH_LOOP_WINDOW_S": "120",
        })
        return env

    def children(self) -> dict[str, int]:
        return json.loads((self.run_dir / "children.json").read_text())

    def restarts(self) -> dict[str, int]:
        return {name: entry["restarts"] for name, entry in
                json.loads((self.run_dir / "restarts.json").read_text()).items()}

    def api_workers(self) -> dict:
        return json.loads((self.run_dir / "api-workers.json").read_text())

    def stop_services(self) -> None:
        for handle in (self.kafka, self.redis, self.mysql):
            handle.stop()


@pytest.fixture(scope="module")
def healing(tmp_path_factory):
    stack = HealingStack(tmp_path_factory.mktemp("heal"))
    try:
        with running_stack(stack.env(), stack.log_path) as process:
            stack.process = process
            yield stack
    finally:
        stack.stop_services()


@pytest.fixture(scope="module")
def client(healing):
    return HttpClient(healing.base_url, timeout=20, tokens=TokenCache(healing.base_url), user_id=5)


def _book(client: HttpClient):
    """One night nobody else books (a confirmed booking whenever it is decided)."""
    check_in = dt.date.today() + dt.timedelta(days=500 + next(_nights))
    body = {"listing_id": 9, "check_in": check_in.isoformat(),
            "check_out": (check_in + dt.timedelta(days=1)).isoformat(), "guests": 1, "payment_token": "tok_visa"}
    return client.post("/v1/bookings", body, headers={"Idempotency-Key": f"heal-{uuid.uuid4().hex[:12]}"})


def _books_again(client: HttpClient, within: float = 45.0) -> list[int]:
    """Statuses of bookings tried until one is confirmed (or `within` passes): a new request each time."""
    seen: list[int] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            seen.append(_book(client).status)
        except OSError as exc:  # the API itself may be between workers
            seen.append(type(exc).__name__)  # type: ignore[arg-type]
        if seen[-1] == 201:
            break
        time.sleep(0.3)
    return seen


def _pgrep(pattern: str) -> set[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return {int(pid) for pid in out}


@pytest.mark.parametrize("name", ["PaymentFunction-BookingRequests-0", "DecisionsListenerFunction-Decisions-0",
                                  "ReplicationFunction-schedule"])
def test_a_function_process_killed_with_sigkill_is_started_again_and_bookings_still_complete(healing, client, name):
    assert _book(client).status == 201
    function = name.split("-")[0]
    old = healing.children()[name]
    assert old in _pgrep(f"infra.local.[a-z]+ .*{function}")  # an operator finds it by its logical id
    before = healing.restarts()[name]

    os.kill(old, signal.SIGKILL)

    assert wait_for(lambda: healing.children()[name] != old and services.alive(healing.children()[name]), 15)
    new = healing.children()[name]
    assert new in _pgrep(f"infra.local.[a-z]+ .*{function}")  # the new one too
    assert healing.restarts()[name] == before + 1
    assert _books_again(client)[-1] == 201
    log = healing.log_path.read_text()
    assert f"{name} ({function}, pid {old}) killed by SIGKILL; starting it again" in log
    status = subprocess.run(["make", "-s", "status"], cwd=ROOT, env=healing.env(), capture_output=True, text=True)
    assert f"restarts {function}: " in status.stdout, status.stdout


def test_an_api_worker_killed_with_sigkill_is_forked_again_and_bookings_still_complete(healing, client):
    state = healing.api_workers()
    victim = state["workers"][0]
    assert victim in _pgrep("infra.local.api BookingApiFunction")

    os.kill(victim, signal.SIGKILL)

    assert wait_for(lambda: healing.api_workers()["restarts"] == state["restarts"] + 1, 10)
    workers = healing.api_workers()["workers"]
    assert victim not in workers and len(workers) == len(state["workers"])
    assert all(pid in _pgrep("infra.local.api BookingApiFunction") for pid in workers)
    assert healing.children()["api"] == state["supervisor"]  # the API process itself lived on
    assert _books_again(client)[-1] == 201


@pytest.mark.parametrize("service", ["mysql", "redis"])
def test_a_private_store_that_restarts_is_reconnected_to_without_restarting_any_function(healing, client, service):
    assert _book(client).status == 201
    restarts_before, pids_before = healing.restarts(), healing.children()

    # WHEN the store stops and starts again on the same port (Redis loses everything it held)
    if service == "mysql":
        healing.mysql.stop()
        healing.mysql = services.start_private_mariadb(healing.mysql_port, healing.tmp / "mysql")
    else:
        healing.redis.stop()
        healing.redis = services.start_private_redis(healing.redis_port, healing.tmp / "redis")

    # THEN bookings complete again, and every function process is the one that ran before
    seen = _books_again(client)
    assert seen[-1] == 201, seen
    assert healing.restarts() == restarts_before
    assert {k: v for k, v in healing.children().items() if k not in ("mysql", "redis")} == \
        {k: v for k, v in pids_before.items() if k not in ("mysql", "redis")}
    if service == "redis":  # the read model is loaded again from MySQL (the replicator sees the marker gone)
        assert wait_for(lambda: client.get("/v1/listings/9").status == 200, 15)


def test_a_crash_loop_stops_the_stack_naming_the_process_and_how_it_died(healing):
    name = "MaintenanceFunction-schedule"
    for death in range(CRASH_LOOP_DEATHS):
        pid = healing.children()[name]
        os.kill(pid, signal.SIGKILL)
        if death < CRASH_LOOP_DEATHS - 1:
            assert wait_for(lambda pid=pid: healing.children()[name] != pid, 20)

    assert healing.process.wait(timeout=30) == 1
    log = healing.log_path.read_text()
    assert (f"stack: {name} (MaintenanceFunction) died {CRASH_LOOP_DEATHS} times within 120 s"
            f" (last: killed by SIGKILL): a crash loop") in log, log[-2000:]
    assert "stack stopped" in log
    assert not services.port_open("127.0.0.1", healing.api_port)
