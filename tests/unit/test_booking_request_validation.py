import datetime as dt

import pytest

from booking_core.domain import model
from booking_core.domain.model import ValidationError, parse_booking_request

TODAY = dt.date(2027, 1, 1)


def body(**overrides):
    data = {"user_id": 1, "listing_id": 7, "check_in": "2027-03-01", "check_out": "2027-03-04", "guests": 2,
            "payment_token": "tok_visa"}
    data.update(overrides)
    return data


def errors_of(data) -> dict:
    with pytest.raises(ValidationError) as exc:
        parse_booking_request(data, today=TODAY)
    return exc.value.errors


def test_a_valid_body_becomes_a_command_with_its_nights():
    request = parse_booking_request(body(), today=TODAY)
    assert request.nights == 3
    assert request.night_dates()[0] == dt.date(2027, 3, 1)
    assert request.night_dates()[-1] == dt.date(2027, 3, 3)


def test_missing_and_unknown_fields_are_each_named():
    data = body(extra=1)
    del data["guests"]
    assert errors_of(data) == {"extra": "unknown field", "guests": "is required"}


@pytest.mark.parametrize("field,value", [("user_id", "1"), ("listing_id", 1.5), ("guests", True), ("user_id", None)])
def test_wrong_types_are_refused(field, value):
    assert errors_of(body(**{field: value}))[field] == "must be an integer"


def test_a_whole_number_written_with_a_fraction_is_that_integer():
    """JSON has one number type: 26.0 is 26, an integer as the OpenAPI document's schema says (schemathesis sent
    {"guests": 26.0} and got 400). The command holds ints, so the request's fingerprint is the same as with 26."""
    request = parse_booking_request(body(user_id=1.0, listing_id=7.0, guests=26.0), today=TODAY)
    assert (request.user_id, request.listing_id, request.guests) == (1, 7, 26)
    assert all(type(v) is int for v in (request.user_id, request.listing_id, request.guests))
    assert request.fingerprint() == parse_booking_request(body(guests=26), today=TODAY).fingerprint()
    assert errors_of(body(guests=float("nan")))["guests"] == "must be an integer"


def test_non_positive_ids_and_too_many_guests_are_refused():
    errors = errors_of(body(user_id=0, guests=model.MAX_GUESTS + 1))
    assert errors == {"user_id": "must be at least 1", "guests": f"must be at most {model.MAX_GUESTS}"}


@pytest.mark.parametrize("value", ["2027-02-30", "03/01/2027", "2027-3-1", 20270301, "2027-W09-1"])
def test_bad_dates_are_refused(value):
    assert "check_in" in errors_of(body(check_in=value))


def test_check_out_must_be_after_check_in():
    assert errors_of(body(check_out="2027-03-01")) == {"check_out": "must be after check_in"}


def test_stays_over_thirty_nights_are_refused():
    assert errors_of(body(check_out="2027-04-01"))["check_out"].startswith("stay must be at most 30")


def test_dates_in_the_past_are_refused():
    assert errors_of(body(check_in="2026-12-31"))["check_in"] == "must not be in the past"


def test_an_empty_payment_token_is_refused():
    assert "payment_token" in errors_of(body(payment_token="  "))


@pytest.mark.parametrize("token", [
    "\ud800",                      # a lone surrogate: no database can store it (it once held nights for ever)
    "tok_vis\u00e4", "tok visa", "tok_visa\n", "tok_" + "x" * 200, "visa", "tok_", "<script>", "tok_visa;drop",
])
def test_a_payment_token_not_shaped_like_a_providers_is_refused(token):
    assert "payment_token" in errors_of(body(payment_token=token))


@pytest.mark.parametrize("token", ["tok_visa", "tok_chargeDeclined", "pm_card_visa", "pm_1QxYz2AbC3dEf4GhI5jK6lMn"])
def test_payment_tokens_and_payment_methods_as_the_providers_issue_them_are_accepted(token):
    assert parse_booking_request(body(payment_token=token), today=TODAY).payment_token == token


def test_a_body_that_is_not_an_object_is_refused():
    assert errors_of([1, 2]) == {"body": "must be a JSON object"}


def test_the_fingerprint_changes_with_the_body_and_only_with_it():
    a = parse_booking_request(body(), today=TODAY)
    b = parse_booking_request(dict(reversed(list(body().items()))), today=TODAY)
    c = parse_booking_request(body(guests=3), today=TODAY)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


@pytest.mark.parametrize("status,reason,code", [
    ("confirmed", None, 201), ("pending", None, 202), ("queued", "publish_failed", 202),
    ("rejected", "unavailable", 409), ("rejected", "payment_declined", 402), ("rejected", "unknown_user", 422),
    ("rejected", "too_many_guests", 422), ("rejected", "invalid_request", 400),
])
def test_each_decision_maps_to_its_http_status(status, reason, code):
    assert model.http_status_for(model.Decision("k", status, reason=reason)) == code
