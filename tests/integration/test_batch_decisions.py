"""payment_fn's batch decided as a set, on MariaDB: the batch SQL of the booking repository and the sandbox."""
from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest

from booking_core import bootstrap
from booking_core.adapters.mysql_bookings import MySqlBookingRepository
from booking_core.adapters.sandbox_payments import MySqlSandboxProvider
from booking_core.domain.model import RequestBooking
from booking_core.ports import DatabaseUnavailable
from booking_core.services.decide import decide_requests
from tests.support import own_nights, sql_rows

pytestmark = pytest.mark.integration


def _year_start() -> dt.date:
    """A year of nights no other test books."""
    return own_nights(366)


def _request(listing_id: int, check_in: dt.date, nights: int = 2, token: str = "tok_visa") -> RequestBooking:
    return RequestBooking(2, listing_id, check_in, check_in + dt.timedelta(days=nights), 1, token)


def _decide(pairs, repo=None, payments=None):
    return decide_requests(pairs, repo or bootstrap.booking_repository(),
                           payments or MySqlSandboxProvider(bootstrap.connections()), quick_retries=0)


def test_a_batch_is_decided_per_record_as_one_at_a_time_would(mysql_db):
    start, tag = _year_start(), uuid.uuid4().hex[:8]
    pairs = [
        (f"{tag}-a", _request(1, start)),                                # confirmed
        (f"{tag}-b", _request(1, start + dt.timedelta(days=1))),         # overlaps a: a was confirmed → unavailable
        (f"{tag}-c", _request(2, start, token="tok_chargeDeclined")),    # declined
        (f"{tag}-d", _request(2, start + dt.timedelta(days=1))),         # overlaps c, which let go: confirmed
        (f"{tag}-e", _request(3, start, token="tok_processingError")),   # parked
        (f"{tag}-a", _request(1, start)),                                # the same key again: the same decision
        (f"{tag}-f", RequestBooking(999_999, 4, start, start + dt.timedelta(days=1), 1, "tok_visa")),  # no user
    ]
    decisions = _decide(pairs)
    assert [(d.status, d.reason) for d in decisions] == [
        ("confirmed", None), ("rejected", "unavailable"), ("rejected", "payment_declined"), ("confirmed", None),
        ("queued", "transient_payment_failure"), ("confirmed", None), ("rejected", "unknown_user")]
    assert decisions[5] == decisions[0]
    rows = {r["booking_key"]: r["status"] for r in sql_rows(
        "SELECT booking_key, status FROM bookings WHERE booking_key LIKE %s", f"{tag}-%")}
    assert rows == {f"{tag}-a": "confirmed", f"{tag}-c": "released", f"{tag}-d": "confirmed",
                    f"{tag}-e": "released"}
    payments = {r["booking_key"]: (r["status"], r["id"]) for r in sql_rows(
        "SELECT booking_key, status, id FROM payments WHERE booking_key LIKE %s", f"{tag}-%")}
    assert payments[f"{tag}-a"] == ("captured", decisions[0].payment_id)
    assert payments[f"{tag}-c"][0] == "declined" and payments[f"{tag}-d"] == ("captured", decisions[3].payment_id)
    assert sql_rows("SELECT status FROM booking_retries WHERE booking_key=%s", f"{tag}-e") == [{"status": "pending"}]
    assert len(sql_rows("SELECT id FROM email_outbox WHERE booking_key LIKE %s", f"{tag}-%")) == 2
    assert {r["booking_key"]: r["status"] for r in sql_rows(
        "SELECT booking_key, status FROM decisions WHERE booking_key LIKE %s", f"{tag}-%")} == {
        f"{tag}-a": "confirmed", f"{tag}-b": "rejected", f"{tag}-c": "rejected", f"{tag}-d": "confirmed",
        f"{tag}-f": "rejected"}


class CrashAfterCharging(MySqlBookingRepository):
    """The process dies after the provider charged the batch, before the confirm transaction commits."""

    def finish_many(self, outcomes):
        raise DatabaseUnavailable("the connection dropped before the confirm committed")


def test_a_crash_between_charge_and_confirm_is_recovered_by_the_retried_batch_without_charging_again(mysql_db):
    start, tag = _year_start(), uuid.uuid4().hex[:8]
    pairs = [(f"{tag}-{n}", _request(n, start)) for n in (5, 6, 7, 8)]
    with pytest.raises(DatabaseUnavailable):
        _decide(pairs, repo=CrashAfterCharging(bootstrap.connections()))
    assert {r["status"] for r in sql_rows("SELECT status FROM bookings WHERE booking_key LIKE %s", f"{tag}-%")} \
        == {"held"}
    charged = sql_rows("SELECT idempotency_key, provider_ref, created_at FROM sandbox_charges"
                       " WHERE idempotency_key LIKE %s ORDER BY idempotency_key", f"{tag}-%")
    assert len(charged) == 4

    decisions = _decide(pairs)  # Lambda retries the whole batch

    assert [d.status for d in decisions] == ["confirmed"] * 4
    assert sql_rows("SELECT idempotency_key, provider_ref, created_at FROM sandbox_charges"
                    " WHERE idempotency_key LIKE %s ORDER BY idempotency_key", f"{tag}-%") == charged
    assert len(sql_rows("SELECT id FROM payments WHERE booking_key LIKE %s", f"{tag}-%")) == 4
    assert {r["status"] for r in sql_rows("SELECT status FROM bookings WHERE booking_key LIKE %s", f"{tag}-%")} \
        == {"confirmed"}
    assert _decide(pairs) == decisions  # and again: the stored decisions, nothing new


@pytest.mark.parametrize("shared", [True, False], ids=["shared-listings", "own-listings"])
def test_concurrent_batches_neither_deadlock_nor_double_book(mysql_db, shared):
    """Two payment pollers deciding batches at the same moment. Sharing listings, each lists its records in the
    other order and races for the same nights (the holds' listing locks); on listings of their own, their confirm
    transactions run side by side, inserting decisions into the same gaps of the index (with REPEATABLE READ there,
    this failed with MySQL's deadlock error in 2 of 4 runs)."""
    start, tag = _year_start(), uuid.uuid4().hex[:8]
    listings = {"up": list(range(1, 21)), "down": list(range(20, 0, -1))} if shared else {
        "up": list(range(1, 21)), "down": list(range(21, 41))}
    errors: list[BaseException] = []
    decided: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def poller(name: str) -> None:
        try:
            repo = MySqlBookingRepository(bootstrap.connections())  # a connection per thread
            payments = MySqlSandboxProvider(bootstrap.connections())
            for round_ in range(30):
                check_in = start + dt.timedelta(days=round_ % 4 if shared else 3 * round_)
                pairs = [(f"{tag}-{name}-{round_}-{n}", _request(n, check_in)) for n in listings[name]]
                barrier.wait(timeout=30)
                for (key, _), decision in zip(pairs, _decide(pairs, repo, payments), strict=True):
                    decided[key] = decision.status
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=poller, args=(name,)) for name in listings]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []  # a deadlock is MySQL error 1213, raised as DatabaseUnavailable
    assert len(decided) == 2 * 30 * 20
    booked = sql_rows("SELECT listing_id, check_in, check_out FROM bookings WHERE booking_key LIKE %s"
                      " AND status='confirmed' ORDER BY listing_id, check_in", f"{tag}-%")
    for earlier, later in zip(booked, booked[1:], strict=False):
        if earlier["listing_id"] == later["listing_id"]:
            assert later["check_in"] >= earlier["check_out"], (earlier, later)
    assert sum(1 for s in decided.values() if s == "confirmed") == len(booked)
