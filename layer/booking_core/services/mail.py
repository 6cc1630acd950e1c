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
from dataclasses import dataclass
from typing import Protocol

from booking_core.logs import correlated

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 8


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


class EmailOutbox(Protocol):
    def claim(self, booking_ids: Iterable[int] | None = None, limit: int = 100,
              untouched_for_s: float | None = None) -> list[OutboxEmail]: ...

    def mark_sent(self, item: OutboxEmail, message_id: str) -> None: ...

    def mark_failed(self, item: OutboxEmail, error: str, max_attempts: int) -> bool:
        """Record a failed attempt; True when the email was given up (max_attempts reached)."""


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
    counts: Counter = Counter()
    for item in outbox.claim(booking_ids, limit, untouched_for_s):
        with correlated(item.booking_key):
            try:
                message_id = mailer.send(item.email)
            except Exception as exc:  # noqa: BLE001 - any transport error: record it, retry on a later run
                gave_up = outbox.mark_failed(item, repr(exc), max_attempts)
                counts["gave_up" if gave_up else "failed"] += 1
                log.warning("confirmation email not sent", extra={
                    "booking_id": item.booking_id, "attempts": item.attempts + 1, "error": repr(exc),
                    "gave_up": gave_up})
                continue
            outbox.mark_sent(item, message_id)
            counts["sent"] += 1
            log.info("confirmation email sent", extra={"booking_id": item.booking_id, "message_id": message_id})
    return dict(counts)
