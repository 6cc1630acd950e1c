"""The MySQL side of replication: the change log (filled by the triggers of 003_change_log.sql) and the rows.

One connection, READ COMMITTED: each read of the change log and of the rows sees the latest commit, and takes no
locks (only the holder of the replication lock reads and deletes change rows).
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager

import pymysql
import pymysql.cursors

from booking_core.adapters.mysql import Cursor, connect, guarded, mysql_settings
from booking_core.config import MySqlSettings
from booking_core.domain.read_model import BOOL, DATE, FIELDS, INT, OCCUPYING_STATUSES, TIMESTAMP
from booking_core.ports import Change

# How encode_row writes each kind of column, as SQL. The replicator asks MySQL for each row as one JSON object of
# these strings (one column, parsed by json.loads in C) instead of a dozen typed columns that PyMySQL parses and
# converts in Python: that parsing was most of the replicator's CPU. Not aggregated into one JSON_ARRAYAGG per
# query: with a text column in it MariaDB builds the aggregate in an on-disk temporary table. TIMESTAMP(6) in the
# session's time zone, as PyMySQL reads it. These queries run without parameters, so their % are literal.
_SQL_ENCODING = {INT: "CAST({} AS CHAR)", BOOL: "CAST({} AS CHAR)", DATE: "DATE_FORMAT({}, '%Y-%m-%d')",
                 TIMESTAMP: "DATE_FORMAT({}, '%Y-%m-%dT%H:%i:%s.%f')"}
# MariaDB cuts JSON_ARRAYAGG at group_concat_max_len (1 MB by default; MySQL's is not cut): as large as a reply
# can be (max_allowed_packet's 16 MB default), far above a batch's few tens of KB. A cut reply fails json.loads.
AGGREGATE_MAX_BYTES = 16 * 1024 * 1024


def _encoded_columns_sql(entity: str, columns: tuple[str, ...] | None = None) -> str:
    """`JSON_OBJECT('id', CAST(id AS CHAR), ...)` of the read model's columns (only `columns` when given)."""
    return "JSON_OBJECT(" + ", ".join(f"'{name}', {_SQL_ENCODING.get(kind, '{}').format(name)}"
                                      for name, kind in FIELDS[entity].items()
                                      if columns is None or name in columns) + ")"


def _encoded_rows_sql(entity: str, columns: tuple[str, ...] | None = None) -> str:
    return f"SELECT {_encoded_columns_sql(entity, columns)} FROM {entity} WHERE id IN "


def _decoded(docs: Iterable[tuple[str]]) -> list[dict[str, str]]:
    """JSON_OBJECT documents as encode_row's dicts: NULL columns left out."""
    found = []
    for (doc,) in docs:
        row = json.loads(doc)
        found.append({k: v for k, v in row.items() if v is not None} if None in row.values() else row)
    return found


def _id_list(ids: Iterable[int]) -> str:
    """`(1,2,3)` for ids that are ints (the query text built directly: PyMySQL's escaping of each was measurable)."""
    return "(" + ",".join(str(int(i)) for i in ids) + ")"


