import datetime as dt

from booking_core.domain import messages, model
from booking_core.domain.model import RequestBooking
from booking_core.kafka_event import build_event
from booking_core.services.decide import decide_booking
from booking_core.services.kafka_batches import process_booking_requests
from tests.fakes import FakeBookingRepository, FakePublisher, InMemorySandboxProvider


def request(token="tok_visa", listing_id=7, check_in=dt.date(2030, 1, 10), nights=3, guests=2, user_id=1):
    return RequestBooking(user_id, listing_id, check_in, check_in + dt.timedelta(days=nights), guests, token)


def decide(repo, payments, key, req, **kw):
    return decide_booking(key, req, repo, payments, retry_pause_s=0, **kw)


def test_a_good_request_is_confirmed_and_charged_nights_times_price():
    repo, payments = FakeBookingRepository(), InMemorySandboxProvider()
    decision = decide(repo, payments, "k1", request(nights=3))
    assert decision.status == model.CONFIRMED
    assert decision.amount_cents == 30000
    assert repo.bookings["k1"]["status"] == "confirmed"


def test_an_overlapping_stay_is_rejected_as_unavailable():
    repo, payments = FakeBookingRepository(), InMemorySandboxProvider()
    decide(repo, payments, "k1", request(check_in=dt.date(2030, 1, 10)))
    second = decide(repo, payments, "k2", request(check_in=dt.date(2030, 1, 12)))
    adjacent = decide(repo, payments, "k3", request(check_in=dt.date(2030, 1, 13)))
    assert (second.status, second.reason) == (model.REJECTED, model.UNAVAILABLE)
    assert adjacent.status == model.CONFIRMED


def test_a_declined_card_releases_the_dates():
    repo, payments = FakeBookingRepository(), InMemorySandboxProvider()
    declined = decide(repo, payments, "k1", request(token="tok_chargeDeclined"))
    assert declined.reason == model.PAYMENT_DECLINED
    assert repo.bookings["k1"]["status"] == "released"
    assert decide(repo, payments, "k2", request()).status == model.CONFIRMED


def test_a_transient_failure_is_retried_quickly_then_parked_with_the_dates_released():
    repo, payments = FakeBookingRepository(), InMemorySandboxProvider()
    decision = decide(repo, payments, "k1", request(token="tok_processingError"), quick_retries=2)
    assert decision.status == model.QUEUED
    assert payments.calls == 3
    assert repo.retries["k1"]["status"] == "pending"
    assert repo.bookings["k1"]["status"] == "released"
    assert "k1" not in repo.decisions


def test_a_parked_request_re_driven_after_recovery_is_confirmed_and_closes_its_retry_row():
    repo, payments = FakeBookingRepository(), InMemorySandboxProvider()
    payments.outage = True
    assert decide(repo, payments, "k1", request()).status == model.QUEUED
    payments.outage = False
    assert decide(repo, payments, "k1", request()).status == model.CONFIRMED
    assert repo.retries["k1"]["status"] == "succeeded"


def test_redelivery_returns_the_stored_decision_without_charging_again():
    repo, payments = FakeBookingRepository(), InMemorySandboxProvider()
    first = decide(repo, payments, "k1", request())
    calls = payments.calls
    again = decide(repo, payments, "k1", request())
    assert again == first and payments.calls == calls and len(repo.payments) == 1


def test_refusals_name_their_reason():
    repo, payments = FakeBookingRepository(), InMemorySandboxProvider()
    assert decide(repo, payments, "a", request(user_id=99)).reason == model.UNKNOWN_USER
    assert decide(repo, payments, "b", request(listing_id=99)).reason == model.UNKNOWN_LISTING
    assert decide(repo, payments, "c", request(guests=9)).reason == model.TOO_MANY_GUESTS


