"""Write side: decide booking requests (payment_fn's use case), a Kafka batch at a time.

A batch is decided as a set: the holds of all its requests in one transaction, the provider's charges for the held
ones in one call, the outcomes in one transaction. Per request the outcome is the one deciding the records one
after another would give: a request whose nights overlap a stay an earlier request of the batch holds (or waits
for) waits for that one's decision (a next round), so the first wins if it is confirmed and the nights are free
again if it is declined or parked; a key repeated in the batch ends the round, so its second record (and all after
it) is answered once the first is decided: one decision per key. Under load a batch is many records and the cost of a
commit, a round trip and a call is shared; at low load it is one record and costs what deciding one did.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from booking_core.domain import model
from booking_core.domain.model import Decision, Hold, RequestBooking
from booking_core.ports import (
    CHARGED,
    DECLINED_CHARGE,
    FAILED,
    OUTAGES,
    UNREACHED,
    BookingRepository,
    Charge,
    ChargeResult,
    PaymentOutcome,
    PaymentProvider,
    ProviderUnavailable,
    TransientPaymentError,
)

log = logging.getLogger(__name__)

TRANSIENT_PAYMENT_FAILURE = "transient_payment_failure"
INTERNAL_ERROR = "internal_error"
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
    """Decide one request: `decide_requests` with a batch of one."""
    return decide_requests([(booking_key, request)], repo, payments, quick_retries, retry_pause_s)[0]


def decide_requests(
    requests: Sequence[tuple[str, RequestBooking]],
    repo: BookingRepository,
    payments: PaymentProvider,
    quick_retries: int = 2,
    retry_pause_s: float = 0.05,
) -> list[Decision]:
    """Decide each (booking key, request) idempotently: hold the dates → charge (keyed by the booking key) →
    confirm or release; the decisions in the requests' order.

    Every step is idempotent on the booking key, so a redelivery after a crash at any point finishes the same
    bookings instead of making second ones, and charges nothing twice (the provider answers a key it knows with
    its first result). No row lock is held while the provider is called. Outages propagate so the whole batch is
    retried. Anything else that goes wrong once the dates are held releases them and answers a final rejection: a
    hold never outlives its request, and a charge the booking cannot keep is refunded. Should a step fail as a set
    for a reason no outage explains, the requests it left undecided are decided one at a time, so one bad
    request never takes its batch with it.
    """
    if len(requests) == 1:
        return [_decide_alone(requests[0], repo, payments, quick_retries, retry_pause_s)]
    decisions: list[Decision | None] = [None] * len(requests)
    try:
        _decide_set(requests, decisions, repo, payments, quick_retries, retry_pause_s)
    except OUTAGES:
        raise
    except Exception:  # noqa: BLE001 - a bug or bad data in one request: isolate it
        log.exception("deciding a batch as a set failed; its undecided requests are decided one at a time",
                      extra={"requests": len(requests), "undecided": decisions.count(None)})
        for index, pair in enumerate(requests):
            if decisions[index] is None:
                decisions[index] = _decide_alone(pair, repo, payments, quick_retries, retry_pause_s)
    return _all(decisions)


def _all(decisions: list[Decision | None]) -> list[Decision]:
    answered = [d for d in decisions if d is not None]
    assert len(answered) == len(decisions), "a request of the batch was left without a decision"
    return answered


def _decide_alone(pair: tuple[str, RequestBooking], repo: BookingRepository, payments: PaymentProvider,
                  quick_retries: int, retry_pause_s: float) -> Decision:
    decisions: list[Decision | None] = [None]
    try:
        _decide_set([pair], decisions, repo, payments, quick_retries, retry_pause_s)
    except OUTAGES:
        raise
    except Exception as exc:  # noqa: BLE001 - a bug must not block the partition: park the request instead
        log.exception("unexpected error deciding a request; parked for retry", extra={"booking_key": pair[0]})
        return repo.park(pair[0], pair[1], None, INTERNAL_ERROR, repr(exc))
    return _all(decisions)[0]


@dataclass
class _Held:
    """A request of the batch whose dates are held, and what its payment came to."""

    index: int
    key: str
    request: RequestBooking
    hold: Hold
    answer: ChargeResult | Exception | None = None


def _decide_set(requests: Sequence[tuple[str, RequestBooking]], decisions: list[Decision | None],
                repo: BookingRepository, payments: PaymentProvider, quick_retries: int, retry_pause_s: float) -> None:
    """Fill `decisions` round by round; a step that fails raises (the caller isolates the requests)."""
    waiting = list(range(len(requests)))
    while waiting:
        # A round ends before the first key it already has: the repeated key is answered once its first is decided,
        # and everything after it waits with it, so no request is decided ahead of one it would have followed.
        this_round, keys = [], set()
        for index in waiting:
            if requests[index][0] in keys:
                break
            keys.add(requests[index][0])
            this_round.append(index)
        answers = repo.hold_many([requests[i] for i in this_round])
        held: list[_Held] = []
        in_round = set(this_round)
        later = [i for i in waiting if i not in in_round]
        for index, answer in zip(this_round, answers, strict=True):
            if answer is None:
                later.append(index)
            elif isinstance(answer, Decision):
                if answer.status == model.REJECTED and answer.reason in DECIDED_ELSEWHERE:
                    _refund_kept_charge(requests[index][0], payments)
                decisions[index] = answer
            else:
                held.append(_Held(index, requests[index][0], requests[index][1], answer))
        if len(later) == len(waiting):
            raise RuntimeError("no request of the round was decided")  # the first of a round is never deferred
        if held:
            for item, decision in zip(held, _pay_and_finish(held, repo, payments, quick_retries, retry_pause_s),
                                      strict=True):
                decisions[item.index] = decision
        waiting = sorted(later)


def _pay_and_finish(held: list[_Held], repo: BookingRepository, payments: PaymentProvider, quick_retries: int,
                    retry_pause_s: float) -> list[Decision]:
    _charge_all(held, payments, quick_retries, retry_pause_s)
    outcomes = [_outcome(item, payments) for item in held]
    try:
        decisions = repo.finish_many(outcomes)
    except OUTAGES:
        raise
    except Exception:
        if len(held) > 1:
            raise
        # No retry cures it: release the nights, answer, and give back what was taken.
        log.exception("deciding a held request failed; its hold is released", extra={"booking_key": held[0].key})
        item = held[0]
        taken = item.answer if isinstance(item.answer, ChargeResult) else _charge_on_record(item.key, payments)
        if taken is not None and taken.succeeded:
            _refund(item.key, taken, item.hold, payments)
        return repo.finish_many([_failed(item)])
    for item, outcome, decision in zip(held, outcomes, decisions, strict=True):
        if outcome.kind == CHARGED and decision.status != model.CONFIRMED:  # decided otherwise while it was paid
            assert isinstance(item.answer, ChargeResult)
            _refund(item.key, item.answer, item.hold, payments)
    return decisions


def _charge_all(held: list[_Held], payments: PaymentProvider, quick_retries: int, retry_pause_s: float) -> None:
    """Each held request's answer from the provider, trying transient failures again quickly (the whole batch
    waits, as it did when each request waited its turn)."""
    todo = held
    for attempt in range(quick_retries + 1):
        try:
            answers = payments.charge_many([Charge(h.key, h.hold.amount_cents, h.hold.currency, h.request.payment_token)
                                            for h in todo])
        except OUTAGES:
            raise
        except Exception as exc:
            if len(held) > 1:
                raise
            answers = [exc]  # one request: the call's error is its answer
        for item, answer in zip(todo, answers, strict=True):
            item.answer = answer
            if isinstance(answer, TransientPaymentError):
                log.warning("transient payment failure", extra={"booking_key": item.key, "attempt": attempt,
                                                                "error": str(answer)})
        todo = [h for h in todo if isinstance(h.answer, TransientPaymentError)]
        if not todo:
            return
        if attempt < quick_retries:
            time.sleep(retry_pause_s * (2 ** attempt))


def _outcome(item: _Held, payments: PaymentProvider) -> PaymentOutcome:
    answer = item.answer
    if isinstance(answer, ChargeResult):
        if answer.succeeded:
            return PaymentOutcome(CHARGED, item.key, item.request, item.hold, payments.name, answer.provider_ref)
        return PaymentOutcome(DECLINED_CHARGE, item.key, item.request, item.hold, payments.name, answer.provider_ref,
                              answer.decline_code)
    if isinstance(answer, TransientPaymentError):
        return PaymentOutcome(UNREACHED, item.key, item.request, item.hold, reason=TRANSIENT_PAYMENT_FAILURE,
                              detail=str(answer))
    # An error no retry cures. It does not say whether money was taken: the provider's record does.
    log.error("charging a held request failed; its hold is released", exc_info=answer,
              extra={"booking_key": item.key})
    taken = _charge_on_record(item.key, payments)
    if taken is not None and taken.succeeded:
        _refund(item.key, taken, item.hold, payments)
    return _failed(item)


def _failed(item: _Held) -> PaymentOutcome:
    return PaymentOutcome(FAILED, item.key, item.request, item.hold, reason=model.PROCESSING_FAILED,
                          detail=PROCESSING_FAILED_DETAIL)


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
