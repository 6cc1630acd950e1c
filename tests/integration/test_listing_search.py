"""Listing search on real Redis against the brute-force reference (FakeReadModel.search_listings), for every
search shape the API accepts: the indexes and the capped script must give the same listings, page after page.

The catalogue goes in through replication (FakeChangeLog → RedisReadModel and FakeReadModel), so the indexes
are the ones the replicator writes. No stack needed.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import uuid

import pytest

from booking_core import config
from booking_core.adapters import redis_views
from booking_core.adapters.redis_read_model import RedisReadModel
from booking_core.adapters.redis_views import RedisReadViews
from booking_core.domain.read_model import GUEST_BUCKETS, json_key
from booking_core.services import replication
from tests.unit.replication_fakes import FakeChangeLog, FakeReadModel

pytestmark = pytest.mark.integration

CITIES = ["Lisbon", "Porto", "Faro"]
STAY = {"check_in": "2031-03-10", "check_out": "2031-03-13"}
LONG_STAY = {"check_in": "2031-01-01", "check_out": "2031-12-31"}


def catalogue() -> FakeChangeLog:
    """150 listings: three cities, capacities 1-6 and two in Porto above GUEST_BUCKETS, many equal
    prices (so the cursor's tie-break by id matters), some inactive, a third booked over STAY."""
    db = FakeChangeLog()
    db.insert("users", id=1, email="a@example.com", name="A")
    booking_id = 0
    for i in range(1, 151):
        guests = GUEST_BUCKETS + (i % 5) if i % 25 == 0 and i % 3 == 1 else 1 + i % 6
        db.insert("listings", id=i, host_id=1, title=f"Flat {i}", city=CITIES[i % 3], max_guests=guests,
                  nightly_price_cents=1000 * (1 + i % 7), currency="EUR", active=int(i % 17 != 0))
        if i % 3 == 1:
            booking_id += 1
            start = dt.date(2031, 3, 8) + dt.timedelta(days=i % 4)
            db.insert("bookings", id=booking_id, booking_key=f"k{booking_id}", user_id=1, listing_id=i,
                      check_in=start, check_out=start + dt.timedelta(days=3), guests=1,
                      status="confirmed" if i % 2 else "released", amount_cents=1, currency="EUR")
    return db


@pytest.fixture(scope="module")
def models(redis_client):
    prefix = f"{config.redis_prefix()}search{uuid.uuid4().hex[:8]}:"
    db, fake, real = catalogue(), FakeReadModel(), RedisReadModel(redis_client, prefix)
    replay = list(db.log)
    for read_model in (fake, real):
        db.log = list(replay)
        replication.drain(db, read_model)
    yield fake, RedisReadViews(redis_client, prefix)
    # This model has no replicator to own it: its keys go with the module (test_redis_key_lifetimes finds strays).
    for key in redis_client.scan_iter(match=prefix + "*", count=1000):
        redis_client.delete(key)


def every_page(search, params: dict) -> tuple[list[int], int]:
    """Follow the cursor to the end: every id in order, and how many pages it took."""
    seen, pages, cursor = [], 0, None
    while True:
        page = search({**params, **({"cursor": cursor} if cursor else {})})
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        assert pages < 1000, "the cursor does not move on"
        if cursor is None:
            return seen, pages


SHAPES = [
    {k: v for k, v in dict(city=city, guests=guests, max_price_cents=price, **(stay or {})).items() if v is not None}
    for city, guests, price, stay in itertools.product(
        [None, "Lisbon", " porto ", "Nowhere"], [None, "1", "4", "7", str(GUEST_BUCKETS), str(GUEST_BUCKETS + 2)],
        [None, "0", "3000", "7000"], [None, STAY, LONG_STAY])
]


@pytest.mark.parametrize("budget", [redis_views.WORK_BUDGET, 6])
def test_every_search_shape_finds_what_the_reference_finds_page_after_page(models, monkeypatch, budget):
    fake, real = models
    monkeypatch.setattr(redis_views, "WORK_BUDGET", budget)  # 6: every page stops at the cap and goes on
    for shape in SHAPES:
        for limit in ("7", "100") if budget > 6 else ("7",):
            params = {**shape, "limit": limit}
            want, _ = every_page(fake.search_listings, params)
            got, _ = every_page(real.search_listings, params)
            assert got == want, params


def test_a_page_that_is_not_capped_is_the_reference_page_with_the_same_cursor(models):
    fake, real = models
    for shape in SHAPES:
        if shape.get("check_in") == LONG_STAY["check_in"]:
            continue  # a year's nights per candidate: the cap stops these pages early, by design
        params = {**shape, "limit": "5"}
        assert real.search_listings(params) == fake.search_listings(params), params


def test_filters_the_indexes_answer_end_at_once_even_with_a_tiny_budget(models, monkeypatch):
    """Only two Porto listings take more than 6 guests, none costs 0, no city is called Nowhere: an empty page
    without a cursor, whatever the cap, because the indexes hold nothing to walk."""
    _, real = models
    monkeypatch.setattr(redis_views, "WORK_BUDGET", 1)
    for params in ({"city": "Lisbon", "guests": "7"}, {"city": "faro", "guests": "15", **STAY},
                   {"max_price_cents": "0"}, {"city": "Nowhere"}, {"guests": "7", "max_price_cents": "999"}):
        assert real.search_listings(params) == {"items": [], "next_cursor": None}, params


def test_a_capped_page_carries_a_cursor_and_pages_never_repeat_a_listing(models, monkeypatch):
    fake, real = models
    monkeypatch.setattr(redis_views, "WORK_BUDGET", 2 * 3)  # two candidates per request with a 3-night stay
    first = real.search_listings({**STAY, "limit": "20"})
    assert len(first["items"]) <= 2 and first["next_cursor"] is not None
    got, pages = every_page(real.search_listings, {**STAY, "limit": "20"})
    assert len(got) == len(set(got)) and got == every_page(fake.search_listings, {**STAY, "limit": "100"})[0]
    assert pages > 20


def test_a_page_is_each_listings_api_json_whether_its_json_key_holds_it_or_the_script_writes_it(redis_client):
    """The script answers each listing's stored JSON (the replicator's listing:{id}:json), or for a listing without
    it writes the item itself: both must be the JSON of the hash beside it, for any title (quotes, backslash, slash, control
    characters, non-ASCII) and a missing field; with the stored JSON the page is byte for byte what json.dumps
    made of the reference page before."""
    prefix = f"{config.redis_prefix()}searchjson{uuid.uuid4().hex[:8]}:"
    db, fake, real = FakeChangeLog(), FakeReadModel(), RedisReadModel(redis_client, prefix)
    titles = ['Loft "Sol"', "back\\slash / slash", "tab\tand\x01control", "Łódź ☀ 東京", "", "x" * 300]
    for i, title in enumerate(titles, start=1):
        db.insert("listings", id=i, host_id=10 ** 12 + i, title=title, city="Lisbon", max_guests=2,
                  nightly_price_cents=1000 + i, currency="EUR", active=1)
    replay = list(db.log)
    for read_model in (fake, real):
        db.log = list(replay)
        replication.drain(db, read_model)
    views = RedisReadViews(redis_client, prefix)
    try:
        reference = fake.search_listings({"city": "lisbon"})
        assert len(reference["items"]) == len(titles)
        assert views.search_listings_json({"city": "lisbon"}) == json.dumps(reference, separators=(",", ":"))
        for i in range(1, len(titles) + 1):
            redis_client.delete(f"{prefix}{json_key(i)}")
        redis_client.hdel(f"{prefix}listing:2", "currency")
        written = views.search_listings({"city": "lisbon"})
        assert written["items"] == [views.get_listing(str(i)) for i in range(1, len(titles) + 1)]
        assert written["items"][1]["currency"] is None
        assert {k: v for k, v in written.items() if k != "items"} == {"next_cursor": None}
    finally:
        for key in redis_client.scan_iter(match=prefix + "*", count=1000):
            redis_client.delete(key)
