"""Which routes need a token is said twice, by the Chalice app (authorizer=signed_in) for the local gateway and by
the template's Api events (Auth: Authorizer) for API Gateway: the two must agree, route by route."""
from __future__ import annotations

import datetime as dt

import pytest

from booking_core.domain import model
from booking_core.domain.model import ForeignUser, parse_users_booking_request
from infra.local import template

PUBLIC = {("GET", "/v1/listings"), ("GET", "/v1/listings/{listing_id}"),
          ("GET", "/v1/listings/{listing_id}/availability"), ("GET", "/health"), ("GET", "/openapi.json")}


def _chalice_routes() -> dict[tuple[str, str], bool]:
    from booking_api.app import app

    return {(method, path): entry.authorizer is not None
            for path, methods in app.routes.items() for method, entry in methods.items()}


def _template_routes() -> dict[tuple[str, str], bool]:
    api = template.functions()["BookingApiFunction"]
    return {(e.properties["Method"].upper(), e.properties["Path"]): "Auth" in e.properties
            for e in api.events if e.type == "Api"}


def test_the_app_and_the_template_name_the_same_routes_and_the_same_private_ones():
    assert _chalice_routes() == _template_routes()


def test_only_the_catalogue_and_health_are_public():
    assert {route for route, private in _chalice_routes().items() if not private} == PUBLIC


def test_the_template_authorizer_is_the_one_the_app_names():
    from booking_api.app import signed_in

    doc = template.load()
    authorizers = doc["Resources"]["BookingApi"]["Properties"]["Auth"]["Authorizers"]
    assert signed_in.name in authorizers


BODY = {"listing_id": 7, "check_in": "2031-01-01", "check_out": "2031-01-03", "guests": 1, "payment_token": "tok_visa"}


def test_a_body_without_user_id_is_the_callers():
    assert parse_users_booking_request(BODY, 5, today=dt.date(2030, 1, 1)).user_id == 5


def test_a_body_naming_the_caller_is_accepted_and_one_naming_another_is_refused():
    assert parse_users_booking_request({**BODY, "user_id": 5}, 5, today=dt.date(2030, 1, 1)).user_id == 5
    with pytest.raises(ForeignUser):
        parse_users_booking_request({**BODY, "user_id": 6}, 5, today=dt.date(2030, 1, 1))


def test_a_malformed_user_id_is_a_validation_error_not_a_foreign_user():
    with pytest.raises(model.ValidationError) as raised:
        parse_users_booking_request({**BODY, "user_id": "5"}, 5, today=dt.date(2030, 1, 1))
    assert "user_id" in raised.value.errors


@pytest.mark.parametrize("key, owner", [("5.abc", 5), ("12.a.b", 12), ("abc", None), (".abc", None), ("x.abc", None),
                                        ("٣.abc", None)])
def test_the_owner_of_a_booking_key_is_its_user_prefix(key, owner):
    assert model.owner_of_booking_key(key) == owner
