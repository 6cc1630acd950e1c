"""The retry table and retry_fn on the real broker, MariaDB and Redis, with the local stack deciding re-driven
requests (its payment_fn pollers) and storing their decisions (its decisions listener)."""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from booking_core import bootstrap, config
from booking_core.domain.model import FINAL_STATUSES, RequestBooking, parse_booking_request
from tests.conftest import ROOT, load_event
from tests.support import booking_body, future_stay, own_nights, sql_rows

pytestmark = pytest.mark.integration


rows = sql_rows


def retry_row(key: str) -> dict:
    (row,) = rows("SELECT * FROM booking_retries WHERE booking_key=%s", key)
    return row


def wait_until(condition, timeout: float = 30, what: str = "condition"):
    """Poll `condition` until it returns something truthy; a bounded wait, not a speed check."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout:.0f}s")
        time.sleep(0.1)


def final_status(http, key: str) -> dict:
    """The status endpoint's answer once it shows a final decision."""
    def final():
        response = http.get(f"/v1/bookings/requests/{key}")
        return response.body if response.status == 200 and response.body["status"] in FINAL_STATUSES else None

    return wait_until(final, what=f"final status for {key}")


def request_records_by_key(keys: set[str]) -> Counter:
    """How many records each key has on the requests topic of the session broker (read from the start)."""
    from kafka import KafkaConsumer, TopicPartition

    from booking_core.adapters.kafka import client_settings

    topic = config.requests_topic()
    consumer = KafkaConsumer(**client_settings(), enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        found: Counter = Counter()
        deadline = time.monotonic() + 30
        while any(consumer.position(p) < end[p] for p in parts) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                found.update(r.key.decode() for r in batch if r.key and r.key.decode() in keys)
        return found
    finally:
        consumer.close()


def run_retry(keys, **options) -> dict:
    """One retry run limited to this test's keys, with the real store and publisher."""
    from booking_core.adapters.mysql_retries import MySqlRetryStore
    from booking_core.services.retry import redrive_due_requests

    settings = {"max_attempts": config.retry_max_attempts(), "base_delay_s": config.retry_base_delay_s(), **options}
    return redrive_due_requests(MySqlRetryStore(bootstrap.connections()), bootstrap.publisher(),
                                config.requests_topic(), booking_keys=keys, **settings)


def park(key: str, request: RequestBooking, reason: str = "publish_failed", error: str = "broker down") -> None:
    from booking_core.adapters.mysql_retries import MySqlRetryTable

    MySqlRetryTable(bootstrap.connections()).park_request(key, request, reason, error)


def new_key(prefix: str) -> str:
    """A booking key of demo user 1 (the `http` fixture's user), as the API stores it: "1.<Idempotency-Key>"."""
    return f"1.{prefix}-{uuid.uuid4().hex[:12]}"


def idempotency_key(booking_key: str) -> str:
    """The Idempotency-Key a client sends for a booking key of new_key()."""
    return booking_key.split(".", 1)[1]


# ---- the API cannot publish -----------------------------------------------------------------------------

def test_a_request_the_api_cannot_publish_is_queued_then_redriven_to_one_confirmed_booking(stack, http, monkeypatch):
    """GIVEN the API's broker freezes (SIGSTOP) with the producer connected, WHEN a booking is posted, THEN it is
    answered 202 queued and parked; once the broker is back the scheduled retry run re-drives it to a booking."""
    from chalice.test import Client

    from booking_api.app import app
    from infra.local import services
    from infra.topics import ensure_topics
    from retry_fn.app import handler as retry_handler

    session_broker = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    port = services.free_port()
    private = services.start_tansu(port, ROOT / ".local" / "logs" / f"tansu-retry-test-{port}.log")
    key, body = new_key("frozen"), booking_body(listing_id=26)
    try:
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", private.details["bootstrap"])
        monkeypatch.setenv("PUBLISH_TIMEOUT_S", "1")
        bootstrap.reset()
        ensure_topics()
        # The producer is connected and has the topic's metadata when the broker stops answering.
        bootstrap.publisher().publish(config.requests_topic(), "warm-up", b"{}")
        os.kill(private.process.pid, signal.SIGSTOP)
        started = time.monotonic()
        with Client(app) as client:
            response = client.http.post("/v1/bookings", body=json.dumps(body),
                                        headers={"Content-Type": "application/json",
                                                 "Idempotency-Key": idempotency_key(key), **http.auth_headers()})
        print(f"\nPOST with a frozen broker answered {response.status_code} in "
              f"{time.monotonic() - started:.2f}s (PUBLISH_TIMEOUT_S=1, DECISION_TIMEOUT_S="
              f"{config.decision_timeout_s():g})")
    finally:
        os.kill(private.process.pid, signal.SIGCONT)
        bootstrap.reset()
        private.stop()

    answer = json.loads(response.body)
    assert (response.status_code, answer["status"], answer["reason"]) == (202, "queued", "publish_failed")
    row = retry_row(key)
    assert (row["status"], row["reason"], row["attempts"]) == ("pending", "publish_failed", 0)
    assert json.loads(row["request_json"]) == body
    assert http.get(answer["status_url"]).body["status"] == "queued"

    # The broker is back (the stack's payment pollers read the session broker).
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", session_broker)
    bootstrap.reset()
    summary = retry_handler(load_event("retry_fn/scheduled_event.json"), None)
    assert summary["republished"] >= 1 and summary["still_failing"] == 0

    decision = final_status(http, key)
    assert decision["status"] == "confirmed"
    bookings = rows("SELECT id, status FROM bookings WHERE booking_key=%s", key)
    assert [(b["id"], b["status"]) for b in bookings] == [(decision["booking_id"], "confirmed")]
    assert retry_row(key)["status"] == "succeeded"
    assert request_records_by_key({key})[key] == 1


# ---- payment_fn meets a transient failure ---------------------------------------------------------------

def test_a_provider_outage_queues_the_request_and_the_retry_run_confirms_it_once_the_provider_recovers(http):
    from infra.local.faults import set_sandbox_outage

    key = new_key("outage")
    set_sandbox_outage(bootstrap.connections(), True)
    try:
        response = http.post("/v1/bookings", booking_body(listing_id=27), headers={"Idempotency-Key": idempotency_key(key)})
    finally:
        set_sandbox_outage(bootstrap.connections(), False)
    assert (response.status, response.body["status"]) == (202, "queued"), response.body
    row = retry_row(key)
    assert (row["status"], row["reason"]) == ("pending", "transient_payment_failure")
    assert "outage" in row["last_error"]
    assert [b["status"] for b in rows("SELECT status FROM bookings WHERE booking_key=%s", key)] == ["released"]

    summary = run_retry([key])
    assert (summary["due"], summary["republished"]) == (1, 1)

    decision = final_status(http, key)
    assert decision["status"] == "confirmed"
    assert [b["status"] for b in rows("SELECT status FROM bookings WHERE booking_key=%s", key)] == ["confirmed"]
    assert [p["status"] for p in rows("SELECT status FROM payments WHERE booking_key=%s", key)] == ["captured"]
    row = retry_row(key)
    assert (row["status"], row["attempts"], row["last_error"]) == ("succeeded", 1, None)


def test_a_request_still_failing_after_the_maximum_attempts_is_dead_with_its_error_kept(http):
    key = new_key("dead")
    response = http.post("/v1/bookings", booking_body(listing_id=28, token="tok_processingError"),
                         headers={"Idempotency-Key": idempotency_key(key)})
    assert (response.status, response.body["status"]) == (202, "queued"), response.body

    now = dt.datetime.now(dt.UTC)
    for attempt in (1, 2):
        # Each run's clock is past the previous attempt's backoff, so no test waits for it.
        summary = run_retry([key], max_attempts=2, now=now + dt.timedelta(hours=attempt))
        assert summary["republished"] == 1
        parked_again = ("pending", attempt)
        wait_until(lambda expected=parked_again: (retry_row(key)["status"], retry_row(key)["attempts"]) == expected,
                   what=f"payment_fn parking attempt {attempt} again")

    summary = run_retry([key], max_attempts=2, now=now + dt.timedelta(hours=3))
    assert (summary["due"], summary["dead"], summary["republished"]) == (1, 1, 0)
    row = retry_row(key)
    assert (row["status"], row["attempts"]) == ("dead", 2)
    assert row["last_error"].startswith("processing_error")
    # The client is told: payment_fn answers the last re-send with the stored final rejection.
    wait_until(lambda: http.get(f"/v1/bookings/requests/{key}").body.get("status") == "rejected",
               what="the final rejection on the status endpoint")
    assert http.get(f"/v1/bookings/requests/{key}").body["reason"] == "retries_exhausted"
    assert retry_row(key)["status"] == "dead"
    # the API's publish, two re-drives, and the re-send that carries the final answer
    assert request_records_by_key({key})[key] == 4
    assert not rows("SELECT id FROM bookings WHERE booking_key=%s AND status IN ('held', 'confirmed')", key)
    assert not rows("SELECT id FROM payments WHERE booking_key=%s", key)


# ---- concurrency and failures of the run itself -----------------------------------------------------------

def test_two_retry_runs_at_the_same_time_publish_each_request_once_and_book_each_stay_once(stack):
    """Twenty parked requests, two per stay: two runs claiming two rows at a time race for them."""
    from booking_core.adapters.kafka import KafkaPublisher
    from booking_core.adapters.mysql import ConnectionHolder
    from booking_core.adapters.mysql_retries import MySqlRetryStore
    from booking_core.services.retry import redrive_due_requests

    stays = {}
    for _ in range(10):
        stay = future_stay(2)
        request = parse_booking_request(booking_body(listing_id=29, stay=stay))
        stays[stay] = [new_key("race"), new_key("race")]
        for key in stays[stay]:
            park(key, request)
    keys = [k for pair in stays.values() for k in pair]
    start = threading.Barrier(2)

    def one_run(_):
        publisher = KafkaPublisher()
        start.wait()
        try:
            return redrive_due_requests(MySqlRetryStore(ConnectionHolder()), publisher, config.requests_topic(),
                                        max_attempts=5, base_delay_s=60,
                                        booking_keys=keys, batch_size=2)
        finally:
            publisher.close()

    with ThreadPoolExecutor(2) as pool:
        summaries = list(pool.map(one_run, range(2)))
    print(f"\ntwo concurrent runs: {summaries}")
    assert sum(s["due"] for s in summaries) == sum(s["republished"] for s in summaries) == 20

    wait_until(lambda: len(rows("SELECT booking_key FROM decisions WHERE booking_key IN %s", keys)) == 20,
               what="twenty decisions")
    assert request_records_by_key(set(keys)) == Counter({k: 1 for k in keys})
    for pair in stays.values():
        decided = {r["booking_key"]: (r["status"], r["reason"])
                   for r in rows("SELECT booking_key, status, reason FROM decisions WHERE booking_key IN %s", pair)}
        assert sorted(decided.values(), key=str) == sorted([("confirmed", None), ("rejected", "unavailable")], key=str)
        confirmed = rows("SELECT booking_key FROM bookings WHERE booking_key IN %s AND status='confirmed'", pair)
        assert len(confirmed) == 1
    assert {r["status"] for r in rows("SELECT status FROM booking_retries WHERE booking_key IN %s", keys)} == {
        "succeeded"}


def test_a_claim_chosen_as_deadlock_victim_is_run_again_and_claims_each_row_once(mysql_db):
    """Two retry runs claiming while payment_fn closes re-driven rows once made InnoDB pick a claim as deadlock
    victim (error 1213, seen in a full-suite run at load 16), and the whole run failed. The victim's transaction
    is rolled back whole, so the claim is simply run again."""
    import pymysql

    from booking_core.adapters.mysql import ConnectionHolder
    from booking_core.adapters.mysql_retries import MySqlRetryStore
    from booking_core.domain.retries import plan_step

    keys = [new_key("victim"), new_key("victim")]
    for key in keys:
        park(key, parse_booking_request(booking_body(listing_id=29)))
    victims = []

    class FirstClaimLosesADeadlock(ConnectionHolder):
        @contextmanager
        def transaction(self):
            with super().transaction() as cur:
                execute = cur.execute

                def execute_or_lose(sql, args=None):
                    if "status='in_flight'" in sql and not victims:
                        victims.append(sql)
                        raise pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")
                    return execute(sql, args)

                cur.execute = execute_or_lose
                yield cur

    now = dt.datetime.now(dt.UTC)
    claimed = MySqlRetryStore(FirstClaimLosesADeadlock()).claim_due(
        now, 10, lambda row: plan_step(row, now, now.date(), 5, 60), keys)

    assert victims, "the first claim never reached its UPDATE"
    assert sorted(row.booking_key for row, _ in claimed) == sorted(keys)
    assert [(r["status"], r["attempts"]) for r in rows("SELECT status, attempts FROM booking_retries"
                                                       " WHERE booking_key IN %s", keys)] == [("in_flight", 1)] * 2


def test_when_the_run_cannot_publish_the_row_is_pending_again_with_the_error_and_the_rest_untouched(mysql_db,
                                                                                                  monkeypatch):
    from booking_core.adapters.kafka import KafkaPublisher
    from booking_core.adapters.mysql_retries import MySqlRetryStore
    from booking_core.services.retry import redrive_due_requests
    from infra.local import services

    first, second = new_key("nobroker"), new_key("nobroker")
    for key in (first, second):
        park(key, parse_booking_request(booking_body(listing_id=30)))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{services.free_port()}")
    publisher = KafkaPublisher()
    try:
        summary = redrive_due_requests(MySqlRetryStore(bootstrap.connections()), publisher, config.requests_topic(),
                                       max_attempts=5, base_delay_s=60,
                                       booking_keys=[first, second], batch_size=2)
    finally:
        publisher.close()
    assert (summary["due"], summary["republished"], summary["still_failing"]) == (2, 0, 1)
    tried, untried = sorted((retry_row(k) for k in (first, second)), key=lambda r: -r["attempts"])
    assert (tried["status"], tried["attempts"]) == ("pending", 1)
    assert "Kafka" in tried["last_error"]
    assert (untried["status"], untried["attempts"]) == ("pending", 0)


def test_a_redriven_request_whose_stay_has_begun_is_rejected_and_the_status_endpoint_says_so(http):
    key = new_key("begun")
    yesterday = dt.date.today() - dt.timedelta(days=1)
    park(key, RequestBooking(1, 31, yesterday, yesterday + dt.timedelta(days=3), 1, "tok_visa"))

    summary = run_retry([key])
    assert (summary["expired"], summary["republished"]) == (1, 0)
    decision = final_status(http, key)
    assert (decision["status"], decision["reason"]) == ("rejected", "check_in_passed")
    assert not rows("SELECT id FROM bookings WHERE booking_key=%s", key)
    (stored,) = rows("SELECT status, reason FROM decisions WHERE booking_key=%s", key)
    assert (stored["status"], stored["reason"]) == ("rejected", "check_in_passed")
    assert retry_row(key)["status"] == "succeeded"
    assert request_records_by_key({key})[key] == 1  # payment_fn answered it with the stored rejection


def test_make_retry_runs_the_retry_function_once_through_the_template_and_prints_its_summary(http):
    """What `make retry` runs, against this run's stack: the template's cron event, the summary as JSON."""
    key = new_key("make")
    check_in = own_nights(3)
    stay = check_in.isoformat(), (check_in + dt.timedelta(days=3)).isoformat()
    park(key, parse_booking_request(booking_body(listing_id=32, stay=stay)))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'layer'}"}
    result = subprocess.run([sys.executable, "-m", "infra.local.scheduler", "--trigger", "RetryFunction"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    printed = result.stdout[result.stdout.rindex("\n{\n") + 1 if "\n{\n" in result.stdout else 0:]
    summary = json.loads(printed)
    assert summary["due"] >= 1 and summary["republished"] >= 1
    assert {"due", "republished", "still_failing", "dead", "expired", "waiting"} <= summary.keys()
    final = final_status(http, key)
    assert final["status"] == "confirmed", final
