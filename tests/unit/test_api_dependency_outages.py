"""A backing service failing inside any route is answered 503 with Retry-After, never Chalice's opaque 500."""
from __future__ import annotations

import json

import pytest
from chalice.test import Client
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

import booking_api.app as api
from booking_core import bootstrap
from booking_core.ports import BrokerUnavailable, DatabaseUnavailable
from tests.support import unverified_claims_header

OUTAGES = [RedisTimeoutError("Timeout reading from socket"), RedisConnectionError("Connection refused"),
           DatabaseUnavailable("MySQL unreachable"), BrokerUnavailable("flush failed")]
SIGNED_IN = unverified_claims_header(5)
BOOKING = {"user_id": 5, "listing_id": 1, "check_in": "2099-01-01", "check_out": "2099-01-03", "guests": 1,
           "payment_token": "tok_visa"}


class Unavailable:
    """Stands in for a client or store whose every call fails with `error`."""

    def __init__(self, error: Exception):
        self.error = error

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise self.error

        return fail

    @property
    def redis(self):
        return self


@pytest.fixture(params=OUTAGES, ids=lambda e: type(e).__name__)
def outage(request, monkeypatch):
    """Every store the routes use fails with one error (no network involved)."""
    unavailable = Unavailable(request.param)
    for name in ("decision_store", "retry_table", "read_views"):
        bootstrap.override(name, unavailable)
    yield request.param
    bootstrap.reset()


@pytest.mark.parametrize("method,path", [
    ("POST", "/v1/bookings"), ("GET", "/v1/bookings/requests/5.some-key"), ("GET", "/health"), ("GET", "/v1/me"),
    ("GET", "/v1/listings?city=Lisbon"), ("GET", "/v1/listings/7"),
    ("GET", "/v1/listings/7/availability?from=2099-01-01&to=2099-01-05"), ("GET", "/v1/users/5"),
    ("GET", "/v1/users/5/bookings"), ("GET", "/v1/users/5/payments"), ("GET", "/v1/bookings/9"),
])
def test_a_route_whose_backing_service_fails_answers_503_with_retry_after(outage, method, path):
    with Client(api.app) as client:
        if method == "POST":
            response = client.http.post(path, body=json.dumps(BOOKING), headers={
                "Content-Type": "application/json", "Idempotency-Key": "outage-test", **SIGNED_IN})
        else:
            response = client.http.get(path, headers=SIGNED_IN)
    assert response.status_code == 503, response.body
    assert response.headers["Retry-After"] == "1"
    assert json.loads(response.body)["error"] == "service_unavailable"


def test_every_route_of_the_app_is_covered_by_the_outage_answer():
    tested = {"/v1/bookings", "/v1/bookings/requests/{booking_key}", "/health", "/v1/listings",
              "/v1/listings/{listing_id}", "/v1/listings/{listing_id}/availability", "/v1/users/{user_id}",
              "/v1/users/{user_id}/bookings", "/v1/users/{user_id}/payments", "/v1/bookings/{booking_id}",
              "/v1/me"}
    served_from_memory = {"/openapi.json"}  # the document, read once at import: no backing service to lose
    assert set(api.app.routes) == tested | served_from_memory, "a new route: add it to the parametrized test above"
