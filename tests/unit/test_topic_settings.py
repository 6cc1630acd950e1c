"""Topic replication as settings: 3 copies and min.insync.replicas 2 on MSK (KAFKA_AUTH=iam), 1 and 1 locally."""
import pytest

from booking_core import config
from infra.topics import ensure_topics, new_topic


@pytest.mark.parametrize("auth, expected", [("plaintext", (1, 1)), ("iam", (3, 2))])
def test_replication_defaults_follow_the_kind_of_cluster(monkeypatch, auth, expected):
    monkeypatch.delenv("KAFKA_TOPIC_REPLICATION_FACTOR", raising=False)
    monkeypatch.delenv("KAFKA_TOPIC_MIN_INSYNC_REPLICAS", raising=False)
    monkeypatch.setenv("KAFKA_AUTH", auth)

    assert (config.topic_replication_factor(), config.topic_min_insync_replicas()) == expected


def test_replication_settings_override_the_defaults(monkeypatch):
    monkeypatch.setenv("KAFKA_AUTH", "iam")
    monkeypatch.setenv("KAFKA_TOPIC_REPLICATION_FACTOR", "4")
    monkeypatch.setenv("KAFKA_TOPIC_MIN_INSYNC_REPLICAS", "3")

    assert (config.topic_replication_factor(), config.topic_min_insync_replicas()) == (4, 3)


def test_an_msk_topic_is_created_with_three_copies_and_two_in_sync():
    topic = new_topic("booking-requests", 6, 3, 2)

    assert (topic.name, topic.num_partitions, topic.replication_factor) == ("booking-requests", 6, 3)
    assert topic.topic_configs == {"min.insync.replicas": "2"}


def test_a_local_topic_sets_no_min_insync_replicas_beyond_the_broker_default():
    assert new_topic("booking-requests", 6, 1, 1).topic_configs == {}


def test_more_replicas_in_sync_than_copies_is_refused_before_any_broker_call():
    with pytest.raises(ValueError, match="min.insync.replicas 3 > replication factor 2"):
        ensure_topics(replication_factor=2, min_insync_replicas=3)
