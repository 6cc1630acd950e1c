"""Lambda's Kafka event format (MSK `aws:kafka` and self-managed Kafka), both directions.

    {"eventSource": "aws:kafka" | "SelfManagedKafka" | "aws:SelfManagedKafka",
     "eventSourceArn": "...",               # MSK only
     "bootstrapServers": "host:port,...",
     "records": {"topic-partition": [{"topic", "partition", "offset", "timestamp", "timestampType",
                                      "key": base64 (may be absent), "value": base64,
                                      "headers": [{"name": [signed bytes...]}]}]}}
"""
from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

MSK_SOURCE = "aws:kafka"
SELF_MANAGED_SOURCES = frozenset({"SelfManagedKafka", "aws:SelfManagedKafka"})


class NotAKafkaEvent(ValueError):
    pass


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)
    timestamp: int | None = None

    @property
    def position(self) -> str:
        return f"{self.topic}-{self.partition}@{self.offset}"

    def header(self, name: str) -> str | None:
        raw = self.headers.get(name)
        return raw.decode("utf-8", "replace") if raw is not None else None


def _b64(data: str | None) -> bytes | None:
    if data is None:
        return None
    return base64.b64decode(data)


def _header_bytes(values: Iterable[int]) -> bytes:
    # Lambda sends header values as arrays of *signed* bytes (Java's byte type).
    return bytes((v + 256) % 256 for v in values)


def parse_record(raw: dict) -> KafkaRecord:
    """One record of the event. Raises ValueError/KeyError on a malformed record (callers handle it alone)."""
    key_bytes = _b64(raw.get("key"))
    headers: dict[str, bytes] = {}
    for item in raw.get("headers") or []:
        for name, values in item.items():
            headers[name] = _header_bytes(values)
    return KafkaRecord(
        topic=raw["topic"],
        partition=int(raw["partition"]),
        offset=int(raw["offset"]),
        key=key_bytes.decode("utf-8", "replace") if key_bytes else None,
        value=_b64(raw.get("value")),
        headers=headers,
        timestamp=raw.get("timestamp"),
    )


def raw_records(event: dict) -> Iterator[dict]:
    """Every raw record of the event, in partition order, after checking the event source."""
    source = event.get("eventSource")
    if source != MSK_SOURCE and source not in SELF_MANAGED_SOURCES:
        raise NotAKafkaEvent(f"unsupported eventSource {source!r}")
    for batch in (event.get("records") or {}).values():
        yield from batch


def build_event(records: Iterable[tuple[str, int, int, int, bytes | None, bytes | None, list]],
                source: str = MSK_SOURCE, event_source_arn: str | None = None,
                bootstrap_servers: str = "") -> dict:
    """Build the event Lambda would send for consumed records (topic, partition, offset, timestamp ms,
    key, value, headers as (name, bytes) pairs). Used by the local poller and the tests."""
    grouped: dict[str, list[dict]] = {}
    for topic, partition, offset, timestamp, key, value, headers in records:
        raw = {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "timestamp": timestamp,
            "timestampType": "CREATE_TIME",
            "value": base64.b64encode(value or b"").decode(),
            "headers": [{name: [b - 256 if b > 127 else b for b in (data or b"")]} for name, data in headers],
        }
        if key is not None:
            raw["key"] = base64.b64encode(key).decode()
        grouped.setdefault(f"{topic}-{partition}", []).append(raw)
    event = {"eventSource": source, "bootstrapServers": bootstrap_servers, "records": grouped}
    if source == MSK_SOURCE:
        event["eventSourceArn"] = event_source_arn or (
            "arn:aws:kafka:us-east-1:123456789012:cluster/local/00000000-0000-0000-0000-000000000000-1")
    return event
