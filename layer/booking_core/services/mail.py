"""Confirmation emails: what the email says (plain Python) and sending what the outbox holds.

A confirmed booking queues its email in the outbox inside the confirm transaction (see
adapters/mysql_email_outbox.py). `send_pending_emails` sends queued emails and records each outcome; a failed
send stays pending for the next call, so any later run (payment_fn after its batch, the nightly retry run)
retries it. Sending never touches the booking or its decision.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from booking_core.logs import correlated

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 8
SEND_CONCURRENCY = 8


@dataclass(frozen=True)
class Email:
    recipient: str
    subject: str
    body: str


@dataclass(frozen=True)
class OutboxEmail:
    """A queued email claimed for sending."""

    id: int
    booking_id: int
    booking_key: str
    email: Email
    attempts: int
    claim_token: str = ""


class Mailer(Protocol):
    def send(self, email: Email) -> str:
        """Send one email; return the transport's message id or raise."""


@dataclass(frozen=True)
class SendOutcome:
    """What happened to one claimed email: a message id, or the error of a failed attempt."""

    item: OutboxEmail
    message_id: str | None = None
    error: str | None = None


class EmailOutbox(Protocol):
    def claim(self, booking_ids: Iterable[int] | None = None, limit: int = 100,
              untouched_for_s: float | None = None) -> list[OutboxEmail]: ...

    def record(self, outcomes: list[SendOutcome], max_attempts: int) -> set[int]:
        """Record every outcome (one transaction); return the ids of emails given up (max_attempts reached)."""


def format_amount(amount_cents: int, currency: str) -> str:
    return f"{amount_cents // 100:,}.{amount_cents % 100:02d} {currency}"


def confirmation_email(*, booking_id: int, booking_key: str, recipient: str, guest_name: str, listing_title: str,
                       city: str, check_in: dt.date, check_out: dt.date, guests: int, amount_cents: int,
                       currency: str) -> Email:
    """The email a user receives when their booking is confirmed."""
    nights = (check_out - check_in).days
    subject = f"Booking #{booking_id} confirmed: {listing_title}"
    body = "\n".join([
        f"Hello {guest_name or 'there'},",
        "",
        f"your booking #{booking_id} is confirmed.",
        "",
        f"  Listing:    {listing_title} ({city})",
        f"  Check-in:   {check_in.isoformat()}",
        f"  Check-out:  {check_out.isoformat()} ({nights} night{'s' if nights != 1 else ''})",
        f"  Guests:     {guests}",
        f"  Amount:     {format_amount(amount_cents, currency)} (charged)",
        f"  Reference:  {booking_key}",
        "",
        "Have a good stay!",
    ])
    return Email(recipient=recipient, subject=subject, body=body + "\n")


def send_pending_emails(outbox: EmailOutbox, mailer: Mailer, booking_ids: Iterable[int] | None = None,
                        limit: int = 100, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                        untouched_for_s: float | None = None) -> dict:
    """Send queued emails (only those of `booking_ids` when given, else any pending; with `untouched_for_s`,
    only those not attempted for that long) and record each outcome.

    Returns counts: sent, failed (stays pending for a later call), gave_up (max_attempts reached). A send
    error is recorded and never raised; only the outbox's own storage errors propagate.
    """
    if not getattr(mailer, "enabled", True):
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
    if len(items) == 1:  # the usual case under load (small batches): no pool to start
        outcomes = [attempt(items[0])]
    else:
        with ThreadPoolExecutor(max_workers=min(SEND_CONCURRENCY, len(items))) as pool:
            outcomes = list(pool.map(attempt, items))
    given_up = outbox.record(outcomes, max_attempts)
    counts: Counter = Counter()
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
