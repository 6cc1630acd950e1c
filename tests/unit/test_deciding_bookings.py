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

    real_finish = repo.finish_many

    def failing_confirm(outcomes):
        if any(o.kind == "charged" for o in outcomes):
            raise RuntimeError("confirm broke")
        return real_finish(outcomes)

    repo.finish_many = failing_confirm
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


# ---- a batch decided as a set ------------------------------------------------------------------------------

from booking_core.ports import DatabaseUnavailable  # noqa: E402
from booking_core.services.decide import decide_requests  # noqa: E402

LISTINGS = {n: {"active": True, "max_guests": 4, "price": 10000 + n, "currency": "EUR"} for n in (7, 8, 9)}


def decide_all(repo, payments, pairs, **kw):
    return decide_requests(pairs, repo, payments, retry_pause_s=0, **kw)


def one_at_a_time(pairs, crashed=(), **kw):
    repo, payments = crashed_before(crashed)
    return [decide(repo, payments, key, req, **kw) for key, req in pairs], repo


def crashed_before(pairs):
    """A repository and provider where a batch of `pairs` was held and charged, and then MySQL went away."""
    repo, payments = FakeBookingRepository(listings=dict(LISTINGS)), InMemorySandboxProvider()
    if pairs:
        real_finish = repo.finish_many

        def crash(outcomes):
            raise DatabaseUnavailable("gone")

        repo.finish_many = crash
        try:
            decide_all(repo, payments, pairs)
        except DatabaseUnavailable:
            pass
        repo.finish_many = real_finish
    return repo, payments


def test_a_batch_is_held_charged_and_finished_with_one_call_each():
    repo, payments = FakeBookingRepository(listings=dict(LISTINGS)), InMemorySandboxProvider()
    pairs = [(f"k{n}", request(listing_id=n)) for n in (7, 8, 9)]
    decisions = decide_all(repo, payments, pairs)
    assert [d.status for d in decisions] == [model.CONFIRMED] * 3
    assert repo.hold_calls == [["k7", "k8", "k9"]]
    assert payments.batches == [["k7", "k8", "k9"]]
    assert repo.finish_calls == [["k7", "k8", "k9"]]


def test_in_one_batch_the_first_of_two_overlapping_stays_wins_when_it_is_confirmed():
    repo, payments = FakeBookingRepository(), InMemorySandboxProvider()
    first, second = decide_all(repo, payments, [("a", request(check_in=dt.date(2030, 1, 10))),
                                                ("b", request(check_in=dt.date(2030, 1, 12)))])
    assert first.status == model.CONFIRMED
    assert (second.status, second.reason) == (model.REJECTED, model.UNAVAILABLE)
    assert payments.batches == [["a"]]  # the second was never charged


def test_in_one_batch_a_stay_overlapping_a_declined_one_gets_the_nights_as_one_at_a_time_would():
    repo, payments = FakeBookingRepository(), InMemorySandboxProvider()
    first, second = decide_all(repo, payments, [("a", request(token="tok_chargeDeclined")), ("b", request())])
    assert first.reason == model.PAYMENT_DECLINED
    assert second.status == model.CONFIRMED
    assert repo.hold_calls == [["a", "b"], ["b"]]  # b waited for a's outcome


def test_duplicates_of_a_key_in_one_batch_get_one_decision_one_booking_and_one_charge():
    repo, payments = FakeBookingRepository(listings=dict(LISTINGS)), InMemorySandboxProvider()
    decisions = decide_all(repo, payments, [("k", request()), ("other", request(listing_id=8)),
                                            ("k", request()), ("k", request(guests=3))])
    assert decisions[0].status == model.CONFIRMED and decisions[2] == decisions[0]
    assert decisions[3].reason == model.IDEMPOTENCY_KEY_REUSED  # the same key with another body
    assert sorted(repo.bookings) == sorted(payments.ledger) == ["k", "other"]
    assert repo.decisions["k"] == decisions[0] and payments.batches == [["k", "other"]]


def test_a_transient_failure_in_a_batch_retries_only_that_charge_and_parks_only_that_request():
    repo, payments = FakeBookingRepository(listings=dict(LISTINGS)), InMemorySandboxProvider()
    pairs = [("ok", request(listing_id=7)), ("flaky", request(listing_id=8, token="tok_processingError")),
             ("ok2", request(listing_id=9))]
    decisions = decide_all(repo, payments, pairs, quick_retries=2)
    assert [d.status for d in decisions] == [model.CONFIRMED, model.QUEUED, model.CONFIRMED]
    assert payments.batches == [["ok", "flaky", "ok2"], ["flaky"], ["flaky"]]
    assert repo.retries["flaky"]["status"] == "pending" and repo.bookings["flaky"]["status"] == "released"


