"""Foundation: schema migrations, topics, demo data, the stack's start/stop and failure messages, template lint."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from booking_core import config
from booking_core.adapters.mysql import connect
from infra.demo_data import LISTINGS, USERS, load_demo_data
from infra.local import services
from infra.migrate import drop_database, migrate

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _schema(settings) -> list:
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT table_name, column_name, column_type, column_default FROM information_schema.columns"
                " WHERE table_schema=%s ORDER BY table_name, ordinal_position", (settings.database,))
            columns = cur.fetchall()
            cur.execute("SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema=%s ORDER BY 1",
                        (settings.database,))
            return [columns, cur.fetchall()]
    finally:
        conn.close()


def test_migrations_applied_twice_change_nothing_the_second_time(mysql_db):
    from dataclasses import replace

    fresh = replace(mysql_db, database=mysql_db.database + "_mig")
    try:
        first = migrate(fresh)
        schema = _schema(fresh)
        second = migrate(fresh)
        assert first and first == sorted(first)
        assert second == []
        assert _schema(fresh) == schema
    finally:
        drop_database(fresh)


def test_the_change_log_migration_runs_again_over_its_own_triggers(mysql_db):
    # DROP TRIGGER IF EXISTS + CREATE TRIGGER (MySQL 8 has no CREATE OR REPLACE TRIGGER): a file re-run after a
    # partial failure, or on a database that already has the triggers, ends with the same 12 triggers.
    from dataclasses import replace

    from infra.migrate import MIGRATIONS_DIR, split_sql

    fresh = replace(mysql_db, database=mysql_db.database + "_003")
    try:
        migrate(fresh)
        before = _schema(fresh)
        conn = connect(fresh, autocommit=True)
        try:
            with conn.cursor() as cur:
                for statement in split_sql((MIGRATIONS_DIR / "003_change_log.sql").read_text()):
                    cur.execute(statement)
                cur.execute("INSERT INTO users (email) VALUES ('again@example.com')")
                cur.execute("SELECT entity, op FROM change_log")
                captured = cur.fetchall()
        finally:
            conn.close()
        assert _schema(fresh) == before and len(before[1]) == 12
        assert captured == [{"entity": "users", "op": "I"}]
    finally:
        drop_database(fresh)


def test_the_documented_columns_accept_a_hand_written_insert(mysql_db):
    conn = connect(mysql_db, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO users (email, name) VALUES ('hand@example.com', 'By Hand')")
            cur.execute("INSERT INTO listings (host_id, title, city, max_guests, nightly_price_cents, currency, active)"
                        " VALUES (1, 'Hand', 'Oslo', 2, 9900, 'NOK', 1)")
            cur.execute("DELETE FROM users WHERE email='hand@example.com'")
            cur.execute("DELETE FROM listings WHERE title='Hand' AND city='Oslo'")
    finally:
        conn.close()


def test_demo_data_is_loaded_once_with_enough_listings_cities_and_users(mysql_db):
    counts = load_demo_data(mysql_db)
    assert load_demo_data(mysql_db) == counts  # a second load adds nothing
    assert counts["users"] >= USERS and counts["listings"] >= LISTINGS  # (other tests add users and listings)
    conn = connect(mysql_db)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(DISTINCT city) AS cities, COUNT(*) AS n FROM listings")
            row = cur.fetchone()
    finally:
        conn.close()
    assert row["cities"] >= 4 and row["n"] >= 30 and USERS >= 20


def test_topics_exist_with_the_configured_partitions(kafka_broker):
    from kafka import KafkaConsumer

    from booking_core.adapters.kafka import client_settings

    consumer = KafkaConsumer(**client_settings())
    try:
        for topic in (config.requests_topic(), config.decisions_topic()):
            assert len(consumer.partitions_for_topic(topic)) == config.topic_partitions() == 6
    finally:
        consumer.close()


def test_make_topics_prints_partitions_and_the_local_replication_factor(kafka_broker):
    from infra.local.stack import child_env_base

    result = subprocess.run(["make", "-s", "topics"], cwd=ROOT, env=child_env_base(), capture_output=True,
                            text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout.strip().splitlines()[-1])
    assert described == {topic: {"partitions": 6, "replication_factor": 1}
                         for topic in (config.requests_topic(), config.decisions_topic())}


def _stack_cmd(command: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra.local.stack", command], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _isolated_env(**extra) -> dict:
    from infra.local.stack import child_env_base

    env = child_env_base()
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.update({"API_PORT": str(services.free_port()), "KAFKA_PORT": str(services.free_port()),
                "MYSQL_DATABASE": config.mysql_settings().database, "LOCAL_KAFKA_CONCURRENCY": "1"})
    env.update(extra)
    return env


def test_a_missing_mysql_is_reported_in_one_line_within_five_seconds(mysql_db):
    env = _isolated_env(MYSQL_PORT=str(services.free_port()), STACK_START_PRIVATE="0")
    started = time.monotonic()
    result = _stack_cmd("run", env, timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert elapsed < 5, f"took {elapsed:.1f}s"
    message = result.stderr.strip().splitlines()
    assert len(message) == 1 and "MySQL" in message[0] and env["MYSQL_PORT"] in message[0]


def test_a_configured_broker_that_does_not_answer_is_reported_within_five_seconds(mysql_db):
    env = _isolated_env(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{services.free_port()}")
    started = time.monotonic()
    result = _stack_cmd("run", env, timeout=30)
    assert result.returncode == 1 and time.monotonic() - started < 5
    assert "Kafka" in result.stderr.strip().splitlines()[-1]


def _pids_alive(pids) -> list[int]:
    return [pid for pid in pids if services.alive(pid)]


def test_up_answers_then_down_leaves_no_process_or_port_behind(mysql_db, redis_client):
    import json

    env = _isolated_env()
    result = _stack_cmd("up", env)
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        children = json.loads((ROOT / ".local" / "run" / f"stack-{env['API_PORT']}" / "children.json").read_text())
        stack_pid = int((ROOT / ".local" / "run" / f"stack-{env['API_PORT']}.pid").read_text())
        assert services.port_open("127.0.0.1", int(env["API_PORT"]))
        assert services.port_open("127.0.0.1", int(env["KAFKA_PORT"]))
        assert _stack_cmd("status", env).returncode == 0
    finally:
        assert _stack_cmd("down", env).returncode == 0
    pids = [stack_pid, *children.values()]
    deadline = time.monotonic() + 5
    while _pids_alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _pids_alive(pids) == []
    assert not services.port_open("127.0.0.1", int(env["API_PORT"]))
    assert not services.port_open("127.0.0.1", int(env["KAFKA_PORT"]))
    assert _stack_cmd("status", env).returncode == 3


def test_a_missing_redis_is_replaced_by_a_private_instance_that_stops_with_it(tmp_path):
    port = services.free_port()
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    try:
        started = services.ensure_redis(tmp_path)
        assert started is not None and services.redis_answers(os.environ["REDIS_URL"]) is None
        started.stop()
        assert not services.port_open("127.0.0.1", port)
    finally:
        del os.environ["REDIS_URL"]


def test_the_transformed_sam_template_lints_clean():
    from infra.sam_lint import lint

    code, output = lint()
    assert code == 0, output


def test_the_demo_booking_of_make_run_is_confirmed(stack):
    from infra.local.stack import demo_booking

    line = demo_booking()
    assert "→ 201 in" in line and '"status": "confirmed"' in line, line


def test_a_missing_mysql_is_replaced_by_a_private_mariadb_that_takes_the_schema_and_stops_with_it(tmp_path):
    port = services.free_port()
    saved = os.environ.get("MYSQL_PORT")
    os.environ["MYSQL_PORT"] = str(port)
    try:
        started = services.ensure_mysql(tmp_path)
        assert started is not None and started.details["private"]
        assert services.mysql_answers() is None
        assert "001_core.sql" in migrate(config.mysql_settings())
        started.stop()
        assert not services.port_open("127.0.0.1", port)
    finally:
        if saved is None:
            os.environ.pop("MYSQL_PORT", None)
        else:
            os.environ["MYSQL_PORT"] = saved