class MySqlChangeLog:
    """Reads change-log rows, re-reads the rows they name, and deletes exactly the applied change rows."""

    def __init__(self, settings: MySqlSettings | None = None):
        self._settings = settings
        self._conn: pymysql.connections.Connection | None = None

    @property
    def settings(self) -> MySqlSettings:
        return self._settings or mysql_settings()

    def _connection(self) -> pymysql.connections.Connection:
        if self._conn is None or not self._conn.open:
            conn = connect(self.settings)
            with conn.cursor() as cur:
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                cur.execute(f"SET SESSION group_concat_max_len = {AGGREGATE_MAX_BYTES}")
            conn.commit()
            self._conn = conn
        return self._conn

    def close(self) -> None:
        """Close the connection (which also releases the replication lock if it is held)."""
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            self._conn = None

    @contextmanager
    def _cursor(self, commit: bool = True, tuples: bool = False) -> Iterator[Cursor]:
        """A dict cursor, or with `tuples` a plain one (rows as tuples: no dict per row on the hot paths)."""
        conn = self._connection()
        with guarded(conn, self.close, commit), conn.cursor(pymysql.cursors.Cursor if tuples else None) as cur:
            yield cur

    # -- one replicator at a time ------------------------------------------------------------------------
    def lock_name(self) -> str:
        """One lock per database, so replicators of two stacks side by side never wait on each other."""
        return f"replication:{self.settings.database}"

    @contextmanager
    def exclusive(self, wait_s: float = 0) -> Iterator[bool]:
        """Hold the replication lock (MySQL GET_LOCK) for the block; yields False when another replicator has it."""
        # No commit of its own: the lock is the session's, and the read that follows commits the transaction.
        with self._cursor(commit=False) as cur:
            cur.execute("SELECT GET_LOCK(%s, %s) AS got", (self.lock_name(), wait_s))
            got = cur.fetchone()["got"] == 1
        try:
            yield got
        finally:
            if got and self._conn is not None and self._conn.open:
                with self._cursor() as cur:
                    cur.execute("SELECT RELEASE_LOCK(%s)", (self.lock_name(),))

    # -- the change log ----------------------------------------------------------------------------------
    def has_pending(self) -> bool:
        """A cheap look without locks: is any committed change waiting?"""
        with self._cursor() as cur:
            cur.execute("SELECT 1 FROM change_log LIMIT 1")
            return cur.fetchone() is not None

    def pending(self, limit: int, excluding: Collection[int] = ()) -> list[Change]:
        """Up to `limit` committed changes by id, leaving out the ids in `excluding` (the batch still being applied),
        without locking them: only the holder of the replication lock reads and deletes change rows. A slow
        transaction's change row stays invisible until it commits (READ COMMITTED), then is read: no gap."""
        skip = " WHERE id NOT IN " + _id_list(excluding) if excluding else ""
        with self._cursor(tuples=True) as cur:
            cur.execute("SELECT id, entity, entity_id, TIMESTAMPDIFF(MICROSECOND, changed_at, NOW(6)) AS age_us"
                        f" FROM change_log{skip} ORDER BY id LIMIT {int(limit)}")
            return [Change(change_id, entity, entity_id, max(0, int(age_us or 0)) / 1000)
                    for change_id, entity, entity_id, age_us in cur.fetchall()]

    def acknowledge(self, changes: Collection[Change]) -> None:
        """Delete exactly these change rows (their batch is in Redis), committed."""
        if changes:
            with self._cursor() as cur:
                cur.execute("DELETE FROM change_log WHERE id IN " + _id_list(c.id for c in changes))

    # -- current rows ------------------------------------------------------------------------------------
    def rows(self, entity: str, ids: Iterable[int], columns: tuple[str, ...] | None = None) -> dict[int, dict]:
        """The current rows of `entity` with these primary keys (missing ones are deleted rows); only `columns`
        (which must include id) when given, else every column the read model keeps."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        columns_sql = ", ".join(c for c in (columns or tuple(FIELDS[entity])) if c in FIELDS[entity])
        with self._cursor(commit=False) as cur:
            cur.execute(f"SELECT {columns_sql} FROM {entity} WHERE id IN %s", (wanted,))
            return {row["id"]: row for row in cur.fetchall()}

    def encoded_rows(self, entity: str, ids: Iterable[int],
                     columns: tuple[str, ...] | None = None) -> dict[int, dict[str, str]]:
        """The current rows with these ids as `encode_row` writes them (NULL columns left out), encoded by MySQL;
        only `columns` (which must include id) when given."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        with self._cursor(commit=False, tuples=True) as cur:
            cur.execute(_encoded_rows_sql(entity, columns) + _id_list(wanted))
            docs = cur.fetchall()
        return {int(row["id"]): row for row in _decoded(docs)}

    def existing_ids(self, entity: str, ids: Iterable[int]) -> set[int]:
        """Which of these ids `entity` has: reconcile's orphan check, from the primary key alone (no row to parse)."""
        wanted = sorted(set(ids))
        if not wanted:
            return set()
        with self._cursor(commit=False, tuples=True) as cur:
            cur.execute(f"SELECT id FROM {entity} WHERE id IN " + _id_list(wanted))
            return {entity_id for (entity_id,) in cur.fetchall()}

    def occupying_bookings(self, listing_ids: Iterable[int], start: dt.date,
                           end: dt.date) -> dict[int, list[tuple[int, dt.date, dt.date]]]:
        """listing id -> (id, check_in, check_out) of its held/confirmed bookings overlapping [start, end), for
        many listings in one query (a batch of changes asks once, not once per listing)."""
        wanted = sorted(set(listing_ids))
        found: dict[int, list[tuple[int, dt.date, dt.date]]] = {listing_id: [] for listing_id in wanted}
        if not wanted:
            return found
        with self._cursor(commit=False, tuples=True) as cur:
            # One JSON array for the whole reply (numbers and dates only: an in-memory aggregate); the dates as ISO
            # text, parsed by date.fromisoformat (C).
            cur.execute(
                "SELECT JSON_ARRAYAGG(JSON_ARRAY(listing_id, id, check_in, check_out)) FROM bookings WHERE listing_id IN "
                + _id_list(wanted) + " AND status IN %s AND check_in < %s AND check_out > %s",
                (OCCUPYING_STATUSES, end, start),
            )
            (doc,) = cur.fetchone()
        day = dt.date.fromisoformat
        for listing_id, booking_id, check_in, check_out in json.loads(doc) if doc is not None else ():
            found[listing_id].append((booking_id, day(check_in), day(check_out)))
        return found

    @contextmanager
    def snapshot(self) -> Iterator[MySqlChangeLog]:
        """One consistent view of every table for a full scan (reconcile): REPEATABLE READ, consistent snapshot."""
        conn = self._connection()
        with guarded(conn, self.close):
            with conn.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            yield self

    def rows_after(self, entity: str, after_id: int, limit: int) -> list[dict[str, str]]:
        """The next `limit` rows of `entity` by id after `after_id`, as `encode_row` writes them (encoded by MySQL, as
        encoded_rows; inside `snapshot()`: every chunk sees the same moment). Keyset paging on the primary key: each
        chunk is a range read, never an OFFSET that rescans what came before."""
        with self._cursor(commit=False, tuples=True) as cur:
            cur.execute(f"SELECT {_encoded_columns_sql(entity)} FROM {entity} WHERE id > {int(after_id)}"
                        f" ORDER BY id LIMIT {int(limit)}")
            return _decoded(cur.fetchall())
