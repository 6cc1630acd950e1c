"""The shape of the Redis read model, as plain Python: which keys and memberships each MySQL row produces.

The replicator, reconcile and the read views share this one definition, and unit tests need no Redis.
Keys here are relative: the adapter puts `config.redis_prefix()` in front of each.

    listing:{id}               hash   the listing row
    listing:{id}:json          string the listing as the API answers it (public_json), written with the row in the
                                      same call, so a search page is joined, not re-encoded; a key of its own keeps
                                      the hash small enough for Redis's compact (listpack) encoding
    listings:by_price          zset   active listings, score = nightly_price_cents
    listings:city:{city}       zset   active listings of a city (casefolded), score = nightly_price_cents
    listings:guests:{n}        zset   active listings taking exactly n guests (n = GUEST_BUCKETS: that many or
                                      more), score = nightly_price_cents
    listings:city_guests:{n}:{city}   the same per city (the city last, so no city name can forge another key)
    listing:{id}:nights        hash   night (YYYY-MM-DD) -> id of the held/confirmed booking occupying it
    user:{id}                  hash   the user row
    user:{id}:bookings         zset   the user's booking ids, score = id
    user:{id}:payments         zset   the user's payment ids, score = id
    booking:{id}, payment:{id} hash   the rows

Listing members are zero-padded ids, so Redis orders equal prices by id (lexicographic = numeric).
"""
from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

INT, STR, BOOL, DATE, TIMESTAMP = "int", "str", "bool", "date", "timestamp"
# Bookings in these states occupy their nights (the write side's rule, repeated here for the read side).
OCCUPYING_STATUSES = ("held", "confirmed")

FIELDS: dict[str, dict[str, str]] = {
    "users": {"id": INT, "email": STR, "name": STR, "created_at": TIMESTAMP, "updated_at": TIMESTAMP},
    "listings": {"id": INT, "host_id": INT, "title": STR, "city": STR, "max_guests": INT,
                 "nightly_price_cents": INT, "currency": STR, "active": BOOL,
                 "created_at": TIMESTAMP, "updated_at": TIMESTAMP},
    "bookings": {"id": INT, "booking_key": STR, "user_id": INT, "listing_id": INT, "check_in": DATE,
                 "check_out": DATE, "guests": INT, "status": STR, "amount_cents": INT, "currency": STR,
                 "created_at": TIMESTAMP, "updated_at": TIMESTAMP},
    "payments": {"id": INT, "booking_id": INT, "booking_key": STR, "user_id": INT, "amount_cents": INT,
                 "currency": STR, "provider": STR, "provider_ref": STR, "status": STR,
                 "created_at": TIMESTAMP, "updated_at": TIMESTAMP},
}
ENTITIES = tuple(FIELDS)
KEY_NAMES = {"users": "user", "listings": "listing", "bookings": "booking", "payments": "payment"}
ENTITY_OF_KEY_NAME = {name: entity for entity, name in KEY_NAMES.items()}

HASH, ZSET, STRING = "hash", "zset", "string"
PRICE_INDEX = "listings:by_price"
# Capacity buckets: one per exact max_guests below this, and one for this many or more. A search for `guests=g`
# merges buckets g..GUEST_BUCKETS in price order; above GUEST_BUCKETS it walks the top bucket and checks each
# candidate's max_guests. Exact buckets (not "at least g" sets) keep one membership per listing per dimension.
GUEST_BUCKETS = 16
LOADED_MARKER = "replication:loaded"

# The registry of the model's own keys, kept by the replicator's apply script in the same atomic call as the
# writes, so reconcile's orphan pass walks the model's keys and never the rest of the Redis database (a SCAN
# MATCH visits every key of the database to find the prefix's). Keys `{name}:{id}[:{suffix}]` are one bit each
# in bitmaps of REGISTRY_CHUNK ids, `replication:ids:{family}:{chunk}` (family = name or name:suffix), with
# the chunks a family uses in the set `replication:chunks:{family}`: 2.5 million ids cost about 300 KB. Ids of
# more than 15 digits (past a Lua number's exact range) and the named indexes are members of plain sets.
# A bit may outlive its key (replication deletes keys without clearing bits): reconcile clears those. The
# marker says every model key is registered; until a reconcile has set it (first run on a model written
# before the registry), the orphan pass walks SCAN once and registers what it finds.
REGISTRY_CHUNK = 65536
REGISTRY_MARKER = "replication:registry"
REGISTRY_INDEXES = "replication:indexes"
REGISTRY_BIG_IDS = "replication:bigkeys"
REGISTRY_FAMILIES = ("user", "listing", "booking", "payment", "listing:nights", "listing:json", "user:bookings",
                     "user:payments")


