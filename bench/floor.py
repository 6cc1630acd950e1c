"""The broker's own request-reply floor: produce a request → consume it → produce a reply → consume the reply.

Same broker, same topic layout (two bench topics with the booking topics' partition count), same consumer
settings as the stack's pollers, the same number of responder processes as payment pollers, the same client
concurrency, and no work: the responder answers each request with an empty reply under the same key.
The client waits for the request's acknowledgement (acks=all, like the API) and then for its reply, which a
listener thread hands over through an in-memory key → event map.

Two clients: kafka-python (what the stack uses) and confluent-kafka (librdkafka), to show how much of the
floor is the Python client.
"""
from __future__ import annotations

import multiprocessing
import threading
import time
import uuid

from bench.stats import LoadResult, closed_loop

REPLY_TIMEOUT_S = 5.0


def bench_topics(run_id: str, partitions: int) -> tuple[str, str]:
    """Create this run's request and reply topics (partition count as the booking topics)."""
    from infra.topics import ensure_topics

    request_topic, reply_topic = f"bench-floor-{run_id}-req", f"bench-floor-{run_id}-rep"
    ensure_topics([request_topic, reply_topic], partitions)
    return request_topic, reply_topic


# ---- kafka-python ----------------------------------------------------------------------------------------

def _kp_consumer(topic: str, shard: tuple[int, int] = (0, 1)):
    """A consumer assigned its share of `topic`, positioned at the end, with the pollers' fetch settings."""
    from kafka import KafkaConsumer, TopicPartition

    from booking_core.adapters.kafka import client_settings
    from infra.local.poller import consumer_latency_settings

    consumer = KafkaConsumer(**client_settings(), enable_auto_commit=False, **consumer_latency_settings())
    index, count = shard
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)) if p % count == index]
    consumer.assign(parts)
    consumer.seek_to_end(*parts)
    for tp in parts:
        consumer.position(tp)
    return consumer


def _kp_responder(request_topic: str, reply_topic: str, shard: tuple[int, int], ready, stop) -> None:
    from booking_core.adapters.kafka import new_producer

    consumer = _kp_consumer(request_topic, shard)
    producer = new_producer()
    ready.set()
    while not stop.is_set():
        for batch in consumer.poll(timeout_ms=100).values():
            for record in batch:
                producer.send(reply_topic, key=record.key, value=b"{}")
    producer.close(timeout=2)
    consumer.close(autocommit=False)


class _Waiters:
    """key → [event, reply]: the seed's in-memory wait/notify map, entry made before the request is sent."""

    def __init__(self):
        self._map: dict[bytes, threading.Event] = {}
        self._lock = threading.Lock()

    def expect(self, key: bytes) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._map[key] = event
        return event

    def arrived(self, key: bytes) -> None:
        with self._lock:
            event = self._map.pop(key, None)
        if event is not None:
            event.set()

    def forget(self, key: bytes) -> None:
        with self._lock:
            self._map.pop(key, None)

    def outcome(self, key: bytes, event: threading.Event) -> str:
        """Wait for the reply to `key`: "ok", or "timeout" (and the key is forgotten)."""
        if not event.wait(REPLY_TIMEOUT_S):
            self.forget(key)
            return "timeout"
        return "ok"


class KafkaPythonClient:
    """Request-reply with kafka-python: the API's producer settings, a listener thread on the reply topic."""

    name = "kafka-python"

    def __init__(self, request_topic: str, reply_topic: str):
        from booking_core.adapters.kafka import new_producer

        self.request_topic = request_topic
        self.waiters = _Waiters()
        self.producer = new_producer()
        self.stop = threading.Event()
        self._consumer = _kp_consumer(reply_topic)
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self.stop.is_set():
            for batch in self._consumer.poll(timeout_ms=100).values():
                for record in batch:
                    self.waiters.arrived(record.key)

    def request(self, _state, _n) -> str:
        key = uuid.uuid4().hex.encode()
        event = self.waiters.expect(key)
        self.producer.send(self.request_topic, key=key, value=b"{}").get(timeout=REPLY_TIMEOUT_S)
        return self.waiters.outcome(key, event)

    def close(self) -> None:
        self.stop.set()
        self._thread.join(2)
        self._consumer.close(autocommit=False)
        self.producer.close(timeout=2)


# ---- confluent-kafka (librdkafka) ------------------------------------------------------------------------

