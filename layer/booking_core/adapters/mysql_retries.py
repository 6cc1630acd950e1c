"""The retry table (MySQL `booking_retries`): parking failed booking calls and the retry run's claims."""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable

from booking_core.adapters.mysql import ConnectionHolder, Cursor, run_again_after_lock_conflicts
from booking_core.adapters.mysql_decisions import decision_from_json, insert_decision
from booking_core.domain.model import Decision, RequestBooking, ValidationError, parse_booking_request
from booking_core.domain.retries import GIVE_UP, RetryRow, Step

# Python hands over UTC times; TIMESTAMP columns are read and written in the session's time zone.
_FROM_UTC = "CONVERT_TZ(%s, '+00:00', @@session.time_zone)"
OPEN_STATUSES = ("pending", "in_flight")


def close_retry(cur: Cursor, booking_key: str) -> None:
    """The key's final decision is stored: an open retry row (pending/in_flight) becomes `succeeded`."""
    cur.execute("UPDATE booking_retries SET status='succeeded', last_error=NULL"
                " WHERE booking_key=%s AND status IN %s", (booking_key, OPEN_STATUSES))


def close_retries(cur: Cursor, booking_keys: list[str]) -> None:
    """`close_retry` for many keys, in one statement."""
    if booking_keys:
        cur.execute("UPDATE booking_retries SET status='succeeded', last_error=NULL"
                    " WHERE booking_key IN %s AND status IN %s", (tuple(booking_keys), OPEN_STATUSES))


def upsert_retry(cur: Cursor, booking_key: str, request: RequestBooking, reason: str, error: str) -> None:
    """Save (or re-open) a retry row for the request. The retry run owns attempts and next_attempt_at."""
    cur.execute(
        "INSERT INTO booking_retries (booking_key, request_json, reason, last_error, status)"
        " VALUES (%s, %s, %s, %s, 'pending')"
        " ON DUPLICATE KEY UPDATE reason=VALUES(reason), last_error=VALUES(last_error),"
        " status=IF(status IN ('in_flight', 'pending'), 'pending', status)",
        (booking_key, json.dumps(request.to_dict()), reason, error[:2000]),
    )


class MySqlRetryTable:
    """The API's way into booking_retries: a request that could not be published is parked here."""

    def __init__(self, connections: ConnectionHolder):
        self._connections = connections

    def park_request(self, booking_key: str, request: RequestBooking, reason: str, error: str) -> None:
        with self._connections.transaction() as cur:
            upsert_retry(cur, booking_key, request, reason, error)


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _retry_row(row: dict) -> RetryRow:
    try:
        # The API validated the dates when the request came in; a stay that has begun since is the
        # retry rule's business, not a reason to call the row unreadable.
        request = parse_booking_request(json.loads(row["request_json"]), today=dt.date.min)
    except (ValueError, ValidationError):
        request = None
    return RetryRow(row["booking_key"], request, row["reason"], row["attempts"], row["status"], row["last_error"])


