import base64

import pytest

from booking_core.domain import messages
from booking_core.domain.model import Decision, ValidationError, parse_booking_request
from booking_core.kafka_event import NotAKafkaEvent, build_event, parse_record, raw_records
from tests.conftest import load_event

REQUEST = parse_booking_request({"user_id": 1, "listing_id": 7, "check_in": "2030-03-01", "check_out": "2030-03-04",
                                 "guests": 2, "payment_token": "tok_visa"})


def test_a_request_message_round_trips_with_type_version_and_key():
    value = messages.encode_request("k1", REQUEST, attempt=2)
    request, attempt = messages.decode_request("k1", value)
    assert request == REQUEST and attempt == 2


@pytest.mark.parametrize("key,value,field", [
    (None, messages.encode_request("k", REQUEST), "key"),
    ("k", b"{not json", "value"),
    ("k", b'{"type": "booking.requested", "version": 99}', "version"),
    ("k", b'{"type": "other", "version": 1}', "type"),
    ("k", b'{"type": "booking.requested", "version": 1, "request": {"user_id": "x"}}', "user_id"),
])
def test_malformed_request_records_raise_validation_errors(key, value, field):
    with pytest.raises(ValidationError) as exc:
        messages.decode_request(key, value)
    assert field in exc.value.errors


def test_a_decision_round_trips():
    decision = Decision("k", "confirmed", booking_id=3, payment_id=4, amount_cents=100, currency="EUR")
    assert messages.decode_decision(messages.encode_decision(decision)).to_dict() == decision.to_dict()


def test_built_events_parse_back_with_signed_header_bytes():
    event = build_event([("booking-requests", 2, 10, 1700000000000, b"key-1", b"value", [("h", b"\xff\x01")])])
    (raw,) = list(raw_records(event))
    assert raw["headers"] == [{"h": [-1, 1]}]
    record = parse_record(raw)
    assert (record.key, record.value, record.headers["h"], record.position) == (
        "key-1", b"value", b"\xff\x01", "booking-requests-2@10")


@pytest.mark.parametrize("source", ["aws:kafka", "SelfManagedKafka", "aws:SelfManagedKafka"])
def test_both_event_sources_are_accepted(source):
    event = build_event([("t", 0, 1, 0, None, b"v", [])], source=source)
    assert parse_record(next(raw_records(event))).key is None


def test_other_event_sources_are_refused():
    with pytest.raises(NotAKafkaEvent):
        list(raw_records({"eventSource": "aws:sqs", "records": {}}))


@pytest.mark.parametrize("name", ["payment_fn/msk.json", "payment_fn/self_managed_kafka.json"])
def test_sample_events_parse(name):
    records = [parse_record(r) for r in raw_records(load_event(name))]
    assert records and all(r.topic == "booking-requests" for r in records)
    request, _ = messages.decode_request(records[0].key, records[0].value)
    assert request.listing_id > 0
    assert base64.b64decode(load_event(name)["records"][f"booking-requests-{records[0].partition}"][0]["key"])


def test_the_decisions_listener_saves_its_batch_at_once_in_the_records_order():
    from booking_core.services.kafka_batches import process_decisions

    class Store:
        def __init__(self):
            self.calls = []

        def save_many(self, decisions):
            self.calls.append([(d.booking_key, d.status) for d in decisions])
            return [d.booking_key != "2.b" for d in decisions]

    store = Store()
    event = build_event([
        ("booking-decisions", 0, 1, 0, b"1.a", messages.encode_decision(Decision("1.a", "confirmed")), []),
        ("booking-decisions", 0, 2, 0, b"bad", b"{nope", []),
        ("booking-decisions", 1, 7, 0, b"2.b", messages.encode_decision(Decision.rejected("2.b", "unavailable")), []),
        ("booking-decisions", 1, 8, 0, b"3.c", messages.encode_decision(Decision("other", "queued")), []),
    ])
    summary = process_decisions(event, store)
    assert store.calls == [[("1.a", "confirmed"), ("2.b", "rejected"), ("3.c", "queued")]]  # stored by record key
    assert summary == {"stored": 2, "kept_final": 1, "invalid_without_key": 1}
