"""The in-process API with its Redis frozen (SIGSTOP of a private redis-server): 503 + Retry-After, not 500.

The redis-server here is started by the test and is the only one it pauses; the shared Redis is not touched.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from chalice.test import Client

from booking_core import bootstrap
from booking_core.adapters.redis_client import get_redis, reset_clients
from infra.local import services
from tests.support import unverified_claims_header

pytestmark = pytest.mark.integration

BOOKING = {"user_id": 1, "listing_id": 1, "check_in": "2099-01-01", "check_out": "2099-01-03", "guests": 1,
           "payment_token": "tok_visa"}


@pytest.fixture
def frozen_redis(tmp_path, monkeypatch):
    """A private redis-server the API's clients use (0.5 s socket timeouts), stopped with SIGSTOP."""
    port = services.free_port()
    server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path), "--save", "",
         "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert services.wait_port("127.0.0.1", port, 10, server), "the private redis-server did not start"
        monkeypatch.setenv("REDIS_URL",
                           f"redis://127.0.0.1:{port}/0?socket_timeout=0.5&socket_connect_timeout=0.5")
        reset_clients()
        bootstrap.reset()
        get_redis().ping()  # the API's client is connected to it before it freezes
        os.kill(server.pid, signal.SIGSTOP)
        yield server
    finally:
        os.kill(server.pid, signal.SIGCONT)
        server.terminate()
        server.wait(10)
        reset_clients()
        bootstrap.reset()


@pytest.mark.parametrize("method,path", [("POST", "/v1/bookings"), ("GET", "/v1/listings/7"), ("GET", "/health")])
def test_a_route_whose_redis_times_out_answers_503_with_retry_after(frozen_redis, method, path):
    from booking_api.app import app

    with Client(app) as client:
        if method == "POST":
            response = client.http.post(path, body=json.dumps(BOOKING), headers={
                "Content-Type": "application/json", "Idempotency-Key": "frozen-redis", **unverified_claims_header(1)})
        else:
            response = client.http.get(path, headers=unverified_claims_header(1))
    assert (response.status_code, response.headers.get("Retry-After")) == (503, "1"), response.body


@pytest.fixture
def private_redis(tmp_path, monkeypatch):
    """A private redis-server the API's clients use (0.5 s socket timeouts); the test freezes it when it wants."""
    port = services.free_port()
    server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path), "--save", "",
         "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert services.wait_port("127.0.0.1", port, 10, server), "the private redis-server did not start"
        monkeypatch.setenv("REDIS_URL",
                           f"redis://127.0.0.1:{port}/0?socket_timeout=0.5&socket_connect_timeout=0.5")
        reset_clients()
        bootstrap.reset()
        yield server
    finally:
        os.kill(server.pid, signal.SIGCONT)
        server.terminate()
        server.wait(10)
        reset_clients()
        bootstrap.reset()


class FreezingPublisher:
    """Publishes for real (the request is on the topic), then freezes Redis before the API waits for the decision."""

    def __init__(self, redis_server):
        from booking_core.adapters.kafka import KafkaPublisher

        self.real, self.redis_server = KafkaPublisher(), redis_server

    def publish(self, *args, **kwargs):
        self.real.publish(*args, **kwargs)
        os.kill(self.redis_server.pid, signal.SIGSTOP)

    def close(self):
        self.real.close()


def test_a_published_request_whose_decision_wait_fails_answers_202_pending_not_503(private_redis, kafka_broker,
                                                                                   monkeypatch):
    from booking_api.app import app

    monkeypatch.setenv("DECISION_TIMEOUT_S", "2")
    bootstrap.override("publisher", FreezingPublisher(private_redis))
    with Client(app) as client:
        response = client.http.post("/v1/bookings", body=json.dumps(BOOKING), headers={
            "Content-Type": "application/json", "Idempotency-Key": "published-then-frozen",
            **unverified_claims_header(1)})
    body = json.loads(response.body)
    assert (response.status_code, body["status"]) == (202, "pending"), response.body
    assert response.headers["Location"] == body["status_url"] == "/v1/bookings/requests/1.published-then-frozen"


class Unreachable:
    def __init__(self, error):
        self.error = error

    def publish(self, *args, **kwargs):
        raise self.error

    def park_request(self, *args, **kwargs):
        raise self.error


def test_a_submit_that_could_neither_publish_nor_park_leaves_its_key_free_for_the_next_try(private_redis,
                                                                                       kafka_broker):
    """It once left the key `pending` in the decision store, so every later try with it waited and answered 202
    for the store's TTL while nothing anywhere remembered the request."""
    from booking_api.app import app
    from booking_core.ports import BrokerUnavailable, DatabaseUnavailable

    headers = {"Content-Type": "application/json", "Idempotency-Key": "nowhere-to-go", **unverified_claims_header(1)}
    bootstrap.override("publisher", Unreachable(BrokerUnavailable("broker down")))
    bootstrap.override("retry_table", Unreachable(DatabaseUnavailable("MySQL down")))
    with Client(app) as client:
        first = client.http.post("/v1/bookings", body=json.dumps(BOOKING), headers=headers)
    assert first.status_code == 503

    published = []

    class Recording:
        def publish(self, topic, key, value, correlation_id=None, timeout_s=None):
            published.append(key)

    bootstrap.override("publisher", Recording())
    with Client(app) as client:
        client.http.post("/v1/bookings", body=json.dumps(BOOKING), headers=headers)
    assert published == ["1.nowhere-to-go"]  # the next try with the key publishes it


def test_a_status_url_answers_from_mysql_while_redis_is_frozen(frozen_redis, mysql_db):
    from booking_api.app import app
    from booking_core.adapters.mysql_decisions import insert_decision
    from booking_core.domain.model import Decision

    with bootstrap.connections().transaction() as cur:
        insert_decision(cur, Decision("1.decided-before-the-freeze", "confirmed", booking_id=41), "0" * 32)
    with Client(app) as client:
        known = client.http.get("/v1/bookings/requests/1.decided-before-the-freeze",
                                headers=unverified_claims_header(1))
        unknown = client.http.get("/v1/bookings/requests/1.never-sent", headers=unverified_claims_header(1))
    assert (known.status_code, json.loads(known.body)["booking_id"]) == (200, 41)
    assert unknown.status_code == 404
