"""booking_api/openapi.json is the API described once: valid OpenAPI 3.1, the same routes (and the same private ones)
as the Chalice app and the template's Api events, served as GET /openapi.json, and stating the bounds the validators
apply. (That the running API answers only what it says is tests/integration/test_openapi_fuzz.py's job.)"""
from __future__ import annotations

import datetime as dt
import json
import re
import string

import pytest
from chalice.test import Client
from openapi_spec_validator import OpenAPIV31SpecValidator

from booking_core.domain import model, queries
from booking_core.services import submit
from infra.local import template
from tests.conftest import ROOT

DOCUMENT = ROOT / "booking_api" / "openapi.json"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

Routes = dict[tuple[str, str], bool]  # (METHOD, path) -> private


def _document() -> dict:
    return json.loads(DOCUMENT.read_text())


def _operations(paths: dict) -> dict[tuple[str, str], dict]:
    return {(method.upper(), path): operation for path, item in paths.items() if path.startswith("/")
            for method, operation in item.items() if method in HTTP_METHODS}


def _document_routes(doc: dict) -> Routes:
    return {route: bool(operation.get("security", doc.get("security", [])))
            for route, operation in _operations(doc["paths"]).items()}


def _chalice_routes() -> Routes:
    from booking_api.app import app

    return {(method, path): entry.authorizer is not None
            for path, methods in app.routes.items() for method, entry in methods.items()}


def _template_routes() -> Routes:
    api = template.functions()["BookingApiFunction"]
    return {(e.properties["Method"].upper(), e.properties["Path"]): "Auth" in e.properties
            for e in api.events if e.type == "Api"}


def test_the_document_is_valid_openapi_3_1():
    OpenAPIV31SpecValidator(_document()).validate()


def test_the_document_the_app_and_the_template_name_the_same_routes_and_the_same_private_ones():
    doc, app, sam = _document_routes(_document()), _chalice_routes(), _template_routes()
    hint = "a route in one and not the others"
    assert doc == app, hint
    assert sam == app, hint


def test_the_api_serves_this_file_at_openapi_json_without_a_token():
    from booking_api.app import app

    with Client(app) as client:
        response = client.http.get("/openapi.json")
    assert response.status_code == 200
    assert json.loads(response.body) == _document()


def test_every_operation_may_be_throttled_and_every_private_one_refused_without_a_token():
    doc = _document()
    for route, operation in _operations(doc["paths"]).items():
        assert "429" in operation["responses"], route
        assert ("401" in operation["responses"]) == _document_routes(doc)[route], route


def test_create_booking_lists_every_status_a_decision_maps_to():
    responses = _document()["paths"]["/v1/bookings"]["post"]["responses"]
    decisions = [model.Decision("1.k", status, reason) for status, reason in
                 [(model.CONFIRMED, None), (model.PENDING, None), (model.QUEUED, "publish_failed"),
                  *((model.REJECTED, reason) for reason in
                    (model.UNAVAILABLE, model.PAYMENT_DECLINED, model.INVALID_REQUEST, model.UNKNOWN_LISTING,
                     model.IDEMPOTENCY_KEY_REUSED, model.CHECK_IN_PASSED, model.RETRIES_EXHAUSTED))]]
    assert {str(model.http_status_for(d)) for d in decisions} <= responses.keys()


def test_cancelling_answers_the_documented_statuses():
    responses = _document()["paths"]["/v1/bookings/requests/{booking_key}"]["delete"]["responses"]
    assert {"200", "404", "409"} <= responses.keys()
    assert model.CANCELLED in responses["200"]["description"]


# ---- the bounds the document states are the validators' -----------------------------------------------------


def _schemas() -> dict:
    return _document()["components"]["schemas"]


TODAY = dt.date(2030, 1, 1)
BODY = {"listing_id": 7, "check_in": "2030-03-01", "check_out": "2030-03-04", "guests": 2, "payment_token": "tok_visa"}


def _body_errors(**changes) -> dict[str, str]:
    try:
        model.parse_booking_request({**BODY, "user_id": 5, **changes}, today=TODAY)
    except model.ValidationError as exc:
        return exc.errors
    return {}


