"""The read side (CQRS views): queries answered from the Redis read model only, never from MySQL.

Each view takes the request's plain values (path ids and query parameters as strings), validates them with
domain/queries.py (ValidationError names each bad field) and returns JSON-ready dicts; an unknown id raises
NotFound. Lists answer {"items": [...], "next_cursor": str | None}. The search, availability and a user's lists
are also answered as the JSON text the API sends (`*_json`: json.dumps of the dict, byte for byte, without the dict).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
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
    BOOL,
    FIELDS,
    GUEST_BUCKETS,
    INT,
    KEY_NAMES,
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
_VIEW_SCRIPTS: dict[tuple[int, str], Any] = {}

# A user's newest rows, one page, in one round trip (was EXISTS, ZREVRANGEBYSCORE and a pipeline of one HGETALL
# per row: redis-py packs and parses each command in Python). Atomic, as a bonus: the page is one moment's.
# ARGV: the user's row key, the user's list (zset), the rows' key prefix (`booking:`; + id = the row key), highest
# score ("+inf" or "(id"), page size; all keys as read_model.py names them. Returns nil for an unknown user, else
# {ids (page size + 1 at most), row, ...}: a row is the entity's FIELDS in their order (HMGET, nil where NULL), or
# empty where the row is gone. Single instance, as the search script: keys derived inside the script.
_USER_ROWS_SCRIPT = """
local FIELDS = {%s}
if redis.call('EXISTS', ARGV[1]) == 0 then return false end
local limit = tonumber(ARGV[5])
local ids = redis.call('ZREVRANGEBYSCORE', ARGV[2], ARGV[4], '-inf', 'LIMIT', 0, limit + 1)
local out = {ids}
for i = 1, math.min(#ids, limit) do
  local key = ARGV[3] .. ids[i]
  if redis.call('EXISTS', key) == 1 then
    out[#out + 1] = redis.call('HMGET', key, unpack(FIELDS))
  else
    out[#out + 1] = {}
  end
end
return out
"""


def _user_rows_script(entity: str) -> str:
    names = list(FIELDS[entity])
    assert all(re.fullmatch(r"[a-z_]+", name) for name in names)  # safe inside a Lua literal as they are
    return _USER_ROWS_SCRIPT % ", ".join(f"'{name}'" for name in names)


USER_ROWS_SCRIPTS = {entity: _user_rows_script(entity) for entity in ("bookings", "payments")}


def _json_writers(entity: str) -> list[tuple[str, Callable[[str], str]]]:
    """Per field of the entity, in FIELDS order: its `"name":` label and what turns its stored string into the
    JSON value json.dumps(decode_row(...)) writes (an int as a number, a bool as true/false, the rest as strings,
    escaped by the same C function json.dumps uses)."""
    def as_int(raw: str) -> str:
        return str(int(raw))

    def as_bool(raw: str) -> str:
        return "true" if raw == "1" else "false"

    return [(encode_basestring_ascii(name) + ":", as_int if kind == INT else as_bool if kind == BOOL
             else encode_basestring_ascii) for name, kind in FIELDS[entity].items()]


_JSON_WRITERS = {entity: _json_writers(entity) for entity in ("bookings", "payments")}


def _row_json(writers: list[tuple[str, Callable[[str], str]]], values: list[str | None]) -> str:
    """A row (its FIELDS' stored strings, None where NULL) as the JSON text json.dumps(decode_row(...),
    separators=(",", ":")) makes, byte for byte, without building the dict (a page of 17 bookings: about 2.5x less
    CPU than decoding and encoding them)."""
    return "{" + ",".join([label + ("null" if raw is None else write(raw))
                           for (label, write), raw in zip(writers, values, strict=True)]) + "}"


# A listing's nights in one round trip (was EXISTS, then HMGET). ARGV: the listing's row key, its nights key, the
# nights asked (at least one). Returns nil for an unknown listing, else HMGET's answer.
NIGHTS_SCRIPT = """
if redis.call('EXISTS', ARGV[1]) == 0 then return false end
return redis.call('HMGET', ARGV[2], unpack(ARGV, 3))
"""


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
        page: dict = json.loads(self.search_listings_json(params))
        return page

    def search_listings_json(self, params: Params | None) -> str:
        """search_listings() as the JSON text of its answer, which the API sends as it is: the script writes
        each listing's JSON itself, so a page of 20 costs this process no per-item decoding or encoding."""
        search = parse_listing_search(params)
        p = self.prefix
        guests_checked = search.guests if search.guests is not None and search.guests > GUEST_BUCKETS else 0
        nights = [n.isoformat() for n in nights_between(*search.stay)] if search.stay else []
        after_price, after_member = ((str(search.after[0]), listing_member(search.after[1])) if search.after
                                     else ("", ""))
        cursor_price, cursor_member, items = self._search_script()(
            keys=[p + key for key in search_indexes(search.city, search.guests)],
            args=[p, search.max_price_cents if search.max_price_cents is not None else "+inf", after_price,
                  after_member, search.limit, WORK_BUDGET, guests_checked, *nights])
        next_cursor = json.dumps(encode_cursor(int(cursor_price), int(cursor_member))) if cursor_price else "null"
        return f'{{"items":{items},"next_cursor":{next_cursor}}}'

    def _search_script(self) -> Any:
        # Registered once per client: redis-py sends EVALSHA and falls back to EVAL after a Redis restart.
        script = _SCRIPTS.get(id(self.redis))
        if script is None:
            script = _SCRIPTS[id(self.redis)] = self.redis.register_script(SEARCH_SCRIPT)
        return script

    def _script(self, source: str) -> Any:
        """One of the scripts above, registered once per client as the search script is."""
        redis = self.redis
        script = _VIEW_SCRIPTS.get((id(redis), source))
        if script is None:
            script = _VIEW_SCRIPTS[(id(redis), source)] = redis.register_script(source)
        return script

    def listing_availability(self, listing_id: str, params: Params | None) -> dict:
        """GET /v1/listings/{listing_id}/availability?from=&to=: each night of [from, to) free or booked."""
        answer: dict = json.loads(self.listing_availability_json(listing_id, params))
        return answer

    def listing_availability_json(self, listing_id: str, params: Params | None) -> str:
        """listing_availability() as the JSON text of its answer, which the API sends as it is (json.dumps of the
        dict with the API's separators, byte for byte; its strings are ISO dates and two words, nothing to
        escape): 59 nights cost ~40 us of dicts and encoding, ~6 us of text."""
        found_id = positive_id(listing_id, "listing_id")
        start, end = parse_night_range(params)
        nights = [n.isoformat() for n in nights_between(start, end)]  # at least one: parse_night_range's rule
        p = self.prefix
        booked = self._script(NIGHTS_SCRIPT)(args=[p + row_key("listings", found_id), p + nights_key(found_id),
                                                   *nights])
        if booked is None:
            raise NotFound(f"no listing with id {found_id}")
        items = ",".join([f'{{"date":"{night}","status":"{"booked" if b else "free"}"}}'
                          for night, b in zip(nights, booked, strict=True)])
        return f'{{"listing_id":{found_id},"from":"{start.isoformat()}","to":"{end.isoformat()}","nights":[{items}]}}'

    def _user_rows_json(self, user_id: str, params: Params | None, entity: str,
                        index_key: Callable[[int], str]) -> str:
        found_id = positive_id(user_id, "user_id")
        page = parse_page(params)
        high = f"({page.before_id}" if page.before_id is not None else "+inf"
        p = self.prefix
        reply = self._script(USER_ROWS_SCRIPTS[entity])(
            args=[p + row_key("users", found_id), p + index_key(found_id), f"{p}{KEY_NAMES[entity]}:", high,
                  page.limit])
        if reply is None:
            raise NotFound(f"no user with id {found_id}")
        ids, *rows = reply
        writers = _JSON_WRITERS[entity]
        items = ",".join([_row_json(writers, values) for values in rows if values])
        cursor = json.dumps(encode_cursor(int(ids[page.limit - 1]))) if len(ids) > page.limit else "null"
        return f'{{"items":[{items}],"next_cursor":{cursor}}}'

    def user_bookings(self, user_id: str, params: Params | None) -> dict:
        """GET /v1/users/{user_id}/bookings: newest first (by id), paged with limit and cursor."""
        answer: dict = json.loads(self.user_bookings_json(user_id, params))
        return answer

    def user_bookings_json(self, user_id: str, params: Params | None) -> str:
        """user_bookings() as the JSON text of its answer, which the API sends as it is (json.dumps of
        user_bookings() with the API's separators, byte for byte): no dict per row is built or encoded."""
        return self._user_rows_json(user_id, params, "bookings", user_bookings_key)

    def user_payments(self, user_id: str, params: Params | None) -> dict:
        """GET /v1/users/{user_id}/payments: newest first (by id), paged with limit and cursor."""
        answer: dict = json.loads(self.user_payments_json(user_id, params))
        return answer

    def user_payments_json(self, user_id: str, params: Params | None) -> str:
        """user_payments() as the JSON text of its answer (as user_bookings_json)."""
        return self._user_rows_json(user_id, params, "payments", user_payments_key)
