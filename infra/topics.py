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


def ensure_topics(topics: list[str] | None = None, partitions: int | None = None) -> dict[str, int]:
    """Create the booking topics if missing; return topic → partition count as the broker reports it."""
    topics = topics or [config.requests_topic(), config.decisions_topic()]
    partitions = partitions or config.topic_partitions()
    try:
        admin = KafkaAdminClient(**client_settings())
    except KafkaError as exc:
        raise BrokerUnavailable(f"cannot reach Kafka at {config.kafka_bootstrap_or_local()}: {exc}") from exc
    try:
        for topic in topics:
            try:
                admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
            except TopicAlreadyExistsError:
                pass
        described = admin.describe_topics(topics)
        return {t.get("name") or t.get("topic"): len(t["partitions"]) for t in described}
    finally:
        admin.close()


def main() -> int:
    print(json.dumps(ensure_topics()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