def test_the_booking_body_has_the_fields_the_parser_takes_and_requires_the_ones_it_requires():
    schema = _schemas()["BookingRequest"]
    assert set(schema["properties"]) == set(model._FIELDS)
    assert set(schema["required"]) == set(model._FIELDS) - {"user_id"}  # the caller when left out
    assert schema["additionalProperties"] is False
    assert _body_errors(extra=1) == {"extra": "unknown field"}


@pytest.mark.parametrize("name", ["user_id", "listing_id", "guests"])
def test_each_integer_field_is_refused_just_outside_its_bounds_and_taken_at_them(name):
    bounds = _schemas()["BookingRequest"]["properties"][name]
    assert bounds["type"] == "integer"
    low, high = bounds["minimum"], bounds.get("maximum")
    assert name not in _body_errors(**{name: low}) and name in _body_errors(**{name: low - 1})
    if high is not None:
        assert name not in _body_errors(**{name: high}) and name in _body_errors(**{name: high + 1})
    assert name in _body_errors(**{name: True}) and name in _body_errors(**{name: "5"})


def test_the_most_guests_is_the_domains():
    assert _schemas()["BookingRequest"]["properties"]["guests"]["maximum"] == model.MAX_GUESTS


def test_the_payment_token_is_refused_just_outside_its_bounds_and_taken_at_them():
    token = _schemas()["BookingRequest"]["properties"]["payment_token"]
    # ECMA-262's $ is the end of the string; Python's also matches before a final newline: \Z is ECMA's $.
    longest, pattern = token["maxLength"], re.compile(token["pattern"].replace("$", r"\Z"))
    assert longest == model.MAX_PAYMENT_TOKEN
    for prefix in ("tok_", "pm_", "card_", "src_"):
        at_most = prefix + "x" * (longest - len(prefix))
        assert pattern.search(at_most) and "payment_token" not in _body_errors(payment_token=at_most)
        assert "payment_token" in _body_errors(payment_token=at_most + "x")
    for refused in ["", " ", "\t\n", "tok_", "tok__x", "visa", "tok_vi sa", "tok_visa\n", "xtok_visa", "tok_é"]:
        assert not pattern.search(refused) and "payment_token" in _body_errors(payment_token=refused), refused


def test_the_idempotency_key_header_is_the_one_submit_accepts():
    header = _document()["components"]["parameters"]["IdempotencyKey"]
    schema, pattern = header["schema"], re.compile(header["schema"]["pattern"])
    assert (header["name"], schema["maxLength"]) == ("Idempotency-Key", submit.MAX_KEY_LENGTH)
    for char in string.printable + "é/%":
        documented = bool(pattern.fullmatch(char))
        try:
            submit.valid_booking_key(char)
            accepted = True
        except model.ValidationError:
            accepted = False
        assert documented == accepted, repr(char)
    with pytest.raises(model.ValidationError):
        submit.valid_booking_key("a" * (schema["maxLength"] + 1))


@pytest.mark.parametrize("path", ["/v1/listings", "/v1/users/{user_id}/bookings", "/v1/users/{user_id}/payments"])
def test_page_sizes_are_the_queries(path):
    limit = next(p for p in _document()["paths"][path]["get"]["parameters"] if p["name"] == "limit")["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, queries.MAX_LIMIT, queries.DEFAULT_LIMIT)


def test_the_stages_own_401_and_429_have_the_documented_shape_and_headers():
    """API Gateway answers these before the app runs; its defaults ({"message": ...}) are not the document's."""
    stage = template.load()["Resources"]["BookingApi"]["Properties"]["GatewayResponses"]
    for name, status, error, header in [("UNAUTHORIZED", 401, "unauthorized", "WWW-Authenticate"),
                                        ("THROTTLED", 429, "too_many_requests", "Retry-After")]:
        answer = stage[name]
        assert answer["StatusCode"] == status
        assert f'"error": "{error}", "message": ' in answer["ResponseTemplates"]["application/json"]
        assert header in answer["ResponseParameters"]["Headers"]
