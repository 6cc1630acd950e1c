"""Local event source mapping: consumes a topic and invokes a function with the exact Lambda Kafka event.

Honours the template event's ConsumerGroupId, Topics, StartingPosition, BatchSize and
MaximumBatchingWindowInSeconds. Like Lambda, a batch whose invocation raises is retried whole (with backoff)
and offsets are committed only after the handler returned; like Lambda's per-partition concurrency, each
assigned partition has its own lane (thread) that invokes the handler with that partition's records in order,
while the main thread keeps fetching.

    python -m infra.local.poller PaymentFunction BookingRequests [--shard 0/2]

Partitions are assigned explicitly (shard i of n takes partitions p with p % n == i), which starts in
milliseconds where a consumer-group join takes seconds; the group id still holds the committed offsets.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from booking_core import config, logs
from booking_core.adapters.kafka import client_settings
from booking_core.kafka_event import MSK_SOURCE, build_event
from infra.local import template
from infra.local.lambda_context import LocalContext

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
        """Fetch on this thread, decide on one lane (thread) per partition, commit what the lanes finished.

        Like Lambda's Kafka event source, each partition is processed in order, one batch at a time, and
        partitions are processed concurrently; fetching goes on while a batch runs, so the next records are
        already here when it returns. Offsets are committed only for batches whose invocation returned.
        """
        if self.handler is None:
            self.handler = self.function.load_handler()
        consumer = self._consumer()
        lanes = {tp: _Lane(self, tp) for tp in consumer.assignment()}
        for lane in lanes.values():
            lane.start()
        if self.ready_file:
            self.ready_file.parent.mkdir(parents=True, exist_ok=True)
            self.ready_file.write_text("ready\n")
        paused: set = set()
        try:
            while not self.stop.is_set() and all(lane.is_alive() for lane in lanes.values()):
                for tp, records in consumer.poll(timeout_ms=100, max_records=self.batch_size).items():
                    lanes[tp].put(records)
                self._commit(consumer, {tp: off for tp, lane in lanes.items() if (off := lane.take_done())})
                # Backpressure: a partition whose lane is behind (a failing batch being retried) stops fetching.
                for tp, lane in lanes.items():
                    backlog = lane.backlog()
                    if tp not in paused and backlog >= 4 * self.batch_size:
                        consumer.pause(tp)
                        paused.add(tp)
                    elif tp in paused and backlog < self.batch_size:
                        consumer.resume(tp)
                        paused.discard(tp)
        finally:
            self.stop.set()
            for lane in lanes.values():
                lane.wake()
            for lane in lanes.values():
                lane.join(30)
            self._commit(consumer, {tp: off for tp, lane in lanes.items() if (off := lane.take_done())}, sync=True)
            consumer.close(autocommit=False)

    def _commit(self, consumer, offsets, sync: bool = False) -> None:
        from kafka.structs import OffsetAndMetadata

        if not offsets:
            return
        commit = {tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()}
        try:
            if sync:
                consumer.commit(commit)
            else:
                # Asynchronous: the fetch loop does not wait a broker round trip per batch. Completed by the
                # next poll(); a lost commit only means a redelivery, which idempotency absorbs.
                consumer.commit_async(commit, callback=_commit_failed)
        except KafkaError:
            # Not fatal: the records are processed; a restart re-delivers them and idempotency absorbs that.
            log.exception("offset commit failed")


def _commit_failed(offsets, response) -> None:
    if isinstance(response, Exception):
        log.warning("offset commit failed", extra={"error": repr(response)})


class _Lane(threading.Thread):
    """One partition's records, invoked batch by batch in order (Lambda's per-partition concurrency)."""

    def __init__(self, poller: KafkaPoller, tp):
        super().__init__(name=f"lane-{tp.topic}-{tp.partition}", daemon=True)
        self.poller = poller
        self.tp = tp
        self._records: list = []
        self._done: int | None = None
        self._cond = threading.Condition()

    def put(self, records: list) -> None:
        with self._cond:
            self._records.extend(records)
            self._cond.notify()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def backlog(self) -> int:
        with self._cond:
            return len(self._records)

    def take_done(self) -> int | None:
        """The offset to commit (last processed + 1) if a batch finished since the last call."""
        with self._cond:
            done, self._done = self._done, None
            return done

    def _next_batch(self) -> list:
        poller = self.poller
        with self._cond:
            while not self._records and not poller.stop.is_set():
                self._cond.wait(0.5)
            if poller.window_s > 0 and self._records:
                # MaximumBatchingWindowInSeconds: wait for a full batch at most this long after the first record.
                deadline = time.monotonic() + poller.window_s
                while (len(self._records) < poller.batch_size and not poller.stop.is_set()
                       and (left := deadline - time.monotonic()) > 0):
                    self._cond.wait(left)
            batch, self._records = self._records[:poller.batch_size], self._records[poller.batch_size:]
            return batch

    def run(self) -> None:
        while not self.poller.stop.is_set():
            batch = self._next_batch()
            if not batch:
                continue
            try:
                self.poller._invoke_until_success(batch)
            except InterruptedError:
                return
            with self._cond:
                self._done = batch[-1].offset + 1


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
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    KafkaPoller(function, event, shard=(index, count), stop=stop,
                ready_file=Path(args.ready_file) if args.ready_file else None).run()


if __name__ == "__main__":
    main()
