"""The Redis decision store on real Redis: claim, save, and waits woken by BLPOP."""
from __future__ import annotations

import datetime as dt
import threading
import time
import uuid

import pytest

from booking_core.adapters.redis_decision_store import WAKE_TTL_S, RedisDecisionStore
from booking_core.domain import model
from booking_core.domain.model import Decision, RequestBooking

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_client):
    return RedisDecisionStore(client=redis_client)


USER = 77


def _request(user_id: int = USER, nights: int = 2) -> RequestBooking:
    return RequestBooking(user_id, 7, dt.date(2031, 1, 1), dt.date(2031, 1, 1 + nights), 1, "tok_visa")


def _key() -> str:
    return model.scoped_booking_key(USER, f"store-{uuid.uuid4().hex}")


def test_a_new_key_is_claimed_once_and_the_second_claim_sees_the_first_hash_and_pending(store):
    key = _key()
    assert store.claim(key, _request()) == (True, _request().fingerprint(), None)
    created, stored_hash, decision = store.claim(key, _request(nights=3))
    assert (created, stored_hash, decision.status) == (False, _request().fingerprint(), model.PENDING)


@pytest.mark.parametrize("known_pending", [False, True])  # True: the API's claim → publish → wait path
def test_a_decision_saved_before_the_wait_answers_it_at_once(store, known_pending):
    key = _key()
    store.claim(key, _request())
    store.save(Decision(key, model.CONFIRMED, booking_id=7))
    decision = store.wait_decided(key, 5, known_pending=known_pending)
    assert decision.status == model.CONFIRMED and decision.booking_id == 7


def test_two_waiters_on_one_key_both_wake_and_the_wake_list_keeps_an_expiry(store, redis_client):
    key = _key()
    store.claim(key, _request())
    answers = []
    waiters = [threading.Thread(target=lambda: answers.append(store.wait_decided(key, 5))) for _ in range(2)]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.2)
    store.save(Decision(key, model.REJECTED, reason=model.UNAVAILABLE))
    for waiter in waiters:
        waiter.join(6)
    assert [d.status for d in answers] == [model.REJECTED, model.REJECTED]
    _, wake = store._keys(key)
    assert 0 < redis_client.ttl(wake) <= WAKE_TTL_S  # the passed-on token does not live forever


def test_a_wait_without_a_decision_ends_pending_after_its_timeout(store):
    key = _key()
    store.claim(key, _request())
    assert store.wait_decided(key, 0.3).status == model.PENDING


def test_a_user_at_the_pending_limit_claims_no_new_key_until_one_is_decided(store, redis_client):
    user = int(uuid.uuid4().int % 10**9) + 10**6
    keys = [model.scoped_booking_key(user, f"limit-{i}") for i in range(4)]
    for key in keys[:3]:
        assert store.claim(key, _request(user), max_pending=3)[0] is True
    assert store.claim(keys[3], _request(user), max_pending=3) is None
    assert not redis_client.exists(store._keys(keys[3])[0])  # nothing written for the refused key
    assert store.claim(keys[0], _request(user), max_pending=3)[0] is False  # a known key is never refused
    store.save(Decision(keys[0], model.QUEUED))  # queued no longer awaits a decision
    assert store.claim(keys[3], _request(user), max_pending=3)[0] is True
    assert 0 < redis_client.pttl(f"{store.prefix}pending:{user}")  # the set expires when nobody uses it


def test_a_request_pending_longer_than_the_stale_bound_stops_counting(store, monkeypatch):
    user = int(uuid.uuid4().int % 10**9) + 10**6
    monkeypatch.setenv("PENDING_STALE_S", "0.2")
    assert store.claim(model.scoped_booking_key(user, "old"), _request(user), max_pending=1)[0] is True
    assert store.claim(model.scoped_booking_key(user, "new"), _request(user), max_pending=1) is None
    time.sleep(0.3)
    assert store.claim(model.scoped_booking_key(user, "new"), _request(user), max_pending=1)[0] is True


def test_a_key_pending_too_long_is_stranded_with_its_request_until_decided_or_redriven(store, redis_client):
    key = _key()
    store.claim(key, _request())
    assert key not in [k for k, _, _ in store.stranded(older_than_s=60, limit=1000)]
    stranded = {k: (r, n) for k, r, n in store.stranded(older_than_s=0, limit=10_000)}
    assert stranded[key] == (_request(), 0)  # what a re-drive publishes again
    store.mark_redriven(key)
    assert key not in [k for k, _, _ in store.stranded(older_than_s=5, limit=10_000)]  # its clock restarted
    assert {k: n for k, _, n in store.stranded(older_than_s=0, limit=10_000)}[key] == 1
    store.save(Decision(key, model.CONFIRMED, booking_id=3))
    assert key not in [k for k, _, _ in store.stranded(older_than_s=0, limit=10_000)]
    assert redis_client.zscore(f"{store.prefix}pending", key) is None


def test_a_batch_of_decisions_is_saved_in_one_pipeline_as_saving_each_would(store, redis_client):
    keys = [_key() for _ in range(3)]
    for key in keys:
        store.claim(key, _request())
    store.save(Decision(keys[1], model.CONFIRMED, booking_id=5))
    woken: list = []
    waiter = threading.Thread(target=lambda: woken.append(store.wait_decided(keys[0], 5, known_pending=True)))
    waiter.start()

    saved = store.save_many([Decision(keys[0], model.CONFIRMED, booking_id=4),
                             Decision(keys[1], model.QUEUED, reason="transient_payment_failure"),  # final stays
                             Decision.rejected(keys[2], model.UNAVAILABLE)])

    waiter.join(5)
    assert saved == [True, False, True]
    assert [store.get(k).status for k in keys] == [model.CONFIRMED, model.CONFIRMED, model.REJECTED]
    assert woken and woken[0].booking_id == 4
    assert redis_client.zscore(f"{store.prefix}pending:{USER}", keys[2]) is None  # left the user's pending set


def test_a_redis_that_does_not_know_the_script_is_given_it_and_the_batch_is_saved(store):
    from booking_core.adapters import redis_decision_store as module

    # A script this server has never seen (as after a restart): same body, another digest.
    unseen = module._SAVE + f"\n-- {uuid.uuid4().hex}\n"
    store._scripts[module._SAVE] = store.redis.register_script(unseen)
    keys = [_key() for _ in range(2)]
    assert store.save_many([Decision(k, model.CONFIRMED) for k in keys]) == [True, True]
    assert [store.get(k).status for k in keys] == [model.CONFIRMED, model.CONFIRMED]
