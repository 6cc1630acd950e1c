"""Sending the confirmation emails the outbox holds (what an email says: domain/emails.py).

A confirmed booking queues its email in the outbox inside the confirm transaction (see
adapters/mysql_email_outbox.py). `send_pending_emails` sends queued emails and saves each outcome; a failed
send stays pending for the next call, so any later run (payment_fn after its batch, the nightly retry run)
retries it. Sending never touches the booking or its decision.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from booking_core.domain.emails import OutboxEmail, SendOutcome
from booking_core.logs import correlated
from booking_core.ports import EmailOutbox, Mailer

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 8
SEND_CONCURRENCY = 8
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _send_pool() -> ThreadPoolExecutor:
    """One pool per process, its threads kept between calls: a pool started per batch (eight threads started and
    joined) cost about a tenth of a payment poller's CPU under load."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=SEND_CONCURRENCY, thread_name_prefix="email-send")
        return _pool


def send_pending_emails(outbox: EmailOutbox, mailer: Mailer, booking_ids: Iterable[int] | None = None,
                        limit: int = 100, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                        untouched_for_s: float | None = None) -> dict[str, int]:
    """Send queued emails (only those of `booking_ids` when given, else any pending; with `untouched_for_s`,
    only those not attempted for that long) and save each outcome.

    Returns counts: sent, failed (stays pending for a later call), gave_up (max_attempts reached). A send
    error is recorded and never raised; only the outbox's own storage errors propagate.
    """
    if not mailer.enabled:
        return {"disabled": 1}
    items = outbox.claim(booking_ids, limit, untouched_for_s)
    if not items:
        return {}

    def attempt(item: OutboxEmail) -> SendOutcome:
        with correlated(item.booking_key):
            try:
                return SendOutcome(item, message_id=mailer.send(item.email))
            except Exception as exc:  # noqa: BLE001 - any transport error: recorded, retried on a later run
                return SendOutcome(item, error=repr(exc))

    # SES answers in tens of milliseconds: a few sends at once keep a full batch's emails short.
    if len(items) == 1:  # no thread needed for one
        outcomes = [attempt(items[0])]
    else:
        outcomes = list(_send_pool().map(attempt, items))
    given_up = outbox.save_outcomes(outcomes, max_attempts)
    counts: Counter[str] = Counter()
    for outcome in outcomes:
        item = outcome.item
        with correlated(item.booking_key):
            if outcome.error is None:
                counts["sent"] += 1
                log.info("confirmation email sent", extra={"booking_id": item.booking_id,
                                                           "message_id": outcome.message_id})
            else:
                gave_up = item.id in given_up
                counts["gave_up" if gave_up else "failed"] += 1
                log.warning("confirmation email not sent", extra={
                    "booking_id": item.booking_id, "attempts": item.attempts + 1, "error": outcome.error,
                    "gave_up": gave_up})
    return dict(counts)
