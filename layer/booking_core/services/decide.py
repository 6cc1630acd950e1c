"""Write side: decide one booking request (payment_fn's use case)."""
from __future__ import annotations

import logging
import time

from booking_core.domain import model
from booking_core.domain.model import Decision, Hold, RequestBooking
from booking_core.ports import (
    OUTAGES,
    BookingRepository,
    ChargeResult,
    PaymentProvider,
    ProviderUnavailable,
    TransientPaymentError,
)

log = logging.getLogger(__name__)

TRANSIENT_PAYMENT_FAILURE = "transient_payment_failure"
PROCESSING_FAILED_DETAIL = "the booking could not be completed; nothing was charged"
# Final decisions stored by someone other than the payment in flight: that payment may have charged before its
# payment_fn died, and only its redelivered record can notice (found by the chaos run).
DECIDED_ELSEWHERE = frozenset({model.CANCELLED, model.HOLD_EXPIRED, model.EXPIRED})


def decide_booking(
    booking_key: str,
    request: RequestBooking,
    repo: BookingRepository,
    payments: PaymentProvider,
    quick_retries: int = 2,
    retry_pause_s: float = 0.05,
) -> Decision:
    """Decide a request idempotently: hold the dates → charge (keyed by booking_key) → confirm or release.

    Every step is idempotent on booking_key, so a redelivery after a crash at any point finishes the same
    booking instead of making a second one. No row lock is held while the provider is called.
    Outages propagate so the whole batch is retried. Anything else that goes wrong once the dates are held
    releases them and answers a final rejection: a hold never outlives its request, and a charge the booking
    cannot keep (the key was cancelled or its hold expired meanwhile, or confirming failed) is refunded.
    """
    # hold() answers a redelivered request with its stored decision (read under the listing lock).
    held = repo.hold(booking_key, request)
    if isinstance(held, Decision):
        if held.status == model.REJECTED and held.reason in DECIDED_ELSEWHERE:
            _refund_kept_charge(booking_key, payments)
        return held
    hold: Hold = held

    result: ChargeResult | None = None
    try:
        result, last_error = _charge(booking_key, request, hold, payments, quick_retries, retry_pause_s)
        if result is None:
            return repo.park(booking_key, request, hold, TRANSIENT_PAYMENT_FAILURE, last_error)
        if not result.succeeded:
            return repo.release_declined(booking_key, request, hold, payments.name, result.provider_ref,
                                         result.decline_code)
        decision = repo.confirm(booking_key, request, hold, payments.name, result.provider_ref)
        if decision.status != model.CONFIRMED:  # decided otherwise while the charge ran
            _refund(booking_key, result, hold, payments)
        return decision
    except OUTAGES:
        raise
    except Exception:  # noqa: BLE001 - no retry cures it: release the nights, answer, refund what was taken
        log.exception("deciding a held request failed; its hold is released")
        # An error inside the charge call does not say whether money was taken: the provider's record does.
        taken = result if result is not None else _charge_on_record(booking_key, payments)
        if taken is not None and taken.succeeded:
            _refund(booking_key, taken, hold, payments)
        return repo.abandon(booking_key, request, hold, model.PROCESSING_FAILED, PROCESSING_FAILED_DETAIL)


def _charge(booking_key: str, request: RequestBooking, hold: Hold, payments: PaymentProvider,
            quick_retries: int, retry_pause_s: float) -> tuple[ChargeResult | None, str]:
    """The provider's answer, trying again quickly on transient failures; (None, last error) when it stays away."""
    last_error = ""
    for attempt in range(quick_retries + 1):
        try:
            return payments.charge(booking_key, hold.amount_cents, hold.currency, request.payment_token), ""
        except TransientPaymentError as exc:
            last_error = str(exc)
            log.warning("transient payment failure", extra={"booking_key": booking_key, "attempt": attempt,
                                                            "error": last_error})
            if attempt < quick_retries:
                time.sleep(retry_pause_s * (2 ** attempt))
    return None, last_error


def _charge_on_record(booking_key: str, payments: PaymentProvider) -> ChargeResult | None:
    try:
        return payments.find_charge(booking_key)
    except TransientPaymentError as exc:
        raise ProviderUnavailable(f"the provider's record of {booking_key} is out of reach: {exc}") from exc


def _refund_kept_charge(booking_key: str, payments: PaymentProvider) -> None:
    """A redelivered request finds it was decided elsewhere (cancelled, hold expired) while its payment_fn lay dead
    after charging: the charge on the provider's record is given back (refunds are idempotent per key, so a
    replay asks again and changes nothing)."""
    taken = _charge_on_record(booking_key, payments)
    if taken is None or not taken.succeeded or not taken.amount_cents:
        return
    try:
        payments.refund(booking_key, taken.provider_ref, taken.amount_cents)
    except TransientPaymentError as exc:
        raise ProviderUnavailable(f"refund of {booking_key} not taken: {exc}") from exc
    log.info("charge refunded: the request was decided elsewhere after it was charged",
             extra={"booking_key": booking_key})


def _refund(booking_key: str, charge: ChargeResult, hold: Hold, payments: PaymentProvider) -> None:
    """Give back a charge the booking will not keep (idempotent per key). A provider that cannot take it now makes
    the batch retry (an outage): the hold is still there on redelivery, so the refund is tried again."""
    try:
        payments.refund(booking_key, charge.provider_ref, hold.amount_cents)
    except TransientPaymentError as exc:
        raise ProviderUnavailable(f"refund of {booking_key} not taken: {exc}") from exc
    log.info("charge refunded: the booking was decided otherwise", extra={"booking_key": booking_key})
