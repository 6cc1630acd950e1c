"""Redis must not grow without bound: every key under the stack's prefix either expires or has an owner that
deletes it (the read model's keys follow MySQL through replication and reconcile; the global pending set is
emptied by decisions and the maintenance sweep)."""
from __future__ import annotations

import pytest

from booking_core import bootstrap, config
from booking_core.domain.read_model import LOADED_MARKER, is_model_key, is_registry_key
from infra.local.faults import set_sandbox_outage
from tests.support import booking_body, future_stay, wait_for

pytestmark = pytest.mark.integration

# Keys without a TTL, and who deletes what they hold.
OWNED_WITHOUT_TTL = {
    "pending": "decision store (ZREM on each decision) and maintenance (re-drives or answers stale members)",
    LOADED_MARKER: "replication: one key saying the read model is loaded (its absence makes the tail reload)",
}


def _lifetime_defects(redis_client) -> list[str]:
    prefix = config.redis_prefix()
    defects = []
    for raw in redis_client.scan_iter(match=prefix + "*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else raw
        relative = key[len(prefix):]
        if is_model_key(relative) or is_registry_key(relative) or relative in OWNED_WITHOUT_TTL:
            continue
        ttl = redis_client.ttl(key)
        if ttl == -1:  # -2 is a key that expired between SCAN and TTL
            defects.append(relative)
    return defects


def test_every_key_the_stack_writes_expires_or_has_an_owner(http, redis_client):
    """Each kind of request the stack answers, then a look at every key it left: none may live for ever unowned."""
    stay = check_in, check_out = future_stay(nights=2)
    confirmed = http.post("/v1/bookings", booking_body(listing_id=31, stay=stay))
    assert confirmed.body["status"] == "confirmed", confirmed.body
    taken = http.as_user(2).post("/v1/bookings", booking_body(listing_id=31, user_id=2, stay=stay))
    assert taken.status == 409, taken.body
    declined = http.post("/v1/bookings", booking_body(listing_id=32, token="tok_chargeDeclined"))
    assert declined.status == 402, declined.body
    set_sandbox_outage(bootstrap.connections(), True)
    try:
        queued = http.post("/v1/bookings", booking_body(listing_id=33))
    finally:
        set_sandbox_outage(bootstrap.connections(), False)
    assert queued.body["status"] == "queued", queued.body
    assert http.delete(queued.body["status_url"]).status == 200
    assert http.get("/v1/listings?city=Lisbon").status == 200
    assert http.get(f"/v1/listings/31/availability?from={check_in}&to={check_out}").status == 200
    assert http.get("/v1/users/1/bookings").status == 200
    wait_for(lambda: http.get(f"/v1/bookings/{confirmed.body['booking_id']}").status == 200)

    assert _lifetime_defects(redis_client) == []
