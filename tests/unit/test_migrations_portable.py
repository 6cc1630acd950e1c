"""infra/migrations runs on MySQL 8 (RDS, the compose file's mysql:8.0) and on MariaDB (this machine) alike.

MySQL 8 does not run here, so a scan rejects the MariaDB-only constructs we know of; each pattern is also shown
to catch a sample, so a pattern that matches nothing cannot pass for a check.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.migrate import MIGRATIONS_DIR, split_sql

# (name, pattern, why) — matched case-insensitively on each statement with its comments removed.
MARIADB_ONLY = [
    ("create or replace", r"\bCREATE\s+OR\s+REPLACE\s+(?!VIEW\b)(?:DEFINER\s*=\s*\S+\s+)?\w+",
     "MySQL 8 has CREATE OR REPLACE only for views: use DROP ... IF EXISTS, then CREATE"),
    ("if [not] exists on a column, index, key or constraint",
     r"\b(?:ADD|DROP|CHANGE|MODIFY)\s+(?:COLUMN\s+|INDEX\s+|KEY\s+|UNIQUE\s+(?:INDEX\s+|KEY\s+)?|CONSTRAINT\s+"
     r"|FOREIGN\s+KEY\s+|PARTITION\s+)?IF\s+(?:NOT\s+)?EXISTS\b",
     "MariaDB-only: MySQL 8 has IF [NOT] EXISTS for databases, tables, views, triggers and routines only"),
    ("create index if not exists", r"\bCREATE\s+(?:UNIQUE\s+|FULLTEXT\s+|SPATIAL\s+)?INDEX\s+IF\s+NOT\s+EXISTS\b",
     "MariaDB-only"),
    ("create trigger/procedure/function if not exists",
     r"\bCREATE\s+(?:DEFINER\s*=\s*\S+\s+)?(?:TRIGGER|PROCEDURE|FUNCTION|EVENT)\s+IF\s+NOT\s+EXISTS\b",
     "MySQL only from 8.0.29: use DROP ... IF EXISTS, then CREATE"),
    ("returning", r"\b(?:INSERT|REPLACE|DELETE)\b[\s\S]*\bRETURNING\b", "INSERT/DELETE ... RETURNING is MariaDB-only"),
    ("sequences", r"\b(?:CREATE\s+SEQUENCE|NEXTVAL\s*\(|LASTVAL\s*\(|SETVAL\s*\(|NEXT\s+VALUE\s+FOR)\b",
     "sequences are MariaDB-only: use AUTO_INCREMENT"),
    ("mariadb column types", r"\b(?:INET4|INET6|UUID)\b(?!\s*\()",
     "INET4/INET6/UUID column types are MariaDB-only (the UUID() function is fine)"),
    ("system versioning", r"\bWITH\s+SYSTEM\s+VERSIONING\b|\bPERIOD\s+FOR\b", "MariaDB-only temporal tables"),
    ("execute immediate", r"\bEXECUTE\s+IMMEDIATE\b", "MariaDB-only"),
    ("mariadb engines", r"\bENGINE\s*=\s*(?:Aria|ColumnStore|Spider|CONNECT|S3|Mroonga|RocksDB)\b",
     "not available on MySQL 8 / RDS"),
    ("compressed columns", r"\bCOMPRESSED\b", "MariaDB-only column attribute"),
]


def _strip_comments(statement: str) -> str:
    statement = re.sub(r"/\*.*?\*/", " ", statement, flags=re.S)
    return "\n".join(re.sub(r"(--\s|#).*$", "", line) for line in statement.splitlines())


def offences(sql: str) -> list[str]:
    """Each MariaDB-only construct in a migration file's text, with its statement's first line."""
    found = []
    for statement in split_sql(sql):
        code = _strip_comments(statement)
        for name, pattern, why in MARIADB_ONLY:
            if re.search(pattern, code, re.I):
                found.append(f"{name} ({why}): {code.strip().splitlines()[0][:100]}")
    return found


def delimiter_problems(sql: str) -> list[str]:
    """A DELIMITER left changed at the end of a file, or a compound statement (BEGIN ... END) that the runner
    would cut at an inner `;` because no DELIMITER was set: both work in one client and break another."""
    problems = []
    delimiters = re.findall(r"(?im)^\s*DELIMITER\s+(\S+)\s*$", sql)
    if delimiters and delimiters[-1] != ";":
        problems.append(f"the file ends with DELIMITER {delimiters[-1]}; reset it to ;")
    for statement in split_sql(sql):
        code = _strip_comments(statement)
        if re.search(r"\bBEGIN\b", code, re.I) and not re.search(r"\bEND\s*$", code.strip(), re.I):
            problems.append(f"compound statement cut short: {code.strip().splitlines()[0][:100]}")
    return problems


MIGRATIONS = sorted(MIGRATIONS_DIR.glob("*.sql"))


@pytest.mark.parametrize("path", MIGRATIONS, ids=lambda p: p.name)
def test_migration_uses_only_syntax_mysql_8_and_mariadb_share(path: Path):
    assert offences(path.read_text()) == []
    assert delimiter_problems(path.read_text()) == []


@pytest.mark.parametrize("sql", [
    "DELIMITER $$\nCREATE OR REPLACE TRIGGER t AFTER INSERT ON users FOR EACH ROW\nBEGIN\n  SET @x = 1;\nEND$$\n"
    "DELIMITER ;\n",
    "CREATE OR REPLACE TABLE t (id INT);",
    "ALTER TABLE users ADD COLUMN IF NOT EXISTS nickname VARCHAR(20);",
    "ALTER TABLE users DROP INDEX IF EXISTS ix_users_name;",
    "CREATE INDEX IF NOT EXISTS ix_users_name ON users (name);",
    "CREATE TRIGGER IF NOT EXISTS t AFTER INSERT ON users FOR EACH ROW SET @x = 1;",
    "INSERT INTO users (email) VALUES ('a@example.com') RETURNING id;",
    "DELETE FROM change_log WHERE id < 10 RETURNING id;",
    "CREATE SEQUENCE booking_ids START WITH 1;",
    "INSERT INTO t (id) VALUES (NEXT VALUE FOR booking_ids);",
    "CREATE TABLE t (id UUID NOT NULL);",
    "CREATE TABLE t (ip INET6);",
    "CREATE TABLE t (id INT) WITH SYSTEM VERSIONING;",
    "CREATE TABLE t (id INT) ENGINE=Aria;",
    "CREATE TABLE t (body TEXT COMPRESSED);",
])
def test_the_scan_catches_each_mariadb_only_construct(sql: str):
    assert offences(sql), sql


@pytest.mark.parametrize("sql", [
    "CREATE TABLE IF NOT EXISTS t (id CHAR(36) NOT NULL DEFAULT (UUID()));",
    "DROP TRIGGER IF EXISTS t;",
    "CREATE OR REPLACE VIEW v AS SELECT 1;",
    "-- a comment may say CREATE OR REPLACE TRIGGER\nCREATE TABLE IF NOT EXISTS t (id INT);",
    "INSERT IGNORE INTO sandbox_state (id, outage) VALUES (1, 0);",
])
def test_the_scan_passes_syntax_both_servers_accept(sql: str):
    assert offences(sql) == []


def test_the_delimiter_check_catches_a_trigger_body_without_a_delimiter_and_a_delimiter_left_set():
    without = "CREATE TRIGGER t AFTER INSERT ON users FOR EACH ROW\nBEGIN\n  SET @x = 1;\n  SET @y = 2;\nEND;\n"
    left_set = "DELIMITER $$\nCREATE TRIGGER t AFTER INSERT ON users FOR EACH ROW\nBEGIN\n  SET @x = 1;\nEND$$\n"
    assert delimiter_problems(without)
    assert delimiter_problems(left_set)
