"""Write side: decide one booking request (payment_fn's use case)."""
from __future__ import annotations

import logging
import time

from booking_core.domain.model import Decision, Hold, RequestBooking
from booking_core.ports import BookingRepository, ChargeResult, PaymentProvider, TransientPaymentError

log = logging.getLogger(__name__)

TRANSIENT_PAYMENT_FAILURE = "transient_payment_failure"


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
    Outages (DatabaseUnavailable) propagate so the whole batch is retried.
    """
    # hold() answers a redelivered request with its stored decision (read under the listing lock).
    held = repo.hold(booking_key, request)
    if isinstance(held, Decision):
        return held
    hold: Hold = held

    last_error = ""
    result: ChargeResult
    for attempt in range(quick_retries + 1):
        try:
            result = payments.charge(booking_key, hold.amount_cents, hold.currency, request.payment_token)
            break
        except TransientPaymentError as exc:
            last_error = str(exc)
            log.warning("transient payment failure", extra={"booking_key": booking_key, "attempt": attempt,
                                                            "error": last_error})
            if attempt < quick_retries:
                time.sleep(retry_pause_s * (2 ** attempt))
    else:
        return repo.park(booking_key, request, hold, TRANSIENT_PAYMENT_FAILURE, last_error)

    if result.succeeded:
        return repo.confirm(booking_key, request, hold, payments.name, result.provider_ref)
    return repo.release_declined(booking_key, request, hold, payments.name, result.provider_ref,
                                 result.decline_code)
