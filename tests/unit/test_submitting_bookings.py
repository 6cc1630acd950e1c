import datetime as dt

import pytest

from booking_core.domain import model
from booking_core.domain.model import Decision, RequestBooking
from booking_core.ports import BrokerUnavailable, DatabaseUnavailable, StoreUnavailable
from booking_core.services.submit import (
    IdempotencyKeyReused,
    TooManyPending,
    submit_booking,
    valid_booking_key,
)
from tests.fakes import FakePublisher, FakeRetryTable


class FakeDecisionStore:
    """Answers a waiter with whatever `on_publish` recorded (what the listener would have stored)."""

    def __init__(self):
        self.entries: dict[str, tuple[str, Decision]] = {}
        self.pending: dict[int, set[str]] = {}
        self.waits = 0
        self.fail_waits = False

    def claim(self, key, request, max_pending=0):
        fingerprint, user_id = request.fingerprint(), request.user_id
        if key in self.entries:
            stored_hash, decision = self.entries[key]
            return False, stored_hash, decision
        waiting = self.pending.setdefault(user_id, set())
        if max_pending and len(waiting) >= max_pending:
            return None
        waiting.add(key)
        self.entries[key] = (fingerprint, Decision(key, model.PENDING))
        return True, fingerprint, None

    def save(self, decision):
        fingerprint, _ = self.entries.get(decision.booking_key, ("", None))
        self.entries[decision.booking_key] = (fingerprint, decision)
        if decision.status != model.PENDING:
            for waiting in self.pending.values():
                waiting.discard(decision.booking_key)
        return True

    def save_many(self, decisions):
        return [self.save(d) for d in decisions]

    def release(self, key, user_id):
        self.entries.pop(key, None)
        self.pending.get(user_id, set()).discard(key)

    def wait_decided(self, key, timeout_s, known_pending=False):
        self.waits += 1
        if self.fail_waits:
            raise StoreUnavailable("redis timed out")
        return self.entries[key][1]


REQ = RequestBooking(1, 7, dt.date(2030, 1, 1), dt.date(2030, 1, 3), 1, "tok_visa")


def submit(store, publisher, retries, key=None, request=REQ, max_pending=0):
    return submit_booking(request, key, store, publisher, retries, "booking-requests", timeout_s=1,
                          max_pending=max_pending)


def test_the_key_is_claimed_before_the_request_is_published():
    store, retries = FakeDecisionStore(), FakeRetryTable()

    class CheckingPublisher(FakePublisher):
        def publish(self, topic, key, value, correlation_id=None, timeout_s=None):
            assert key in store.entries, "published before the key was in the decision store"
            store.save(Decision(key, model.CONFIRMED, booking_id=1))

    result = submit(store, CheckingPublisher(), retries, key="abc")
    assert result.decision.status == model.CONFIRMED
    assert result.booking_key == "1.abc"  # the user's own key


def test_without_a_decision_in_time_the_answer_is_pending():
    store, publisher = FakeDecisionStore(), FakePublisher()
    result = submit(store, publisher, FakeRetryTable())
    assert result.decision.status == model.PENDING and len(publisher.sent) == 1


def test_a_broker_outage_parks_the_request_and_answers_queued():
    store, retries = FakeDecisionStore(), FakeRetryTable()
    result = submit(store, FakePublisher(fail=BrokerUnavailable("down")), retries, key="k")
    assert result.decision.status == model.QUEUED
    assert retries.parked["1.k"][1] == "publish_failed"
    assert store.entries["1.k"][1].status == model.QUEUED


def test_the_same_key_and_body_get_the_same_answer_without_publishing_again():
    store, publisher = FakeDecisionStore(), FakePublisher()
    store.claim("1.k", REQ)
    store.save(Decision("1.k", model.CONFIRMED, booking_id=5))
    result = submit(store, publisher, FakeRetryTable(), key="k")
    assert result.decision.booking_id == 5 and publisher.sent == []


def test_the_same_key_with_another_body_is_refused():
    store = FakeDecisionStore()
    submit(store, FakePublisher(), FakeRetryTable(), key="k")
    other = RequestBooking(1, 7, dt.date(2030, 1, 1), dt.date(2030, 1, 4), 1, "tok_visa")
    with pytest.raises(IdempotencyKeyReused):
        submit(store, FakePublisher(), FakeRetryTable(), key="k", request=other)


@pytest.mark.parametrize("key", ["", "x" * 65, "has space", "ünïcode", "a/b", "a?b", "a#b", "a%2Fb"])
def test_bad_idempotency_keys_are_refused(key):
    with pytest.raises(model.ValidationError):
        valid_booking_key(key)


def test_two_users_with_the_same_idempotency_key_never_share_a_request():
    store, publisher = FakeDecisionStore(), FakePublisher()
    mine = submit(store, publisher, FakeRetryTable(), key="same")
    theirs = submit(store, publisher, FakeRetryTable(), key="same",
                    request=RequestBooking(2, 7, dt.date(2030, 1, 1), dt.date(2030, 1, 3), 1, "tok_visa"))
    assert (mine.booking_key, theirs.booking_key) == ("1.same", "2.same")
    assert len(publisher.sent) == 2


def test_a_user_at_the_limit_of_pending_requests_is_refused_until_one_is_decided():
    store, publisher = FakeDecisionStore(), FakePublisher()
    for i in range(3):
        assert submit(store, publisher, FakeRetryTable(), key=f"k{i}", max_pending=3).decision.status == model.PENDING
    with pytest.raises(TooManyPending):
        submit(store, publisher, FakeRetryTable(), key="k3", max_pending=3)
    store.save(Decision("1.k0", model.CONFIRMED, booking_id=1))
    assert submit(store, publisher, FakeRetryTable(), key="k3", max_pending=3).decision.status == model.PENDING


def test_a_queued_request_does_not_count_against_the_limit():
    store = FakeDecisionStore()
    submit(store, FakePublisher(fail=BrokerUnavailable("down")), FakeRetryTable(), key="q", max_pending=1)
    assert submit(store, FakePublisher(), FakeRetryTable(), key="next", max_pending=1).decision.status == model.PENDING


def test_a_request_that_can_be_neither_published_nor_parked_leaves_its_key_free():
    store = FakeDecisionStore()

    class Unparkable:
        def park_request(self, *args):
            raise DatabaseUnavailable("MySQL down")

    with pytest.raises(DatabaseUnavailable):
        submit(store, FakePublisher(fail=BrokerUnavailable("down")), Unparkable(), key="k")
    assert "1.k" not in store.entries and store.pending[1] == set()


def test_once_published_a_failing_wait_answers_pending():
    store, publisher = FakeDecisionStore(), FakePublisher()
    store.fail_waits = True
    result = submit(store, publisher, FakeRetryTable(), key="k")
    assert result.decision.status == model.PENDING and len(publisher.sent) == 1
