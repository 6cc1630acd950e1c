"""Where a booking's round trip goes, from the Kafka record timestamps (CreateTime, set by each producer).

    client sent ─(API: parse, claim, produce)→ request record ─(payment hop: fetch + decide)→ decision
    record ─(listener hop: fetch + Redis + wake, API answers)→ client got the answer

All processes share the machine's clock; the timestamps have millisecond resolution, which is enough for
medians of stages that take milliseconds.
"""
from __future__ import annotations

import time

from bench.stats import percentile


def end_offsets(topics: list[str]) -> dict:
    """The current end offset of every partition of the topics (where a later read starts)."""
    from kafka import KafkaConsumer, TopicPartition

    from booking_core.adapters.kafka import client_settings

    consumer = KafkaConsumer(**client_settings(), enable_auto_commit=False)
    try:
        parts = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t))]
        return consumer.end_offsets(parts)
    finally:
        consumer.close(autocommit=False)


def record_times(start_offsets: dict, keys: set[str], timeout_s: float = 10) -> dict[str, dict[str, int]]:
    """key → {topic: first CreateTime in ms} for the keys' records written after `start_offsets`."""
    from kafka import KafkaConsumer

    from booking_core.adapters.kafka import client_settings

    consumer = KafkaConsumer(**client_settings(), enable_auto_commit=False, fetch_max_wait_ms=20)
    found: dict[str, dict[str, int]] = {}
    try:
        consumer.assign(list(start_offsets))
        for tp, offset in start_offsets.items():
            consumer.seek(tp, offset)
        end = consumer.end_offsets(list(start_offsets))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.position(tp) < end[tp] for tp in start_offsets):
            for batch in consumer.poll(timeout_ms=200).values():
                for record in batch:
                    key = record.key.decode() if record.key else None
                    if key in keys:
                        found.setdefault(key, {}).setdefault(record.topic, record.timestamp)
    finally:
        consumer.close(autocommit=False)
    return found


def breakdown(samples: list[tuple[str, float, float]], start_offsets: dict, requests_topic: str,
              decisions_topic: str) -> dict:
    """Median/p99 of each stage (ms) for samples of (booking_key, client sent, client answered) in epoch s."""
    times = record_times(start_offsets, {key for key, _, _ in samples})
    stages: dict[str, list[float]] = {"api_to_request_record": [], "payment_hop": [], "listener_hop_and_answer": []}
    for key, sent, answered in samples:
        t = times.get(key, {})
        if requests_topic not in t or decisions_topic not in t:
            continue
        request_ms, decision_ms = t[requests_topic], t[decisions_topic]
        stages["api_to_request_record"].append(request_ms - sent * 1000)
        stages["payment_hop"].append(decision_ms - request_ms)
        stages["listener_hop_and_answer"].append(answered * 1000 - decision_ms)
    out = {}
    for name, values in stages.items():
        values.sort()
        out[name] = {"p50_ms": _r(percentile(values, 50)), "p99_ms": _r(percentile(values, 99)), "n": len(values)}
    return out


def _r(value):
    return None if value is None else round(value, 1)
