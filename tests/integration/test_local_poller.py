"""The local event source mapping on the real broker: Lambda's batch retry and commit rules."""
from __future__ import annotations

import threading
import uuid

import pytest

from booking_core.adapters.kafka import client_settings
from infra.local import template
from infra.local.poller import KafkaPoller
from infra.topics import ensure_topics
from tests.support import wait_for

pytestmark = pytest.mark.integration


def _produce(topic: str, keys: list[str]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(**client_settings())
    for key in keys:
        producer.send(topic, key=key.encode(), value=b'{"n": 1}', partition=0)
    producer.flush()
    producer.close()


def _committed(topic: str, group: str) -> int | None:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**client_settings(), group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, 0))
    finally:
        consumer.close()


def _poller(topic: str, handler, event_type="MSK", batch_size=100, window=0):
    group = f"group-{uuid.uuid4().hex[:8]}"
    function = template.Function("TestFunction", "", "app.handler", {}, timeout=5)
    event = template.Event("Records", event_type, {
        "Topics": [topic], "ConsumerGroupId": group, "StartingPosition": "TRIM_HORIZON",
        "BatchSize": batch_size, "MaximumBatchingWindowInSeconds": window})
    stop = threading.Event()
    poller = KafkaPoller(function, event, handler=handler, stop=stop)
    thread = threading.Thread(target=poller.run, daemon=True)
    return poller, thread, stop, group


@pytest.fixture
def topic(kafka_broker):
    name = f"poller-{uuid.uuid4().hex[:8]}"
    ensure_topics([name], 1)
    return name


def test_a_failing_batch_is_retried_whole_and_committed_only_after_it_succeeds(topic):
    seen: list[list[str]] = []
    failures_left = [2]

    def handler(event, context):
        seen.append([r["offset"] for batch in event["records"].values() for r in batch])
        if failures_left[0]:
            failures_left[0] -= 1
            raise RuntimeError("database down")
        return {"ok": True}

    _produce(topic, ["a", "b", "c"])
    poller, thread, stop, group = _poller(topic, handler)
    thread.start()
    try:
        assert wait_for(lambda: len(seen) >= 1)
        assert _committed(topic, group) is None  # still failing: nothing committed
        assert wait_for(lambda: _committed(topic, group) == 3)
    finally:
        stop.set()
        thread.join(10)
    assert seen[:3] == [[0, 1, 2]] * 3  # the same records, whole, until the handler returned
    assert poller.failures == 2


def test_batches_respect_the_batch_size_and_carry_the_event_source_of_the_template_event(topic):
    events = []
    _produce(topic, [f"k{i}" for i in range(5)])
    poller, thread, stop, _ = _poller(topic, lambda e, c: events.append(e), event_type="SelfManagedKafka",
                                      batch_size=2, window=0.2)
    thread.start()
    try:
        assert wait_for(lambda: sum(len(b) for e in events for b in e["records"].values()) == 5)
    finally:
        stop.set()
        thread.join(10)
    assert all(sum(len(b) for b in e["records"].values()) <= 2 for e in events)
    assert {e["eventSource"] for e in events} == {"SelfManagedKafka"}
    first = events[0]["records"][f"{topic}-0"][0]
    assert first["key"] and first["value"] and first["timestampType"] == "CREATE_TIME"
