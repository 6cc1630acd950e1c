"""MySQL connections (pymysql) and the schema migrator."""
from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pymysql
import pymysql.cursors

from booking_core.config import MySqlSettings, mysql_settings

OUTAGE_ERRORS = (pymysql.err.OperationalError, pymysql.err.InterfaceError)


class DatabaseUnavailable(RuntimeError):
    """MySQL could not be reached: callers let it propagate so Lambda retries the batch."""


def connect(settings: MySqlSettings | None = None, database: bool = True, autocommit: bool = False):
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

    def __init__(self, settings_factory=mysql_settings):
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
    def transaction(self) -> Iterator[pymysql.cursors.DictCursor]:
        """A cursor in one transaction: commit on success, rollback on error; outages become DatabaseUnavailable."""
        conn = self.get()
        with guarded(conn, self.discard), conn.cursor() as cur:
            yield cur


@contextmanager
def guarded(conn, on_broken, commit: bool = True):
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


MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "infra" / "migrations"


def split_sql(text: str) -> list[str]:
    """Split a migration into statements, honouring `DELIMITER` lines like the mysql client does."""
    statements, buf, delimiter = [], [], ";"
    for line in text.splitlines():
        stripped = line.strip()
        match = re.match(r"(?i)^DELIMITER\s+(\S+)\s*$", stripped)
        if match:
            delimiter = match.group(1)
            continue
        if not buf and (not stripped or stripped.startswith("--")):
            continue
        buf.append(line)
        if stripped.endswith(delimiter):
            statement = "\n".join(buf).rstrip()[: -len(delimiter)].strip()
            if statement:
                statements.append(statement)
            buf = []
    tail = "\n".join(buf).strip()
    if tail:
        statements.append(tail)
    return statements


def migrate(settings: MySqlSettings | None = None, directory: Path | None = None) -> list[str]:
    """Create the database if needed and apply pending migration files in name order; return those applied.

    Each file is recorded in schema_migrations, so running this twice changes nothing the second time.
    GET_LOCK serialises concurrent migrators (two stacks starting at once).
    """
    s = settings or mysql_settings()
    directory = directory or MIGRATIONS_DIR
    server = connect(s, database=False, autocommit=True)
    try:
        with server.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{s.database}` CHARACTER SET utf8mb4")
    finally:
        server.close()
    conn = connect(s, autocommit=True)
    applied: list[str] = []
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 30) AS got", (f"migrate:{s.database}",))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version VARCHAR(255) NOT NULL PRIMARY KEY,"
                " applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"
            )
            cur.execute("SELECT version FROM schema_migrations")
            done = {row["version"] for row in cur.fetchall()}
            for path in sorted(directory.glob("*.sql")):
                if path.name in done:
                    continue
                for statement in split_sql(path.read_text()):
                    cur.execute(statement)
                cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.name,))
                applied.append(path.name)
            cur.execute("SELECT RELEASE_LOCK(%s)", (f"migrate:{s.database}",))
    finally:
        conn.close()
    return applied


def drop_database(settings: MySqlSettings) -> None:
    server = connect(settings, database=False, autocommit=True)
    try:
        with server.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{settings.database}`")
    finally:
        server.close()
