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

from booking_core.domain.read_model import (
    ENTITIES,
    FIELDS,
    Plan,
    booking_span,
    encode_row,
    full_model,
    plan_nights,
    plan_repair,
    plan_row,
)
from booking_core.ports import Change, ChangeLog, ReadModel

log = logging.getLogger(__name__)

BATCH_SIZE = 500
IDLE_POLL_S = 0.025  # how long the tail sleeps when the log is empty: the floor of the replication lag
ERROR_PAUSE_S = 1.0
LOADED_CHECK_S = 1.0  # how often the tail checks that the read model exists (Redis keeps nothing on restart)
RECONCILE_LOCK_WAIT_S = 30.0


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


def plan_changes(changes: list[Change], change_log: ChangeLog, read_model: ReadModel) -> Plan:
    """The Redis writes that bring every entity named by `changes` to its current MySQL state.

    Old memberships come from the hash stored in Redis (what was written last), new ones from the row; a
    booking also rewrites its listing's nights over both its old and new dates, from the occupying bookings.
    """
    keys = sorted({(c.entity, c.entity_id) for c in changes if c.entity in FIELDS})
    current: dict[tuple[str, int], dict[str, str]] = {}
    for entity in ENTITIES:
        ids = [entity_id for e, entity_id in keys if e == entity]
        for entity_id, row in change_log.rows(entity, ids).items():
            current[(entity, entity_id)] = encode_row(entity, row)
    old = read_model.stored(keys)
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
        # only its own nights (plan_nights clips), so the wider window changes nothing but the round trips.
        occupying = change_log.occupying_bookings(spans, min(s for v in spans.values() for s, _ in v),
                                                  max(e for v in spans.values() for _, e in v))
        for listing_id in sorted(spans):
            for start, end in _merge_spans(spans[listing_id]):
                plan_nights(plan, listing_id, start, end, occupying[listing_id])
    return plan


LagObserver = Callable[[float], None]


def apply_batch(change_log: ChangeLog, read_model: ReadModel, batch_size: int = BATCH_SIZE,
                observe_lag: LagObserver | None = None, clock: Callable[[], float] = time.monotonic) -> int | None:
    """Claim, apply and delete one batch of change rows under the replication lock.

    Returns how many change rows were applied, or None when another replicator holds the lock.
    Redis is written before the claimed rows are deleted; a failure in between re-applies them later, harmless.
    `observe_lag` hears the batch's replication lag in ms: its oldest change's age when claimed plus the time
    until Redis was written.
    """
    with change_log.exclusive() as got:
        if not got:
            return None
        with change_log.claim(batch_size) as changes:
            if changes:
                claimed = clock()
                read_model.execute(plan_changes(changes, change_log, read_model))
                if observe_lag is not None:
                    observe_lag(max(c.age_ms for c in changes) + (clock() - claimed) * 1000)
        return len(changes)


def drain(change_log: ChangeLog, read_model: ReadModel, batch_size: int = BATCH_SIZE,
          observe_lag: LagObserver | None = None) -> dict:
    """Apply batches until the change log has nothing committed left (mode `once`)."""
    applied = batches = 0
    while True:
        n = apply_batch(change_log, read_model, batch_size, observe_lag)
        if n is None:
            return {"mode": "once", "status": "busy", "applied": applied, "batches": batches}
        if n == 0:
            return {"mode": "once", "status": "ok", "applied": applied, "batches": batches}
        applied, batches = applied + n, batches + 1


def reconcile(change_log: ChangeLog, read_model: ReadModel, wait_s: float = RECONCILE_LOCK_WAIT_S,
              clock: Callable[[], float] = time.monotonic) -> dict:
    """Compare the whole read model with MySQL and repair it; report what was missing, stale and orphan.

    Runs under the replication lock, from one consistent MySQL snapshot. Changes committed meanwhile stay in
    the change log and are applied by the tail afterwards. The decision store's keys are never looked at.
    """
    started = clock()
    with change_log.exclusive(wait_s) as got:
        if not got:
            raise ReplicatorBusy("another replicator held the lock for the whole wait")
        with change_log.snapshot() as snap:
            rows = {entity: snap.all_rows(entity) for entity in ENTITIES}
            occupying = snap.all_occupying_bookings()
        wanted = full_model(rows, occupying)
        plan, report = plan_repair(wanted, read_model.snapshot())
        read_model.execute(plan)
        read_model.mark_loaded()
    return {"mode": "reconcile", **report.to_dict(), "scanned": {e: len(r) for e, r in rows.items()},
            "keys": len(wanted), "seconds": round(clock() - started, 3)}


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
    while not stop() and (deadline is None or clock() < deadline):
        try:
            if clock() >= next_loaded_check:
                next_loaded_check = clock() + LOADED_CHECK_S
                if ensure_loaded(change_log, read_model) is not None:
                    counts["full_loads"] += 1
            if not change_log.has_pending():
                sleep(idle_s)
                continue
            n = apply_batch(change_log, read_model, batch_size, observe_lag)
        except Exception:  # noqa: BLE001 - an outage must not end the tail; logged and retried
            log.exception("replication batch failed; retrying")
            counts["errors"] += 1
            sleep(ERROR_PAUSE_S)
            continue
        if n is None:
            counts["busy"] += 1
            sleep(idle_s)
        elif n == 0:
            sleep(idle_s)
        else:
            counts["applied"] += n
            counts["batches"] += 1
    return {"mode": "tail", **counts}
