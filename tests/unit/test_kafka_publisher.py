import pytest

from booking_core.adapters.kafka import KafkaPublisher
from booking_core.ports import BrokerUnavailable


class FakeFuture:
    def __init__(self, ok: bool):
        self.ok = ok
        self.exception = None if ok else RuntimeError("NotLeaderForPartition")

    def succeeded(self):
        return self.ok

    def get(self, timeout=None):
        if not self.ok:
            raise self.exception


class FakeProducer:
    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.sent = []

    def send(self, topic, key, value, headers):
        self.sent.append((topic, key, value, headers))
        return FakeFuture(self.outcomes.pop(0))

    def flush(self, timeout=None):
        pass


def test_flush_raises_when_any_record_of_the_batch_was_not_acknowledged():
    publisher = KafkaPublisher(lambda: FakeProducer([True, False, True]))
    for key in ("a", "b", "c"):
        publisher.send("booking-decisions", key, b"{}")
    with pytest.raises(BrokerUnavailable, match="1 of 3"):
        publisher.flush()


def test_flush_forgets_records_it_has_already_checked():
    publisher = KafkaPublisher(lambda: FakeProducer([True, True]))
    publisher.send("t", "a", b"{}")
    publisher.flush()
    publisher.send("t", "b", b"{}")
    publisher.flush()


def test_publish_waits_for_the_acknowledgement_and_carries_the_correlation_header():
    producer = FakeProducer([True, False])
    publisher = KafkaPublisher(lambda: producer)
    publisher.publish("booking-requests", "key-1", b"{}", correlation_id="corr-1")
    assert producer.sent[0][1] == b"key-1" and producer.sent[0][3] == [("correlation_id", b"corr-1")]
    with pytest.raises(BrokerUnavailable):
        publisher.publish("booking-requests", "key-2", b"{}")
