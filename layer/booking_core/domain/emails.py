"""Confirmation emails as values: what an email says, and what the outbox hands to a sender."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Email:
    recipient: str
    subject: str
    body: str
    # The same message sent again (a sender died between sending and recording it) carries the same key: a transport
    # that can (the outbox folder) delivers it once. "" for none.
    message_key: str = ""


@dataclass(frozen=True)
class OutboxEmail:
    """A queued email claimed for sending."""

    id: int
    booking_id: int
    booking_key: str
    email: Email
    attempts: int
    claim_token: str = ""


@dataclass(frozen=True)
class SendOutcome:
    """What happened to one claimed email: a message id, or the error of a failed attempt."""

    item: OutboxEmail
    message_id: str | None = None
    error: str | None = None


def one_line(text: str) -> str:
    """Text for one line of an email: line breaks and the blanks around them become one space."""
    if "\n" not in text and "\r" not in text:
        return text
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def format_amount(amount_cents: int, currency: str) -> str:
    return f"{amount_cents // 100:,}.{amount_cents % 100:02d} {currency}"


def confirmation_email(*, booking_id: int, recipient: str, guest_name: str, listing_title: str,
                       city: str, check_in: dt.date, check_out: dt.date, guests: int, amount_cents: int,
                       currency: str) -> Email:
    """The email a user receives when their booking is confirmed. Nothing in it is chosen by the caller of the API
    (the Idempotency-Key once appeared as its reference: anyone could make the platform mail 64 characters of
    their choosing); the reference is the booking's own id."""
    nights = (check_out - check_in).days
    title = one_line(listing_title)  # a host's text: a line break in a subject would start a header
    subject = f"Booking #{booking_id} confirmed: {title}"
    body = "\n".join([
        f"Hello {one_line(guest_name) or 'there'},",
        "",
        f"your booking #{booking_id} is confirmed.",
        "",
        f"  Listing:    {title} ({one_line(city)})",
        f"  Check-in:   {check_in.isoformat()}",
        f"  Check-out:  {check_out.isoformat()} ({nights} night{'s' if nights != 1 else ''})",
        f"  Guests:     {guests}",
        f"  Amount:     {format_amount(amount_cents, currency)} (charged)",
        f"  Reference:  booking #{booking_id}",
        "",
        "Have a good stay!",
    ])
    return Email(recipient=recipient, subject=subject, body=body + "\n")
