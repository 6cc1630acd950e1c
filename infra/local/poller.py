"""Local event source mapping: consumes a topic and invokes a function with the exact Lambda Kafka event.

Honours the template event's ConsumerGroupId, Topics, StartingPosition, BatchSize and
MaximumBatchingWindowInSeconds. Like Lambda, a batch whose invocation raises is retried whole (with backoff)
and offsets are committed only after the handler returned.

    python -m infra.local.poller PaymentFunction BookingRequests [--shard 0/2]

Partitions are assigned explicitly (shard i of n takes partitions p with p % n == i), which starts in
milliseconds where a consumer-group join takes seconds; the group id still holds the committed offsets.
"""
from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from booking_core import config, logs
from booking_core.adapters.kafka import client_settings
from booking_core.kafka_event import MSK_SOURCE, build_event
from infra.local import template
from infra.local.lambda_context import LocalContext
from infra.local.lifetime import stop_event_on_signals

log = logging.getLogger("poller")

LAMBDA_DEFAULT_WINDOW_S = 0.5  # Lambda's default MaximumBatchingWindowInSeconds for Kafka sources


def consumer_latency_settings() -> dict:
    """Fetch settings of every local poller (and of the benchmark's broker floor, so both wait alike).

    LOCAL_FETCH_MAX_WAIT_MS overrides the fetch wait, for experiments.
    """
    return {"fetch_max_wait_ms": int(os.environ.get("LOCAL_FETCH_MAX_WAIT_MS", "20")), "fetch_min_bytes": 1}


class KafkaPoller:
    def __init__(self, function: template.Function, event: template.Event, handler=None,
                 shard: tuple[int, int] = (0, 1), stop: threading.Event | None = None, ready_file: Path | None = None):
        props = event.properties
        self.function = function
        self.event = event
        self.topics = list(props.get("Topics") or [])
        self.group_id = props.get("ConsumerGroupId") or f"{function.logical_id}-{event.name}"
        self.batch_size = int(props.get("BatchSize", 100))
        window = props.get("MaximumBatchingWindowInSeconds")
        self.window_s = LAMBDA_DEFAULT_WINDOW_S if window is None else float(window)
        self.starting_position = str(props.get("StartingPosition", "LATEST")).upper()
        self.source = MSK_SOURCE if event.type == "MSK" else "SelfManagedKafka"
        self.handler = handler
        self.shard = shard
        self.stop = stop or threading.Event()
        self.ready_file = ready_file
        self.invocations = 0
        self.failures = 0
        # Next offset to read per partition, for every batch whose invocation returned; _dirty: not yet committed.
        self._processed: dict = {}
        self._dirty = False
        self._next_commit = 0.0
        self.commit_interval_s = float(os.environ.get("LOCAL_COMMIT_INTERVAL_S", "1.0"))

    def _consumer(self) -> KafkaConsumer:
        consumer = KafkaConsumer(
            **client_settings(),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if self.starting_position == "TRIM_HORIZON" else "latest",
            max_poll_records=self.batch_size,
            **consumer_latency_settings(),
        )
        index, count = self.shard
        assigned = []
        for topic in self.topics:
            partitions = None
            deadline = time.monotonic() + 10
            while not partitions and time.monotonic() < deadline:
                partitions = consumer.partitions_for_topic(topic)
                if not partitions:
                    time.sleep(0.1)
            if not partitions:
                raise RuntimeError(f"topic {topic} has no partitions (was it created?)")
            assigned += [TopicPartition(topic, p) for p in sorted(partitions) if p % count == index]
        consumer.assign(assigned)
        for tp in assigned:  # resolve positions now so nothing published after "ready" is skipped
            consumer.position(tp)
        return consumer

    def _next_batch(self, consumer: KafkaConsumer) -> list:
        records = []
        deadline = None
        while not self.stop.is_set() and len(records) < self.batch_size:
            polled = consumer.poll(timeout_ms=100 if deadline is None else
                                   max(1, int((deadline - time.monotonic()) * 1000)),
                                   max_records=self.batch_size - len(records))
            for batch in polled.values():
                records.extend(batch)
            if records and deadline is None:
                deadline = time.monotonic() + self.window_s
            if deadline is not None and time.monotonic() >= deadline:
                break
        return records

    def _invoke_until_success(self, records) -> None:
        event = build_event(
            ((r.topic, r.partition, r.offset, r.timestamp, r.key, r.value, list(r.headers or []))
             for r in records),
            source=self.source, bootstrap_servers=config.kafka_bootstrap_or_local(),
        )
        delay = 0.1
        while not self.stop.is_set():
            self.invocations += 1
            try:
                self.handler(event, LocalContext(self.function.logical_id, self.function.timeout))
                return
            except Exception:  # noqa: BLE001 - Lambda retries the whole batch on any error
                self.failures += 1
                log.exception("invocation failed; retrying the batch", extra={
                    "function": self.function.logical_id, "records": len(records), "retry_in_s": delay})
                self.stop.wait(delay)
                delay = min(delay * 2, 5.0)
        raise InterruptedError("stopped while retrying a batch")

    def run(self) -> None:
        if self.handler is None:
            self.handler = self.function.load_handler()
        consumer = self._consumer()
        if self.ready_file:
            self.ready_file.parent.mkdir(parents=True, exist_ok=True)
            self.ready_file.write_text("ready\n")
        try:
            while not self.stop.is_set():
                records = self._next_batch(consumer)
                if records:
                    try:
                        self._invoke_until_success(records)
                    except InterruptedError:
                        break
                    for r in records:
                        tp = TopicPartition(r.topic, r.partition)
                        self._processed[tp] = max(self._processed.get(tp, -1), r.offset + 1)
                    self._dirty = True
                # Commit at most every commit_interval_s (and when idle): a commit per batch is a broker request
                # per booking under load; a redelivery after a crash is what idempotency is for.
                if self._dirty and (not records or time.monotonic() >= self._next_commit):
                    self._commit(consumer)
                    self._dirty = False
                    self._next_commit = time.monotonic() + self.commit_interval_s
        finally:
            if self._processed:  # synchronously: the last commit reaches the broker before closing
                self._commit(consumer, sync=True)
            consumer.close(autocommit=False)

    def _commit(self, consumer, sync: bool = False) -> None:
        offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in self._processed.items()}
        try:
            if sync:
                consumer.commit(offsets)
            else:
                # Asynchronous: the next fetch does not wait a broker round trip; poll() completes the commit.
                # A commit that is lost only means a redelivery after a restart, which idempotency absorbs.
                consumer.commit_async(offsets, callback=_commit_failed)
        except KafkaError:
            # Not fatal: the records are processed; a restart re-delivers them and idempotency absorbs that.
            log.exception("offset commit failed")


def _commit_failed(offsets, response) -> None:
    if isinstance(response, Exception):
        log.warning("offset commit failed", extra={"error": repr(response)})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("function")
    parser.add_argument("event")
    parser.add_argument("--shard", default="0/1")
    parser.add_argument("--template", default=str(template.TEMPLATE))
    parser.add_argument("--ready-file")
    args = parser.parse_args(argv)
    function = template.functions(Path(args.template))[args.function]
    function.apply_environment()
    logs.setup(f"poller:{args.function}")
    event = next(e for e in function.events if e.name == args.event)
    index, count = (int(x) for x in args.shard.split("/"))
    stop = stop_event_on_signals()
    KafkaPoller(function, event, shard=(index, count), stop=stop,
                ready_file=Path(args.ready_file) if args.ready_file else None).run()


if __name__ == "__main__":
    main()
