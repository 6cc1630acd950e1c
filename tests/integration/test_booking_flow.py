"""The booking flow end to end on the real broker, MariaDB and Redis, through the template-driven local stack."""
from __future__ import annotations

import datetime as dt
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from booking_core import config
from tests.support import booking_body, future_stay, sql_rows, wait_for

pytestmark = pytest.mark.integration


rows = sql_rows


def test_a_booking_is_confirmed_over_http_with_its_rows_in_mysql(http):
    body = booking_body(listing_id=3, nights=2)
    response = http.post("/v1/bookings", body)
    assert response.status == 201, response.body
    decision = response.body
    assert decision["status"] == "confirmed"
    price = rows("SELECT nightly_price_cents FROM listings WHERE id=3")[0]["nightly_price_cents"]
    assert decision["amount_cents"] == 2 * price
    (booking,) = rows("SELECT * FROM bookings WHERE booking_key=%s", decision["booking_key"])
    assert (booking["id"], booking["status"], booking["listing_id"]) == (decision["booking_id"], "confirmed", 3)
    (payment,) = rows("SELECT * FROM payments WHERE booking_key=%s", decision["booking_key"])
    assert (payment["id"], payment["status"], payment["amount_cents"]) == (
        decision["payment_id"], "captured", decision["amount_cents"])
    status = http.get(decision["status_url"])
    assert status.status == 200 and status.body["booking_id"] == decision["booking_id"]


def _race(http, listing_ids: list[int], clients_per_listing: int, users: list[int]) -> dict[int, list]:
    """clients_per_listing clients per listing (client i is user users[i]) ask at once for overlapping stays, each
    with its own key; a user has one request per listing in flight."""
    stays = {lid: future_stay(3) for lid in listing_ids}
    jobs = []
    for lid in listing_ids:
        start = dt.date.fromisoformat(stays[lid][0])
        for i in range(clients_per_listing):
            check_in = start + dt.timedelta(days=i % 2)  # two shapes of overlap: same dates and shifted
            body = booking_body(listing_id=lid, user_id=users[i], guests=1,
                                stay=(check_in.isoformat(), (check_in + dt.timedelta(days=3)).isoformat()))
            jobs.append((lid, f"race-{lid}-{i}-{uuid.uuid4().hex[:8]}", body))
    for job in jobs:  # sign in first, so the race is the bookings'
        http.as_user(job[2]["user_id"]).auth_headers()
    with ThreadPoolExecutor(max_workers=min(len(jobs), 100)) as pool:
        answers = list(pool.map(lambda job: (job[0], f"{job[2]['user_id']}.{job[1]}", http.as_user(
            job[2]["user_id"]).post("/v1/bookings", job[2], headers={"Idempotency-Key": job[1]})), jobs))
    by_listing: dict[int, list] = {}
    for lid, key, response in answers:
        by_listing.setdefault(lid, []).append((key, _decided(http, response)))
    return by_listing


def _decided(http, response):
    """The answer with its decision: a 202 pending (the API's wait for the decision is bounded, and a loaded
    machine can pass it) is followed to the decision at its status URL, as a client would."""
    if response.status != 202:
        return response
    user = http.as_user(int(response.body["booking_key"].split(".", 1)[0]))

    def final():
        status = user.get(response.body["status_url"])
        return status if status.body.get("status") in ("confirmed", "rejected") else None

    return wait_for(final, timeout=60, interval=0.2) or response


def _assert_exactly_one_confirmed(by_listing):
    for lid, answers in by_listing.items():
        outcomes = sorted((r.body.get("status"), r.body.get("reason")) for _, r in answers)
        odd = [(r.status, r.body.get("status"), r.body.get("error") or r.body.get("reason")) for _, r in answers
               if r.status not in (200, 201, 409)]
        assert outcomes.count(("confirmed", None)) == 1, (lid, outcomes, odd)
        assert outcomes.count(("rejected", "unavailable")) == len(answers) - 1, (lid, outcomes, odd)
        for key, response in answers:  # each client got the decision for its own key
            assert response.body["booking_key"] == key
        confirmed_key = next(k for k, r in answers if r.body["status"] == "confirmed")
        db = rows("SELECT booking_key FROM bookings WHERE listing_id=%s AND status='confirmed'"
                  " AND booking_key LIKE %s", lid, f"%.race-{lid}-%")
        assert [r["booking_key"] for r in db] == [confirmed_key]


