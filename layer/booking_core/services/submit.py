"""The booking API's use case: submit a booking request and wait (bounded) for its decision."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from booking_core.domain import messages, model
from booking_core.domain.model import Decision, RequestBooking
from booking_core.logs import correlated
from booking_core.ports import (
    BookingRepository,
    BrokerUnavailable,
    DecisionStore,
    Publisher,
    RequestLog,
    RetryTable,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

PUBLISH_FAILED = "publish_failed"
MAX_KEY_LENGTH = 64


class IdempotencyKeyReused(Exception):
    """The same Idempotency-Key came with a different body."""


@dataclass
class Submission:
    decision: Decision
    booking_key: str


_KEY_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def valid_booking_key(value: str | None) -> str | None:
    """An Idempotency-Key header: 1-64 of the characters a URL path carries as they are (letters, digits, - . _ ~),
    since the key is part of the request's status URL."""
    if value is None:
        return None
    if not (1 <= len(value) <= MAX_KEY_LENGTH) or not set(value) <= _KEY_CHARACTERS:
        raise model.ValidationError({"Idempotency-Key": f"must be 1-{MAX_KEY_LENGTH} characters from A-Z a-z 0-9 - . _ ~"})
    return value


class TooManyPending(Exception):
    """The user already has as many requests awaiting a decision as one account may."""


def submit_booking(request: RequestBooking, idempotency_key: str | None, store: DecisionStore,
                   publisher: Publisher, retry_table: RetryTable, requests_topic: str,
                   timeout_s: float, max_pending: int = 0) -> Submission:
    """Claim the key in the decision store, publish the request, wait for the decision.

    The key is the user's (`model.scoped_booking_key`). It is marked pending *before* publishing, so the decision
    cannot arrive before anyone looks for it; a new key is refused (TooManyPending) while the user has
    `max_pending` requests awaiting a decision (0: no limit). A request that cannot be published is parked in the
    retry table and answered `queued`.
    """
    booking_key = model.scoped_booking_key(request.user_id, idempotency_key or uuid.uuid4().hex)
    with correlated(booking_key):
        return _submit(booking_key, request, store, publisher, retry_table, requests_topic, timeout_s, max_pending)


def _submit(booking_key: str, request: RequestBooking, store: DecisionStore, publisher: Publisher,
            retry_table: RetryTable, requests_topic: str, timeout_s: float, max_pending: int) -> Submission:
    claim = store.claim(booking_key, request, max_pending)
    if claim is None:
        raise TooManyPending(booking_key)
    created, stored_hash, stored = claim
    if not created:
        if stored_hash != request.fingerprint():
            raise IdempotencyKeyReused(booking_key)
        if stored is not None and stored.status != model.PENDING:
            return Submission(stored, booking_key)
        # Same request still in flight: wait for the same decision rather than publishing again.
        return _wait(store, booking_key, timeout_s, known_pending=False)

    try:
        publisher.publish(requests_topic, booking_key, messages.encode_request(booking_key, request),
                          correlation_id=booking_key)
    except BrokerUnavailable as exc:
        return _park(booking_key, request, store, retry_table, str(exc))
    except BaseException:
        _release(store, booking_key, request.user_id)
        raise
    return _wait(store, booking_key, timeout_s, known_pending=True)


def _park(booking_key: str, request: RequestBooking, store: DecisionStore, retry_table: RetryTable,
          error: str) -> Submission:
    """Not published: saved in the retry table and answered `queued`. If it cannot be saved either, nothing
    remembers the request: the claim is released, so the client's next try with its key publishes it."""
    try:
        retry_table.park_request(booking_key, request, PUBLISH_FAILED, error)
    except BaseException:
        _release(store, booking_key, request.user_id)
        raise
    log.error("publish failed; request parked for retry", extra={"error": error})
    queued = model.queued(booking_key, PUBLISH_FAILED)
    try:
        store.save(queued)
    except StoreUnavailable:  # parked all the same: the status endpoint answers from the retry table's decision
        log.warning("queued answer not stored", exc_info=True)
    return Submission(queued, booking_key)


def _release(store: DecisionStore, booking_key: str, user_id: int) -> None:
    try:
        store.release(booking_key, user_id)
    except StoreUnavailable:  # the claim expires with the store's TTL
        log.warning("claim not released", exc_info=True)


def _wait(store: DecisionStore, booking_key: str, timeout_s: float, known_pending: bool) -> Submission:
    """The decision within timeout_s, else `pending`. The request is published: whatever the store does now, the
    answer is never an error (a 503 would make the client retry, and book twice without its key)."""
    try:
        decision = store.wait_decided(booking_key, timeout_s, known_pending=known_pending)
    except StoreUnavailable:
        log.warning("decision wait failed; answered pending", exc_info=True)
        decision = None
    return Submission(decision or Decision(booking_key, model.PENDING), booking_key)


def request_status(booking_key: str, store: DecisionStore, requests: RequestLog) -> Decision | None:
    """A request's status for its status URL: the decision store's, else MySQL's (the store keeps an entry for
    minutes and loses everything when Redis restarts; MySQL keeps the decision), put back in the store so the next
    poll finds it there. Also when the store does not answer: the status URL works while Redis is down."""
    try:
        decision = store.get(booking_key)
    except StoreUnavailable:
        log.warning("decision store unavailable; status from MySQL", exc_info=True)
        return requests.status_of(booking_key)
    if decision is not None:
        return decision
    decision = requests.status_of(booking_key)
    if decision is not None and decision.status != model.PENDING:
        try:
            store.save(decision)
        except StoreUnavailable:
            log.warning("status not put back in the store", exc_info=True)
    return decision


class AlreadyDecided(Exception):
    """The request has a final decision: there is nothing left to cancel."""

    def __init__(self, decision: Decision):
        super().__init__(decision.booking_key)
        self.decision = decision


def cancel_request(booking_key: str, store: DecisionStore, requests: RequestLog,
                   repo: BookingRepository) -> Decision | None:
    """Cancel a request still waiting (queued in the retry table, or pending: published, maybe held): it gets the
    final decision `cancelled`, its hold is released and it is never charged; a later re-drive finds the decision.
    None for a key nobody has seen; AlreadyDecided when it has a final decision."""
    status = request_status(booking_key, store, requests)
    if status is None:
        return None
    if status.is_final:
        raise AlreadyDecided(status)
    decision, cancelled = repo.settle(booking_key, Decision.rejected(booking_key, model.CANCELLED,
                                                                     "cancelled by the user"))
    if not cancelled:
        raise AlreadyDecided(decision)
    try:
        store.save(decision)  # waiting clients hear it now; the status URL would also find it in MySQL
    except StoreUnavailable:
        log.warning("cancellation not put in the store", exc_info=True)
    log.info("request cancelled")
    return decision