def is_registry_key(key: str) -> bool:
    """The registry's own bookkeeping keys (no TTL: owned by replication and reconcile, like the model's)."""
    return key == REGISTRY_MARKER or key.startswith(("replication:ids:", "replication:chunks:")) or key in (
        REGISTRY_INDEXES, REGISTRY_BIG_IDS)


def registry_chunks_key(family: str) -> str:
    """The set of chunk numbers a family of id keys has bits in."""
    return f"replication:chunks:{family}"


def registry_ids_key(family: str, chunk: int) -> str:
    """The bitmap of ids chunk * REGISTRY_CHUNK .. + REGISTRY_CHUNK - 1 of a family."""
    return f"replication:ids:{family}:{chunk}"


def family_key(family: str, entity_id: int) -> str:
    """The model key of a registry family and an id: ("listing:nights", 7) -> listing:7:nights."""
    name, _, suffix = family.partition(":")
    return f"{name}:{entity_id}:{suffix}" if suffix else f"{name}:{entity_id}"

_ROW_KEY = re.compile(r"^(user|listing|booking|payment):(\d+)$")
_JSON_KEY = re.compile(r"^listing:(\d+):json$")
_INDEX_KEY = re.compile(r"^(listings:by_price|listings:city:.*|listings:guests:\d+|listings:city_guests:\d+:.*"
                        r"|listing:\d+:nights|user:\d+:(bookings|payments))$")


def row_key(entity: str, entity_id: int) -> str:
    """The hash of one row: `listing:7`."""
    return f"{KEY_NAMES[entity]}:{entity_id}"


def city_index(city: str) -> str:
    """Active listings of a city by price; the city is casefolded, so `?city=lisbon` finds Lisbon."""
    return f"listings:city:{city.strip().casefold()}"


def guest_bucket(max_guests: int) -> int:
    """The capacity bucket of a listing: its max_guests, or GUEST_BUCKETS for that many or more."""
    return max(0, min(int(max_guests), GUEST_BUCKETS))


def guests_index(bucket: int, city: str | None = None) -> str:
    """Active listings of one capacity bucket by price, of one city when given."""
    if city is None:
        return f"listings:guests:{bucket}"
    return f"listings:city_guests:{bucket}:{city.strip().casefold()}"


def search_indexes(city: str | None, guests: int | None) -> list[str]:
    """The indexes a search walks (merged in price order): one without a guests filter, else the buckets that
    can hold listings taking at least `guests`."""
    if guests is None:
        return [city_index(city) if city else PRICE_INDEX]
    return [guests_index(bucket, city) for bucket in range(min(guests, GUEST_BUCKETS), GUEST_BUCKETS + 1)]


def nights_key(listing_id: int) -> str:
    """The listing's occupied nights: night -> booking id."""
    return f"listing:{listing_id}:nights"


def json_key(listing_id: int) -> str:
    """The listing's public JSON (public_json of its hash), a string key beside the hash."""
    return f"listing:{listing_id}:json"


def user_bookings_key(user_id: int) -> str:
    """The user's booking ids, score = id."""
    return f"user:{user_id}:bookings"


def user_payments_key(user_id: int) -> str:
    """The user's payment ids, score = id."""
    return f"user:{user_id}:payments"


def listing_member(listing_id: int) -> str:
    """A listing's member in the price indexes: its id zero-padded, so equal prices sort by id."""
    return f"{int(listing_id):020d}"


def is_row_key(key: str) -> bool:
    """Row hashes: repaired whole."""
    return _ROW_KEY.match(key) is not None


def is_json_key(key: str) -> bool:
    """A listing's JSON string: repaired whole, with its listing."""
    return _JSON_KEY.match(key) is not None


def is_index_key(key: str) -> bool:
    """Sorted sets and nights hashes: repaired member by member."""
    return _INDEX_KEY.match(key) is not None


def index_type(key: str) -> str:
    """The Redis type of an index key: nights are hashes, the rest sorted sets."""
    return HASH if key.endswith(":nights") else ZSET


def is_model_key(key: str) -> bool:
    """Keys the replicator owns. Anything else under the prefix (the decision store's req:/wake:) is not ours."""
    return is_row_key(key) or is_index_key(key) or is_json_key(key)


