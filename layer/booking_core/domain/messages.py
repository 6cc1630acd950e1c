"""Kafka message formats: JSON values with a `type` and a `version`, keyed by booking_key."""
from __future__ import annotations

import datetime as dt
import json

from booking_core.domain.model import Decision, RequestBooking, ValidationError, parse_booking_request

BOOKING_REQUESTED = "booking.requested"
BOOKING_DECIDED = "booking.decided"
VERSION = 1
CORRELATION_HEADER = "correlation_id"


def encode_request(booking_key: str, request: RequestBooking, attempt: int = 0) -> bytes:
    return json.dumps({
        "type": BOOKING_REQUESTED,
        "version": VERSION,
        "booking_key": booking_key,
        "attempt": attempt,
        "request": request.to_dict(),
    }, separators=(",", ":")).encode()


def decode_request(booking_key: str | None, value: bytes | None,
                   today: dt.date | None = None) -> tuple[RequestBooking, int]:
    """Parse a booking-requests record value; raise ValidationError for anything malformed.

    Dates in the past are not re-checked here: a request re-driven by the nightly retry run may be
    decided after its check-in date has been validated by the API.
    """
    if not booking_key:
        raise ValidationError({"key": "record has no booking key"})
    try:
        message = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise ValidationError({"value": "not JSON"}) from None
    if not isinstance(message, dict) or message.get("type") != BOOKING_REQUESTED:
        raise ValidationError({"type": f"must be {BOOKING_REQUESTED}"})
    if message.get("version") != VERSION:
        raise ValidationError({"version": f"unsupported, expected {VERSION}"})
    if message.get("booking_key") not in (None, booking_key):
        raise ValidationError({"booking_key": "does not match the record key"})
    attempt = message.get("attempt", 0)
    if isinstance(attempt, bool) or not isinstance(attempt, int):
        raise ValidationError({"attempt": "must be an integer"})
    request = parse_booking_request(message.get("request"), today=today or dt.date.min)
    return request, attempt


def encode_decision(decision: Decision) -> bytes:
    return json.dumps({"type": BOOKING_DECIDED, "version": VERSION, **decision.to_dict()},
                      separators=(",", ":")).encode()


def decode_decision(value: bytes | None) -> Decision:
    try:
        message = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise ValidationError({"value": "not JSON"}) from None
    if not isinstance(message, dict) or message.get("type") != BOOKING_DECIDED:
        raise ValidationError({"type": f"must be {BOOKING_DECIDED}"})
    if not isinstance(message.get("booking_key"), str) or not isinstance(message.get("status"), str):
        raise ValidationError({"booking_key": "booking_key and status are required"})
    return Decision.from_dict(message)
