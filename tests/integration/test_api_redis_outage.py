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


@pytest.mark.parametrize("method,path", [
    ("POST", "/v1/bookings"), ("GET", "/v1/bookings/requests/1.some-key"), ("GET", "/v1/listings/7"),
    ("GET", "/health")])
def test_a_route_whose_redis_times_out_answers_503_with_retry_after(frozen_redis, method, path):
    from booking_api.app import app

    with Client(app) as client:
        if method == "POST":
            response = client.http.post(path, body=json.dumps(BOOKING), headers={
                "Content-Type": "application/json", "Idempotency-Key": "frozen-redis", **unverified_claims_header(1)})
        else:
            response = client.http.get(path, headers=unverified_claims_header(1))
    assert (response.status_code, response.headers.get("Retry-After")) == (503, "1"), response.body