def test_a_batch_retried_after_a_crash_between_charge_and_confirm_charges_nothing_again():
    repo, payments = FakeBookingRepository(listings=dict(LISTINGS)), InMemorySandboxProvider()
    pairs = [(f"k{n}", request(listing_id=n)) for n in (7, 8, 9)]
    real_finish = repo.finish_many

    def crash(outcomes):
        raise DatabaseUnavailable("MySQL went away after the charges")

    repo.finish_many = crash
    try:
        decide_all(repo, payments, pairs)
    except DatabaseUnavailable:
        pass
    else:
        raise AssertionError("an outage must fail the batch, so that it is retried")
    charged = dict(payments.charged_cents)
    repo.finish_many = real_finish

    decisions = decide_all(repo, payments, pairs)  # Lambda retries the whole batch

    assert [d.status for d in decisions] == [model.CONFIRMED] * 3
    assert payments.charged_cents == charged and len(payments.ledger) == 3  # the provider's first answers
    assert {b["status"] for b in repo.bookings.values()} == {"confirmed"} and len(repo.bookings) == 3


def test_a_request_that_breaks_the_set_is_parked_alone_and_the_others_are_decided():
    repo, payments = FakeBookingRepository(listings=dict(LISTINGS)), InMemorySandboxProvider()
    real_hold_many = repo.hold_many

    def hold_many(pairs):
        if any(key == "poison" for key, _ in pairs):
            raise ValueError("bad data in one request")
        return real_hold_many(pairs)

    repo.hold_many = hold_many
    decisions = decide_all(repo, payments, [("a", request(listing_id=7)), ("poison", request(listing_id=8)),
                                            ("b", request(listing_id=9))])
    assert [d.status for d in decisions] == [model.CONFIRMED, model.QUEUED, model.CONFIRMED]
    assert repo.retries["poison"]["reason"] == "internal_error"


def test_deciding_a_batch_as_a_set_gives_each_request_the_outcome_one_at_a_time_gives():
    import random

    tokens = ["tok_visa"] * 6 + ["tok_chargeDeclined", "tok_processingError", "tok_insufficientFunds"]
    for seed in range(60):
        rnd = random.Random(seed)
        keys = [f"k{i}" for i in range(rnd.randint(1, 12))]
        pairs = []
        for _ in range(rnd.randint(1, 16)):
            key = rnd.choice(keys)
            same = [r for k, r in pairs if k == key]
            req = same[0] if same and rnd.random() < 0.7 else request(
                token=rnd.choice(tokens), listing_id=rnd.choice([7, 8, 9, 99]),
                check_in=dt.date(2030, 1, 1) + dt.timedelta(days=rnd.randint(0, 8)), nights=rnd.randint(1, 4),
                guests=rnd.choice([1, 2, 4, 5]), user_id=rnd.choice([1, 2, 3]))
            pairs.append((key, req))
        # Half of them redelivered after a crash between charge and confirm: some holds are there already.
        crashed = list({key: (key, req) for key, req in pairs if rnd.random() < 0.4}.values()) if seed % 2 else []
        expected, expected_repo = one_at_a_time(pairs, crashed, quick_retries=1)
        repo, payments = crashed_before(crashed)
        got = decide_all(repo, payments, pairs, quick_retries=1)
        assert [(d.status, d.reason) for d in got] == [(d.status, d.reason) for d in expected], seed
        assert {k: b["status"] for k, b in repo.bookings.items()} == \
            {k: b["status"] for k, b in expected_repo.bookings.items()}, seed


def test_a_kafka_batch_publishes_every_records_decision_in_order_with_one_flush():
    repo, payments = FakeBookingRepository(listings=dict(LISTINGS)), InMemorySandboxProvider()
    publisher = FakePublisher()
    event = build_event([
        ("booking-requests", 0, 1, 0, b"a", messages.encode_request("a", request(listing_id=7)), []),
        ("booking-requests", 0, 2, 0, b"bad", b"{nope", []),
        ("booking-requests", 0, 3, 0, b"b", messages.encode_request("b", request(listing_id=7)), []),
        ("booking-requests", 0, 4, 0, b"a", messages.encode_request("a", request(listing_id=7)), []),
    ])
    summary = process_booking_requests(event, repo, payments, publisher, "booking-decisions", quick_retries=0)
    assert [key for _, key, _ in publisher.sent] == ["a", "bad", "b", "a"]
    statuses = [messages.decode_decision(value) for _, _, value in publisher.sent]
    assert [(d.status, d.reason) for d in statuses] == [("confirmed", None), ("rejected", "invalid_request"),
                                                        ("rejected", "unavailable"), ("confirmed", None)]
    assert summary == {"confirmed": 2, "invalid": 1, "rejected": 1} and publisher.flushes == 1
    assert repo.hold_calls == [["a", "b"], ["b", "a"]]  # b waited for a; the repeated a for the first
