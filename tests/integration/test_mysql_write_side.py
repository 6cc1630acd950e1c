"""The write side on MariaDB, case by case: what the booking repository and the retry table leave in their rows.
Upserts on trigger tables answer the existing row's id (one that changes nothing reports insert id 0 there)."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest

from booking_core import bootstrap
from booking_core.domain.model import Hold, RequestBooking
from tests.support import sql_rows

pytestmark = pytest.mark.integration


def test_confirming_a_key_twice_answers_the_same_payment_id(mysql_db):
    repo = bootstrap.booking_repository()
    key = f"twice-{uuid.uuid4().hex}"
    check_in = dt.date.today() + dt.timedelta(days=3000 + uuid.uuid4().int % 3000)
    request = RequestBooking(2, 33, check_in, check_in + dt.timedelta(days=2), 1, "tok_visa")
    hold = repo.hold(key, request)
    assert isinstance(hold, Hold)

    first = repo.confirm(key, request, hold, "sandbox", "ch_1")
    second = repo.confirm(key, request, hold, "sandbox", "ch_1")  # a concurrent redelivery's confirm

    (payment,) = sql_rows("SELECT id FROM payments WHERE booking_key=%s", key)
    assert first.payment_id == second.payment_id == payment["id"]


def test_a_known_address_confirming_again_keeps_its_user_id(mysql_db):
    accounts = bootstrap.user_accounts()
    email = f"again-{uuid.uuid4().hex[:10]}@example.com"
    user_id = accounts.ensure_user(email, "Again")
    assert user_id > 0
    assert accounts.ensure_user(email, "Again") == user_id
    assert accounts.ensure_user(email.upper().lower(), "") == user_id


def test_a_parked_requests_answer_carries_no_exception_text_or_sql(mysql_db):
    """The error is kept for operators in the retry row; the client is told why in words of the API."""
    repo = bootstrap.booking_repository()
    key = f"park-{uuid.uuid4().hex}"
    request = RequestBooking(2, 33, dt.date(2031, 1, 1), dt.date(2031, 1, 3), 1, "tok_visa")
    error = "OperationalError(1366, \"Incorrect string value: '\\xed\\xa0' for column 'token' at row 1\") in " \
            "INSERT INTO sandbox_charges (idempotency_key, token) VALUES ('k', 'tok_visa')"

    decision = repo.park(key, request, None, "internal_error", error)

    assert decision.status == "queued" and "INSERT" not in (decision.detail or "") and "'" not in (decision.detail or "")
    assert decision.detail  # a sentence a client can show
    assert sql_rows("SELECT last_error FROM booking_retries WHERE booking_key=%s", key)[0]["last_error"] == error


def test_answering_a_redelivered_request_from_its_stored_decision_closes_its_retry_row(mysql_db):
    from booking_core.adapters.mysql_decisions import insert_decision
    from booking_core.domain.model import Decision

    repo = bootstrap.booking_repository()
    key = f"stored-{uuid.uuid4().hex}"
    request = RequestBooking(2, 33, dt.date(2031, 2, 1), dt.date(2031, 2, 3), 1, "tok_visa")
    bootstrap.retry_table().park_request(key, request, "publish_failed", "broker down")
    with bootstrap.connections().transaction() as cur:  # decided meanwhile (say the retry run expired it)
        insert_decision(cur, Decision.rejected(key, "check_in_passed", "too late"), request.fingerprint())

    answer = repo.hold(key, request)

    assert isinstance(answer, Decision) and answer.reason == "check_in_passed"
    assert sql_rows("SELECT status FROM booking_retries WHERE booking_key=%s", key) == [{"status": "succeeded"}]