def _ck_settings() -> dict:
    from booking_core import config
    from infra.local.poller import consumer_latency_settings

    return {"bootstrap.servers": config.kafka_bootstrap_or_local(), "socket.nagle.disable": True,
            "fetch.wait.max.ms": consumer_latency_settings()["fetch_max_wait_ms"]}


def _ck_producer():
    from confluent_kafka import Producer

    settings = _ck_settings()
    settings.pop("fetch.wait.max.ms")
    return Producer({**settings, "acks": "all", "enable.idempotence": True, "linger.ms": 0})


def _ck_consumer(topic: str, shard: tuple[int, int] = (0, 1)):
    """Assigned at each partition's current end (explicit offsets: nothing sent after this is missed)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**_ck_settings(), "group.id": f"bench-floor-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "fetch.min.bytes": 1, "auto.offset.reset": "latest"})
    metadata = consumer.list_topics(topic, timeout=10)
    index, count = shard
    parts = []
    for p in sorted(metadata.topics[topic].partitions):
        if p % count == index:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            parts.append(TopicPartition(topic, p, high))
    consumer.assign(parts)
    return consumer


def _ck_responder(request_topic: str, reply_topic: str, shard: tuple[int, int], ready, stop) -> None:
    consumer = _ck_consumer(request_topic, shard)
    producer = _ck_producer()
    ready.set()
    while not stop.is_set():
        # poll() returns at the first message; consume(n, timeout) would wait for n messages or the timeout.
        message = consumer.poll(0.1)
        if message is not None and message.error() is None:
            producer.produce(reply_topic, key=message.key(), value=b"{}")
        producer.poll(0)
    producer.flush(2)
    consumer.close()


class ConfluentClient:
    """Request-reply with confluent-kafka: acks=all + idempotence, a listener thread on the reply topic."""

    name = "confluent-kafka"

    def __init__(self, request_topic: str, reply_topic: str):
        self.request_topic = request_topic
        self.waiters = _Waiters()
        self.producer = _ck_producer()
        self.stop = threading.Event()
        self._consumer = _ck_consumer(reply_topic)
        self._threads = [threading.Thread(target=self._listen, daemon=True),
                         threading.Thread(target=self._serve_deliveries, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _listen(self) -> None:
        while not self.stop.is_set():
            message = self._consumer.poll(0.1)
            if message is not None and message.error() is None:
                self.waiters.arrived(message.key())

    def _serve_deliveries(self) -> None:
        while not self.stop.is_set():
            self.producer.poll(0.1)

    def request(self, _state, _n) -> str:
        key = uuid.uuid4().hex.encode()
        event = self.waiters.expect(key)
        acked = threading.Event()
        errors: list = []

        def delivered(err, _msg):
            if err is not None:
                errors.append(err)
            acked.set()

        self.producer.produce(self.request_topic, key=key, value=b"{}", on_delivery=delivered)
        if not acked.wait(REPLY_TIMEOUT_S) or errors:
            self.waiters.forget(key)
            return "not_acked"
        return self.waiters.outcome(key, event)

    def close(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(2)
        self._consumer.close()
        self.producer.flush(2)


# ---- the measurement -------------------------------------------------------------------------------------

CLIENTS = {"kafka-python": (KafkaPythonClient, _kp_responder), "confluent-kafka": (ConfluentClient, _ck_responder)}


def measure_floor(client: str, request_topic: str, reply_topic: str, concurrencies: list[int],
                  duration_s: float, responders: int) -> list[LoadResult]:
    """Start `responders` responder processes, then measure the round trip at each concurrency."""
    client_cls, responder = CLIENTS[client]
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    processes, readies = [], []
    for i in range(responders):
        ready = ctx.Event()
        process = ctx.Process(target=responder, args=(request_topic, reply_topic, (i, responders), ready, stop),
                              daemon=True, name=f"floor-responder-{i}")
        process.start()
        processes.append(process)
        readies.append(ready)
    rpc = None
    try:
        for ready in readies:
            if not ready.wait(30):
                raise RuntimeError(f"{client} floor responder did not start")
        rpc = client_cls(request_topic, reply_topic)
        time.sleep(0.2)
        return [closed_loop(f"floor {client}", rpc.request, c, duration_s, error_outcomes=frozenset(
            {"timeout", "not_acked"})) for c in concurrencies]
    finally:
        if rpc is not None:
            rpc.close()
        stop.set()
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.terminate()
