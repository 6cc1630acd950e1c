"""`make retries` shows the retry table by status with reasons, `make reopen KEY=...` re-opens a dead row: no SQL."""
from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from booking_core import config
from booking_core.adapters.mysql import connect
from tests.support import sql_rows

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

REQUEST = {"user_id": 1, "listing_id": 1, "check_in": "2031-03-01", "check_out": "2031-03-03", "guests": 1,
           "payment_token": "tok_visa"}


def _make(*args: str) -> subprocess.CompletedProcess:
    from infra.local.stack import child_env_base

    return subprocess.run(["make", "-s", *args], cwd=ROOT, env=child_env_base(), capture_output=True, text=True,
                          timeout=120)


def _park(status: str, attempts: int, reason: str, error: str) -> str:
    key = f"cli-{status}-{uuid.uuid4().hex[:10]}"
    conn = connect(config.mysql_settings(), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO booking_retries (booking_key, request_json, reason, attempts, status, last_error)"
                        " VALUES (%s, %s, %s, %s, %s, %s)", (key, json.dumps(REQUEST), reason, attempts, status, error))
            if status == "dead":
                cur.execute("INSERT INTO decisions (booking_key, request_hash, status, reason, decision_json)"
                            " VALUES (%s, 'h', 'rejected', 'retries_exhausted', '{}')", (key,))
    finally:
        conn.close()
    return key


def test_make_retries_lists_rows_by_status_with_reason_attempts_and_last_error(mysql_db):
    dead = _park("dead", 5, "transient_payment_failure", "provider outage: 503")
    pending = _park("pending", 1, "publish_failed", "broker unreachable")

    text = _make("retries")
    as_json = subprocess.run([".venv/bin/python", "-m", "infra.retries", "--json"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60, env=_env())

    assert text.returncode == 0, text.stderr
    dead_section = text.stdout.split("pending:")[0]
    assert dead in dead_section and "reason=transient_payment_failure" in dead_section
    assert "attempts=5" in dead_section and "last_error=provider outage: 503" in dead_section
    assert pending in text.stdout.split("pending:")[1] and "reason=publish_failed" in text.stdout
    result = json.loads(as_json.stdout)
    assert result["counts"]["dead"] >= 1 and dead in {r["booking_key"] for r in result["rows"]["dead"]}


def _env() -> dict:
    from infra.local.stack import child_env_base

    return child_env_base()


def test_make_reopen_gives_a_dead_row_its_attempts_back_and_forgets_its_exhausted_rejection(mysql_db):
    dead = _park("dead", 5, "transient_payment_failure", "provider outage")

    result = _make("reopen", f"KEY={dead}")

    assert result.returncode == 0, result.stderr
    (row,) = sql_rows("SELECT status, attempts, next_attempt_at <= NOW(6) AS due FROM booking_retries"
                      " WHERE booking_key=%s", dead)
    assert (row["status"], row["attempts"], row["due"]) == ("pending", 0, 1)
    assert sql_rows("SELECT 1 FROM decisions WHERE booking_key=%s", dead) == []


def test_make_reopen_refuses_a_row_that_is_not_dead_and_a_missing_key(mysql_db):
    pending = _park("pending", 2, "publish_failed", "broker unreachable")

    not_dead = _make("reopen", f"KEY={pending}")
    missing = _make("reopen", "KEY=no-such-key")
    no_key = _make("reopen")

    assert not_dead.returncode != 0 and "no dead retry row" in not_dead.stderr
    assert sql_rows("SELECT status, attempts FROM booking_retries WHERE booking_key=%s", pending) == [
        {"status": "pending", "attempts": 2}]
    assert missing.returncode != 0 and "no dead retry row for 'no-such-key'" in missing.stderr
    assert no_key.returncode != 0 and "usage: make reopen KEY=" in no_key.stderr
