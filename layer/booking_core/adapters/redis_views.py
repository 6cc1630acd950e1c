"""The read side (CQRS views): queries answered from the Redis read model only, never from MySQL.

Each view takes the request's plain values (path ids and query parameters as strings), validates them with
domain/queries.py (ValidationError names each bad field) and returns JSON-ready dicts; an unknown id raises
NotFound. Lists answer {"items": [...], "next_cursor": str | None}.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from booking_core.adapters.redis_client import PrefixedRedis
from booking_core.adapters.redis_search import SCRIPT as SEARCH_SCRIPT
from booking_core.adapters.redis_search import WORK_BUDGET
from booking_core.domain.queries import (
    Params,
    encode_cursor,
    parse_listing_search,
    parse_night_range,
    parse_page,
    positive_id,
)
from booking_core.domain.read_model import (
    GUEST_BUCKETS,
    decode_row,
    listing_member,
    nights_between,
    nights_key,
    row_key,
    search_indexes,
    user_bookings_key,
    user_payments_key,
)
from booking_core.ports import NotFound

_SCRIPTS: dict[int, Any] = {}


class RedisReadViews(PrefixedRedis):
    def ping(self) -> bool:
        return bool(self.redis.ping())

    def _row(self, entity: str, entity_id: int) -> dict:
        stored = self.redis.hgetall(self.prefix + row_key(entity, entity_id))
        if not stored:
            raise NotFound(f"no {entity[:-1]} with id {entity_id}")
        return decode_row(entity, stored)

    def get_listing(self, listing_id: str) -> dict:
        """GET /v1/listings/{listing_id}: the listing (also an inactive one, with active false)."""
        return self._row("listings", positive_id(listing_id, "listing_id"))

    def get_user(self, user_id: str) -> dict:
        """GET /v1/users/{user_id}."""
        return self._row("users", positive_id(user_id, "user_id"))

    def get_booking(self, booking_id: str) -> dict:
        """GET /v1/bookings/{booking_id}."""
        return self._row("bookings", positive_id(booking_id, "booking_id"))

    def search_listings(self, params: Params | None) -> dict:
        """GET /v1/listings: active listings by price then id, filtered by city, guests (at least),
        max_price_cents and, with check_in+check_out, free for every night of that stay.

        One script in Redis (adapters/redis_search.py) walks the index the city and guests filters name, within
        the price range, checking the stay's nights per candidate. Its work is capped: a page may hold fewer
        than `limit` items and still carry a cursor, where going on may find more."""
        search = parse_listing_search(params)
        p = self.prefix
        guests_checked = search.guests if search.guests is not None and search.guests > GUEST_BUCKETS else 0
        nights = [n.isoformat() for n in nights_between(*search.stay)] if search.stay else []
        after_price, after_member = ((str(search.after[0]), listing_member(search.after[1])) if search.after
                                     else ("", ""))
        reply = self._search_script()(
            keys=[p + key for key in search_indexes(search.city, search.guests)],
            args=[p, search.max_price_cents if search.max_price_cents is not None else "+inf", after_price,
                  after_member, search.limit, WORK_BUDGET, guests_checked, *nights])
        cursor_price, cursor_member, *hashes = reply
        items = [decode_row("listings", dict(zip(flat[::2], flat[1::2], strict=True))) for flat in hashes]
        next_cursor = encode_cursor(int(cursor_price), int(cursor_member)) if cursor_price else None
        return {"items": items, "next_cursor": next_cursor}

    def _search_script(self) -> Any:
        # Registered once per client: redis-py sends EVALSHA and falls back to EVAL after a Redis restart.
        script = _SCRIPTS.get(id(self.redis))
        if script is None:
            script = _SCRIPTS[id(self.redis)] = self.redis.register_script(SEARCH_SCRIPT)
        return script

    def listing_availability(self, listing_id: str, params: Params | None) -> dict:
        """GET /v1/listings/{listing_id}/availability?from=&to=: each night of [from, to) free or booked."""
        found_id = positive_id(listing_id, "listing_id")
        start, end = parse_night_range(params)
        p = self.prefix
        if not self.redis.exists(p + row_key("listings", found_id)):
            raise NotFound(f"no listing with id {found_id}")
        nights = [n.isoformat() for n in nights_between(start, end)]
        booked = self.redis.hmget(p + nights_key(found_id), nights)
        return {"listing_id": found_id, "from": start.isoformat(), "to": end.isoformat(),
                "nights": [{"date": night, "status": "booked" if b else "free"}
                           for night, b in zip(nights, booked, strict=True)]}

    def _user_rows(self, user_id: str, params: Params | None, entity: str, index_key: Callable[[int], str]) -> dict:
        found_id = positive_id(user_id, "user_id")
        page = parse_page(params)
        redis, p = self.redis, self.prefix
        if not redis.exists(p + row_key("users", found_id)):
            raise NotFound(f"no user with id {found_id}")
        high = f"({page.before_id}" if page.before_id is not None else "+inf"
        ids = [int(m) for m in redis.zrevrangebyscore(p + index_key(found_id), high, "-inf", start=0,
                                                      num=page.limit + 1)]
        pipe = redis.pipeline(transaction=False)
        for row_id in ids[:page.limit]:
            pipe.hgetall(p + row_key(entity, row_id))
        items = [decode_row(entity, stored) for stored in (pipe.execute() if ids else []) if stored]
        return {"items": items,
                "next_cursor": encode_cursor(ids[page.limit - 1]) if len(ids) > page.limit else None}

    def user_bookings(self, user_id: str, params: Params | None) -> dict:
        """GET /v1/users/{user_id}/bookings: newest first (by id), paged with limit and cursor."""
        return self._user_rows(user_id, params, "bookings", user_bookings_key)

    def user_payments(self, user_id: str, params: Params | None) -> dict:
        """GET /v1/users/{user_id}/payments: newest first (by id), paged with limit and cursor."""
        return self._user_rows(user_id, params, "payments", user_payments_key)
