"""A user's bookings and payments, and a listing's nights, on real Redis against a brute-force reference over the
model the replicator writes (FakeReadModel's keys): each page newest first, the cursor going on to the end, a
row whose hash is gone left out, an unknown user or listing a NotFound; the pages the API sends as JSON text are
byte for byte what json.dumps of the reference makes with Chalice's separators. No stack needed.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from booking_core import config
from booking_core.adapters.redis_read_model import RedisReadModel
from booking_core.adapters.redis_views import RedisReadViews
from booking_core.domain.queries import encode_cursor, parse_night_range, parse_page
from booking_core.domain.read_model import (
    decode_row,
    nights_key,
    row_key,
    user_bookings_key,
    user_payments_key,
)
from booking_core.ports import NotFound
from booking_core.services import replication
from tests.unit.replication_fakes import FakeChangeLog, FakeReadModel

pytestmark = pytest.mark.integration

GONE_BOOKING = 7  # its hash is deleted behind the replicator's back: still in its user's list, left out of pages
# Text a JSON writer must escape as json.dumps does: quotes, backslashes, control characters, non-ASCII (one past
# the BMP: a surrogate pair), a line separator
ODD_TEXT = ['say "hi"', "back\\slash", "tab\tnew\nline\x00\x1f", "Zürich 東京 😀", "</script>", "\u2028", ""]


def data() -> FakeChangeLog:
    """Users 1-3 (2 has nothing), 5 listings; user 1 holds 45 bookings and their payments, user 3 a few."""
    db = FakeChangeLog()
    for user in (1, 2, 3):
        db.insert("users", id=user, email=f"u{user}@example.com", name=f"U{user}")
    for listing in range(1, 6):
        db.insert("listings", id=listing, host_id=2, title=f"Flat {listing}", city="Lisbon", max_guests=4,
                  nightly_price_cents=1000 * listing, currency="EUR", active=1)
    for booking in range(1, 51):
        user = 1 if booking <= 45 else 3
        check_in = dt.date(2031, 1, 1) + dt.timedelta(days=3 * booking)
        status = ("confirmed", "held", "released", "cancelled")[booking % 4]
        key = f"k{booking}" + ODD_TEXT[booking % len(ODD_TEXT)] if user == 3 else f"k{booking}"
        db.insert("bookings", id=booking, booking_key=key, user_id=user, listing_id=1 + booking % 5,
                  check_in=check_in, check_out=check_in + dt.timedelta(days=1 + booking % 3), guests=2,
                  status=status, amount_cents=1000 * booking, currency="EUR")
        if booking % 3:
            db.insert("payments", id=booking, booking_id=booking, booking_key=key, user_id=user,
                      amount_cents=1000 * booking, currency="EUR", provider="sandbox",
                      provider_ref=None if booking % 5 == 0 else f"ch_{booking}", status="captured")
    return db


@pytest.fixture(scope="module")
def models(redis_client):
    prefix = f"{config.redis_prefix()}userrows{uuid.uuid4().hex[:8]}:"
    db, fake, real = data(), FakeReadModel(), RedisReadModel(redis_client, prefix)
    replay = list(db.log)
    for read_model in (fake, real):
        db.log = list(replay)
        replication.drain(db, read_model)
    redis_client.delete(prefix + row_key("bookings", GONE_BOOKING))
    fake.keys.pop(row_key("bookings", GONE_BOOKING))
    yield fake, RedisReadViews(redis_client, prefix)
    for key in redis_client.scan_iter(match=prefix + "*", count=1000):
        redis_client.delete(key)


def reference_rows(fake: FakeReadModel, entity: str, index: str, user_id: str, params: dict) -> dict:
    if row_key("users", int(user_id)) not in fake.keys:
        raise NotFound(f"no user with id {user_id}")
    page = parse_page(params)
    ids = sorted((int(m) for m in fake.keys.get(index, ("zset", {}))[1]), reverse=True)
    ids = [i for i in ids if page.before_id is None or i < page.before_id][:page.limit + 1]
    items = [decode_row(entity, fake.keys[row_key(entity, i)][1]) for i in ids[:page.limit]
             if row_key(entity, i) in fake.keys]
    return {"items": items, "next_cursor": encode_cursor(ids[page.limit - 1]) if len(ids) > page.limit else None}


def reference_nights(fake: FakeReadModel, listing_id: str, params: dict) -> dict:
    if row_key("listings", int(listing_id)) not in fake.keys:
        raise NotFound(f"no listing with id {listing_id}")
    start, end = parse_night_range(params)
    booked = fake.keys.get(nights_key(int(listing_id)), ("hash", {}))[1]
    return {"listing_id": int(listing_id), "from": start.isoformat(), "to": end.isoformat(),
            "nights": [{"date": n.isoformat(), "status": "booked" if n.isoformat() in booked else "free"}
                       for n in (start + dt.timedelta(days=i) for i in range((end - start).days))]}


def every_page(read, params: dict) -> list[dict]:
    pages, cursor = [], None
    while True:
        page = read({**params, **({"cursor": cursor} if cursor else {})})
        pages.append(page)
        cursor = page["next_cursor"]
        assert len(pages) < 100, "the cursor does not move on"
        if cursor is None:
            return pages


@pytest.mark.parametrize("entity, index_key", [("bookings", user_bookings_key), ("payments", user_payments_key)])
@pytest.mark.parametrize("user_id", ["1", "2", "3"])
@pytest.mark.parametrize("params", [{}, {"limit": "1"}, {"limit": "7"}, {"limit": "44"}, {"limit": "100"}])
def test_a_users_rows_page_by_page_are_the_references(models, entity, index_key, user_id, params):
    fake, views = models
    read = getattr(views, f"user_{entity}")

    def reference(p):
        return reference_rows(fake, entity, index_key(int(user_id)), user_id, p)

    pages, expected = every_page(lambda p: read(user_id, p), params), every_page(reference, params)
    assert pages == expected
    texts = [getattr(views, f"user_{entity}_json")(user_id, {**params, **({"cursor": c} if c else {})})
             for c in [None] + [p["next_cursor"] for p in pages[:-1]]]
    assert texts == [json.dumps(p, separators=(",", ":")) for p in expected]
    assert sum(len(p["items"]) for p in pages) == sum(
        len(p["items"]) for p in every_page(reference, {"limit": "100"}))


def test_a_row_whose_hash_is_gone_is_left_out_and_the_page_still_moves_on(models):
    fake, views = models
    ids = [item["id"] for page in every_page(lambda p: views.user_bookings("1", p), {"limit": "5"})
           for item in page["items"]]
    assert ids == [i for i in range(45, 0, -1) if i != GONE_BOOKING]


def test_an_unknown_user_is_not_found(models):
    _, views = models
    for read in (views.user_bookings, views.user_payments):
        with pytest.raises(NotFound, match="no user with id 99"):
            read("99", {})


@pytest.mark.parametrize("listing_id", ["1", "2", "3", "4", "5"])
@pytest.mark.parametrize("span", [("2031-01-01", "2031-01-02"), ("2031-01-01", "2031-07-01"),
                                  ("2031-02-10", "2031-03-01"), ("2030-06-01", "2031-06-02")])
def test_a_listings_nights_are_the_reference(models, listing_id, span):
    fake, views = models
    params = {"from": span[0], "to": span[1]}
    answer, expected = views.listing_availability(listing_id, params), reference_nights(fake, listing_id, params)
    assert answer == expected
    assert views.listing_availability_json(listing_id, params) == json.dumps(expected, separators=(",", ":"))
    if span[1] == "2031-07-01":
        assert {n["status"] for n in answer["nights"]} == {"free", "booked"}


def test_an_unknown_listing_is_not_found(models):
    _, views = models
    with pytest.raises(NotFound, match="no listing with id 99"):
        views.listing_availability("99", {"from": "2031-01-01", "to": "2031-01-08"})
