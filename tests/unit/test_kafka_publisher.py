import threading
import time

import pytest
from kafka.errors import KafkaTimeoutError

from booking_core.adapters.kafka import KafkaPublisher, close_producer
from booking_core.ports import BrokerUnavailable


class FakeFuture:
    def __init__(self, ok: bool):
        self.ok = ok
        self.exception = None if ok else RuntimeError("NotLeaderForPartition")

    def get(self, timeout=None):
        if not self.ok:
            raise self.exception


class FakeSender:
    def __init__(self):
        self.force_closed = False

    def force_close(self):
        self.force_closed = True

    def join(self, timeout=None):
        pass


class FakeProducer:
    """Sends succeed or fail in the given order (True = acknowledged); close() can be made to fail as
    kafka-python 3.0.12's does when a record is stuck (it flushes first)."""

    def __init__(self, outcomes=(), stuck=False):
        self.outcomes = list(outcomes)
        self.sent = []
        self.closed = False
        self.stuck = stuck
        self._sender = FakeSender()

    def send(self, topic, key, value, headers):
        self.sent.append((topic, key, value, headers))
        return FakeFuture(self.outcomes.pop(0) if self.outcomes else True)

    def close(self, timeout=None):
        if self.stuck and not self._sender.force_closed:
            raise KafkaTimeoutError("Timeout waiting for future")
        self.closed = True


class Factory:
    def __init__(self, *producers):
        self.producers = list(producers)
        self.built = []

    def __call__(self):
        producer = self.producers.pop(0) if self.producers else FakeProducer()
        self.built.append(producer)
        return producer


def test_flush_raises_when_any_record_of_the_batch_was_not_acknowledged():
    publisher = KafkaPublisher(Factory(FakeProducer([True, False, True])))
    for key in ("a", "b", "c"):
        publisher.send("booking-decisions", key, b"{}")
    with pytest.raises(BrokerUnavailable, match="record 2 of 3 not acknowledged"):
        publisher.flush()


def test_flush_forgets_records_it_has_already_checked():
    publisher = KafkaPublisher(Factory(FakeProducer([True, False])))
    publisher.send("t", "a", b"{}")
    publisher.flush()
    publisher.send("t", "b", b"{}")
    with pytest.raises(BrokerUnavailable, match="record 1 of 1"):
        publisher.flush()


def test_publish_waits_for_the_acknowledgement_and_carries_the_correlation_header():
    producer = FakeProducer([True, False])
    publisher = KafkaPublisher(Factory(producer))
    publisher.publish("booking-requests", "key-1", b"{}", correlation_id="corr-1")
    assert producer.sent[0][1] == b"key-1" and producer.sent[0][3] == [("correlation_id", b"corr-1")]
    with pytest.raises(BrokerUnavailable):
        publisher.publish("booking-requests", "key-2", b"{}")


def test_a_producer_whose_flush_failed_is_closed_and_the_next_send_uses_a_new_one():
    failed, fresh = FakeProducer([False]), FakeProducer()
    factory = Factory(failed, fresh)
    publisher = KafkaPublisher(factory)
    publisher.send("t", "a", b"{}")
    with pytest.raises(BrokerUnavailable):
        publisher.flush()
    assert failed.closed
    publisher.send("t", "a", b"{}")
    publisher.flush()
    assert factory.built == [failed, fresh] and fresh.sent and not fresh.closed


def test_a_producer_whose_publish_failed_is_closed_and_the_next_publish_uses_a_new_one():
    failed, fresh = FakeProducer([False]), FakeProducer()
    publisher = KafkaPublisher(Factory(failed, fresh))
    with pytest.raises(BrokerUnavailable):
        publisher.publish("t", "a", b"{}")
    publisher.publish("t", "a", b"{}")
    assert failed.closed and len(fresh.sent) == 1


def test_a_producer_stuck_with_undeliverable_records_is_still_closed():
    # kafka-python 3.0.12's close() raises before stopping the sender when a record is stuck
    stuck = FakeProducer(stuck=True)
    close_producer(stuck, timeout_s=0.1)
    assert stuck._sender.force_closed and stuck.closed


def test_a_failure_seen_late_on_a_producer_already_replaced_keeps_the_new_one():
    # Two API threads published on the same producer; both publishes fail, the second failure arrives after
    # the first thread has already replaced the producer and the next publish has built a new one.
    failed, fresh = FakeProducer([False, False]), FakeProducer()
    publisher = KafkaPublisher(Factory(failed, fresh))
    late = publisher._send(publisher._current(), "t", "late", b"{}", None)
    with pytest.raises(BrokerUnavailable):
        publisher.publish("t", "a", b"{}")
    publisher.publish("t", "b", b"{}")
    with pytest.raises(RuntimeError):
        late.get()
    publisher._replace(failed, RuntimeError("late"))
    publisher.publish("t", "c", b"{}")
    assert len(fresh.sent) == 2 and not fresh.closed


def test_threads_that_wait_for_a_producer_share_one_build_and_its_failure():
    calls = []
    release = threading.Event()

    def unreachable():
        calls.append(1)
        release.wait(5)
        raise BrokerUnavailable("cannot reach Kafka")

    publisher = KafkaPublisher(unreachable)
    errors = []

    def publish():
        try:
            publisher.publish("t", "k", b"{}")
        except BrokerUnavailable as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # all of them are waiting for the one build
    release.set()
    for thread in threads:
        thread.join(5)
    assert len(calls) == 1 and len(errors) == 8


def test_record_batch_checksums_are_computed_in_c():
    """kafka-python computes each record batch's CRC-32C in pure Python unless the crc32c package is installed:
    about 0.2 ms per 2 KB batch, on every produce and every fetch (a profile of the payment poller found it)."""
    from kafka.record import util

    assert util.crc32c_c is not None and util.calc_crc32c.__defaults__[0] is util.crc32c_c
