"""Test settings and the real services the integration suite runs on.

Every run gets its own MySQL database, Redis key prefix, Kafka broker port and API port, so the suite never
touches a person's running stack (or another run's data) and never flushes keys it does not own.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVENTS_DIR = ROOT / "infra" / "events"
RUN_ID = f"{os.getpid()}"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Set before any booking_core code reads its configuration.
os.environ.update({
    "MYSQL_DATABASE": f"booking_test_{RUN_ID}",
    "REDIS_PREFIX": f"test:{RUN_ID}:",
    "KAFKA_PORT": str(_free_port()),
    "API_PORT": str(_free_port()),
    "MAIL_MODE": "outbox",
    "MAIL_OUTBOX_DIR": str(ROOT / ".local" / f"outbox-test-{RUN_ID}"),
    "LOG_LEVEL": os.environ.get("TEST_LOG_LEVEL", "WARNING"),
    "AWS_DEFAULT_REGION": "us-east-1",
    # As infra/local/env.json has it: no EMF metrics on stdout (a test that checks them turns them on).
    "POWERTOOLS_METRICS_DISABLED": "true",
})
os.environ.pop("KAFKA_BOOTSTRAP_SERVERS", None)
os.environ.pop("DB_SECRET_ARN", None)


def load_event(name: str) -> dict:
    """A sample event from infra/events (the same files `invoke` uses)."""
    return json.loads((EVENTS_DIR / name).read_text())


@pytest.fixture(scope="session")
def mysql_db():
    """This run's own database, migrated and seeded; dropped at the end."""
    from booking_core import config
    from infra.demo_data import load_demo_data
    from infra.local import services
    from infra.migrate import drop_database, migrate

    error = services.mysql_answers()
    if error:
        pytest.fail(f"MariaDB is not reachable ({error}); .ci/run starts it")
    settings = config.mysql_settings()
    migrate(settings)
    load_demo_data(settings)
    yield settings
    drop_database(settings)


@pytest.fixture(scope="session")
def redis_client():
    """A client for the shared Redis; at the end only keys under this run's prefix are deleted."""
    from booking_core import config
    from booking_core.adapters.redis_client import get_redis

    client = get_redis()
    client.ping()
    yield client
    for key in client.scan_iter(match=config.redis_prefix() + "*", count=1000):
        client.delete(key)


@pytest.fixture(scope="session")
def kafka_broker():
    """A private embedded Tansu broker for this run, with the booking topics created."""
    from booking_core import config
    from infra.local import services
    from infra.topics import ensure_topics

    broker = services.start_tansu(config.kafka_port(), ROOT / ".local" / "logs" / f"tansu-test-{RUN_ID}.log")
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.details["bootstrap"]
    ensure_topics()
    yield broker.details["bootstrap"]
    from booking_core import bootstrap

    bootstrap.reset()  # close cached producers first, or they log reconnect errors after the broker is gone
    broker.stop()


def _pytest_stack_env() -> dict:
    from infra.local.stack import child_env_base

    return child_env_base()


@pytest.fixture(scope="session")
def stack(mysql_db, redis_client, kafka_broker):
    """The local stack (template-driven: API, pollers, schedulers) against this run's services."""
    from booking_core import config
    from tests.support import running_stack

    with running_stack(_pytest_stack_env(), ROOT / ".local" / "logs" / f"stack-test-{RUN_ID}.log"):
        yield f"http://127.0.0.1:{config.api_port()}"


@pytest.fixture(scope="session")
def tokens(stack):
    """ID tokens of the demo users, from the test stack's local Cognito endpoint."""
    from tests.support import TokenCache

    return TokenCache(stack)


@pytest.fixture(scope="session")
def crowd(stack):
    """50 more signed-up users (ids 1001-1050), for tests where many people book at once: one user may have only
    MAX_PENDING_PER_USER requests awaiting a decision."""
    from tests.support import CROWD_FIRST_ID, add_users

    return add_users(stack, range(CROWD_FIRST_ID, CROWD_FIRST_ID + 50))


@pytest.fixture
def http(stack, tokens):
    """A small JSON HTTP client bound to the test stack's API, signed in as demo user 1 (`http.as_user(n)` for
    another, `http.anonymous()` for none)."""
    from tests.support import HttpClient

    return HttpClient(stack, tokens=tokens, user_id=1)


@pytest.fixture(scope="session")
def sam_build():
    """`make build` once per run (sam build --cached into .aws-sam/build, SAM CLI in its own venv): the built
    artifacts test runs the functions from it, and the README test counts its `make build` lines as run by it."""
    import subprocess

    result = subprocess.run(["make", "-s", "build"], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return ROOT / ".aws-sam" / "build"
