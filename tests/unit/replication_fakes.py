"""In-memory stand-ins for the replication adapters (MySqlChangeLog, RedisReadModel), for unit tests."""
from __future__ import annotations

import copy
import datetime as dt
from contextlib import contextmanager

from booking_core.domain.queries import encode_cursor, parse_listing_search
from booking_core.domain.read_model import (
    FIELDS,
    HASH,
    LOADED_MARKER,
    OCCUPYING_STATUSES,
    STRING,
    ZSET,
    decode_row,
    encode_row,
    is_model_key,
    is_row_key,
    nights_between,
    nights_key,
    row_key,
)
from booking_core.ports import Change

TS = dt.datetime(2026, 11, 25, 9, 0, 0)


class FakeChangeLog:
    """Tables as dicts; every write through `insert/update/delete` logs a change, like the triggers do."""

    def __init__(self):
        self.tables: dict[str, dict[int, dict]] = {entity: {} for entity in FIELDS}
        self.log: list[Change] = []
        self.locked_by_other = False
        self._next_change = 1

    # -- writes, as the application or a SQL shell would make them
    def insert(self, entity: str, **row) -> dict:
        full = {name: None for name in FIELDS[entity]} | {"created_at": TS, "updated_at": TS} | row
        self.tables[entity][row["id"]] = full
        self._record(entity, row["id"])
        return full

    def update(self, entity: str, entity_id: int, **changes) -> None:
        self.tables[entity][entity_id].update(changes)
        self._record(entity, entity_id)

    def delete(self, entity: str, entity_id: int) -> None:
        del self.tables[entity][entity_id]
        self._record(entity, entity_id)

    def _record(self, entity, entity_id):
        self.log.append(Change(self._next_change, entity, entity_id))
        self._next_change += 1

    # -- the adapter's interface
    @contextmanager
    def exclusive(self, wait_s: float = 0):
        yield not self.locked_by_other

    def has_pending(self) -> bool:
        return bool(self.log)

    def pending(self, limit, excluding=()):
        return [c for c in self.log if c.id not in set(excluding)][:limit]

    def acknowledge(self, changes):
        gone = {c.id for c in changes}
        self.log = [c for c in self.log if c.id not in gone]

    def rows(self, entity, ids, columns=None):
        return {i: dict(self.tables[entity][i]) for i in ids if i in self.tables[entity]}

    def encoded_rows(self, entity, ids, columns=None):
        return {i: encode_row(entity, row) for i, row in self.rows(entity, ids).items()}

    def occupying_bookings(self, listing_ids, start, end):
        return {listing_id: [(b["id"], b["check_in"], b["check_out"]) for b in self.tables["bookings"].values()
                             if b["listing_id"] == listing_id and b["status"] in OCCUPYING_STATUSES
                             and b["check_in"] < end and b["check_out"] > start]
                for listing_id in set(listing_ids)}

    @contextmanager
    def snapshot(self):
        yield self

    def existing_ids(self, entity, ids):
        return {i for i in ids if i in self.tables[entity]}

    def rows_after(self, entity, after_id, limit):
        return [encode_row(entity, r) for i, r in sorted(self.tables[entity].items()) if i > after_id][:limit]


class FakeReadModel:
    """Redis as a dict of key -> (type, contents); empty hashes and sets vanish, as in Redis."""

    def __init__(self):
        self.keys: dict[str, tuple[str, dict]] = {}
        self.executed = 0

    def stored(self, keys):
        found = {}
        for entity, entity_id in keys:
            kind, value = self.keys.get(row_key(entity, entity_id), (None, None))
            found[(entity, entity_id)] = dict(value) if kind == HASH and value else None
        return found

    def execute(self, plan):
        self.executed += 1
        for op in plan.ops:
            name, key = op[0], op[1]
            if name == "delete":
                self.keys.pop(key, None)
            elif name == "hset":
                self.keys.setdefault(key, (HASH, {}))[1].update(op[2])
            elif name == "hdel":
                for field in op[2]:
                    self.keys.get(key, (HASH, {}))[1].pop(field, None)
            elif name == "set":
                self.keys[key] = (STRING, op[2])
            elif name == "zadd":
                self.keys.setdefault(key, (ZSET, {}))[1][op[2]] = float(op[3])
            elif name == "zrem":
                self.keys.get(key, (ZSET, {}))[1].pop(op[2], None)
            if key in self.keys and not self.keys[key][1] and key != LOADED_MARKER:
                del self.keys[key]

    def snapshot(self):
        return copy.deepcopy({k: v for k, v in self.keys.items() if k != LOADED_MARKER})

    # -- reconcile's chunked reads; `count` is honoured so tests can make every chunk small
    def scan_model_keys(self, count=1000, full=False):
        keys = [k for k in self.keys if is_model_key(k)]
        for start in range(0, len(keys), count):
            yield keys[start:start + count]

    def types(self, keys):
        return {k: self.keys[k][0] if k in self.keys else "none" for k in keys}

    def hashes(self, keys):
        return {k: (self.keys[k][0], dict(self.keys[k][1]) if self.keys[k][0] == HASH else {})
                for k in keys if k in self.keys}

    def texts(self, keys):
        return {k: self.keys[k][1] for k in keys if k in self.keys and self.keys[k][0] == STRING}

    def scores(self, pairs):
        found = {}
        for key, member in pairs:
            kind, value = self.keys.get(key, (None, {}))
            found[(key, member)] = value.get(member) if kind == ZSET else None
        return found

    def members(self, key, count=1000):
        items = list(self.keys.get(key, (ZSET, {}))[1].items())
        for start in range(0, len(items), count):
            yield dict(items[start:start + count])

    def size(self, key, kind):
        return len(self.keys[key][1]) if key in self.keys else 0

    def is_loaded(self):
        return LOADED_MARKER in self.keys

    def mark_loaded(self):
        self.keys[LOADED_MARKER] = ("string", {"": "1"})

    # -- the read side, by brute force: the reference the contract tests hold RedisReadViews to
    def search_listings(self, params=None) -> dict:
        """GET /v1/listings over every listing hash, no index and no work cap: the answer the indexes must give."""
        search = parse_listing_search(params)
        nights = [n.isoformat() for n in nights_between(*search.stay)] if search.stay else []
        matches = []
        for key, (kind, stored) in self.keys.items():
            if kind != HASH or not is_row_key(key) or not key.startswith("listing:") or stored.get("active") != "1":
                continue
            row = decode_row("listings", stored)
            booked = self.keys.get(nights_key(row["id"]), (HASH, {}))[1]
            if ((search.city is None or row["city"].strip().casefold() == search.city.strip().casefold())
                    and (search.guests is None or row["max_guests"] >= search.guests)
                    and (search.max_price_cents is None or row["nightly_price_cents"] <= search.max_price_cents)
                    and (search.after is None or (row["nightly_price_cents"], row["id"]) > search.after)
                    and not any(night in booked for night in nights)):
                matches.append(row)
        matches.sort(key=lambda r: (r["nightly_price_cents"], r["id"]))
        page = matches[:search.limit]
        more = len(matches) > search.limit
        return {"items": page,
                "next_cursor": encode_cursor(page[-1]["nightly_price_cents"], page[-1]["id"]) if more else None}
