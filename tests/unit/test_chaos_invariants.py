"""The chaos run's checker finds each kind of violation it claims to (fed rows as MySQL would return them)."""
from __future__ import annotations

import random

from infra.chaos import invariants
from infra.chaos.faults import KINDS, Injector
from infra.chaos.load import Answer, Request


class FakeSql:
    """Answers each query with the rows of the first marker (in the order given) the query contains."""

    def __init__(self, **tables: list[dict]):
        self.tables = tables
        self.calls: list[str] = []

    def __call__(self, query: str, *args) -> list[dict]:
        self.calls.append(query)
        for marker, rows in self.tables.items():
            if marker.replace("__", " ") in query:
                return rows
        return []


def _request(key: str, *answers: Answer) -> Request:
    return Request(key, 1, {}, list(answers))


def test_an_overlap_of_two_confirmed_bookings_is_reported_with_both_keys():
    sql = FakeSql(bookings__a=[{"k1": "1.a", "k2": "2.b"}])
    assert invariants.no_overlapping_confirmed_bookings(sql).violations == ["1.a & 2.b"]


def test_a_kept_charge_for_a_rejected_request_and_a_confirmed_booking_without_charge_are_violations():
    charges = [
        {"k": "1.ok", "charged": 100, "refund": None, "booking": "confirmed", "amount": 100, "payment": "captured",
         "decision": "confirmed", "reason": None},
        {"k": "1.cancelled", "charged": 100, "refund": None, "booking": "released", "amount": 100,
         "payment": None, "decision": "rejected", "reason": "cancelled"},
        {"k": "1.refunded", "charged": 100, "refund": "succeeded", "booking": "released", "amount": 100,
         "payment": None, "decision": "rejected", "reason": "cancelled"},
    ]
    sql = FakeSql(**{"c.idempotency_key IS NULL": [{"k": "1.unpaid"}], "FROM sandbox_charges c": charges})
    found = invariants.charges_match_confirmed_bookings(sql).violations
    assert [v.split()[0] for v in found] == ["1.cancelled", "1.unpaid"]


def test_a_request_taken_but_neither_decided_nor_parked_is_a_violation():
    sql = FakeSql(**{"FROM decisions": [{"booking_key": "1.done", "status": "confirmed", "reason": None}],
                     "FROM booking_retries": [{"booking_key": "1.parked", "status": "pending", "reason": "x"}]})
    requests = {key: _request(key, Answer("POST", 202, "pending")) for key in ("1.done", "1.parked", "1.lost")}
    requests["1.refused"] = _request("1.refused", Answer("POST", 503))  # never taken, no trace: fine
    result, counts = invariants.every_request_decided_or_parked(sql, requests)
    assert [v.split()[0] for v in result.violations] == ["1.lost"]
    assert counts == {"decided": 1, "in_retry_table": 1, "never_accepted": 1}


def test_an_answer_the_stored_decision_contradicts_is_a_violation():
    sql = FakeSql(**{"FROM decisions": [
        {"booking_key": "1.kept", "status": "rejected", "reason": "payment_declined"},
        {"booking_key": "1.broken", "status": "rejected", "reason": "hold_expired"},
        {"booking_key": "1.cancel", "status": "rejected", "reason": "cancelled"}]})
    requests = {
        "1.kept": _request("1.kept", Answer("POST", "timeout"), Answer("POST", 402, "rejected", "payment_declined")),
        "1.broken": _request("1.broken", Answer("POST", 201, "confirmed")),
        "1.cancel": _request("1.cancel", Answer("POST", 202, "pending"),
                             Answer("DELETE", 200, "rejected", "cancelled")),
        "1.never": _request("1.never", Answer("POST", 201, "confirmed")),  # answered, then nothing stored
    }
    found = invariants.answers_never_contradicted(sql, requests).violations
    assert sorted(v.split()[0] for v in found) == ["1.broken", "1.never"]


def test_a_confirmed_booking_with_two_emails_or_none_and_an_email_for_no_booking_are_violations(tmp_path):
    for n, booking_id in enumerate((1, 2, 2, 9)):
        (tmp_path / f"{n}.eml").write_text(f"Subject: Booking #{booking_id} confirmed: Flat\n\nbody\n")
    sql = FakeSql(**{"WHERE status = 'confirmed'": [{"id": i, "booking_key": f"1.b{i}"} for i in (1, 2, 3)],
                     "FROM email_outbox": [{"booking_id": i, "status": "sent"} for i in (1, 2, 3)]})
    found = invariants.one_email_per_confirmed_booking(sql, tmp_path).violations
    assert sorted(v.split()[0] for v in found) == ["1.b2", "1.b3", "booking"]


def test_a_hold_past_the_limit_and_a_read_model_difference_are_violations():
    assert invariants.no_hold_past_the_limit(FakeSql(bookings=[{"booking_key": "1.h"}]), 30).violations == ["1.h"]
    report = {"rows": {"missing": 1, "stale": 0, "orphan": 0}, "members": {"missing": 0, "stale": 2, "orphan": 0}}
    assert len(invariants.read_model_equals_mysql(report).violations) == 3
    assert invariants.read_model_equals_mysql({"rows": {"missing": 0}, "members": {}}).violations == []


def test_the_fault_plan_has_each_kind_as_often_as_asked_inside_the_run():
    injector = Injector(targets=None, seconds=100, per_kind=3, rng=random.Random(1))  # type: ignore[arg-type]
    kinds = [kind for _, kind in injector.plan]
    assert {kind: kinds.count(kind) for kind in KINDS} == {kind: 3 for kind in KINDS}
    assert all(5 <= at <= 85 for at, _ in injector.plan) and injector.plan == sorted(injector.plan)


def test_a_request_the_broker_acknowledged_but_no_longer_holds_is_a_violation():
    requests = {
        "1.pending": _request("1.pending", Answer("POST", 202, "pending")),
        "1.queued": _request("1.queued", Answer("POST", 202, "queued", "publish_failed")),  # never on the topic
        "1.confirmed": _request("1.confirmed", Answer("POST", 201, "confirmed")),
    }
    found = invariants.acknowledged_requests_on_the_broker({"1.confirmed"}, requests).violations
    assert found == ["1.pending"]
