"""Ports: what the services need from the outside world, as typed Protocols, and the errors those raise.

Services import this module and the domain, never an adapter; adapters implement these Protocols (and raise these
errors), never importing a service. `bootstrap` wires one to the other; tests pass fakes.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from booking_core.domain.emails import Email, OutboxEmail, SendOutcome
from booking_core.domain.model import Decision, Hold, RequestBooking, StaleHold
from booking_core.domain.read_model import Plan
from booking_core.domain.retries import RetryRow, Step

# -- errors -------------------------------------------------------------------------------------------------


class DatabaseUnavailable(RuntimeError):
    """MySQL could not be reached: callers let it propagate so Lambda retries the batch."""


class BrokerUnavailable(RuntimeError):
    """The broker did not answer or acknowledge in time."""


class ProviderUnavailable(RuntimeError):
    """The payment provider could not take a refund we owe: the batch is retried until it can."""


class StoreUnavailable(RuntimeError):
    """The decision store (Redis) did not answer in time."""


class TransientPaymentError(RuntimeError):
    """The provider failed in a way that may succeed later (processing error, timeout, outage)."""


class NotFound(LookupError):
    """No such row in the read model; the message says which."""


# Failures that mean "try again later", not "this request is bad": a batch meeting one is retried whole.
OUTAGES: tuple[type[Exception], ...] = (DatabaseUnavailable, BrokerUnavailable, StoreUnavailable,
                                         ProviderUnavailable)


# -- payments -----------------------------------------------------------------------------------------------

SUCCEEDED = "succeeded"
DECLINED = "declined"


@dataclass(frozen=True)
class ChargeResult:
    status: str  # succeeded | declined
    provider_ref: str
    decline_code: str | None = None
    amount_cents: int | None = None  # what was taken, when the answer is the provider's record (find_charge)

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED


@dataclass(frozen=True)
class RefundResult:
    status: str  # succeeded | pending (the provider will finish it) | failed
    provider_ref: str
    failure_code: str | None = None


@dataclass(frozen=True)
class Charge:
    """One charge of a batch: `amount_cents` in `currency` with `token`, once per idempotency key."""

    idempotency_key: str
    amount_cents: int
    currency: str
    token: str


class PaymentProvider(Protocol):
    name: str

    def charge(self, idempotency_key: str, amount_cents: int, currency: str, token: str) -> ChargeResult:
        """Charge once per idempotency key (a repeat returns the first result); TransientPaymentError if the
        provider could not decide."""
        ...

    def charge_many(self, charges: Sequence[Charge]) -> list[ChargeResult | Exception]:
        """Each charge as `charge` makes it, in order: its result, or the error it met (TransientPaymentError:
        may succeed later; anything else: no retry cures it). Raises only when no answer of the list is known
        (an outage: OUTAGES)."""
        ...

    def refund(self, idempotency_key: str, provider_ref: str, amount_cents: int) -> RefundResult:
        """Refund part or all of the booking's charge `provider_ref`; idempotent per booking key."""
        ...

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        """The provider's record of a charge made under the key (a succeeded one if there is one), or None: the
        answer when a charge call ended in an error that does not say whether money was taken."""
        ...


def charge_one_by_one(charge: Callable[[str, int, str, str], ChargeResult],
                      charges: Sequence[Charge]) -> list[ChargeResult | Exception]:
    """`charge_many` for a provider that takes one charge per call (Stripe: one PaymentIntent per booking, keyed by
    it): each error is that charge's answer, except an outage, which stops the list."""
    answers: list[ChargeResult | Exception] = []
    for item in charges:
        try:
            answers.append(charge(item.idempotency_key, item.amount_cents, item.currency, item.token))
        except OUTAGES:
            raise
        except Exception as exc:  # noqa: BLE001 - this charge's answer; the caller decides what it means
            answers.append(exc)
    return answers


# -- the write side -----------------------------------------------------------------------------------------

CHARGED = "charged"          # the provider took the money: confirm
DECLINED_CHARGE = "declined"  # the provider declined: release, record the declined payment
UNREACHED = "unreached"      # the provider stayed away (transient): release and park for a retry
FAILED = "failed"            # something no retry cures: release and reject (`reason`, `detail`)


@dataclass(frozen=True)
class PaymentOutcome:
    """How the payment of a held request ended, for the repository to record (`BookingRepository.finish_many`)."""

    kind: str  # CHARGED | DECLINED_CHARGE | UNREACHED | FAILED
    booking_key: str
    request: RequestBooking
    hold: Hold
    provider: str = ""
    provider_ref: str = ""
    decline_code: str | None = None
    reason: str = ""   # UNREACHED: the retry reason; FAILED: the rejection reason
    detail: str = ""   # UNREACHED: the error kept for operators; FAILED: the rejection's detail
    request_hash: str | None = None  # the stored request's hash when `request` is rebuilt (a stale hold); None: its own


