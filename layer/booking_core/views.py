"""The read side (CQRS views): queries answered from the Redis read model only, never from MySQL.

Each view takes a Redis client and the request's plain values (path ids and query parameters as strings),
validates them (ValidationError names each bad field) and returns JSON-ready dicts; an unknown id raises
NotFound. Lists answer {"items": [...], "next_cursor": str | None}.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass

from booking_core import config
from booking_core.domain.model import ValidationError, parse_iso_date
from booking_core.domain.read_model import (
    PRICE_INDEX,
    city_index,
    decode_record,
    nights_between,
    nights_key,
    record_key,
    user_bookings_key,
    user_payments_key,
)

DEFAULT_LIMIT, MAX_LIMIT = 20, 100
MAX_NIGHTS = 366  # longest range one availability or search request may ask about
SCAN_CHUNK = 100  # listings fetched per round trip while filtering a search


class NotFound(LookupError):
    """No such record in the read model; the message says which."""


# -- parameters ---------------------------------------------------------------------------------------------

def _int_param(params, name: str, errors: dict, minimum: int, maximum: int | None = None,
               default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        errors[name] = (f"must be an integer from {minimum} to {maximum}" if maximum is not None
                        else f"must be an integer of at least {minimum}")
        return None
    return value


def _date_param(params, name: str, errors: dict) -> dt.date | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_iso_date(raw)
    except ValueError:
        errors[name] = "must be a date as YYYY-MM-DD"
        return None


def _date_range(params, start_name: str, end_name: str, errors: dict, required: bool):
    start, end = _date_param(params, start_name, errors), _date_param(params, end_name, errors)
    if start_name in errors or end_name in errors:
        return None
    if start is None and end is None:
        if required:
            errors[start_name] = errors[end_name] = "is required (YYYY-MM-DD)"
        return None
    if start is None or end is None:
        errors[start_name if start is None else end_name] = f"{start_name} and {end_name} go together"
        return None
    if end <= start:
        errors[end_name] = f"must be after {start_name}"
    elif (end - start).days > MAX_NIGHTS:
        errors[end_name] = f"must be at most {MAX_NIGHTS} nights after {start_name}"
    else:
        return start, end
    return None


def positive_id(raw, name: str) -> int:
    """A path id: a positive integer, else ValidationError naming the parameter."""
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = 0
    if value < 1 or not str(raw).isdigit():
        raise ValidationError({name: "must be a positive integer"})
    return value


def _encode_cursor(*parts: int) -> str:
    return base64.urlsafe_b64encode(":".join(str(p) for p in parts).encode()).decode().rstrip("=")


def _decode_cursor(params, errors: dict, size: int) -> tuple[int, ...] | None:
    raw = params.get("cursor")
    if raw is None or raw == "":
        return None
    try:
        parts = tuple(int(p) for p in base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode().split(":"))
        if len(parts) == size and all(p >= 0 for p in parts):
            return parts
    except (ValueError, UnicodeDecodeError, binascii.Error):
        pass
    errors["cursor"] = "is not a cursor this API returned"
    return None


@dataclass(frozen=True)
class ListingSearch:
    city: str | None = None
    guests: int | None = None
    max_price_cents: int | None = None
    stay: tuple[dt.date, dt.date] | None = None
    limit: int = DEFAULT_LIMIT
    after: tuple[int, int] | None = None  # (price, id) of the last listing of the previous page


def parse_listing_search(params) -> ListingSearch:
    """Query parameters of GET /v1/listings; ValidationError names every bad one."""
    params = params or {}
    errors: dict[str, str] = {}
    city = params.get("city")
    if city is not None and not (0 < len(city.strip()) <= 100):
        errors["city"] = "must be 1 to 100 characters"
    search = ListingSearch(
        city=city.strip() if city else None,
        guests=_int_param(params, "guests", errors, 1),
        max_price_cents=_int_param(params, "max_price_cents", errors, 0),
        stay=_date_range(params, "check_in", "check_out", errors, required=False),
        limit=_int_param(params, "limit", errors, 1, MAX_LIMIT, DEFAULT_LIMIT),
        after=_decode_cursor(params, errors, 2),
    )
    if errors:
        raise ValidationError(errors)
    return search


# -- views --------------------------------------------------------------------------------------------------

def _prefix(prefix: str | None) -> str:
    return config.redis_prefix() if prefix is None else prefix


def _record(redis, entity: str, entity_id: int, prefix: str | None) -> dict:
    stored = redis.hgetall(_prefix(prefix) + record_key(entity, entity_id))
    if not stored:
        raise NotFound(f"no {entity[:-1]} with id {entity_id}")
    return decode_record(entity, stored)


def get_listing(redis, listing_id, prefix: str | None = None) -> dict:
    """GET /v1/listings/{listing_id}: the listing (also an inactive one, with active false)."""
    return _record(redis, "listings", positive_id(listing_id, "listing_id"), prefix)


def get_user(redis, user_id, prefix: str | None = None) -> dict:
    """GET /v1/users/{user_id}."""
    return _record(redis, "users", positive_id(user_id, "user_id"), prefix)


def get_booking(redis, booking_id, prefix: str | None = None) -> dict:
    """GET /v1/bookings/{booking_id}."""
    return _record(redis, "bookings", positive_id(booking_id, "booking_id"), prefix)


def search_listings(redis, params, prefix: str | None = None) -> dict:
    """GET /v1/listings: active listings by price then id, filtered by city, guests (at least),
    max_price_cents and, with check_in+check_out, free for every night of that stay."""
    search = parse_listing_search(params)
    p = _prefix(prefix)
    index = p + (city_index(search.city) if search.city else PRICE_INDEX)
    low = search.after[0] if search.after else "-inf"
    high = search.max_price_cents if search.max_price_cents is not None else "+inf"
    nights = [n.isoformat() for n in nights_between(*search.stay)] if search.stay else []
    found: list[dict] = []
    offset = 0
    # Walk the price index in chunks, filtering each chunk with one pipelined round trip, until one listing
    # more than the page is found (that one proves there is a next page).
    while len(found) <= search.limit:
        chunk = redis.zrangebyscore(index, low, high, start=offset, num=SCAN_CHUNK, withscores=True)
        offset += len(chunk)
        candidates = [(int(member), int(score)) for member, score in chunk
                      if search.after is None or (int(score), int(member)) > search.after]
        pipe = redis.pipeline(transaction=False)
        for listing_id, _ in candidates:
            pipe.hgetall(p + record_key("listings", listing_id))
            if nights:
                pipe.hmget(p + nights_key(listing_id), nights)
        replies = iter(pipe.execute() if candidates else [])
        for _ in candidates:
            stored = next(replies)
            booked = next(replies) if nights else []
            if not stored or stored.get("active") != "1":
                continue  # removed or deactivated between the index read and this one
            listing = decode_record("listings", stored)
            if search.guests is not None and listing["max_guests"] < search.guests:
                continue
            if any(booked):
                continue
            found.append(listing)
        if len(chunk) < SCAN_CHUNK:
            break
    page = found[:search.limit]
    next_cursor = (_encode_cursor(page[-1]["nightly_price_cents"], page[-1]["id"])
                   if len(found) > search.limit else None)
    return {"items": page, "next_cursor": next_cursor}


def listing_availability(redis, listing_id, params, prefix: str | None = None) -> dict:
    """GET /v1/listings/{listing_id}/availability?from=&to=: each night of [from, to) free or booked."""
    listing_id = positive_id(listing_id, "listing_id")
    errors: dict[str, str] = {}
    span = _date_range(params or {}, "from", "to", errors, required=True)
    if errors:
        raise ValidationError(errors)
    p = _prefix(prefix)
    if not redis.exists(p + record_key("listings", listing_id)):
        raise NotFound(f"no listing with id {listing_id}")
    nights = [n.isoformat() for n in nights_between(*span)]
    booked = redis.hmget(p + nights_key(listing_id), nights)
    return {"listing_id": listing_id, "from": span[0].isoformat(), "to": span[1].isoformat(),
            "nights": [{"date": night, "status": "booked" if b else "free"} for night, b in zip(nights, booked,
                                                                                                strict=True)]}


def _user_records(redis, user_id, params, entity: str, index_key, prefix: str | None) -> dict:
    user_id = positive_id(user_id, "user_id")
    errors: dict[str, str] = {}
    params = params or {}
    limit = _int_param(params, "limit", errors, 1, MAX_LIMIT, DEFAULT_LIMIT)
    after = _decode_cursor(params, errors, 1)
    if errors:
        raise ValidationError(errors)
    p = _prefix(prefix)
    if not redis.exists(p + record_key("users", user_id)):
        raise NotFound(f"no user with id {user_id}")
    high = f"({after[0]}" if after else "+inf"
    ids = [int(m) for m in redis.zrevrangebyscore(p + index_key(user_id), high, "-inf", start=0, num=limit + 1)]
    pipe = redis.pipeline(transaction=False)
    for record_id in ids[:limit]:
        pipe.hgetall(p + record_key(entity, record_id))
    items = [decode_record(entity, stored) for stored in (pipe.execute() if ids else []) if stored]
    return {"items": items, "next_cursor": _encode_cursor(ids[limit - 1]) if len(ids) > limit else None}


def user_bookings(redis, user_id, params, prefix: str | None = None) -> dict:
    """GET /v1/users/{user_id}/bookings: newest first (by id), paged with limit and cursor."""
    return _user_records(redis, user_id, params, "bookings", user_bookings_key, prefix)


def user_payments(redis, user_id, params, prefix: str | None = None) -> dict:
    """GET /v1/users/{user_id}/payments: newest first (by id), paged with limit and cursor."""
    return _user_records(redis, user_id, params, "payments", user_payments_key, prefix)