class MySqlRetryStore:
    """retry_fn's side of booking_retries (the RetryStore port)."""

    def __init__(self, connections: ConnectionHolder):
        self._connections = connections

    def claim_due(self, now: dt.datetime, limit: int, plan: Callable[[RetryRow], Step],
                  booking_keys: Iterable[str] | None = None) -> list[tuple[RetryRow, Step]]:
        """Lock up to `limit` due rows no other run holds and mark each in_flight (or dead), in one transaction.

        SKIP LOCKED makes a concurrent run pass over rows being claimed here instead of waiting for them; once
        this commits, their next_attempt_at is past both runs' clocks, so no run takes them again until then.
        No ORDER BY: sorting makes InnoDB lock every due row before the LIMIT applies, so a concurrent run would
        find nothing to take; the (status, next_attempt_at) index already yields the oldest first per status.
        """
        keys = list(booking_keys) if booking_keys is not None else None
        if keys == []:
            return []
        # Two runs, or a run and payment_fn closing rows, can deadlock on the due index: the victim claims again.
        return run_again_after_lock_conflicts(lambda: self._claim_due_once(now, limit, plan, keys))

    def _claim_due_once(self, now: dt.datetime, limit: int, plan: Callable[[RetryRow], Step],
                        keys: list[str] | None) -> list[tuple[RetryRow, Step]]:
        where_keys = " AND booking_key IN %s" if keys else ""
        claimed = []
        with self._connections.transaction() as cur:
            cur.execute(
                "SELECT booking_key, request_json, reason, attempts, status, last_error FROM booking_retries"
                f" WHERE status IN %s AND next_attempt_at <= {_FROM_UTC}{where_keys}"
                " LIMIT %s FOR UPDATE SKIP LOCKED",
                (OPEN_STATUSES, _naive_utc(now), *([keys] if keys else []), limit),
            )
            for raw in cur.fetchall():
                row = _retry_row(raw)
                step = plan(row)
                if step.action == GIVE_UP:
                    error = row.last_error if row.request is not None else "request_json is unreadable"
                    cur.execute("UPDATE booking_retries SET status='dead', last_error=%s WHERE booking_key=%s",
                                (error, row.booking_key))
                else:
                    assert step.next_attempt_at is not None, "plan_step leases every row it re-drives"
                    cur.execute(
                        "UPDATE booking_retries SET status='in_flight', attempts=attempts+1,"
                        f" next_attempt_at={_FROM_UTC} WHERE booking_key=%s",
                        (_naive_utc(step.next_attempt_at), row.booking_key),
                    )
                claimed.append((row, step))
        return claimed

    def publish_failed(self, booking_key: str, error: str) -> None:
        with self._connections.transaction() as cur:
            # Only an in_flight row: payment_fn may already have closed it (a timed-out publish can still land).
            cur.execute("UPDATE booking_retries SET status='pending', last_error=%s"
                        " WHERE booking_key=%s AND status='in_flight'", (error[:2000], booking_key))

    def give_back(self, booking_key: str, error: str, now: dt.datetime) -> None:
        with self._connections.transaction() as cur:
            cur.execute(
                "UPDATE booking_retries SET status='pending', attempts=GREATEST(attempts, 1)-1,"
                f" next_attempt_at={_FROM_UTC}, last_error=%s WHERE booking_key=%s AND status='in_flight'",
                (_naive_utc(now), error[:2000], booking_key),
            )

    def store_rejection(self, booking_key: str, request: RequestBooking, decision: Decision) -> Decision | None:
        with self._connections.transaction() as cur:
            # The listing lock first, as payment_fn's hold takes it: a hold in progress for this key commits
            # before we look, so we see its booking and leave the key to payment_fn.
            cur.execute("SELECT id FROM listings WHERE id=%s FOR UPDATE", (request.listing_id,))
            cur.execute("SELECT decision_json FROM decisions WHERE booking_key=%s", (booking_key,))
            stored = cur.fetchone()
            if stored:
                return decision_from_json(stored["decision_json"])
            cur.execute("SELECT id FROM bookings WHERE booking_key=%s AND status IN ('held', 'confirmed')",
                        (booking_key,))
            if cur.fetchone():
                return None
            return insert_decision(cur, decision, request.fingerprint())

    def mark_succeeded(self, booking_key: str) -> None:
        with self._connections.transaction() as cur:
            close_retry(cur, booking_key)

    def count_waiting(self) -> int:
        with self._connections.transaction() as cur:
            cur.execute("SELECT COUNT(*) AS n FROM booking_retries WHERE status IN %s", (OPEN_STATUSES,))
            return int(cur.fetchone()["n"])

    def open_since(self, older_than_s: float, limit: int) -> list[str]:
        with self._connections.transaction() as cur:
            cur.execute("SELECT booking_key FROM booking_retries WHERE status IN %s"
                        " AND created_at < CURRENT_TIMESTAMP(6) - INTERVAL %s SECOND ORDER BY created_at LIMIT %s",
                        (OPEN_STATUSES, float(older_than_s), int(limit)))
            return [r["booking_key"] for r in cur.fetchall()]


    # -- for a person (infra/retries.py: `make retries`, `make reopen KEY=...`) --------------------------------
    def counts_by_status(self) -> dict[str, int]:
        with self._connections.transaction() as cur:
            cur.execute("SELECT status, COUNT(*) AS n FROM booking_retries GROUP BY status")
            return {row["status"]: int(row["n"]) for row in cur.fetchall()}

    def rows_with_status(self, status: str, limit: int = 50) -> list[dict]:
        """The rows of one status, oldest change first: key, reason, attempts, next attempt, last error."""
        with self._connections.transaction() as cur:
            cur.execute("SELECT booking_key, status, reason, attempts, next_attempt_at, last_error, updated_at"
                        " FROM booking_retries WHERE status=%s ORDER BY updated_at, id LIMIT %s", (status, limit))
            return list(cur.fetchall())

    def reopen(self, booking_key: str) -> bool:
        """Give a dead row its attempts back, due now, and forget the `retries_exhausted` rejection it stored, so
        the next retry run re-drives it and payment_fn decides it afresh. False when the key has no dead row."""
        with self._connections.transaction() as cur:
            cur.execute("SELECT status FROM booking_retries WHERE booking_key=%s FOR UPDATE", (booking_key,))
            row = cur.fetchone()
            if row is None or row["status"] != "dead":
                return False
            cur.execute("DELETE FROM decisions WHERE booking_key=%s AND reason='retries_exhausted'", (booking_key,))
            cur.execute("UPDATE booking_retries SET status='pending', attempts=0, next_attempt_at=NOW(6)"
                        " WHERE booking_key=%s", (booking_key,))
            return True


# What retention deletes: only rows that are finished (nothing reads or re-drives them any more), and never the
# decision of a confirmed booking (it answers a replayed key for as long as the booking exists).
_PURGES = {
    "decisions": "DELETE FROM decisions WHERE status <> 'confirmed' AND created_at < {cutoff} LIMIT %s",
    "retries": "DELETE FROM booking_retries WHERE status IN ('succeeded', 'dead') AND updated_at < {cutoff} LIMIT %s",
    "emails": "DELETE FROM email_outbox WHERE status IN ('sent', 'failed') AND updated_at < {cutoff} LIMIT %s",
    "change_log": "DELETE FROM change_log WHERE changed_at < {cutoff} LIMIT %s",
    "sandbox": "DELETE FROM sandbox_charges WHERE created_at < {cutoff} LIMIT %s",
    "sandbox_refunds": "DELETE FROM sandbox_refunds WHERE created_at < {cutoff} LIMIT %s",
}


class MySqlRetention:
    def __init__(self, connections: ConnectionHolder):
        self._connections = connections

    def purge(self, older_than_days: dict[str, float], limit: int) -> dict[str, int]:
        deleted = {}
        for kind, days in older_than_days.items():
            sql = _PURGES[kind].format(cutoff="CURRENT_TIMESTAMP(6) - INTERVAL %s SECOND")
            with self._connections.transaction() as cur:
                cur.execute(sql, (float(days) * 86400, int(limit)))
                deleted[kind] = cur.rowcount
        return deleted
