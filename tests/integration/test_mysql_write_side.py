"""The write side on MariaDB, case by case: what the booking repository and the retry table leave in their rows.
Upserts on trigger tables answer the existing row's id (one that changes nothing reports insert id 0 there)."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest

from booking_core import bootstrap
from booking_core.domain.model import Hold, RequestBooking
from booking_core.ports import charge_one_by_one
from tests.support import own_nights, sql_rows

pytestmark = pytest.mark.integration


def test_confirming_a_key_twice_answers_the_same_payment_id(mysql_db):
    repo = bootstrap.booking_repository()
    key = f"twice-{uuid.uuid4().hex}"
    check_in = own_nights(2)
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


# -- a hold never outlives its request ----------------------------------------------------------------------

def _decide(key, request, payments):
    from booking_core.services.decide import decide_booking

    return decide_booking(key, request, bootstrap.booking_repository(), payments, quick_retries=0)


def _stay() -> tuple[dt.date, dt.date]:
    start = own_nights(3)
    return start, start + dt.timedelta(days=3)


class ExplodingProvider:
    """A provider whose charge fails with an error that is no outage and no decline (a bug, bad data)."""

    name = "sandbox"

    def __init__(self, after_charging=None):
        self.after_charging = after_charging
        self.refunds = []

    def charge(self, idempotency_key, amount_cents, currency, token):
        raise ValueError("Incorrect string value for column 'token'")

    def charge_many(self, charges):
        return charge_one_by_one(self.charge, charges)

    def refund(self, idempotency_key, provider_ref, amount_cents):
        self.refunds.append(idempotency_key)

    def find_charge(self, idempotency_key):
        return None  # the provider has no record of a charge: nothing to give back


def test_a_non_transient_error_after_the_hold_releases_it_and_answers_a_final_rejection(mysql_db):
    """It was parked with its hold kept: each re-drive met the same error, the nights stayed held for ever."""
    key = f"explode-{uuid.uuid4().hex}"
    request = RequestBooking(2, 34, *_stay(), 1, "tok_visa")

    decision = _decide(key, request, ExplodingProvider())

    assert (decision.status, decision.reason) == ("rejected", "processing_failed")
    assert "Incorrect string" not in (decision.detail or "")
    assert sql_rows("SELECT status FROM bookings WHERE booking_key=%s", key) == [{"status": "released"}]
    assert sql_rows("SELECT reason FROM decisions WHERE booking_key=%s", key) == [{"reason": "processing_failed"}]
    assert sql_rows("SELECT id FROM booking_retries WHERE booking_key=%s AND status IN ('pending', 'in_flight')",
                    key) == []


class CancellingProvider:
    """The real sandbox; after it has charged, the request is cancelled before payment_fn confirms."""

    def __init__(self, cancel):
        from booking_core.adapters.sandbox_payments import MySqlSandboxProvider

        self.real, self.cancel = MySqlSandboxProvider(bootstrap.connections()), cancel
        self.name = self.real.name

    def charge(self, *args):
        result = self.real.charge(*args)
        self.cancel()
        return result

    def charge_many(self, charges):
        return charge_one_by_one(self.charge, charges)

    def refund(self, *args):
        return self.real.refund(*args)

    def find_charge(self, key):
        return self.real.find_charge(key)


def test_confirm_confirms_only_a_booking_still_held_and_a_charge_it_cannot_keep_is_refunded(mysql_db):
    from booking_core.adapters.mysql_decisions import insert_decision
    from booking_core.domain.model import Decision

    key = f"lost-hold-{uuid.uuid4().hex}"
    request = RequestBooking(2, 34, *_stay(), 1, "tok_visa")

    def cancel_meanwhile():  # what a cancellation (or the hold sweep) does between charge and confirm
        with bootstrap.connections().transaction() as cur:
            cur.execute("UPDATE bookings SET status='released' WHERE booking_key=%s AND status='held'", (key,))
            insert_decision(cur, Decision.rejected(key, "cancelled", "cancelled by the user"), request.fingerprint())

    decision = _decide(key, request, CancellingProvider(cancel_meanwhile))

    assert (decision.status, decision.reason) == ("rejected", "cancelled")
    assert sql_rows("SELECT status FROM bookings WHERE booking_key=%s", key) == [{"status": "released"}]
    assert sql_rows("SELECT id FROM payments WHERE booking_key=%s", key) == []
    assert sql_rows("SELECT status FROM sandbox_refunds WHERE idempotency_key=%s", key) == [{"status": "succeeded"}]


class DyingProvider:
    """The real sandbox; payment_fn dies (the process is killed) right after the provider has charged."""

    def __init__(self):
        from booking_core.adapters.sandbox_payments import MySqlSandboxProvider

        self.real = MySqlSandboxProvider(bootstrap.connections())
        self.name = self.real.name

    def charge_many(self, charges):
        self.real.charge_many(charges)
        raise SystemExit("killed between charge and confirm")


def test_a_request_cancelled_while_its_payment_fn_lay_dead_after_charging_is_refunded_on_redelivery(mysql_db):
    """Found by the chaos run: payment_fn charged, was killed before confirming, the user cancelled meanwhile; the
    redelivered record met the stored cancellation and answered it, keeping the charge."""
    from booking_core.adapters.sandbox_payments import MySqlSandboxProvider
    from booking_core.domain.model import Decision

    key = f"dead-after-charge-{uuid.uuid4().hex}"
    request = RequestBooking(2, 35, *_stay(), 1, "tok_visa")
    with pytest.raises(SystemExit):
        _decide(key, request, DyingProvider())
    bootstrap.connections().discard()  # the dead process's connection goes with it
    assert sql_rows("SELECT status FROM sandbox_charges WHERE idempotency_key=%s", key) == [{"status": "succeeded"}]

    # WHEN the user cancels (the hold is released, the decision stored) and the record is delivered again
    _, cancelled = bootstrap.booking_repository().settle(key, Decision.rejected(key, "cancelled", "by the user"))
    assert cancelled
    decision = _decide(key, request, MySqlSandboxProvider(bootstrap.connections()))

    # THEN the answer is the cancellation, and the charge it cannot keep is given back
    assert (decision.status, decision.reason) == ("rejected", "cancelled")
    assert sql_rows("SELECT id FROM payments WHERE booking_key=%s", key) == []
    assert sql_rows("SELECT status FROM sandbox_refunds WHERE idempotency_key=%s", key) == [{"status": "succeeded"}]


def test_a_request_finished_by_two_pollers_at_once_answers_the_first_ones_decision_not_hold_expired(mysql_db):
    """GIVEN one request delivered to two payment pollers at once, both holding (the same hold) and charging
    (the same charge); the first is confirming it: the booking row locked, no decision row yet,
    WHEN the second finishes meanwhile (no decision seen, so it waits on the booking row) and the first commits,
    THEN the second answers the first's decision, not hold_expired ('released by something that stored no decision'):
    a `make run` demo booking got hold_expired in a whole-suite run."""
    import threading
    import time

    from booking_core.adapters.mysql import connect
    from booking_core.adapters.mysql_decisions import insert_decision
    from booking_core.domain.model import Decision
    from booking_core.ports import CHARGED, PaymentOutcome

    repo = bootstrap.booking_repository()
    key = f"twice-at-once-{uuid.uuid4().hex}"
    check_in = own_nights(2)
    request = RequestBooking(2, 33, check_in, check_in + dt.timedelta(days=2), 1, "tok_visa")
    hold = repo.hold(key, request)
    assert isinstance(hold, Hold)
    outcome = PaymentOutcome(CHARGED, key, request, hold, "sandbox", f"ch_{uuid.uuid4().hex[:12]}")
    first = connect(mysql_db)
    answers = []
    try:
        with first.cursor() as cur:  # the first poller, inside its finish: the booking row locked
            cur.execute("SELECT id FROM bookings WHERE id=%s FOR UPDATE", (hold.booking_id,))
        second = threading.Thread(target=lambda: answers.extend(repo.finish_many([outcome])))
        second.start()
        time.sleep(1.0)  # the second reads no decision and waits on the booking row (a synchronisation aid)
        with first.cursor() as cur:
            cur.execute("UPDATE bookings SET status='confirmed' WHERE id=%s", (hold.booking_id,))
            insert_decision(cur, Decision(key, "confirmed", booking_id=hold.booking_id), request.fingerprint())
        first.commit()
        second.join(timeout=30)
    finally:
        first.close()

    assert [(a.status, a.reason) for a in answers] == [("confirmed", None)]
    assert sql_rows("SELECT status FROM bookings WHERE id=%s", hold.booking_id) == [{"status": "confirmed"}]
