"""The Chalice app serves many requests at once in one process (the local API server is threaded): each view must
see its own request and its own caller."""
from __future__ import annotations

import json
import threading

from booking_core import bootstrap
from tests.conftest import load_event


def _event(path: str, resource: str, path_parameters: dict | None, user_id: int) -> dict:
    event = load_event("booking_api/api_gateway_get_request_status.json")
    event.update(path=path, resource=resource, pathParameters=path_parameters)
    event["requestContext"].update(resourcePath=resource, path=path)
    event["requestContext"]["authorizer"]["claims"]["custom:user_id"] = str(user_id)
    return event


class PausingViews:
    """Read views whose get_booking waits until told to go on, so another request can arrive meanwhile."""

    def __init__(self):
        self.entered, self.go_on = threading.Event(), threading.Event()

    def get_booking(self, booking_id):
        self.entered.set()
        assert self.go_on.wait(5)
        return {"id": int(booking_id), "user_id": 7, "status": "confirmed"}

    def get_user(self, user_id):
        return {"id": int(user_id)}


def test_a_request_arriving_while_another_is_in_its_view_does_not_change_that_views_caller():
    from booking_api.app import app

    views = PausingViews()
    bootstrap.override("read_views", views)
    try:
        answers = {}
        first = threading.Thread(target=lambda: answers.update(first=app(
            _event("/v1/bookings/42", "/v1/bookings/{booking_id}", {"booking_id": "42"}, user_id=7), None)))
        first.start()
        assert views.entered.wait(5)
        # user 9 asks for their profile while user 7's booking request is inside its view
        answers["second"] = app(_event("/v1/me", "/v1/me", None, user_id=9), None)
        views.go_on.set()
        first.join(5)
    finally:
        bootstrap.reset()
    assert (answers["second"]["statusCode"], json.loads(answers["second"]["body"])["id"]) == (200, 9)
    assert answers["first"]["statusCode"] == 200, answers["first"]["body"]  # user 7's own booking
