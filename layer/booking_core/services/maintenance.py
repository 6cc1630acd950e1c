"""The sweeps that make "nothing waits for ever" true (MaintenanceFunction, every minute).

- stale holds: a booking held longer than HOLD_LIMIT_S lost its payment_fn (a crash whose record never came back).
  If the provider has a charge on record for its key, the booking is completed as payment_fn would have; otherwise
  it is released with the final decision `hold_expired` and never charged.
- stranded requests: a key pending in the decision store longer than PENDING_REDRIVE_S (its record lost, the
  broker restarted without it) is published again with its key (payment_fn is idempotent); after MAX_REDRIVES it
  is parked in the retry table and answered `queued`.
- old queued requests: a request waiting in the retry table longer than QUEUED_MAX_AGE_S is given the final
  decision `expired` (never charged): the user booked elsewhere or gave up long ago.
- retention: finished rows older than their retention are deleted, a bounded number per run.
Each sweep is on its own: one failing (its store down) is logged and the others still run.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from booking_core.domain import messages, model
from booking_core.domain.model import Decision
from booking_core.logs import correlated
from booking_core.ports import (
    BookingRepository,
    DecisionStore,
    PaymentProvider,
    Publisher,
    RetryStore,
    RetryTable,
    StoreUnavailable,
    TransientPaymentError,
)

log = logging.getLogger(__name__)

UNDELIVERED = "undelivered"
HOLD_EXPIRED_DETAIL = "the payment did not complete in time; the nights were released and nothing was charged"
EXPIRED_DETAIL = "the request waited longer than a queued request may; it was not booked and nothing was charged"


def _tell(store: DecisionStore, decision: Decision) -> None:
    """Put a decision made here in the store, so waiting and polling clients see it now (MySQL has it anyway)."""
    try:
        store.save(decision)
    except StoreUnavailable:
        log.warning("decision not put in the store; the status URL finds it in MySQL", exc_info=True)


def sweep_stale_holds(repo: BookingRepository, payments: PaymentProvider, store: DecisionStore,
                      hold_limit_s: float, limit: int = 100) -> dict[str, int]:
    counts = {"completed": 0, "expired": 0, "provider_unreachable": 0}
    for stale in repo.stale_holds(hold_limit_s, limit):
        with correlated(stale.booking_key):
            try:
                charge = payments.find_charge(stale.booking_key)
            except TransientPaymentError:  # still held: the next run asks again
                counts["provider_unreachable"] += 1
                continue
            if charge is not None and charge.succeeded:
                decision = repo.complete_stale(stale, payments.name, charge.provider_ref)
                counts["completed" if decision.status == model.CONFIRMED else "expired"] += 1
            else:
                decision, _ = repo.settle(stale.booking_key, Decision.rejected(
                    stale.booking_key, model.HOLD_EXPIRED, HOLD_EXPIRED_DETAIL))
                counts["expired"] += 1
            log.warning("stale hold settled", extra={"status": decision.status, "reason": decision.reason})
            _tell(store, decision)
    return counts


def redrive_stranded(store: DecisionStore, publisher: Publisher, retry_table: RetryTable, requests_topic: str,
                     pending_redrive_s: float, max_redrives: int, limit: int = 100) -> dict[str, int]:
    counts = {"redriven": 0, "parked": 0, "unreadable": 0}
    for booking_key, request, redrives in store.stranded(pending_redrive_s, limit):
        with correlated(booking_key):
            if request is None:
                counts["unreadable"] += 1
                _tell(store, Decision.rejected(booking_key, model.INVALID_REQUEST, "the request could not be read"))
                continue
            if redrives >= max_redrives:
                retry_table.park_request(booking_key, request, UNDELIVERED, f"no decision after {redrives} re-drives")
                _tell(store, model.queued(booking_key, UNDELIVERED))
                counts["parked"] += 1
                continue
            publisher.publish(requests_topic, booking_key, messages.encode_request(booking_key, request),
                              correlation_id=booking_key)
            store.mark_redriven(booking_key)
            counts["redriven"] += 1
            log.warning("stranded request re-driven", extra={"redrives": redrives + 1})
    return counts


def expire_old_queued(retries: RetryStore, repo: BookingRepository, store: DecisionStore, max_age_s: float,
                      limit: int = 100) -> int:
    expired = 0
    for booking_key in retries.open_since(max_age_s, limit):
        with correlated(booking_key):
            decision, settled = repo.settle(booking_key, Decision.rejected(booking_key, model.EXPIRED,
                                                                           EXPIRED_DETAIL))
            expired += settled
            _tell(store, decision)
    return expired


def run_sweeps(sweeps: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run each sweep; one that fails is logged and reported, the others run all the same."""
    summary: dict[str, Any] = {}
    for name, sweep in sweeps.items():
        try:
            summary[name] = sweep()
        except Exception as exc:  # noqa: BLE001 - a store down stops its own sweep only; the next run retries
            log.exception("sweep failed", extra={"sweep": name})
            summary[name] = {"error": type(exc).__name__}
    return summary
