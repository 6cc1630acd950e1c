"""schemathesis hooks for the fuzz run of tests/integration/test_openapi_fuzz.py (schemathesis.toml names this module).

POST /v1/bookings really books, and the run must not touch what other tests use: it signs in as a user of its own,
and a body naming a listing that existed before the run's (an id below FUZZ_LISTING_ID: someone else's) books the
run's listing instead. Ids no listing had (refused `unknown_listing`) pass unchanged.

A body the document calls valid is also made bookable for the rules a JSON Schema cannot state: its stay moves to
the far future (check_in not in the past, check_out 1-30 nights after it) and a user_id names the caller. So such
bodies reach the write side (201, 402, 409, 422...), and the positive_data_acceptance check proves the document's
body schema is no looser than the API's validation: a body it calls valid is never answered 400. Bodies drawn to
break the schema are sent as drawn.
"""
from __future__ import annotations

import datetime as dt
import os

import schemathesis

FAR_FUTURE_DAYS = 3 * 365  # stays start 3 to 13 years from now: well clear of every other test's dates
SPREAD_DAYS = 10 * 365
MAX_NIGHTS = 30


def _date(value: object) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
    except ValueError:
        return None


@schemathesis.hook
def before_call(context, case, kwargs):
    body = case.body
    if case.method.upper() != "POST" or not isinstance(body, dict):
        return
    own_listing = int(os.environ["FUZZ_LISTING_ID"])
    listing_id = body.get("listing_id")
    if type(listing_id) is int and 1 <= listing_id < own_listing:
        body["listing_id"] = own_listing
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    check_in, check_out = _date(body.get("check_in")), _date(body.get("check_out"))
    if check_in and check_out:
        start = dt.date.today() + dt.timedelta(days=FAR_FUTURE_DAYS + check_in.toordinal() % SPREAD_DAYS)
        nights = 1 + abs((check_out - check_in).days) % MAX_NIGHTS
        body["check_in"], body["check_out"] = start.isoformat(), (start + dt.timedelta(days=nights)).isoformat()
    if "user_id" in body:
        body["user_id"] = int(os.environ["FUZZ_USER_ID"])