def test_poison_records_are_answered_or_logged_and_the_good_ones_decided():
    repo, payments, publisher = FakeBookingRepository(), InMemorySandboxProvider(), FakePublisher()
    good = messages.encode_request("good", request())
    event = build_event([
        ("booking-requests", 0, 1, 0, b"bad-json", b"{nope", []),
        ("booking-requests", 0, 2, 0, None, good, []),                        # no key: logged, counted
        ("booking-requests", 0, 3, 0, b"bad-type", b'{"type": "booking.requested", "version": 1,'
                                                   b' "request": {"user_id": "one"}}', []),
        ("booking-requests", 0, 4, 0, b"good", good, []),
    ])
    summary = process_booking_requests(event, repo, payments, publisher, "booking-decisions", quick_retries=0)
    assert summary == {"invalid": 2, "invalid_without_key": 1, "confirmed": 1}
    decided = {key: messages.decode_decision(value) for _, key, value in publisher.sent}
    assert decided["bad-json"].reason == model.INVALID_REQUEST
    assert decided["bad-type"].reason == model.INVALID_REQUEST
    assert decided["good"].status == model.CONFIRMED
    assert publisher.flushes == 1


def test_a_stay_that_has_begun_is_rejected_without_holding_or_charging():
    repo, payments = FakeBookingRepository(), InMemorySandboxProvider()
    decision = decide(repo, payments, "k1", request(check_in=dt.date.today() - dt.timedelta(days=1)))
    assert (decision.status, decision.reason) == (model.REJECTED, model.CHECK_IN_PASSED)
    assert repo.bookings == {} and payments.calls == 0


def test_a_record_nested_deeper_than_a_parser_goes_is_answered_invalid_and_never_fails_its_batch():
    repo, payments, publisher = FakeBookingRepository(), InMemorySandboxProvider(), FakePublisher()
    event = build_event([("booking-requests", 0, 0, 0, b"1.deep", b"[" * 8000, [])])
    summary = process_booking_requests(event, repo, payments, publisher, "booking-decisions")
    assert summary == {"invalid": 1}
    assert [key for _, key, _ in publisher.sent] == ["1.deep"]


class Broken(InMemorySandboxProvider):
    """Charges (or not), then something that is no outage and no decline goes wrong."""

    def __init__(self, charge_first: bool):
        super().__init__()
        self.charge_first = charge_first

    def charge(self, idempotency_key, amount_cents, currency, token):
        if self.charge_first:
            super().charge(idempotency_key, amount_cents, currency, token)
        raise KeyError("a bug")


def test_an_error_after_the_hold_releases_it_and_answers_processing_failed():
    repo = FakeBookingRepository()
    decision = decide_booking("k", request(), repo, Broken(charge_first=False), quick_retries=0)
    assert (decision.status, decision.reason) == (model.REJECTED, model.PROCESSING_FAILED)
    assert repo.bookings["k"]["status"] == "released" and repo.decisions["k"] == decision


def test_a_confirmation_that_fails_after_the_charge_refunds_it():
    repo, payments = FakeBookingRepository(), InMemorySandboxProvider()

    def failing_confirm(*args):
        raise RuntimeError("confirm broke")

    repo.confirm = failing_confirm
    decision = decide_booking("k", request(), repo, payments, quick_retries=0)
    assert decision.reason == model.PROCESSING_FAILED
    assert payments.refunds["k"].status == "succeeded"


def test_a_key_decided_while_its_charge_ran_keeps_that_decision_and_the_charge_is_refunded():
    repo, payments = FakeBookingRepository(), InMemorySandboxProvider()
    real_charge = payments.charge

    def charge_then_cancelled(key, amount, currency, token):
        result = real_charge(key, amount, currency, token)
        repo.decisions[key] = model.Decision.rejected(key, model.CANCELLED)
        return result

    payments.charge = charge_then_cancelled
    decision = decide_booking("k", request(), repo, payments, quick_retries=0)
    assert decision.reason == model.CANCELLED and repo.bookings["k"]["status"] == "released"
    assert payments.refunds["k"].status == "succeeded" and "k" not in repo.payments