class BookingRepository(Protocol):
    def hold_many(self, requests: Sequence[tuple[str, RequestBooking]]) -> list[Hold | Decision | None]:
        """In one transaction, under locks on the requests' listings (taken in id order, so two calls never wait on
        each other in a cycle), for each (distinct) key in order: its stored final Decision if it has one; else
        hold the dates (→ Hold, also the existing hold of a redelivered request), refuse (→ a newly stored final
        Decision), or None when its nights overlap a hold made by this call for an earlier request: its answer
        depends on that request's outcome, so it is asked again once that one is decided."""
        ...

    def finish_many(self, outcomes: Sequence[PaymentOutcome]) -> list[Decision]:
        """Record how each held request's payment ended, in one transaction, and return each key's decision:
        CHARGED confirms (booking confirmed, captured payment, confirmation email queued, decision); DECLINED_CHARGE
        releases and records the declined payment and the rejection; UNREACHED releases and parks the request in
        the retry table (→ `queued`); FAILED releases and stores the rejection. A key decided meanwhile (cancelled,
        its hold expired) or whose booking is no longer held keeps that decision, its hold released (a CHARGED one
        not confirmed: the caller refunds the charge)."""
        ...

    def park(self, booking_key: str, request: RequestBooking, hold: Hold | None, reason: str,
             error: str) -> Decision:
        """Release any hold and save the request in the retry table; returns a `queued` decision."""
        ...

    def stale_holds(self, older_than_s: float, limit: int) -> list[StaleHold]:
        """Bookings held for longer than `older_than_s`, oldest first."""
        ...

    def complete_stale(self, stale: StaleHold, provider: str, provider_ref: str) -> Decision:
        """Confirm a stale hold whose charge the provider has on record, as payment_fn would have."""
        ...

    def settle(self, booking_key: str, decision: Decision) -> tuple[Decision, bool]:
        """Make `decision` the key's final one unless it has one: its hold released, its retry row closed, in one
        transaction under the key's decision lock. Returns (the key's decision, whether it is the one given)."""
        ...


class Publisher(Protocol):
    def send(self, topic: str, key: str, value: bytes, correlation_id: str | None = None) -> Any:
        """Queue a keyed record; `flush` then waits for it."""
        ...

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every record sent so far is acknowledged; BrokerUnavailable if any was not."""
        ...

    def publish(self, topic: str, key: str, value: bytes, correlation_id: str | None = None,
                timeout_s: float | None = None) -> None:
        """Send one record and wait for its acknowledgement; BrokerUnavailable if it was not acknowledged."""
        ...


class DecisionStore(Protocol):
    """Every method raises StoreUnavailable when the store does not answer."""

    def claim(self, booking_key: str, request: RequestBooking,
              max_pending: int = 0) -> tuple[bool, str | None, Decision | None] | None:
        """Mark the key pending with its request if it is new. Returns (created, stored request_hash, stored
        decision), or None when the key is new and the request's user already has `max_pending` requests awaiting a
        decision (0: no limit)."""
        ...

    def save(self, decision: Decision) -> bool:
        """Store a decision and wake its waiters; False when a final decision was already there."""
        ...

    def save_many(self, decisions: list[Decision]) -> list[bool]:
        """`save` for each decision, in order (one round trip where the store can)."""
        ...

    def get(self, booking_key: str) -> Decision | None: ...

    def release(self, booking_key: str, user_id: int) -> None:
        """Forget a claim whose request went nowhere (neither published nor parked): the next try publishes."""
        ...

    def stranded(self, older_than_s: float, limit: int) -> list[tuple[str, RequestBooking | None, int]]:
        """Keys pending longer than `older_than_s` (since their claim or last re-drive): (key, request, re-drives)."""
        ...

    def mark_redriven(self, booking_key: str) -> None: ...

    def wait_decided(self, booking_key: str, timeout_s: float, known_pending: bool = False) -> Decision | None:
        """Block until the key leaves `pending` or timeout_s passes; return the latest state."""
        ...


class RetryTable(Protocol):
    def park_request(self, booking_key: str, request: RequestBooking, reason: str, error: str) -> None: ...


class RequestLog(Protocol):
    """What MySQL knows of a request (its final decision, its retry row, its held booking): the truth behind the
    decision store, which forgets."""

    def status_of(self, booking_key: str) -> Decision | None: ...


class RetryStore(Protocol):
    def claim_due(self, now: dt.datetime, limit: int, plan: Callable[[RetryRow], Step],
                  booking_keys: Iterable[str] | None = None) -> list[tuple[RetryRow, Step]]:
        """In one short transaction: lock up to `limit` due rows no other run holds (SKIP LOCKED), apply
        `plan` to each (GIVE_UP → dead; otherwise in_flight, attempts + 1, next_attempt_at) and return them."""
        ...

    def publish_failed(self, booking_key: str, error: str) -> None:
        """A re-publish failed: the row is pending again with the error (the attempt counts)."""
        ...

    def give_back(self, booking_key: str, error: str, now: dt.datetime) -> None:
        """A claimed row that was not tried: pending again, due at `now`, the attempt not counted."""
        ...

    def store_rejection(self, booking_key: str, request: RequestBooking, decision: Decision) -> Decision | None:
        """Store `decision` as the key's final decision unless payment_fn holds a booking for the key
        (then None: it is being decided, re-drive it). Returns the key's stored final decision."""
        ...

    def mark_succeeded(self, booking_key: str) -> None:
        """The key's final decision is published: the row is `succeeded`."""
        ...

    def count_waiting(self) -> int:
        """Rows still pending or in flight after this run."""
        ...

    def open_since(self, older_than_s: float, limit: int) -> list[str]:
        """Keys of rows still pending or in flight that were parked more than `older_than_s` ago, oldest first."""
        ...


