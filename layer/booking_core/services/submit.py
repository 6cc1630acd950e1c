"""The booking API's use case: submit a booking request and wait (bounded) for its decision."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from booking_core.domain import messages, model
from booking_core.domain.model import Decision, RequestBooking
from booking_core.logs import correlated
from booking_core.ports import BrokerUnavailable, DecisionStore, Publisher, RetryTable

log = logging.getLogger(__name__)

PUBLISH_FAILED = "publish_failed"
MAX_KEY_LENGTH = 64


class IdempotencyKeyReused(Exception):
    """The same Idempotency-Key came with a different body."""


@dataclass
class Submission:
    decision: Decision
    booking_key: str


def valid_booking_key(value: str | None) -> str | None:
    """An Idempotency-Key header is accepted as the booking key if it is 1-64 printable ASCII characters."""
    if value is None:
        return None
    if not (1 <= len(value) <= MAX_KEY_LENGTH) or not all(33 <= ord(c) < 127 for c in value):
        raise model.ValidationError({"Idempotency-Key": f"must be 1-{MAX_KEY_LENGTH} printable ASCII characters"})
    return value


def submit_booking(request: RequestBooking, idempotency_key: str | None, store: DecisionStore,
                   publisher: Publisher, retry_table: RetryTable, requests_topic: str,
                   timeout_s: float) -> Submission:
    """Claim the key in the decision store, publish the request, wait for the decision.

    The key is marked pending *before* publishing, so the decision cannot arrive before anyone looks for it.
    A request that cannot be published is parked in the retry table and answered `queued`.
    """
    booking_key = idempotency_key or uuid.uuid4().hex
    with correlated(booking_key):
        return _submit(booking_key, request, store, publisher, retry_table, requests_topic, timeout_s)


def _submit(booking_key: str, request: RequestBooking, store: DecisionStore, publisher: Publisher,
            retry_table: RetryTable, requests_topic: str, timeout_s: float) -> Submission:
    created, stored_hash, stored = store.claim(booking_key, request.fingerprint())
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
        log.error("publish failed; request parked for retry", extra={"error": str(exc)})
        retry_table.park_request(booking_key, request, PUBLISH_FAILED, str(exc))
        queued = Decision(booking_key, model.QUEUED, reason=PUBLISH_FAILED)
        store.save(queued)
        return Submission(queued, booking_key)

    return _wait(store, booking_key, timeout_s, known_pending=True)


def _wait(store: DecisionStore, booking_key: str, timeout_s: float, known_pending: bool) -> Submission:
    decision = store.wait_decided(booking_key, timeout_s, known_pending=known_pending)
    return Submission(decision or Decision(booking_key, model.PENDING), booking_key)
