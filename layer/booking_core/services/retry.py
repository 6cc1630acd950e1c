"""Re-drive the retry table (retry_fn's use case): failed booking calls get another go, with backoff.

A row is *due* when it is `pending` (never re-driven, or its last attempt failed again) or `in_flight` (re-published
but never decided) and its next_attempt_at has passed. Each due row is taken by exactly one run (the store claims
it under a row lock and moves next_attempt_at past the run's clock), and then:

- its check_in has passed → rejected `check_in_passed` (a stay in the past must not be held or charged): the
  rejection is stored as the key's decision and the request re-published, so payment_fn publishes it;
- it has used its maximum attempts → `dead`, its last error kept, for a person to look at;
- otherwise → re-published to booking-requests with the same booking_key and the attempt number, so
  payment_fn's idempotency holds. payment_fn then closes the row (`succeeded`) or parks it again (`pending`).

Every request therefore ends with exactly one decision or sits in the retry table with its reason.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from booking_core.domain import messages, model
from booking_core.domain.model import Decision, RequestBooking
from booking_core.domain.retries import EXPIRE, GIVE_UP, RetryRow, Step, plan_step
from booking_core.logs import correlated
from booking_core.ports import BrokerUnavailable, Publisher, RetryStore

log = logging.getLogger(__name__)

CHECK_IN_PASSED = model.CHECK_IN_PASSED
RETRIES_EXHAUSTED = model.RETRIES_EXHAUSTED
CLAIM_BATCH = 50


@dataclass
class RetrySummary:
    due: int = 0
    republished: int = 0
    still_failing: int = 0
    dead: int = 0
    expired: int = 0
    waiting: int = 0
    last_error: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def redrive_due_requests(
    retries: RetryStore,
    publisher: Publisher,
    requests_topic: str,
    max_attempts: int,
    base_delay_s: float,
    now: dt.datetime | None = None,
    booking_keys: Iterable[str] | None = None,
    keep_going: Callable[[], bool] = lambda: True,
    batch_size: int = CLAIM_BATCH,
) -> dict:
    """Take every due row (or only `booking_keys`) in batches and re-drive, expire or bury each; return the summary.

    `now` (UTC) is the run's clock: rows due at or before it are taken. The first publish failure ends the run
    (the broker is down: trying the rest would only wait out each timeout); the untried rows are given back.
    """
    now = now or dt.datetime.now(dt.UTC)
    today = now.date()
    summary = RetrySummary()
    keys = list(booking_keys) if booking_keys is not None else None

    def plan(row: RetryRow) -> Step:
        return plan_step(row, now, today, max_attempts, base_delay_s)

    broker_down = False
    while not broker_down and keep_going():
        claimed = retries.claim_due(now, batch_size, plan, keys)
        if not claimed:
            break
        summary.due += len(claimed)
        for row, step in claimed:
            if broker_down:
                retries.give_back(row.booking_key, summary.last_error or "", now)
                continue
            try:
                with correlated(row.booking_key):
                    _handle(row, step, retries, publisher, requests_topic, summary)
            except BrokerUnavailable as exc:
                broker_down = True
                summary.still_failing += 1
                summary.last_error = str(exc)
                log.error("re-publish failed; row pending again", extra={"booking_key": row.booking_key,
                                                                       "error": str(exc)})
                retries.publish_failed(row.booking_key, str(exc))
    summary.waiting = retries.count_waiting()
    return summary.to_dict()


def _handle(row: RetryRow, step: Step, retries: RetryStore, publisher: Publisher, requests_topic: str,
            summary: RetrySummary) -> None:
    if step.action == GIVE_UP:
        summary.dead += 1
        log.warning("retry row dead", extra={"booking_key": row.booking_key, "attempts": row.attempts,
                                            "last_error": row.last_error})
        if row.request is None:
            return
        # The client is told: a final rejection is stored and reaches booking-decisions through payment_fn,
        # like any redelivery. The row stays `dead` with its error (an operator can re-open it).
        # The last error stays in the row for operators; the client is told in the API's words.
        detail = f"the request could not be completed after {row.attempts} attempts"
        told = retries.store_rejection(row.booking_key, row.request,
                                       Decision.rejected(row.booking_key, RETRIES_EXHAUSTED, detail))
        if told is not None:
            _resend(row, row.request, publisher, requests_topic)
        return
    if row.request is None:  # plan_step gives up on an unreadable row: there is nothing to re-drive
        return
    stored = None
    if step.action == EXPIRE:
        detail = f"check_in {row.request.check_in.isoformat()} passed before the request could be decided"
        # None: payment_fn holds a booking for the key, so it is re-driven for payment_fn to finish.
        stored = retries.store_rejection(row.booking_key, row.request,
                                         Decision.rejected(row.booking_key, CHECK_IN_PASSED, detail))
    # For an expired key payment_fn finds the stored decision and publishes it, as for any redelivery: it stays
    # the one writer of booking-decisions, and this function needs to write only booking-requests.
    attempt = _resend(row, row.request, publisher, requests_topic)
    if stored is not None:
        retries.mark_succeeded(row.booking_key)
        summary.expired += 1
        log.info("rejected: the stay has begun", extra={"booking_key": row.booking_key, "status": stored.status})
        return
    summary.republished += 1
    log.info("re-published", extra={"booking_key": row.booking_key, "attempt": attempt, "reason": row.reason})


def _resend(row: RetryRow, request: RequestBooking, publisher: Publisher, requests_topic: str) -> int:
    """Re-publish the row's request with its key and the next attempt number (waits for the broker's ack)."""
    attempt = row.attempts + 1
    publisher.publish(requests_topic, row.booking_key,
                      messages.encode_request(row.booking_key, request, attempt=attempt),
                      correlation_id=row.booking_key)
    return attempt
