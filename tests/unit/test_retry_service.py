"""The retry run's rules and service on fakes: backoff, due/dead/expired decisions, publish failures, the summary."""
from __future__ import annotations

import datetime as dt

import pytest

from booking_core.domain import messages
from booking_core.domain.model import Decision, RequestBooking
from booking_core.domain.retries import (
    EXPIRE,
    GIVE_UP,
    MAX_DELAY_S,
    MIN_DELAY_S,
    REDRIVE,
    RetryRow,
    backoff_delay_s,
    plan_step,
)
from booking_core.ports import BrokerUnavailable
from booking_core.services.retry import redrive_due_requests
from tests.conftest import load_event
from tests.fakes import FakeOutbox, FakePublisher

NOW = dt.datetime(2030, 1, 10, 2, 0, tzinfo=dt.UTC)
TODAY = NOW.date()


def a_request(check_in: dt.date = dt.date(2030, 3, 1)) -> RequestBooking:
    return RequestBooking(1, 7, check_in, check_in + dt.timedelta(days=3), 2, "tok_visa")


class FakeRetryStore:
    """booking_retries in a dict, with the claim semantics of MySqlRetryStore (a claimed row is leased)."""

    def __init__(self):
        self.rows: dict[str, dict] = {}
        self.decisions: dict[str, Decision] = {}
        self.held_keys: set[str] = set()

    def add(self, key, request=None, attempts=0, status="pending", due=NOW, error="boom", reason="publish_failed"):
        self.rows[key] = {"request": request or a_request(), "attempts": attempts, "status": status,
                          "next_attempt_at": due, "last_error": error, "reason": reason}

    def claim_due(self, now, limit, plan, booking_keys=None):
        due = sorted((r["next_attempt_at"], k) for k, r in self.rows.items()
                     if r["status"] in ("pending", "in_flight") and r["next_attempt_at"] <= now
                     and (booking_keys is None or k in booking_keys))
        claimed = []
        for _, key in due[:limit]:
            r = self.rows[key]
            row = RetryRow(key, r["request"], r["reason"], r["attempts"], r["status"], r["last_error"])
            step = plan(row)
            if step.action == GIVE_UP:
                r["status"] = "dead"
            else:
                r.update(status="in_flight", attempts=r["attempts"] + 1, next_attempt_at=step.next_attempt_at)
            claimed.append((row, step))
        return claimed

    def publish_failed(self, key, error):
        if self.rows[key]["status"] == "in_flight":
            self.rows[key].update(status="pending", last_error=error)

    def give_back(self, key, error, now):
        r = self.rows[key]
        r.update(status="pending", attempts=max(r["attempts"], 1) - 1, next_attempt_at=now, last_error=error)

    def store_rejection(self, key, request, decision):
        if key in self.decisions:
            return self.decisions[key]
        if key in self.held_keys:
            return None
        self.decisions[key] = decision
        return decision

    def mark_succeeded(self, key):
        self.rows[key].update(status="succeeded", last_error=None)

    def count_waiting(self):
        return sum(r["status"] in ("pending", "in_flight") for r in self.rows.values())


class BrokenAfter(FakePublisher):
    """Acknowledges the first `ok` publishes, then the broker is gone."""

    def __init__(self, ok: int):
        super().__init__()
        self.ok = ok

    def publish(self, topic, key, value, correlation_id=None, timeout_s=None):
        if len(self.sent) >= self.ok:
            raise BrokerUnavailable("publish to booking-requests failed: KafkaTimeoutError")
        super().publish(topic, key, value, correlation_id, timeout_s)


def run(store, publisher=None, now=NOW, **kw):
    publisher = publisher if publisher is not None else FakePublisher()
    options = {"max_attempts": 5, "base_delay_s": 60, "batch_size": 2, **kw}
    summary = redrive_due_requests(store, publisher, "booking-requests", now=now, **options)
    return summary, publisher


def published_requests(publisher) -> list[tuple[str, int]]:
    found = []
    for topic, key, value in publisher.sent:
        if topic == "booking-requests":
            found.append((key, messages.decode_request(key, value)[1]))
    return found


# ---- rules ---------------------------------------------------------------------------------------------

def test_backoff_doubles_from_the_base_delay_for_each_attempt():
    assert [backoff_delay_s(n, 60) for n in (1, 2, 3, 4)] == [60, 120, 240, 480]