# -- rows <-> hashes ---------------------------------------------------------------------------------------

def _encode_value(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def encode_row(entity: str, row: dict) -> dict[str, str]:
    """A MySQL row as the strings of its Redis hash; NULL columns are left out."""
    return {name: _encode_value(row[name]) for name in FIELDS[entity] if row.get(name) is not None}


def decode_row(entity: str, stored: dict[str, str]) -> dict[str, int | bool | str | None]:
    """A Redis hash back to typed values (ints as ints, active as a bool; dates stay ISO strings)."""
    decoded: dict[str, int | bool | str | None] = {}
    for name, kind in FIELDS[entity].items():
        raw = stored.get(name)
        if raw is None:
            decoded[name] = None
        elif kind == INT:
            decoded[name] = int(raw)
        elif kind == BOOL:
            decoded[name] = raw == "1"
        else:
            decoded[name] = raw
    return decoded


# A listing's public JSON (decode_row, then JSON), kept in json_key(id) and written with the hash it is made of.
# The search script returns these as they are, so a page of 20 costs the API one join rather than decoding and
# encoding 20 rows; a listing without it (written before it existed, or damaged) is written out by the script.
# Not a field of the hash: 220 bytes there would push every listing hash out of Redis's listpack encoding
# (hash-max-listpack-value 64) and quadruple its memory (decision log, issue 18).
JSON_FIELD = "_json"  # where it was kept before: a hash still carrying it is rewritten without it


def public_json(entity: str, stored: dict[str, str]) -> str:
    """A row's hash as the API's JSON for it: what Chalice's json.dumps makes of decode_row()."""
    return json.dumps(decode_row(entity, stored), separators=(",", ":"))


def stored_json(entity: str, encoded: dict[str, str] | None) -> str | None:
    """The JSON kept beside a listing's hash (json_key); None for other entities, a deleted row or a damaged hash
    (not a MySQL row: no JSON, the search script writes the item itself)."""
    if encoded is None or entity != "listings":
        return None
    try:
        return public_json(entity, encoded)
    except ValueError:
        return None


# The columns memberships() reads: reconcile's orphan check of index members fetches only these.
MEMBERSHIP_COLUMNS = {"listings": ("id", "city", "max_guests", "nightly_price_cents", "active"),
                      "bookings": ("id", "user_id"), "payments": ("id", "user_id"), "users": ("id",)}


def memberships(entity: str, stored: dict[str, str] | None) -> dict[tuple[str, str], float]:
    """Every sorted-set membership a row's hash implies: (zset key, member) -> score.

    A damaged hash (a field missing or not a number) implies none, rather than failing the batch forever;
    reconcile removes whatever members it left behind.
    """
    try:
        return _memberships(entity, stored)
    except (KeyError, ValueError):
        return {}


def _memberships(entity: str, stored: dict[str, str] | None) -> dict[tuple[str, str], float]:
    if not stored:
        return {}
    if entity == "listings":
        if stored.get("active") != "1":
            return {}  # an inactive listing is in no search index
        member, price = listing_member(int(stored["id"])), float(stored["nightly_price_cents"])
        bucket = guest_bucket(int(stored["max_guests"]))
        return {(PRICE_INDEX, member): price, (city_index(stored["city"]), member): price,
                (guests_index(bucket), member): price, (guests_index(bucket, stored["city"]), member): price}
    if entity == "bookings":
        return {(user_bookings_key(int(stored["user_id"])), stored["id"]): float(stored["id"])}
    if entity == "payments":
        return {(user_payments_key(int(stored["user_id"])), stored["id"]): float(stored["id"])}
    return {}


def booking_span(stored: dict[str, str] | None) -> tuple[int, dt.date, dt.date] | None:
    """(listing_id, check_in, check_out) of a booking hash, whatever its status: the nights it may touch."""
    try:
        return (int(stored["listing_id"]), dt.date.fromisoformat(stored["check_in"]),
                dt.date.fromisoformat(stored["check_out"])) if stored else None
    except (KeyError, ValueError):
        return None  # a damaged hash: its nights are repaired by reconcile


def nights_between(start: dt.date, end: dt.date) -> list[dt.date]:
    """The nights of a stay from start to end: start included, end (the check-out day) not."""
    # By ordinal: half the CPU of adding a timedelta per night (an availability read asks for 59 or more).
    return [dt.date.fromordinal(n) for n in range(start.toordinal(), end.toordinal())]


def occupied_nights(bookings: Iterable[tuple[int, dt.date, dt.date]], start: dt.date | None = None,
                    end: dt.date | None = None) -> dict[str, str]:
    """night -> booking id for occupying bookings [(id, check_in, check_out)], optionally only within [start, end).

    Where bookings overlap (possible only through hand-made rows) the lowest id wins, so the result does not
    depend on the order rows were applied in.
    """
    nights: dict[str, int] = {}
    for booking_id, check_in, check_out in bookings:
        lo = max(check_in, start) if start else check_in
        hi = min(check_out, end) if end else check_out
        for night in nights_between(lo, hi):
            key = night.isoformat()
            if key not in nights or booking_id < nights[key]:
                nights[key] = booking_id
    return {night: str(booking_id) for night, booking_id in nights.items()}


# -- plans: what to write, as data ------------------------------------------------------------------------

@dataclass
class Plan:
    """Redis writes as data, so the services can be tested without Redis and applied in one MULTI/EXEC."""

    ops: list[tuple] = field(default_factory=list)

    def replace_hash(self, key: str, mapping: dict[str, str]) -> None:
        self.ops.append(("delete", key))
        if mapping:
            self.ops.append(("hset", key, dict(mapping)))

    def delete(self, key: str) -> None:
        self.ops.append(("delete", key))

    def zadd(self, key: str, member: str, score: float) -> None:
        self.ops.append(("zadd", key, member, score))

    def zrem(self, key: str, member: str) -> None:
        self.ops.append(("zrem", key, member))

    def hset(self, key: str, mapping: dict[str, str]) -> None:
        if mapping:
            self.ops.append(("hset", key, dict(mapping)))

    def set(self, key: str, value: str) -> None:
        self.ops.append(("set", key, value))

    def hdel(self, key: str, fields: list[str]) -> None:
        if fields:
            self.ops.append(("hdel", key, list(fields)))

    def __len__(self) -> int:
        return len(self.ops)


def plan_row(plan: Plan, entity: str, entity_id: int, old: dict[str, str] | None,
            new: dict[str, str] | None) -> None:
    """Write a row's whole Redis form: its hash, plus memberships moved from what `old` implied to `new`'s."""
    key = row_key(entity, entity_id)
    if new is None:
        plan.delete(key)
    elif old is not None and old.keys() - new.keys():
        plan.replace_hash(key, new)  # a field went NULL: only a rewrite drops it
    elif new != old:
        plan.hset(key, new)  # HSET overwrites every field the row has; no DELETE needed (half the commands)
    if entity == "listings":
        text = stored_json(entity, new)
        if text is None:
            plan.delete(json_key(entity_id))
        else:
            plan.set(json_key(entity_id), text)  # also when unchanged: heals a JSON key lost by other means
    wanted = memberships(entity, new)
    for zset_key, member in memberships(entity, old).keys() - wanted.keys():
        plan.zrem(zset_key, member)
    for (zset_key, member), score in sorted(wanted.items()):
        plan.zadd(zset_key, member, score)  # also when unchanged: heals a member lost by other means


def plan_nights(plan: Plan, listing_id: int, start: dt.date, end: dt.date,
                occupying: Iterable[tuple[int, dt.date, dt.date]]) -> None:
    """Set the listing's nights in [start, end) to exactly what the occupying bookings say (MySQL is the truth)."""
    plan_listing_nights(plan, listing_id, [(start, end)], occupying)


def plan_listing_nights(plan: Plan, listing_id: int, spans: Iterable[tuple[dt.date, dt.date]],
                        occupying: Iterable[tuple[int, dt.date, dt.date]]) -> None:
    """plan_nights over several disjoint spans of one listing, as one HSET and one HDEL (a batch touching four
    stays of a listing writes its nights hash twice, not eight times); the bookings' nights are laid out once."""
    spans = list(spans)
    if not spans:
        return
    occupied = occupied_nights(occupying, min(s for s, _ in spans), max(e for _, e in spans))
    wanted: dict[str, str] = {}
    freed: list[str] = []
    for start, end in spans:
        for night in nights_between(start, end):
            iso = night.isoformat()
            booking_id = occupied.get(iso)
            if booking_id is None:
                freed.append(iso)
            else:
                wanted[iso] = booking_id
    plan.hset(nights_key(listing_id), wanted)
    plan.hdel(nights_key(listing_id), freed)


# -- the whole model, for reconcile ------------------------------------------------------------------------

def full_model(rows_by_entity: dict[str, list[dict]], occupying_bookings: Iterable[tuple[int, int, dt.date, dt.date]],
               encoded: bool = False) -> dict[str, tuple[str, Any]]:
    """Every key the read model should hold for these MySQL rows (typed, or with `encoded` already as encode_row
    writes them): key -> (type, hash fields | zset scores | a listing's JSON string)."""
    model: dict[str, tuple[str, Any]] = {}
    for entity, rows in rows_by_entity.items():
        for row in rows:
            stored = row if encoded else encode_row(entity, row)
            model[row_key(entity, int(row["id"]))] = (HASH, stored)
            text = stored_json(entity, stored)
            if text is not None:
                model[json_key(int(row["id"]))] = (STRING, text)
            for (zset_key, member), score in memberships(entity, stored).items():
                model.setdefault(zset_key, (ZSET, {}))[1][member] = score
    by_listing: dict[int, list] = {}
    for listing_id, booking_id, check_in, check_out in occupying_bookings:
        by_listing.setdefault(listing_id, []).append((booking_id, check_in, check_out))
    for listing_id, bookings in by_listing.items():
        model[nights_key(listing_id)] = (HASH, occupied_nights(bookings))
    return model


@dataclass
class RepairReport:
    """What reconcile found and fixed. Rows are whole hashes; members are sorted-set members or nights."""

    rows_missing: int = 0
    rows_stale: int = 0
    rows_orphan: int = 0
    members_missing: int = 0
    members_stale: int = 0
    members_orphan: int = 0

    def to_dict(self) -> dict:
        return {
            "rows": {"missing": self.rows_missing, "stale": self.rows_stale, "orphan": self.rows_orphan},
            "members": {"missing": self.members_missing, "stale": self.members_stale, "orphan": self.members_orphan},
            "repaired": self.total,
        }

    def add(self, other: RepairReport) -> None:
        """Count another chunk's findings in this report."""
        for name in ("rows_missing", "rows_stale", "rows_orphan", "members_missing", "members_stale",
                     "members_orphan"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def total(self) -> int:
        return (self.rows_missing + self.rows_stale + self.rows_orphan + self.members_missing
                + self.members_stale + self.members_orphan)


def plan_repair(wanted: dict[str, tuple[str, Any]], actual: dict[str, tuple[str, Any]]) -> tuple[Plan, RepairReport]:
    """Writes that turn `actual` (the model keys found in Redis) into `wanted`, and the count of each kind of drift.
    A listing's JSON key missing or different counts its listing as stale (once, with its hash)."""
    plan, report = Plan(), RepairReport()
    for key in sorted(wanted.keys() | actual.keys()):
        want_type, want = wanted.get(key, (None, None))
        have_type, have = actual.get(key, (None, None))
        if is_json_key(key):
            if want is None:
                report.rows_orphan += 1
                plan.delete(key)
            elif have_type != want_type or have != want:
                row = key.removesuffix(":json")
                if wanted.get(row) == actual.get(row):  # else the hash's own drift counted it already
                    report.rows_stale += 1
                plan.set(key, want)
            continue
        if is_row_key(key):
            if want is None:
                report.rows_orphan += 1
                plan.delete(key)
            elif have is None:
                report.rows_missing += 1
                plan.replace_hash(key, want)
            elif have_type != want_type or have != want:
                report.rows_stale += 1
                plan.replace_hash(key, want)
            continue
        kind = index_type(key)
        want, have = want or {}, have or {}
        if have_type is not None and have_type != kind:
            plan.delete(key)  # a key of the wrong type: rebuild it from scratch
            report.members_stale += max(1, len(have))
            have = {}
        missing = want.keys() - have.keys()
        orphan = have.keys() - want.keys()
        stale = {m for m in want.keys() & have.keys() if _differs(have[m], want[m])}
        report.members_missing += len(missing)
        report.members_orphan += len(orphan)
        report.members_stale += len(stale)
        if kind == ZSET:
            for member in sorted(orphan):
                plan.zrem(key, member)
            for member in sorted(missing | stale):
                plan.zadd(key, member, want[member])
        else:
            plan.hdel(key, sorted(orphan))
            plan.hset(key, {m: want[m] for m in sorted(missing | stale)})
    return plan, report


def _differs(have: object, want: object) -> bool:
    if isinstance(want, float | int) and not isinstance(want, bool):
        try:
            return float(have) != float(want)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return True
    return have != want