def test_fifty_clients_racing_for_one_listing_get_one_confirmation_and_forty_nine_409s(http, crowd):
    _assert_exactly_one_confirmed(_race(http, [11], 50, crowd))


def test_fifty_clients_on_each_of_ten_listings_at_once_get_one_confirmation_per_listing(http, crowd):
    _assert_exactly_one_confirmed(_race(http, list(range(12, 22)), 50, crowd))


def test_a_declined_card_gets_402_and_leaves_no_confirmed_booking_or_captured_payment(http):
    response = http.post("/v1/bookings", booking_body(listing_id=4, token="tok_chargeDeclined"))
    assert response.status == 402 and response.body["reason"] == "payment_declined"
    key = response.body["booking_key"]
    assert [r["status"] for r in rows("SELECT status FROM bookings WHERE booking_key=%s", key)] == ["released"]
    assert [r["status"] for r in rows("SELECT status FROM payments WHERE booking_key=%s", key)] == ["declined"]


@pytest.mark.parametrize("body_change,reason", [
    ({"listing_id": 9999}, "unknown_listing"), ({"guests": 40}, "too_many_guests")])
def test_business_refusals_get_422_with_their_reason(http, body_change, reason):
    response = http.post("/v1/bookings", {**booking_body(listing_id=5), **body_change})
    assert (response.status, response.body["reason"]) == (422, reason)


def test_the_same_idempotency_key_and_body_get_the_same_answer_and_one_booking(http):
    body, key = booking_body(listing_id=6), f"idem-{uuid.uuid4().hex}"
    first = http.post("/v1/bookings", body, headers={"Idempotency-Key": key})
    second = http.post("/v1/bookings", body, headers={"Idempotency-Key": key})
    assert first.status == second.status == 201
    assert first.body == second.body
    assert len(rows("SELECT id FROM bookings WHERE booking_key=%s", f"1.{key}")) == 1


def test_the_same_idempotency_key_with_another_body_gets_422(http):
    key = f"idem-{uuid.uuid4().hex}"
    assert http.post("/v1/bookings", booking_body(listing_id=6), headers={"Idempotency-Key": key}).status == 201
    other = http.post("/v1/bookings", booking_body(listing_id=6), headers={"Idempotency-Key": key})
    assert (other.status, other.body["error"]) == (422, "idempotency_key_reused")


def test_a_reused_key_is_refused_even_after_the_decision_store_forgot_it(http, redis_client):
    """The decision store keeps an entry for minutes; the idempotency check must hold for as long as MySQL keeps
    the decision (it once answered 201 with someone else's booking once Redis had forgotten the key)."""
    key = f"forgotten-{uuid.uuid4().hex[:10]}"
    first_body = booking_body(listing_id=38)
    first = http.post("/v1/bookings", first_body, headers={"Idempotency-Key": key})
    assert first.status == 201, first.body
    assert redis_client.delete(f"{config.redis_prefix()}req:1.{key}") == 1  # its TTL ran out

    same = http.post("/v1/bookings", first_body, headers={"Idempotency-Key": key})
    assert (same.status, same.body["booking_id"]) == (201, first.body["booking_id"])

    assert redis_client.delete(f"{config.redis_prefix()}req:1.{key}") == 1
    other = http.post("/v1/bookings", booking_body(listing_id=38), headers={"Idempotency-Key": key})
    assert (other.status, other.body.get("reason")) == (422, "idempotency_key_reused"), other.body
    assert len(rows("SELECT id FROM bookings WHERE booking_key=%s", f"1.{key}")) == 1


def test_a_status_url_answers_from_mysql_once_the_decision_store_has_forgotten_the_key(http, redis_client):
    """Redis losing its data (a restart, a flush, the store's short TTL) once made every status URL answer 404
    'never seen' while MySQL held each final decision."""
    decided = http.post("/v1/bookings", booking_body(listing_id=39)).body
    assert decided["status"] == "confirmed"
    assert redis_client.delete(f"{config.redis_prefix()}req:{decided['booking_key']}") == 1

    status = http.get(decided["status_url"])

    assert status.status == 200, status.body
    assert {k: status.body[k] for k in ("status", "booking_id", "payment_id")} == {
        k: decided[k] for k in ("status", "booking_id", "payment_id")}
    # ... and the answer is back in the store for the next poll
    assert redis_client.hget(f"{config.redis_prefix()}req:{decided['booking_key']}", "status") == "confirmed"


