"""The maintenance sweeps on MariaDB, Redis and the running stack: nothing waits for ever, nothing grows for ever."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest

from booking_core import bootstrap, config
from booking_core.domain.model import RequestBooking
from booking_core.services import maintenance
from tests.support import own_nights, sql_rows, wait_for

pytestmark = pytest.mark.integration


def _request(listing_id: int = 35, user_id: int = 3) -> RequestBooking:
    start = own_nights(2)
    return RequestBooking(user_id, listing_id, start, start + dt.timedelta(days=2), 1, "tok_visa")


def _stale_hold(key: str, request: RequestBooking) -> int:
    """A hold whose payment_fn never came back: held, and last touched an hour ago."""
    hold = bootstrap.booking_repository().hold(key, request)
    with bootstrap.connections().transaction() as cur:
        cur.execute("UPDATE bookings SET updated_at = updated_at - INTERVAL 1 HOUR WHERE id=%s", (hold.booking_id,))
    return hold.booking_id


def _sweep_holds() -> dict:
    return maintenance.sweep_stale_holds(bootstrap.booking_repository(), bootstrap.payment_provider(),
                                         bootstrap.decision_store(), hold_limit_s=600)


def test_a_hold_older_than_the_limit_is_released_with_a_final_answer_and_nothing_charged(stack, http):
    """Before the sweep, a hold whose payment never came back kept its nights for ever."""
    key, request = f"3.stale-{uuid.uuid4().hex[:10]}", _request()
    booking_id = _stale_hold(key, request)

    assert _sweep_holds()["expired"] >= 1

    assert sql_rows("SELECT status FROM bookings WHERE id=%s", booking_id) == [{"status": "released"}]
    assert sql_rows("SELECT reason FROM decisions WHERE booking_key=%s", key) == [{"reason": "hold_expired"}]
    assert http.as_user(3).get(f"/v1/bookings/requests/{key}").body["reason"] == "hold_expired"
    assert sql_rows("SELECT 1 FROM sandbox_charges WHERE idempotency_key=%s", key) == []


def test_a_stale_hold_whose_charge_the_provider_has_is_completed_not_released(stack, http):
    key, request = f"3.charged-{uuid.uuid4().hex[:10]}", _request()
    booking_id = _stale_hold(key, request)
    bootstrap.payment_provider().charge(key, 9000, "EUR", "tok_visa")  # then payment_fn died before confirming

    assert _sweep_holds()["completed"] >= 1

    assert sql_rows("SELECT status FROM bookings WHERE id=%s", booking_id) == [{"status": "confirmed"}]
    (payment,) = sql_rows("SELECT status FROM payments WHERE booking_key=%s", key)
    assert payment["status"] == "captured"
    decision = http.as_user(3).get(f"/v1/bookings/requests/{key}").body
    assert (decision["status"], decision["booking_id"]) == ("confirmed", booking_id)
    # the request's own replay is answered as it was decided (the sweep stored the request's hash)
    assert bootstrap.booking_repository().hold(key, request).status == "confirmed"


def test_a_request_stranded_pending_is_published_again_and_decided(stack, http, redis_client):
    """A key claimed in the decision store whose record never reached payment_fn (lost with a broker restart) used
    to answer 202 pending for a week."""
    request = _request(listing_id=36, user_id=4)
    key = f"4.stranded-{uuid.uuid4().hex[:10]}"
    store = bootstrap.decision_store()
    assert store.claim(key, request)[0] is True  # claimed, never published

    counts = maintenance.redrive_stranded(store, bootstrap.publisher(), bootstrap.retry_table(),
                                          config.requests_topic(), pending_redrive_s=0, max_redrives=3,
                                          limit=10_000)

    assert counts["redriven"] >= 1
    decision = wait_for(lambda: (store.get(key) if store.get(key).status != "pending" else None), timeout=20)
    assert decision.status == "confirmed"
    assert redis_client.zscore(f"{config.redis_prefix()}pending", key) is None


def test_a_request_redriven_too_often_is_parked_and_answered_queued(stack, redis_client):
    request, key = _request(listing_id=36, user_id=4), f"4.undelivered-{uuid.uuid4().hex[:10]}"
    store = bootstrap.decision_store()
    store.claim(key, request)
    for _ in range(3):
        store.mark_redriven(key)

    maintenance.redrive_stranded(store, bootstrap.publisher(), bootstrap.retry_table(), "nowhere-read",
                                 pending_redrive_s=0, max_redrives=3, limit=10_000)

    assert store.get(key).status == "queued"
    assert sql_rows("SELECT status, reason FROM booking_retries WHERE booking_key=%s", key) == [
        {"status": "pending", "reason": "undelivered"}]


def test_a_queued_request_past_its_age_expires_and_is_never_charged(stack, http):
    request, key = _request(listing_id=37, user_id=5), f"5.old-{uuid.uuid4().hex[:10]}"
    bootstrap.retry_table().park_request(key, request, "publish_failed", "broker down")
    with bootstrap.connections().transaction() as cur:
        cur.execute("UPDATE booking_retries SET created_at = created_at - INTERVAL 2 DAY WHERE booking_key=%s", (key,))

    assert maintenance.expire_old_queued(bootstrap.retry_store(), bootstrap.booking_repository(),
                                         bootstrap.decision_store(), max_age_s=86400) >= 1

    assert http.as_user(5).get(f"/v1/bookings/requests/{key}").body["reason"] == "expired"
    assert sql_rows("SELECT status FROM booking_retries WHERE booking_key=%s", key) == [{"status": "succeeded"}]
    from retry_fn.app import handler as retry_handler

    assert retry_handler({"booking_keys": [key]}, None)["due"] == 0  # a later re-drive does nothing


def test_retention_deletes_old_finished_rows_and_keeps_recent_ones_and_confirmed_decisions(stack):
    from booking_core.adapters.mysql_decisions import insert_decision
    from booking_core.domain.model import Decision

    old, new, kept = (f"retain-{name}-{uuid.uuid4().hex[:8]}" for name in ("old", "new", "confirmed"))
    with bootstrap.connections().transaction() as cur:
        insert_decision(cur, Decision.rejected(old, "unavailable"), "0" * 32)
        insert_decision(cur, Decision.rejected(new, "unavailable"), "0" * 32)
        insert_decision(cur, Decision(kept, "confirmed", booking_id=1), "0" * 32)
        cur.execute("UPDATE decisions SET created_at = created_at - INTERVAL 100 DAY WHERE booking_key IN (%s, %s)",
                    (old, kept))

    deleted = bootstrap.retention().purge(config.retention_days(), 1000)

    assert deleted["decisions"] >= 1
    remaining = {r["booking_key"] for r in sql_rows("SELECT booking_key FROM decisions WHERE booking_key IN"
                                                   " (%s, %s, %s)", old, new, kept)}
    assert remaining == {new, kept}


def test_the_maintenance_function_runs_every_sweep_and_reports_each(stack):
    from maintenance_fn.app import handler

    summary = handler({}, None)
    assert set(summary) == {"stale_holds", "stranded", "old_queued", "retention"}
    assert not any(isinstance(v, dict) and "error" in v for v in summary.values()), summary
