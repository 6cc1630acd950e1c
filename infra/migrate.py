"""Schema migrations: the ordered SQL files of infra/migrations, applied once each (a deploy step, not Lambda code).

    python -m infra.migrate          # against the database the environment names (MYSQL_*, or DB_SECRET_ARN)
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from booking_core.adapters.mysql import connect, mysql_settings
from booking_core.config import MySqlSettings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


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


def main() -> int:
    print(json.dumps({"database": mysql_settings().database, "applied": migrate()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
