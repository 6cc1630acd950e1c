"""MySQL → Redis replication: apply the change log, tail it, and reconcile the whole read model.

Dependencies come in as arguments (cosmicpython style), typed by the ports `ChangeLog` (MySQL: the change log
and the rows it names) and `ReadModel` (Redis), so unit tests pass fakes.

Every change is applied by re-reading the entity's current row, so applying a change twice, or changes out
of order, leaves the same Redis contents.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from booking_core.domain.read_model import (
    ENTITIES,
    ENTITY_OF_KEY_NAME,
    FIELDS,
    HASH,
    MEMBERSHIP_COLUMNS,
    STRING,
    ZSET,
    Plan,
    RepairReport,
    booking_span,
    full_model,
    index_type,
    is_json_key,
    is_row_key,
    json_key,
    memberships,
    nights_key,
    plan_listing_nights,
    plan_repair,
    plan_row,
    row_key,
)
from booking_core.ports import Change, ChangeLog, ReadModel

log = logging.getLogger(__name__)

BATCH_SIZE = 500
IDLE_POLL_S = 0.025  # how long the tail sleeps when the log is empty: the floor of the replication lag
ERROR_PAUSE_S = 1.0
LOADED_CHECK_S = 1.0  # how often the tail checks that the read model exists (Redis keeps nothing on restart)
RECONCILE_LOCK_WAIT_S = 30.0
RECONCILE_CHUNK = 1000  # rows or keys reconcile holds at a time
ALL_DAYS = (dt.date(1000, 1, 1), dt.date(9999, 12, 31))  # every night a booking can occupy


class ReplicatorBusy(RuntimeError):
    """Another replicator holds the replication lock."""


def _merge_spans(spans: list[tuple[dt.date, dt.date]]) -> list[tuple[dt.date, dt.date]]:
    merged: list[tuple[dt.date, dt.date]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


_executor: ThreadPoolExecutor | None = None


def _background() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replication-redis")
    return _executor


def plan_changes(changes: list[Change], change_log: ChangeLog, read_model: ReadModel) -> Plan:
    """The Redis writes that bring every entity named by `changes` to its current MySQL state.

    Old memberships come from the hash stored in Redis (what was written last), new ones from the row; a
    booking also rewrites its listing's nights over both its old and new dates, from the occupying bookings.
    """
    keys = sorted({(c.entity, c.entity_id) for c in changes if c.entity in FIELDS})
    # Redis answers for the stored hashes while MySQL answers for the rows: the two waits overlap.
    stored = _background().submit(read_model.stored, keys)
    current: dict[tuple[str, int], dict[str, str]] = {}
    for entity in ENTITIES:
        ids = [entity_id for e, entity_id in keys if e == entity]
        for entity_id, encoded in change_log.encoded_rows(entity, ids).items():
            current[(entity, entity_id)] = encoded
    old = stored.result()
    plan = Plan()
    spans: dict[int, list[tuple[dt.date, dt.date]]] = {}
    for entity, entity_id in keys:
        before, after = old.get((entity, entity_id)), current.get((entity, entity_id))
        plan_row(plan, entity, entity_id, before, after)
        if entity == "bookings":
            for span in (booking_span(before), booking_span(after)):
                if span is not None:
                    spans.setdefault(span[0], []).append(span[1:])
    if spans:
        # One query for every listing of the batch over the batch's whole date range; each span then takes
        # only its own nights (plan_listing_nights clips), so the wider window changes nothing but the round trips.
        occupying = change_log.occupying_bookings(spans, min(s for v in spans.values() for s, _ in v),
                                                  max(e for v in spans.values() for _, e in v))
        for listing_id in sorted(spans):
            plan_listing_nights(plan, listing_id, _merge_spans(spans[listing_id]), occupying[listing_id])
    return plan


LagObserver = Callable[[float], None]


def apply_batch(change_log: ChangeLog, read_model: ReadModel, batch_size: int = BATCH_SIZE,
                observe_lag: LagObserver | None = None, clock: Callable[[], float] = time.monotonic) -> int | None:
    """One batch of change rows under the replication lock: `apply_batches` stopped after its first batch, so
    one batch goes the same way as the tail's and drain's (Redis written before the rows are deleted; the lag as
    there). Returns how many change rows were applied, or None when another replicator holds the lock.
    """
    first_only = [True]  # keep_going answers True once: the first batch is read, no second
    run = apply_batches(change_log, read_model, batch_size, observe_lag, clock, until_empty=False,
                        keep_going=lambda: first_only.pop() if first_only else False)
    return None if run is None else run.applied


@dataclass
class Run:
    """What one `apply_batches` call did: change rows applied, batches, and the size of its last batch."""
    applied: int = 0
    batches: int = 0
    last: int = 0


def _apply(read_model: ReadModel, plan: Plan, clock: Callable[[], float]) -> float:
    read_model.execute(plan)
    return clock()


def apply_batches(change_log: ChangeLog, read_model: ReadModel, batch_size: int = BATCH_SIZE,
                  observe_lag: LagObserver | None = None, clock: Callable[[], float] = time.monotonic,
                  until_empty: bool = True, keep_going: Callable[[], bool] = lambda: True) -> Run | None:
    """Apply batches under the replication lock, one deep in a pipeline: while batch N is written to Redis (in the
    worker thread), batch N+1 is read from the change log and its rows from MySQL. Stops at an empty batch (with
    `until_empty` False: at the first batch smaller than `batch_size`) or when `keep_going()` says so. None when
    another replicator holds the lock.

    Order and safety: the worker runs one task at a time in submission order, so N+1's stored hashes are read after
    N is written and N+1 is written after N (a key changed in both ends as its later re-read says). N's change
    rows are deleted only once N's write has succeeded and N+1 is not deleted before its own: a failure anywhere
    deletes nothing unapplied and the rows are read again later. The lock is released only after the write in
    flight has ended.
    """
    with change_log.exclusive() as got:
        if not got:
            return None
        run = Run()
        flight: tuple[list[Change], float, Future[float]] | None = None  # the batch being written to Redis
        try:
            while True:
                changes: list[Change] = []
                if keep_going() and (flight is None or until_empty or len(flight[0]) == batch_size):
                    changes = change_log.pending(batch_size, [c.id for c in flight[0]] if flight else ())
                plan, claimed = None, 0.0
                if changes:
                    claimed = clock()
                    plan = plan_changes(changes, change_log, read_model)
                if flight is not None:
                    previous, previous_claimed, future = flight
                    flight = None
                    written = future.result()  # N's failure raises here: neither N nor N+1 is deleted
                    if plan is not None:  # N+1 goes to Redis while N's rows are deleted
                        flight = (changes, claimed, _background().submit(_apply, read_model, plan, clock))
                    change_log.acknowledge(previous)
                    run.applied, run.batches, run.last = run.applied + len(previous), run.batches + 1, len(previous)
                    if observe_lag is not None:
                        observe_lag(max(c.age_ms for c in previous) + (written - previous_claimed) * 1000)
                elif plan is not None:
                    flight = (changes, claimed, _background().submit(_apply, read_model, plan, clock))
                if flight is None:
                    return run
        finally:
            if flight is not None:  # failed while N was in flight: wait for it (keeping the lock), delete nothing
                wait([flight[2]])


def drain(change_log: ChangeLog, read_model: ReadModel, batch_size: int = BATCH_SIZE,
          observe_lag: LagObserver | None = None) -> dict:
    """Apply batches until the change log has nothing committed left (mode `once`)."""
    run = apply_batches(change_log, read_model, batch_size, observe_lag)
    if run is None:
        return {"mode": "once", "status": "busy", "applied": 0, "batches": 0}
    return {"mode": "once", "status": "ok", "applied": run.applied, "batches": run.batches}


def reconcile(change_log: ChangeLog, read_model: ReadModel, wait_s: float = RECONCILE_LOCK_WAIT_S,
              clock: Callable[[], float] = time.monotonic, chunk: int = RECONCILE_CHUNK,
              full_scan: bool = False) -> dict:
    """Compare the whole read model with MySQL and repair it; report what was missing, stale and orphan.

    Runs under the replication lock, from one consistent MySQL snapshot, `chunk` rows or keys at a time so its
    memory does not grow with the catalogue: first a walk of the model's keys removes orphans (keys and members
    no row implies, keys of the wrong type), then the tables are read by id in chunks and each chunk's keys, index
    memberships and nights are compared and repaired. Changes committed meanwhile stay in the change log and
    are applied by the tail afterwards. The decision store's keys are never looked at.
    `keys` in the report is how many read-model keys the walk found in Redis before repairing. The walk reads
    the registry of model keys the replicator keeps, so its work does not depend on what else the Redis
    database holds; `full_scan` (or a model written before the registry) walks a SCAN of the prefix instead,
    which also finds keys written around the replicator (by hand), and registers them.
    """
    started = clock()
    report = RepairReport()
    scanned: dict[str, int] = {}
    with change_log.exclusive(wait_s) as got:
        if not got:
            raise ReplicatorBusy("another replicator held the lock for the whole wait")
        with change_log.snapshot() as snap:
            keys = _remove_orphans(snap, read_model, report, chunk, full_scan)
            for entity in ENTITIES:
                scanned[entity] = _repair_rows(snap, read_model, entity, report, chunk)
        read_model.mark_loaded()
    return {"mode": "reconcile", **report.to_dict(), "scanned": scanned, "keys": keys,
            "seconds": round(clock() - started, 3)}


def _remove_orphans(snap: ChangeLog, read_model: ReadModel, report: RepairReport, chunk: int,
                    full_scan: bool = False) -> int:
    """Delete row hashes whose row is gone, nights of listings that are gone, members no row implies, and index
    keys of the wrong type; returns how many model keys the scan found."""
    found = 0
    for keys in read_model.scan_model_keys(chunk, full_scan):
        found += len(keys)
        plan = Plan()
        rows: dict[str, dict[int, str]] = {}
        nights: dict[int, str] = {}
        # TYPE only for the sorted sets: a row hash is judged by its id alone, a nights hash by its listing, and a
        # wrong-typed one of either is found by the row pass (HGETALL refuses it) and rebuilt there.
        # A listing's JSON key is judged by its listing, like its nights.
        indexes = [key for key in keys if not is_row_key(key) and not is_json_key(key) and index_type(key) == ZSET]
        texts: dict[int, str] = {}
        for key in keys:
            if is_row_key(key):
                name, raw_id = key.split(":")
                rows.setdefault(ENTITY_OF_KEY_NAME[name], {})[int(raw_id)] = key
            elif is_json_key(key):
                texts[int(key.split(":")[1])] = key
            elif index_type(key) == HASH:
                nights[int(key.split(":")[1])] = key
        for key, kind in read_model.types(indexes).items():
            if kind == "none":
                continue  # emptied since the scan saw it
            if kind != ZSET:
                plan.delete(key)  # the wrong type: deleted here, rebuilt as missing by the row pass
                report.members_stale += max(1, read_model.size(key, kind))
            else:
                _remove_orphan_members(snap, read_model, key, report, chunk)
        for entity, by_id in rows.items():
            existing = snap.existing_ids(entity, by_id)
            for entity_id, key in by_id.items():
                if entity_id not in existing:
                    report.rows_orphan += 1
                    plan.delete(key)
        listings = snap.existing_ids("listings", [*nights, *texts]) if nights or texts else set()
        for listing_id, key in texts.items():
            if listing_id not in listings:
                report.rows_orphan += 1
                plan.delete(key)
        gone = [key for listing_id, key in nights.items() if listing_id not in listings]
        for key, (_, fields) in read_model.hashes(gone).items():
            report.members_orphan += len(fields)
            plan.delete(key)
        read_model.execute(plan)
    return found


def _remove_orphan_members(snap: ChangeLog, read_model: ReadModel, key: str, report: RepairReport,
                           chunk: int) -> None:
    """ZSCAN one index in chunks; a member is an orphan unless its row (as MySQL has it) implies it."""
    entity = "listings" if key.startswith("listings:") else "bookings" if key.endswith(":bookings") else "payments"
    for members in read_model.members(key, chunk):
        ids = {member: int(member) if member.isascii() and member.isdigit() else None for member in members}
        current = snap.encoded_rows(entity, [i for i in ids.values() if i is not None], MEMBERSHIP_COLUMNS[entity])
        plan = Plan()
        for member, entity_id in ids.items():
            row = current.get(entity_id) if entity_id is not None else None
            if row is None or (key, member) not in memberships(entity, row):
                report.members_orphan += 1
                plan.zrem(key, member)
        read_model.execute(plan)


def _repair_rows(snap: ChangeLog, read_model: ReadModel, entity: str, report: RepairReport, chunk: int) -> int:
    """Each chunk of rows: their hashes, their index memberships (ZSCORE each) and, for listings, their nights,
    compared with what the rows imply and repaired; returns how many rows were read."""
    after, count = 0, 0
    while rows := snap.rows_after(entity, after, chunk):
        ids = [int(row["id"]) for row in rows]  # the rows come encoded, as their hashes hold them
        after, count = ids[-1], count + len(rows)
        occupying: list[tuple[int, int, dt.date, dt.date]] = []
        looked_up = [row_key(entity, entity_id) for entity_id in ids]
        if entity == "listings":
            by_listing = snap.occupying_bookings(ids, ALL_DAYS[0], ALL_DAYS[1])
            occupying = [(listing_id, *booking) for listing_id, bookings in by_listing.items() for booking in bookings]
            looked_up += [nights_key(entity_id) for entity_id in ids]
        wanted = full_model({entity: rows}, occupying, encoded=True)
        actual: dict[str, tuple[str, Any]] = dict(read_model.hashes(looked_up))
        if entity == "listings":
            # A missing, non-string or different JSON key: rewritten (SET replaces a key of any type).
            actual.update({key: (STRING, text) for key, text in read_model.texts([json_key(i) for i in ids]).items()})
        pairs = [(key, member) for key, (kind, value) in wanted.items() if kind == ZSET for member in value]
        for (key, member), score in read_model.scores(pairs).items():
            if score is not None:
                actual.setdefault(key, (ZSET, {}))[1][member] = score
        plan, found = plan_repair(wanted, actual)
        report.add(found)
        read_model.execute(plan)
    return count


def ensure_loaded(change_log: ChangeLog, read_model: ReadModel) -> dict | None:
    """Full load when the read model is empty (first start, or Redis restarted); the report, or None if loaded."""
    if read_model.is_loaded():
        return None
    report = reconcile(change_log, read_model)
    log.info("read model loaded from MySQL", extra={"report": report})
    return report


def tail(change_log: ChangeLog, read_model: ReadModel, run_s: float, stop: Callable[[], bool] = lambda: False,
         idle_s: float = IDLE_POLL_S, batch_size: int = BATCH_SIZE,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
         observe_lag: LagObserver | None = None) -> dict:
    """Apply changes as they commit for `run_s` seconds (0: until `stop()` says so). Never raises on an outage:
    it logs, pauses and carries on, so a MySQL or Redis restart only delays replication."""
    deadline = clock() + run_s if run_s > 0 else None
    counts = {"applied": 0, "batches": 0, "busy": 0, "errors": 0, "full_loads": 0}
    next_loaded_check = clock()
    n: int | None = 0
    while not stop() and (deadline is None or clock() < deadline):
        try:
            if clock() >= next_loaded_check:
                next_loaded_check = clock() + LOADED_CHECK_S
                if ensure_loaded(change_log, read_model) is not None:
                    counts["full_loads"] += 1
            # After a full batch more is likely waiting: claim straight away (the look costs a round trip and a
            # commit per batch, which under load was a measurable share of a burst's wall time).
            if n != batch_size and not change_log.has_pending():
                n = 0
                sleep(idle_s)
                continue
            run = apply_batches(change_log, read_model, batch_size, observe_lag, clock, until_empty=False,
                                keep_going=lambda: not stop() and (deadline is None or clock() < deadline))
            n = None if run is None else run.last
        except Exception:  # noqa: BLE001 - an outage must not end the tail; logged and retried
            log.exception("replication batch failed; retrying")
            counts["errors"] += 1
            sleep(ERROR_PAUSE_S)
            continue
        if n is None:
            counts["busy"] += 1
            sleep(idle_s)
        else:
            assert run is not None
            counts["applied"] += run.applied
            counts["batches"] += run.batches
            if run.applied == 0:
                sleep(idle_s)
    return {"mode": "tail", **counts}
