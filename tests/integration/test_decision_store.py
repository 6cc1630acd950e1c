"""The Redis decision store on real Redis: claim, save, and waits woken by BLPOP."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from booking_core.adapters.redis_decision_store import WAKE_TTL_S, RedisDecisionStore
from booking_core.domain import model
from booking_core.domain.model import Decision

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_client):
    return RedisDecisionStore(client=redis_client)


def _key() -> str:
    return f"store-{uuid.uuid4().hex}"


def test_a_new_key_is_claimed_once_and_the_second_claim_sees_the_first_hash_and_pending(store):
    key = _key()
    assert store.claim(key, "hash-a") == (True, "hash-a", None)
    created, stored_hash, decision = store.claim(key, "hash-b")
    assert (created, stored_hash, decision.status) == (False, "hash-a", model.PENDING)


@pytest.mark.parametrize("known_pending", [False, True])  # True: the API's claim → publish → wait path
def test_a_decision_saved_before_the_wait_answers_it_at_once(store, known_pending):
    key = _key()
    store.claim(key, "h")
    store.save(Decision(key, model.CONFIRMED, booking_id=7))
    decision = store.wait_decided(key, 5, known_pending=known_pending)
    assert decision.status == model.CONFIRMED and decision.booking_id == 7


def test_two_waiters_on_one_key_both_wake_and_the_wake_list_keeps_an_expiry(store, redis_client):
    key = _key()
    store.claim(key, "h")
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
    store.claim(key, "h")
    assert store.wait_decided(key, 0.3).status == model.PENDING
