"""schemathesis hooks for the fuzz run of tests/integration/test_openapi_fuzz.py (schemathesis.toml names this module).

POST /v1/bookings really books, and the run must not touch what other tests use: it signs in as a user of its own,
and a body naming a listing that existed before the run's (an id below FUZZ_LISTING_ID: someone else's) books the
run's listing instead. Ids no listing had (refused `unknown_listing`) pass unchanged.

Data the document calls valid is also made to keep the rules a JSON Schema cannot state: a booking's stay moves to
the far future (check_in not in the past, check_out 1-30 nights after it) and its user_id names the caller; an
availability range ends 1-366 nights after it starts. So such requests get past validation (a booking reaches the
write side: 201, 402, 409, 422...), and the positive_data_acceptance check proves the document is no looser than the
API's validation: what it calls valid is never answered 400. Data drawn to break the schema is sent as drawn.
"""
from __future__ import annotations

import datetime as dt
import os

import schemathesis

FAR_FUTURE_DAYS = 3 * 365  # stays start 3 to 13 years from now: well clear of every other test's dates
SPREAD_DAYS = 10 * 365
MAX_NIGHTS = 30  # a stay
MAX_RANGE_NIGHTS = 366  # an availability query


def _date(value: object) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
    except ValueError:
        return None


def _positive(case) -> bool:
    return case.meta is not None and case.meta.generation.mode.is_positive


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.method.upper() == "POST" and isinstance(case.body, dict):
        _booking_body(case)
    elif case.operation.path.endswith("/availability") and case.query and _positive(case):
        start, end = _date(case.query.get("from")), _date(case.query.get("to"))
        if start and end:
            nights = 1 + abs((end - start).days) % MAX_RANGE_NIGHTS
            start = min(start, dt.date.max - dt.timedelta(days=nights))
            case.query["from"], case.query["to"] = start.isoformat(), (start + dt.timedelta(days=nights)).isoformat()


def _booking_body(case) -> None:
    body = case.body
    own_listing = int(os.environ["FUZZ_LISTING_ID"])
    listing_id = body.get("listing_id")
    # 7.0 names listing 7 as well (JSON has one number type).
    if type(listing_id) in (int, float) and float(listing_id).is_integer() and 1 <= listing_id < own_listing:
        body["listing_id"] = own_listing
    if not _positive(case):
        return
    check_in, check_out = _date(body.get("check_in")), _date(body.get("check_out"))
    if check_in and check_out:
        start = dt.date.today() + dt.timedelta(days=FAR_FUTURE_DAYS + check_in.toordinal() % SPREAD_DAYS)
        nights = 1 + abs((check_out - check_in).days) % MAX_NIGHTS
        body["check_in"], body["check_out"] = start.isoformat(), (start + dt.timedelta(days=nights)).isoformat()
    if "user_id" in body:
        body["user_id"] = int(os.environ["FUZZ_USER_ID"])
