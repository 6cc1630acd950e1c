"""MySQL connections (pymysql): settings with the AWS secret applied, per-thread connections, transactions."""
from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pymysql
import pymysql.cursors

from booking_core import config
from booking_core.config import MySqlSettings
from booking_core.ports import DatabaseUnavailable

OUTAGE_ERRORS = (pymysql.err.OperationalError, pymysql.err.InterfaceError)
# A DictCursor: its rows are dicts of column values, typed by the SQL rather than by Python.
Cursor = Any
# Deadlock victim, lock wait timeout: the block's connection is dropped (guarded), so its whole transaction is
# rolled back and running it again is safe, as MySQL's manual asks applications to.
LOCK_CONFLICT_ERRNOS = frozenset({1205, 1213})
T = TypeVar("T")


def mysql_settings() -> MySqlSettings:
    """The MYSQL_* settings, with host, port, user, password (and database) from DB_SECRET_ARN when it is set."""
    settings = config.mysql_settings()
    secret_arn = config.db_secret_arn()
    if secret_arn:
        from booking_core.adapters.aws_secrets import apply_db_secret

        settings = apply_db_secret(settings, secret_arn)
    return settings


def connect(settings: MySqlSettings | None = None, database: bool = True,
            autocommit: bool = False) -> pymysql.connections.Connection:
    s = settings or mysql_settings()
    try:
        return pymysql.connect(
            host=s.host, port=s.port, user=s.user, password=s.password,
            database=s.database if database else None,
            connect_timeout=s.connect_timeout, read_timeout=30, write_timeout=30,
            autocommit=autocommit, charset="utf8mb4",
            cursorclass=pymysql.cursors.DictCursor,
        )
    except OUTAGE_ERRORS as exc:
        raise DatabaseUnavailable(f"MySQL at {s.host}:{s.port} is unreachable: {exc}") from exc


class ConnectionHolder:
    """One lazily opened connection per thread, reused across warm invocations, reopened after a failure."""

    def __init__(self, settings_factory: Callable[[], MySqlSettings] = mysql_settings):
        self._settings_factory = settings_factory
        self._local = threading.local()

    def get(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or not conn.open:
            conn = connect(self._settings_factory())
            self._local.conn = conn
        return conn

    def discard(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - already broken, nothing to do
                pass

    @contextmanager
    def transaction(self, read_committed: bool = False) -> Iterator[Cursor]:
        """A cursor in one transaction: commit on success, rollback on error; outages become DatabaseUnavailable.
        `read_committed`: this transaction reads the latest committed rows and its locking reads lock no gaps (the
        session's level, REPEATABLE READ, stays for the next)."""
        conn = self.get()
        with guarded(conn, self.discard), conn.cursor() as cur:
            if read_committed:
                cur.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            yield cur


@contextmanager
def guarded(conn: pymysql.connections.Connection, on_broken: Callable[[], None],
            commit: bool = True) -> Iterator[pymysql.connections.Connection]:
    """Run a block on `conn`: commit (when asked) on success, roll back on error. An outage calls `on_broken`
    (drop the connection so the next use reconnects) and becomes DatabaseUnavailable."""
    try:
        yield conn
        if commit:
            conn.commit()
    except OUTAGE_ERRORS as exc:
        on_broken()
        raise DatabaseUnavailable(str(exc)) from exc
    except BaseException:
        try:
            conn.rollback()
        except OUTAGE_ERRORS:
            on_broken()
        raise


def lost_a_lock_conflict(exc: BaseException) -> bool:
    cause = exc.__cause__
    return isinstance(cause, pymysql.err.OperationalError) and bool(cause.args) and \
        cause.args[0] in LOCK_CONFLICT_ERRNOS


def run_again_after_lock_conflicts(run: Callable[[], T], attempts: int = 3) -> T:
    """`run` (one transaction) again, after a short random pause, when InnoDB chose it as a deadlock victim."""
    for attempt in range(1, attempts + 1):
        try:
            return run()
        except DatabaseUnavailable as exc:
            if attempt == attempts or not lost_a_lock_conflict(exc):
                raise
            time.sleep(random.uniform(0, 0.05 * attempt))
    raise AssertionError("unreachable")