def test_the_decision_store_keeps_an_entry_for_minutes_not_a_week(http, redis_client):
    decided = http.post("/v1/bookings", booking_body(listing_id=39)).body
    ttl = redis_client.ttl(f"{config.redis_prefix()}req:{decided['booking_key']}")
    assert 0 < ttl <= 3600, ttl


@pytest.mark.parametrize("raw,field", [
    (b"{not json", "body"), (b'{"user_id": 1}', "listing_id"), (b"x" * 20000, "body"), (b"[]", "body"),
    (b"[" * 8000, "body"), (b'{"a":' * 4000 + b"1" + b"}" * 4000, "body")])  # nesting deeper than a parser goes
def test_invalid_input_gets_400_with_the_field_named(http, raw, field):
    response = http.request("POST", "/v1/bookings", raw=raw)
    assert response.status == 400 and field in response.body["fields"]


@pytest.mark.parametrize("token", ["\ud800", "tok_" + "x" * 200, "tok_visa\u0000", "tok_visá", ""])
def test_a_payment_token_no_provider_issues_is_a_400_and_holds_no_night(http, token):
    body = booking_body(listing_id=38, token=token)
    response = http.post("/v1/bookings", body)
    assert response.status == 400 and "payment_token" in response.body["fields"], response.body
    held = sql_rows("SELECT id FROM bookings WHERE listing_id=38 AND check_in=%s AND status IN ('held', 'confirmed')",
                    body["check_in"])
    assert held == []


def test_an_unknown_request_key_is_404(http):
    assert http.get("/v1/bookings/requests/1.never-seen").status == 404


def test_the_app_object_is_a_lambda_handler_for_api_gateway_rest_proxy_events(stack):
    import json

    from booking_api.app import app
    from tests.conftest import load_event

    event = load_event("booking_api/api_gateway_get_request_status.json")
    event["pathParameters"]["booking_key"] = "1.never-seen"
    event["path"] = "/v1/bookings/requests/1.never-seen"
    response = app(event, None)
    assert response["statusCode"] == 404
    assert json.loads(response["body"])["error"] == "not_found"


# ---- payment_fn invoked directly with Lambda events built from real records ----------------------------

def _decisions_for(keys: set[str], timeout: float = 10) -> list:
    """Every decision published for these keys (read from the real decisions topic)."""
    from kafka import KafkaConsumer, TopicPartition

    from booking_core.adapters.kafka import client_settings
    from booking_core.domain import messages

    consumer = KafkaConsumer(**client_settings(), enable_auto_commit=False)
    parts = [TopicPartition(config.decisions_topic(), p) for p in consumer.partitions_for_topic(config.decisions_topic())]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    found, deadline = [], time.monotonic() + timeout
    end = consumer.end_offsets(parts)
    while time.monotonic() < deadline and any(consumer.position(p) < end[p] for p in parts):
        for batch in consumer.poll(timeout_ms=200).values():
            found += [messages.decode_decision(r.value) for r in batch if r.key and r.key.decode() in keys]
    consumer.close()
    return found


def _request_event(records):
    from booking_core.kafka_event import build_event

    return build_event([(config.requests_topic(), 0, i, 0, key, value, []) for i, (key, value) in enumerate(records)])


def test_the_same_record_delivered_twice_makes_one_booking_one_payment_and_two_equal_decisions(stack):
    from booking_core.domain import messages
    from booking_core.domain.model import parse_booking_request
    from payment_fn.app import handler

    key = f"dup-{uuid.uuid4().hex}"
    request = parse_booking_request(booking_body(listing_id=22))
    event = _request_event([(key.encode(), messages.encode_request(key, request))])
    handler(event, None)
    handler(event, None)
    assert len(rows("SELECT id FROM bookings WHERE booking_key=%s", key)) == 1
    assert len(rows("SELECT id FROM payments WHERE booking_key=%s", key)) == 1
    published = _decisions_for({key})
    assert len(published) == 2 and published[0].to_dict() == published[1].to_dict()
    assert published[0].status == "confirmed"


