"""A user cancels a request still waiting (queued in the retry table, or pending): one final `cancelled` decision,
nothing held, nothing charged, and a later re-drive changes nothing."""
from __future__ import annotations

import datetime as dt
import time

import pytest

from booking_core import bootstrap
from infra.local.faults import set_sandbox_outage
from tests.support import booking_body, sql_rows

pytestmark = pytest.mark.integration


def _queued(http, listing_id: int) -> dict:
    """A request the provider could not take: queued, its nights released, waiting for the nightly re-drive."""
    set_sandbox_outage(bootstrap.connections(), True)
    try:
        answer = http.post("/v1/bookings", booking_body(listing_id=listing_id))
    finally:
        set_sandbox_outage(bootstrap.connections(), False)
    assert (answer.status, answer.body["status"]) == (202, "queued"), answer.body
    return answer.body


def test_a_queued_request_is_cancelled_and_a_later_redrive_never_books_or_charges_it(http):
    from retry_fn.app import handler as retry_handler

    queued = _queued(http, listing_id=40)
    key = queued["booking_key"]

    cancelled = http.delete(queued["status_url"])

    assert cancelled.status == 200, cancelled.body
    assert (cancelled.body["status"], cancelled.body["reason"]) == ("rejected", "cancelled")
    assert http.get(queued["status_url"]).body["reason"] == "cancelled"
    assert sql_rows("SELECT status FROM booking_retries WHERE booking_key=%s", key) == [{"status": "succeeded"}]
    # the nightly run finds nothing to re-drive; a re-send anyway (a duplicate record) is answered from the decision
    assert retry_handler({"booking_keys": [key]}, None)["due"] == 0
    from booking_core.domain import messages
    from booking_core.domain.model import parse_booking_request
    from booking_core.kafka_event import build_event
    from payment_fn.app import handler as payment_handler

    request = parse_booking_request({**booking_body(listing_id=40), "check_in": "2031-01-01",
                                     "check_out": "2031-01-03"}, today=dt.date(2030, 1, 1))
    payment_handler(build_event([("booking-requests", 0, 0, 0, key.encode(),
                                  messages.encode_request(key, request), [])]), None)
    assert sql_rows("SELECT status FROM bookings WHERE booking_key=%s AND status IN ('held', 'confirmed')", key) == []
    assert sql_rows("SELECT idempotency_key FROM sandbox_charges WHERE idempotency_key=%s AND status='succeeded'",
                    key) == []


def test_a_decided_request_cannot_be_cancelled_409(http):
    decided = http.post("/v1/bookings", booking_body(listing_id=40)).body
    assert decided["status"] == "confirmed"
    answer = http.delete(decided["status_url"])
    assert (answer.status, answer.body["error"]) == (409, "already_decided")
    assert answer.body["decision"] == decided  # the decision as the status URL answers it


def test_another_users_request_is_404_and_an_unknown_one_too(http):
    queued = _queued(http, listing_id=40)
    assert http.as_user(2).delete(queued["status_url"]).status == 404
    assert http.delete("/v1/bookings/requests/1.never-sent").status == 404
    assert http.get(queued["status_url"]).body["status"] == "queued"  # untouched


def test_a_pending_request_cancelled_before_payment_fn_reads_it_is_never_held_or_charged(http, redis_client):
    """The payment pollers are paused (this run's own stack): the request waits on its topic when it is cancelled."""
    import json
    import os
    import signal

    from infra.local.stack import RUN_DIR, stack_id

    pollers = [pid for name, pid in json.loads((RUN_DIR / stack_id() / "children.json").read_text()).items()
               if name.startswith("PaymentFunction-")]
    for pid in pollers:
        os.kill(pid, signal.SIGSTOP)
    try:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(http.post, "/v1/bookings", booking_body(listing_id=40))
            time.sleep(1.0)
            keys = redis_client.zrange(f"{redis_key_prefix()}pending:1", 0, -1)
            assert len(keys) == 1
            cancelled = http.delete(f"/v1/bookings/requests/{keys[0]}")
            answer = waiting.result(timeout=30)
    finally:
        for pid in pollers:
            os.kill(pid, signal.SIGCONT)
    assert (cancelled.status, cancelled.body["reason"]) == (200, "cancelled"), cancelled.body
    assert (answer.status, answer.body["reason"]) == (422, "cancelled")  # the waiting client hears it at once
    deadline = time.monotonic() + 20  # payment_fn reads it after all, and answers from the stored decision
    while time.monotonic() < deadline and not sql_rows("SELECT 1 FROM decisions WHERE booking_key=%s", keys[0]):
        time.sleep(0.1)
    time.sleep(1.0)
    assert sql_rows("SELECT status FROM bookings WHERE booking_key=%s AND status IN ('held', 'confirmed')",
                    keys[0]) == []
    assert sql_rows("SELECT 1 FROM sandbox_charges WHERE idempotency_key=%s", keys[0]) == []


def redis_key_prefix() -> str:
    from booking_core import config

    return config.redis_prefix()
