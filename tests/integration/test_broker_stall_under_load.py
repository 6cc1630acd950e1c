"""The local stack under HTTP load while its broker stalls for four seconds (SIGSTOP, then SIGCONT).

The broker paused here is this test run's own (started by the `kafka_broker` fixture, a child of pytest),
never a broker of anyone else.
"""
from __future__ import annotations

import datetime as dt
import itertools
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kafka.partitioner.default import murmur2

from booking_core import config
from booking_core.domain import model
from tests.support import own_nights, sql_rows, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENTS = 16
STALL_S = 4.0
# Correctness bounds, not speed targets: a stack that recovers at all decides within a few publish timeouts
# and poller back-offs of the broker answering again; one that never recovers fails here.
RECOVERY_BOUND_S = 45.0
SETTLE_BOUND_S = 60.0
LISTINGS = range(31, 41)
NIGHTS = 1000  # per listing: 10,000 one-night bookings, far more than the run sends
_first_night = own_nights(NIGHTS)
_nights = itertools.count()


def _one_night(user_id: int) -> dict:
    """A booking of a night nobody else books: confirmed whenever it is decided."""
    n = next(_nights)
    assert n < NIGHTS * len(LISTINGS), "the run sent more bookings than it has nights for"
    check_in = _first_night + dt.timedelta(days=n // len(LISTINGS))
    return {"user_id": user_id, "listing_id": LISTINGS[n % len(LISTINGS)],
            "check_in": check_in.isoformat(), "check_out": (check_in + dt.timedelta(days=1)).isoformat(),
            "guests": 1, "payment_token": "tok_visa"}


def _partition(key: str) -> int:
    """The booking-requests partition of a key, as the producer's default partitioner picks it."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % config.topic_partitions()


def _key_on_partition(partition: int, prefix: str, user_id: int) -> str:
    """An Idempotency-Key whose request lands on `partition`: the API publishes under the key scoped to its user."""
    while True:
        key = f"{prefix}-{uuid.uuid4().hex[:12]}"
        if _partition(model.scoped_booking_key(user_id, key)) == partition:
            return key


def _run_broker_pid() -> int:
    """The pid of this run's Tansu broker: a child of this pytest process, listening on KAFKA_PORT."""
    listen = f"127.0.0.1:{config.kafka_port()}"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"broker" in cmdline and f"tcp://{listen}".encode() in cmdline:
            return int(entry.name)
    pytest.fail(f"this run's broker on {listen} is not a child of this test process")


def test_after_a_four_second_broker_stall_under_load_every_partition_decides_again(http, crowd, kafka_broker):
    broker_pid = _run_broker_pid()
    answers: list[tuple[str, int, str]] = []  # (scoped key, HTTP status, decision status)
    stop = threading.Event()
    # Each client and each probe books as a user of its own: one user may have only a few requests pending.
    client_users, probe_users = crowd[:CLIENTS], crowd[CLIENTS:]
    assert len(probe_users) >= config.topic_partitions()

    def client(user_id: int):
        as_user = http.as_user(user_id)
        while not stop.is_set():
            key = f"stall-load-{uuid.uuid4().hex[:12]}"
            response = as_user.post("/v1/bookings", _one_night(user_id), headers={"Idempotency-Key": key})
            answers.append((model.scoped_booking_key(user_id, key), response.status, response.body.get("status")))

    # GIVEN clients posting bookings; WHEN the broker stops for four seconds under that load, then resumes
    threads = [threading.Thread(target=client, args=(user_id,), daemon=True) for user_id in client_users]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    os.kill(broker_pid, signal.SIGSTOP)
    try:
        time.sleep(STALL_S)
    finally:
        os.kill(broker_pid, signal.SIGCONT)
    resumed = time.monotonic()
    time.sleep(2)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert answers and not any(thread.is_alive() for thread in threads)

    # THEN a new booking is confirmed on every partition of booking-requests within the bound
    def confirmed_on(partition: int) -> tuple[int, list]:
        seen = []
        user_id = probe_users[partition]
        while time.monotonic() - resumed < RECOVERY_BOUND_S:
            key = _key_on_partition(partition, "stall-probe", user_id)
            response = http.as_user(user_id).post("/v1/bookings", _one_night(user_id),
                                                  headers={"Idempotency-Key": key})
            seen.append(response.status)
            if response.status == 201:
                return partition, seen
            time.sleep(0.5)
        return partition, seen

    with ThreadPoolExecutor(max_workers=config.topic_partitions()) as pool:
        probes = dict(pool.map(confirmed_on, range(config.topic_partitions())))
    stuck = {p: seen[-5:] for p, seen in probes.items() if not seen or seen[-1] != 201}
    assert not stuck, f"partitions with no booking confirmed {RECOVERY_BOUND_S} s after SIGCONT: {stuck}"

    # AND nothing accepted during the load is lost: every request answered 202 is decided or parked for retry
    accepted = [key for key, status, _ in answers if status == 202]

    def unsettled():
        if not accepted:
            return []
        marks = ", ".join(["%s"] * len(accepted))
        settled = {r["booking_key"] for r in sql_rows(
            f"SELECT booking_key FROM decisions WHERE booking_key IN ({marks})"
            f" UNION SELECT booking_key FROM booking_retries WHERE booking_key IN ({marks})",
            *accepted, *accepted)}
        return sorted(set(accepted) - settled)

    assert wait_for(lambda: not unsettled(), timeout=SETTLE_BOUND_S, interval=0.5), unsettled()[:5]