def test_poison_records_among_good_ones_do_not_block_the_partition(stack):
    from booking_core.domain import messages
    from booking_core.domain.model import parse_booking_request
    from payment_fn.app import handler

    good = [f"good-{i}-{uuid.uuid4().hex}" for i in range(2)]
    poison = f"poison-{uuid.uuid4().hex}"
    req = parse_booking_request(booking_body(listing_id=23))
    req2 = parse_booking_request(booking_body(listing_id=24))
    event = _request_event([
        (good[0].encode(), messages.encode_request(good[0], req)),
        (poison.encode(), b"\x00not json"),
        (None, messages.encode_request("no-key", req)),
        (b"wrong-types", b'{"type": "booking.requested", "version": 1, "request": {"guests": "two"}}'),
        (good[1].encode(), messages.encode_request(good[1], req2)),
    ])
    summary = handler(event, None)
    assert summary == {"confirmed": 2, "invalid": 2, "invalid_without_key": 1}
    decisions = {d.booking_key: d for d in _decisions_for({*good, poison})}
    assert decisions[poison].reason == "invalid_request"
    assert decisions[good[0]].status == decisions[good[1]].status == "confirmed"


def test_a_decision_slower_than_the_timeout_answers_202_then_the_status_shows_the_final_decision(http, monkeypatch):
    """The API publishes to a topic no poller reads, so no decision comes in time; then we run payment_fn on
    that record ourselves and the stack's listener stores its decision."""
    from chalice.test import Client
    from kafka import KafkaConsumer, TopicPartition

    from booking_api.app import app
    from booking_core import bootstrap
    from booking_core.adapters.kafka import client_settings
    from booking_core.kafka_event import build_event
    from infra.topics import ensure_topics
    from payment_fn.app import handler

    parked_topic = f"parked-{uuid.uuid4().hex[:8]}"
    ensure_topics([parked_topic], 1)
    monkeypatch.setenv("BOOKING_REQUESTS_TOPIC", parked_topic)
    monkeypatch.setenv("DECISION_TIMEOUT_S", "0.5")
    bootstrap.reset()
    try:
        with Client(app) as client:
            response = client.http.post("/v1/bookings", headers={"Content-Type": "application/json",
                                                                 **http.auth_headers()},
                                        body=__import__("json").dumps(booking_body(listing_id=25)))
        assert response.status_code == 202
        body = __import__("json").loads(response.body)
        assert body["status"] == "pending"
        assert response.headers["Location"] == f"/v1/bookings/requests/{body['booking_key']}"

        consumer = KafkaConsumer(**client_settings(), enable_auto_commit=False)
        consumer.assign([TopicPartition(parked_topic, 0)])
        consumer.seek_to_beginning()
        records = []
        while not records:
            records = [r for batch in consumer.poll(timeout_ms=500).values() for r in batch]
        consumer.close()
        monkeypatch.setenv("BOOKING_REQUESTS_TOPIC", config.requests_topic())
        handler(build_event([(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value, r.headers)
                             for r in records]), None)
        store = bootstrap.decision_store()
        decision = store.wait_decided(body["booking_key"], 10)
        assert decision is not None and decision.status == "confirmed"
    finally:
        bootstrap.reset()


def test_a_request_decided_after_its_check_in_day_is_rejected_and_holds_nothing(stack):
    """A request can sit in the topic or the retry table past its check-in day; payment_fn must not book it."""
    from booking_core.domain import messages
    from booking_core.domain.model import RequestBooking
    from payment_fn.app import handler

    key = f"late-{uuid.uuid4().hex}"
    yesterday = dt.date.today() - dt.timedelta(days=1)
    late = RequestBooking(1, 26, yesterday, yesterday + dt.timedelta(days=2), 1, "tok_visa")
    assert handler(_request_event([(key.encode(), messages.encode_request(key, late))]), None) == {"rejected": 1}
    assert [d.reason for d in _decisions_for({key})] == ["check_in_passed"]
    assert not rows("SELECT id FROM bookings WHERE booking_key=%s", key)