class Retention(Protocol):
    def purge(self, older_than_days: dict[str, float], limit: int) -> dict[str, int]:
        """Delete at most `limit` finished rows per kind older than its days (kinds: decisions, retries, emails,
        change_log, sandbox); the counts deleted."""
        ...


# -- accounts -----------------------------------------------------------------------------------------------


class UserAccounts(Protocol):
    def ensure_user(self, email: str, name: str) -> int:
        """The id of the user with this address, created if there is none."""
        ...


class IdentityDirectory(Protocol):
    def link_user(self, user_pool_id: str, username: str, user_id: int) -> None:
        """Store the user id on the identity, so the tokens it is issued name the user."""
        ...


# -- email --------------------------------------------------------------------------------------------------


class Mailer(Protocol):
    enabled: bool

    def send(self, email: Email) -> str:
        """Send one email; return the transport's message id or raise."""
        ...


class EmailOutbox(Protocol):
    def claim(self, booking_ids: Iterable[int] | None = None, limit: int = 100,
              untouched_for_s: float | None = None) -> list[OutboxEmail]: ...

    def save_outcomes(self, outcomes: list[SendOutcome], max_attempts: int) -> set[int]:
        """Save every outcome (one transaction); return the ids of emails given up (max_attempts reached)."""
        ...


# -- the read side ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One change-log row: something happened to entity `entity` (a table name) with primary key entity_id."""

    id: int
    entity: str
    entity_id: int
    # How long ago it was committed when claimed (the replication lag metric starts from it).
    age_ms: float = 0.0


class ChangeLog(Protocol):
    """The MySQL side of replication: the change log and the rows it names."""

    def exclusive(self, wait_s: float = 0) -> AbstractContextManager[bool]:
        """Hold the replication lock for the block; yields False when another replicator has it."""
        ...

    def pending(self, limit: int, excluding: Collection[int] = ()) -> list[Change]:
        """Up to `limit` committed changes, oldest first, not locked and not deleted; `excluding`: ids left out."""
        ...

    def acknowledge(self, changes: Collection[Change]) -> None:
        """Delete exactly these changes: their batch is applied."""
        ...

    def has_pending(self) -> bool: ...

    def rows(self, entity: str, ids: Iterable[int], columns: tuple[str, ...] | None = None) -> dict[int, dict]: ...

    def encoded_rows(self, entity: str, ids: Iterable[int],
                     columns: tuple[str, ...] | None = None) -> dict[int, dict[str, str]]:
        """The current rows with these ids as `read_model.encode_row` writes them (the replicator's hot path)."""
        ...

    def existing_ids(self, entity: str, ids: Iterable[int]) -> set[int]: ...

    def occupying_bookings(self, listing_ids: Iterable[int], start: dt.date,
                           end: dt.date) -> dict[int, list[tuple[int, dt.date, dt.date]]]:
        ...

    def snapshot(self) -> AbstractContextManager[ChangeLog]:
        """One consistent view of every table for a full scan."""
        ...

    def rows_after(self, entity: str, after_id: int, limit: int) -> list[dict[str, str]]:
        """The next `limit` rows by id after `after_id`, as `read_model.encode_row` writes them: a full scan in
        chunks (inside `snapshot()`)."""
        ...


class ReadModel(Protocol):
    """The Redis side of replication."""

    def stored(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], dict[str, str] | None]: ...

    def execute(self, plan: Plan) -> None: ...

    def snapshot(self) -> dict[str, tuple[str, dict]]:
        """The whole model in memory: for tests and small models only (reconcile reads in chunks)."""
        ...

    def scan_model_keys(self, count: int = ..., full: bool = ...) -> Iterator[list[str]]:
        """The model's keys in chunks: from its own registry, or with `full` from a scan of everything."""
        ...

    def types(self, keys: list[str]) -> dict[str, str]: ...

    def hashes(self, keys: list[str]) -> dict[str, tuple[str, dict]]: ...

    def texts(self, keys: list[str]) -> dict[str, str]:
        """The value of each of these string keys that exists as a string (a listing's JSON)."""
        ...

    def scores(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], float | None]: ...

    def members(self, key: str, count: int = ...) -> Iterator[dict[str, float]]: ...

    def size(self, key: str, kind: str) -> int: ...

    def is_loaded(self) -> bool: ...

    def mark_loaded(self) -> None: ...