def test_backoff_is_never_shorter_than_the_in_flight_lease_nor_longer_than_twelve_hours():
    assert backoff_delay_s(1, 0) == MIN_DELAY_S
    assert backoff_delay_s(30, 60) == MAX_DELAY_S == 12 * 3600


def test_a_row_below_the_maximum_is_redriven_and_due_again_after_its_backoff():
    step = plan_step(RetryRow("k", a_request(), "publish_failed", 2, "pending"), NOW, TODAY, 5, 60)
    assert step.action == REDRIVE
    assert step.next_attempt_at == NOW + dt.timedelta(seconds=240)


def test_a_row_that_used_its_maximum_attempts_is_given_up():
    assert plan_step(RetryRow("k", a_request(), "r", 5, "pending"), NOW, TODAY, 5, 60).action == GIVE_UP


def test_a_stay_that_has_begun_expires_even_at_the_maximum_attempts():
    yesterday = TODAY - dt.timedelta(days=1)
    assert plan_step(RetryRow("k", a_request(yesterday), "r", 5, "pending"), NOW, TODAY, 5, 60).action == EXPIRE


def test_a_stay_that_begins_today_is_still_redriven():
    assert plan_step(RetryRow("k", a_request(TODAY), "r", 0, "pending"), NOW, TODAY, 5, 60).action == REDRIVE


def test_an_unreadable_request_is_given_up():
    assert plan_step(RetryRow("k", None, "r", 0, "pending"), NOW, TODAY, 5, 60).action == GIVE_UP


# ---- the run -------------------------------------------------------------------------------------------

def test_each_due_row_is_republished_once_with_its_key_and_next_attempt_number():
    store = FakeRetryStore()
    store.add("a")
    store.add("b", attempts=2, status="in_flight")  # re-published earlier but never decided
    store.add("c")
    summary, publisher = run(store)
    assert sorted(published_requests(publisher)) == [("a", 1), ("b", 3), ("c", 1)]
    assert summary == {"due": 3, "republished": 3, "still_failing": 0, "dead": 0, "expired": 0, "waiting": 3}
    assert {r["status"] for r in store.rows.values()} == {"in_flight"}


def test_rows_not_yet_due_and_closed_rows_are_left_alone():
    store = FakeRetryStore()
    store.add("later", due=NOW + dt.timedelta(seconds=1))
    store.add("done", status="succeeded")
    store.add("buried", status="dead")
    summary, publisher = run(store)
    assert publisher.sent == []
    assert (summary["due"], summary["waiting"]) == (0, 1)
    assert store.rows["later"]["attempts"] == 0


def test_a_second_run_right_after_the_first_takes_nothing_while_the_rows_are_in_flight():
    store = FakeRetryStore()
    store.add("a")
    run(store)
    summary, publisher = run(store, now=NOW + dt.timedelta(seconds=MIN_DELAY_S - 1))
    assert summary["due"] == 0 and publisher.sent == []


def test_an_in_flight_row_never_decided_is_republished_once_its_backoff_has_passed():
    store = FakeRetryStore()
    store.add("a")
    run(store)
    summary, publisher = run(store, now=NOW + dt.timedelta(seconds=60))
    assert published_requests(publisher) == [("a", 2)]


def test_a_row_at_the_maximum_attempts_becomes_dead_with_its_last_error_kept_and_its_client_is_told():
    store = FakeRetryStore()
    store.add("a", attempts=5, error="processing_error: the provider could not process the charge")
    summary, publisher = run(store)
    assert summary["dead"] == 1 and summary["waiting"] == 0 and summary["republished"] == 0
    assert store.rows["a"]["status"] == "dead"
    assert store.rows["a"]["last_error"] == "processing_error: the provider could not process the charge"
    # the stored rejection reaches the client through payment_fn, which answers the re-sent request with it
    assert store.decisions["a"].reason == "retries_exhausted"
    assert "processing_error" not in store.decisions["a"].detail  # the error is the operators', not the client's
    assert published_requests(publisher) == [("a", 6)]


def test_a_dead_row_whose_booking_payment_fn_holds_is_left_for_payment_fn_to_finish():
    store = FakeRetryStore()
    store.add("a", attempts=5)
    store.held_keys.add("a")
    summary, publisher = run(store)
    assert summary["dead"] == 1 and publisher.sent == [] and "a" not in store.decisions


