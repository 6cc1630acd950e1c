"""Booking commands, decisions and the rules that need no storage."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field

MAX_NIGHTS = 30
MAX_GUESTS = 50

CONFIRMED = "confirmed"
REJECTED = "rejected"
PENDING = "pending"
QUEUED = "queued"
FINAL_STATUSES = frozenset({CONFIRMED, REJECTED})

# Rejection reasons (the API maps them to HTTP status codes).
UNAVAILABLE = "unavailable"
PAYMENT_DECLINED = "payment_declined"
UNKNOWN_USER = "unknown_user"
UNKNOWN_LISTING = "unknown_listing"
LISTING_INACTIVE = "listing_inactive"
TOO_MANY_GUESTS = "too_many_guests"
INVALID_REQUEST = "invalid_request"
IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
CHECK_IN_PASSED = "check_in_passed"
RETRIES_EXHAUSTED = "retries_exhausted"
PROCESSING_FAILED = "processing_failed"  # an error after the hold that no retry can cure: released, never charged
HOLD_EXPIRED = "hold_expired"            # held longer than the hold limit: released by the sweep, never charged
CANCELLED = "cancelled"                  # the user cancelled it while it was queued or pending
EXPIRED = "expired"                      # queued longer than a queued request may wait


class ValidationError(ValueError):
    """Bad input; `errors` maps each offending field to why."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class RequestBooking:
    """Command: book `listing_id` for `user_id` from check_in (inclusive) to check_out (exclusive)."""

    user_id: int
    listing_id: int
    check_in: dt.date
    check_out: dt.date
    guests: int
    payment_token: str

    @property
    def nights(self) -> int:
        return (self.check_out - self.check_in).days

    def night_dates(self) -> list[dt.date]:
        return [self.check_in + dt.timedelta(days=i) for i in range(self.nights)]

    def to_dict(self) -> dict:
        return {
            "user_id": self.user_id,
            "listing_id": self.listing_id,
            "check_in": self.check_in.isoformat(),
            "check_out": self.check_out.isoformat(),
            "guests": self.guests,
            "payment_token": self.payment_token,
        }

    def fingerprint(self) -> str:
        """Stable hash of the request body: same Idempotency-Key with another body is detected by it."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


_FIELDS = {
    "user_id": int,
    "listing_id": int,
    "check_in": str,
    "check_out": str,
    "guests": int,
    "payment_token": str,
}


def _positive_int(value: object, name: str, errors: dict[str, str], maximum: int | None = None) -> int | None:
    # JSON has one number type: 26.0 is the integer 26 (as JSON Schema, and the OpenAPI document, say).
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    # bool is an int subclass: {"guests": true} must be refused, not read as 1.
    if isinstance(value, bool) or not isinstance(value, int):
        errors[name] = "must be an integer"
        return None
    if value < 1:
        errors[name] = "must be at least 1"
        return None
    if maximum is not None and value > maximum:
        errors[name] = f"must be at most {maximum}"
        return None
    return value


def _date(value: object, name: str, errors: dict[str, str]) -> dt.date | None:
    if not isinstance(value, str):
        errors[name] = "must be a date string YYYY-MM-DD"
        return None
    try:
        return parse_iso_date(value)
    except ValueError:
        errors[name] = "must be a valid date YYYY-MM-DD"
        return None


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Stripe's shapes: a card token (tok_visa, tok_1N3…) or a PaymentMethod (pm_card_visa, pm_1Q…). ASCII only and
# bounded: a token is stored and sent on, and one no database can store once held a listing's nights for ever.
PAYMENT_TOKEN = re.compile(r"(?:tok|pm|card|src)_[A-Za-z0-9][A-Za-z0-9_]*", re.ASCII)
MAX_PAYMENT_TOKEN = 128  # Stripe's ids are far shorter; the bound keeps a retry row's request small


def parse_iso_date(value: str) -> dt.date:
    """A calendar date written exactly YYYY-MM-DD, else ValueError (fromisoformat alone also takes
    20300301 and week dates such as 2030-W01-1)."""
    if not _ISO_DATE.match(value):
        raise ValueError(f"not YYYY-MM-DD: {value!r}")
    return dt.date.fromisoformat(value)


def parse_booking_request(body: object, today: dt.date | None = None) -> RequestBooking:
    """Validate a decoded JSON body into a RequestBooking, or raise ValidationError naming every bad field."""
    if not isinstance(body, dict):
        raise ValidationError({"body": "must be a JSON object"})
    errors: dict[str, str] = {}
    for name in body.keys() - _FIELDS.keys():
        errors[str(name)] = "unknown field"
    for name in _FIELDS.keys() - body.keys():
        errors[name] = "is required"

    user_id = _positive_int(body["user_id"], "user_id", errors) if "user_id" in body else None
    listing_id = _positive_int(body["listing_id"], "listing_id", errors) if "listing_id" in body else None
    guests = _positive_int(body["guests"], "guests", errors, MAX_GUESTS) if "guests" in body else None
    check_in = _date(body["check_in"], "check_in", errors) if "check_in" in body else None
    check_out = _date(body["check_out"], "check_out", errors) if "check_out" in body else None
    token = body.get("payment_token")
    if "payment_token" in body and (not isinstance(token, str) or len(token) > MAX_PAYMENT_TOKEN
                                    or not PAYMENT_TOKEN.fullmatch(token)):
        errors["payment_token"] = ("must be a payment token or payment method as the provider issues it"
                                   " (tok_… or pm_…, letters, digits and _, at most 128 characters)")

    today = today or dt.datetime.now(dt.UTC).date()
    if check_in and check_in < today:
        errors["check_in"] = "must not be in the past"
    if check_in and check_out:
        nights = (check_out - check_in).days
        if nights < 1:
            errors["check_out"] = "must be after check_in"
        elif nights > MAX_NIGHTS:
            errors["check_out"] = f"stay must be at most {MAX_NIGHTS} nights"
    if errors or user_id is None or listing_id is None or guests is None or check_in is None or check_out is None:
        raise ValidationError(errors)
    return RequestBooking(user_id, listing_id, check_in, check_out, guests, str(token))


class ForeignUser(Exception):
    """A request names another user than the signed-in one."""


def parse_users_booking_request(body: object, user_id: int, today: dt.date | None = None) -> RequestBooking:
    """A signed-in user's booking body: the user is the caller. A body may leave `user_id` out or name the caller;
    naming anyone else raises ForeignUser (after the usual validation, so a malformed body is still a 400)."""
    if isinstance(body, dict) and "user_id" not in body:
        body = {**body, "user_id": user_id}
    request = parse_booking_request(body, today)
    if request.user_id != user_id:
        raise ForeignUser(f"the body names user {request.user_id}")
    return request


def scoped_booking_key(user_id: int, key: str) -> str:
    """Idempotency keys are the caller's own: the key stored everywhere is the user's id, a dot, and the key, so
    two users sending the same Idempotency-Key never meet, and a key tells whose request it is."""
    return f"{user_id}.{key}"


def owner_of_booking_key(booking_key: str) -> int | None:
    """The user a scoped booking key belongs to (None for a key of no user)."""
    owner, dot, _ = booking_key.partition(".")
    return int(owner) if dot and owner.isascii() and owner.isdigit() else None


def stay_has_begun(request: RequestBooking, today: dt.date | None = None) -> bool:
    """A request decided after its check-in day (a request re-driven late) can no longer be booked."""
    return request.check_in < (today or dt.datetime.now(dt.UTC).date())


def stay_amount_cents(nightly_price_cents: int, nights: int) -> int:
    return nightly_price_cents * nights


@dataclass(frozen=True)
class ListingTerms:
    """What the booking rules need to know of a listing (read under the listing's lock)."""

    active: bool
    max_guests: int
    nightly_price_cents: int
    currency: str


@dataclass(frozen=True)
class Refusal:
    reason: str
    detail: str


def refusal(request: RequestBooking, listing: ListingTerms | None, user_exists: bool, overlaps_a_booking: bool,
            today: dt.date | None = None) -> Refusal | None:
    """Why a request cannot be held, or None when its dates can be held. The one home of the refusal rules:
    the repository reads the facts under the listing lock and asks this; the order decides which reason wins."""
    if stay_has_begun(request, today):
        return Refusal(CHECK_IN_PASSED, f"check_in {request.check_in} has passed")
    if not user_exists:
        return Refusal(UNKNOWN_USER, f"user {request.user_id} does not exist")
    if listing is None:
        return Refusal(UNKNOWN_LISTING, f"listing {request.listing_id} does not exist")
    if not listing.active:
        return Refusal(LISTING_INACTIVE, f"listing {request.listing_id} is not bookable")
    if request.guests > listing.max_guests:
        return Refusal(TOO_MANY_GUESTS, f"listing takes at most {listing.max_guests} guests")
    if overlaps_a_booking:
        return Refusal(UNAVAILABLE, "the listing is already booked for some of those nights")
    return None


@dataclass(frozen=True)
class Hold:
    """Dates held for a booking while its payment runs."""

    booking_id: int
    user_id: int
    amount_cents: int
    currency: str


@dataclass(frozen=True)
class StaleHold:
    """A booking held longer than a payment takes: its payment_fn never came back (the hold sweep's work)."""

    booking_key: str
    hold: Hold
    listing_id: int
    check_in: dt.date
    check_out: dt.date
    guests: int
    request_hash: str


# What a client is told about a request that waits in the retry table (the error itself is the operators':
# it stays in the row's last_error, never in an answer, where exception text or SQL has no place).
QUEUED_DETAILS = {
    "publish_failed": "the booking service could not take the request now; it is queued and will be retried",
    "transient_payment_failure": "the payment provider could not be reached; the request is queued and will be"
                                 " retried",
}
QUEUED_DETAIL = "the request could not be decided now; it is queued and will be retried"


def key_reused(booking_key: str) -> Decision:
    """The answer to a request that came with a key already used for another request (422)."""
    return Decision.rejected(booking_key, IDEMPOTENCY_KEY_REUSED,
                             "this Idempotency-Key was already used with a different request")


def queued(booking_key: str, reason: str) -> Decision:
    """The answer for a request parked in the retry table."""
    return Decision(booking_key, QUEUED, reason=reason, detail=QUEUED_DETAILS.get(reason, QUEUED_DETAIL))


@dataclass
class Decision:
    """Event: the outcome of one booking request, keyed by its booking_key."""

    booking_key: str
    status: str
    reason: str | None = None
    booking_id: int | None = None
    payment_id: int | None = None
    amount_cents: int | None = None
    currency: str | None = None
    detail: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if v is not None and k != "extra"}
        data.update(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Decision:
        known = ("booking_key", "status", "reason", "booking_id", "payment_id", "amount_cents", "currency", "detail")
        extra = {k: v for k, v in data.items() if k not in known and k not in ("type", "version")}
        return cls(data["booking_key"], data["status"], data.get("reason"), data.get("booking_id"),
                   data.get("payment_id"), data.get("amount_cents"), data.get("currency"), data.get("detail"),
                   extra=extra)

    @classmethod
    def rejected(cls, booking_key: str, reason: str, detail: str | None = None) -> Decision:
        return cls(booking_key=booking_key, status=REJECTED, reason=reason, detail=detail)


def http_status_for(decision: Decision) -> int:
    """The API's answer code for a decision."""
    if decision.status == CONFIRMED:
        return 201
    if decision.status in (PENDING, QUEUED):
        return 202
    return {
        UNAVAILABLE: 409,
        PAYMENT_DECLINED: 402,
        INVALID_REQUEST: 400,
    }.get(decision.reason or "", 422)
