"""The read API's query parameters as plain values: validation (ValidationError names each bad one) and cursors.

Views (adapters/redis_views.py) take these parsed values; nothing here knows about Redis.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from booking_core.domain.model import ValidationError, parse_iso_date

DEFAULT_LIMIT, MAX_LIMIT = 20, 100
MAX_NIGHTS = 366  # longest range one availability or search request may ask about

Params = Mapping[str, str]


def _int_param(params: Params, name: str, errors: dict[str, str], minimum: int, maximum: int | None = None,
               default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value: int | None = int(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        errors[name] = (f"must be an integer from {minimum} to {maximum}" if maximum is not None
                        else f"must be an integer of at least {minimum}")
        return None
    return value


def _date_param(params: Params, name: str, errors: dict[str, str]) -> dt.date | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_iso_date(raw)
    except ValueError:
        errors[name] = "must be a date as YYYY-MM-DD"
        return None


def _date_range(params: Params, start_name: str, end_name: str, errors: dict[str, str],
                required: bool) -> tuple[dt.date, dt.date] | None:
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


def positive_id(raw: object, name: str) -> int:
    """A path id: a positive integer, else ValidationError naming the parameter."""
    text = str(raw)
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ValidationError({name: "must be a positive integer"})
    return int(text)


def encode_cursor(*parts: int) -> str:
    return base64.urlsafe_b64encode(":".join(str(p) for p in parts).encode()).decode().rstrip("=")


def _decode_cursor(params: Params, errors: dict[str, str], size: int) -> tuple[int, ...] | None:
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
    after: tuple[int, ...] | None = None  # (price, id) of the last listing of the previous page


def parse_listing_search(params: Params | None) -> ListingSearch:
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
        limit=_int_param(params, "limit", errors, 1, MAX_LIMIT, DEFAULT_LIMIT) or DEFAULT_LIMIT,
        after=_decode_cursor(params, errors, 2),
    )
    if errors:
        raise ValidationError(errors)
    return search


def parse_night_range(params: Params | None) -> tuple[dt.date, dt.date]:
    """`from` and `to` of an availability query: both required, at most MAX_NIGHTS apart."""
    errors: dict[str, str] = {}
    span = _date_range(params or {}, "from", "to", errors, required=True)
    if errors or span is None:
        raise ValidationError(errors)
    return span


@dataclass(frozen=True)
class Page:
    limit: int = DEFAULT_LIMIT
    before_id: int | None = None  # a newest-first list resumes below this id


def parse_page(params: Params | None) -> Page:
    """`limit` and `cursor` of a newest-first list (a user's bookings or payments)."""
    params = params or {}
    errors: dict[str, str] = {}
    limit = _int_param(params, "limit", errors, 1, MAX_LIMIT, DEFAULT_LIMIT) or DEFAULT_LIMIT
    after = _decode_cursor(params, errors, 1)
    if errors:
        raise ValidationError(errors)
    return Page(limit, after[0] if after else None)