def test_a_publish_failure_puts_the_row_back_to_pending_with_the_error_and_gives_back_the_untried_rows():
    store = FakeRetryStore()
    for key in "abcde":
        store.add(key, due=NOW - dt.timedelta(minutes=ord("z") - ord(key)))  # claimed in order a..e
    summary, publisher = run(store, BrokenAfter(ok=1), batch_size=3)
    assert published_requests(publisher) == [("a", 1)]
    assert (summary["republished"], summary["still_failing"]) == (1, 1)
    assert "KafkaTimeoutError" in summary["last_error"]
    failed = store.rows["b"]
    assert (failed["status"], failed["attempts"]) == ("pending", 1) and "KafkaTimeoutError" in failed["last_error"]
    untried = store.rows["c"]
    assert (untried["status"], untried["attempts"], untried["next_attempt_at"]) == ("pending", 0, NOW)
    # The run stopped claiming once the broker failed: d and e were never taken.
    assert summary["due"] == 3 and store.rows["e"]["attempts"] == 0


def test_a_stay_that_has_begun_is_rejected_as_check_in_passed_and_republished_for_payment_fn_to_answer():
    store = FakeRetryStore()
    store.add("late", request=a_request(TODAY - dt.timedelta(days=2)))
    summary, publisher = run(store)
    assert published_requests(publisher) == [("late", 1)]
    assert (store.decisions["late"].status, store.decisions["late"].reason) == ("rejected", "check_in_passed")
    assert store.rows["late"]["status"] == "succeeded"
    assert (summary["expired"], summary["republished"]) == (1, 0)


def test_a_begun_stay_whose_booking_payment_fn_holds_is_redriven_so_payment_fn_can_finish_it():
    store = FakeRetryStore()
    store.add("held", request=a_request(TODAY - dt.timedelta(days=1)))
    store.held_keys.add("held")
    summary, publisher = run(store)
    assert published_requests(publisher) == [("held", 1)]
    assert (summary["expired"], summary["republished"]) == (0, 1)
    assert "held" not in store.decisions and store.rows["held"]["status"] == "in_flight"


def test_a_begun_stay_whose_rejection_cannot_be_published_stays_open_for_the_next_run():
    store = FakeRetryStore()
    store.add("late", request=a_request(TODAY - dt.timedelta(days=1)))
    summary, _ = run(store, BrokenAfter(ok=0))
    assert store.decisions["late"].reason == "check_in_passed"
    assert store.rows["late"]["status"] == "pending"
    assert (summary["expired"], summary["still_failing"]) == (0, 1)


def test_only_the_named_keys_are_taken_when_the_run_names_some():
    store = FakeRetryStore()
    store.add("mine")
    store.add("theirs")
    summary, publisher = run(store, booking_keys=["mine"])
    assert published_requests(publisher) == [("mine", 1)]
    assert store.rows["theirs"]["status"] == "pending"


def test_the_run_stops_claiming_when_told_time_is_up():
    store = FakeRetryStore()
    for key in "abcd":
        store.add(key)
    answers = iter([True, False])
    summary, _ = run(store, batch_size=2, keep_going=lambda: next(answers))
    assert summary["due"] == 2


# ---- the handler ---------------------------------------------------------------------------------------

@pytest.fixture
def handler_on_fakes():
    from booking_core import bootstrap
    from retry_fn import app

    store, publisher = FakeRetryStore(), FakePublisher()
    bootstrap.override("retry_store", store)
    bootstrap.override("publisher", publisher)
    bootstrap.override("email_outbox", FakeOutbox([]))
    yield app.handler, store, publisher
    bootstrap.reset()


def test_the_handler_accepts_the_scheduled_event_sample_and_returns_the_summary(handler_on_fakes):
    handler, store, publisher = handler_on_fakes
    store.add("a", due=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    summary = handler(load_event("retry_fn/scheduled_event.json"), None)
    assert summary["due"] == summary["republished"] == 1
    assert "error" not in summary["emails"]
    assert published_requests(publisher) == [("a", 1)]


def test_the_handler_takes_an_empty_event_as_every_due_row_and_booking_keys_as_only_those(handler_on_fakes):
    handler, store, publisher = handler_on_fakes
    past = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    store.add("a", due=past)
    store.add("b", due=past)
    assert handler({"booking_keys": ["b"]}, None)["republished"] == 1
    assert handler({}, None)["republished"] == 1
    assert sorted(published_requests(publisher)) == [("a", 1), ("b", 1)]


def test_the_handler_refuses_booking_keys_that_are_not_a_list_of_strings(handler_on_fakes):
    handler, _, _ = handler_on_fakes
    with pytest.raises(ValueError):
        handler({"booking_keys": "abc"}, None)

