"""The booking topics: created once per cluster (a deploy step, not Lambda code), by the local stack at start.

    python -m infra.topics      # against KAFKA_BOOTSTRAP_SERVERS (KAFKA_AUTH=iam for MSK)
"""
from __future__ import annotations

import json
import sys

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from booking_core import config
from booking_core.adapters.kafka import client_settings
from booking_core.ports import BrokerUnavailable


def new_topic(name: str, partitions: int, replication_factor: int, min_insync_replicas: int) -> NewTopic:
    """The booking topic as created: min.insync.replicas is set only when above the broker's default of 1."""
    configs = {"min.insync.replicas": str(min_insync_replicas)} if min_insync_replicas > 1 else {}
    return NewTopic(name, num_partitions=partitions, replication_factor=replication_factor, topic_configs=configs)


def ensure_topics(topics: list[str] | None = None, partitions: int | None = None,
                  replication_factor: int | None = None, min_insync_replicas: int | None = None) -> dict[str, int]:
    """Create the booking topics if missing; return topic → partition count as the broker reports it.

    Replication factor and min.insync.replicas come from the settings (3 and 2 on MSK, 1 and 1 locally). A topic
    that exists already is left as it is: its replication is reported by `describe`, never changed here.
    """
    topics = topics or [config.requests_topic(), config.decisions_topic()]
    partitions = partitions or config.topic_partitions()
    replication_factor = replication_factor or config.topic_replication_factor()
    min_insync_replicas = min_insync_replicas or config.topic_min_insync_replicas()
    if min_insync_replicas > replication_factor:
        raise ValueError(f"min.insync.replicas {min_insync_replicas} > replication factor {replication_factor}:"
                         " no write with acks=all could succeed")
    try:
        admin = KafkaAdminClient(**client_settings())
    except KafkaError as exc:
        raise BrokerUnavailable(f"cannot reach Kafka at {config.kafka_bootstrap_or_local()}: {exc}") from exc
    try:
        for topic in topics:
            try:
                admin.create_topics([new_topic(topic, partitions, replication_factor, min_insync_replicas)])
            except TopicAlreadyExistsError:
                pass
        described = admin.describe_topics(topics)
        return {t.get("name") or t.get("topic"): len(t["partitions"]) for t in described}
    finally:
        admin.close()


def _replicas(partitions: list[dict]) -> int:
    # kafka-python 3 names the field replica_nodes (the protocol's name); older releases said replicas.
    first = partitions[0] if partitions else {}
    return len(first.get("replica_nodes", first.get("replicas", [])))


def describe(topics: list[str] | None = None) -> dict[str, dict]:
    """Each topic's partition count and replication factor (replicas of its first partition) as the broker has it."""
    topics = topics or [config.requests_topic(), config.decisions_topic()]
    admin = KafkaAdminClient(**client_settings())
    try:
        return {t.get("name") or t.get("topic"): {"partitions": len(t["partitions"]),
                                                  "replication_factor": _replicas(t["partitions"])}
                for t in admin.describe_topics(topics)}
    finally:
        admin.close()


def main() -> int:
    ensure_topics()
    print(json.dumps(describe()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
