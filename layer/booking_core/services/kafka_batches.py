"""Lambda Kafka batches: each record answered on its own, so one bad record never blocks its partition.

A record that cannot be read is answered with a `rejected`/`invalid_request` decision when it has a key, or
logged (with its position; never its value, which carries a payment token) and counted when it has none. The
readable requests of a batch are decided as a set (services.decide), each record keeping its own outcome. Outages
raise, so Lambda retries the whole batch; every step is idempotent, so the retried records change nothing twice.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from booking_core.domain import messages, model
from booking_core.domain.model import Decision, RequestBooking, ValidationError
from booking_core.kafka_event import KafkaRecord, parse_record, raw_records
from booking_core.logs import correlated
from booking_core.ports import BookingRepository, DecisionStore, PaymentProvider, Publisher
from booking_core.services.decide import decide_requests

log = logging.getLogger(__name__)


@dataclass
class BatchSummary:
    counts: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, int]:
        return dict(self.counts)


def _records(event: dict, summary: BatchSummary) -> Iterator[KafkaRecord]:
    for raw in raw_records(event):
        try:
            yield parse_record(raw)
        except (KeyError, ValueError, TypeError) as exc:
            summary.counts["unreadable"] += 1
            # Not the record itself: its value carries a payment token. Where it is and what was wrong.
            log.error("unreadable Kafka record skipped", extra={
                "topic": raw.get("topic") if isinstance(raw, dict) else None,
                "partition": raw.get("partition") if isinstance(raw, dict) else None,
                "offset": raw.get("offset") if isinstance(raw, dict) else None, "error": type(exc).__name__})


def _log_unkeyed(record: KafkaRecord, errors: dict, summary: BatchSummary) -> None:
    summary.counts["invalid_without_key"] += 1
    log.error("invalid record without a key: logged and skipped", extra={
        "position": record.position, "errors": errors, "value_bytes": len(record.value or b"")})


def process_booking_requests(event: dict, repo: BookingRepository, payments: PaymentProvider,
                             publisher: Publisher, decisions_topic: str, quick_retries: int = 2,
                             on_confirmed: Callable[[Decision, RequestBooking], None] | None = None,
                             ) -> dict[str, int]:
    """payment_fn's batch: decide its requests as a set (services.decide) and publish each record's decision with
    its key, in the records' order, with one flush."""
    summary = BatchSummary()
    answered: list[tuple[KafkaRecord, str, Decision, RequestBooking | None]] = []
    to_decide: list[tuple[str, RequestBooking]] = []
    for record in _records(event, summary):
        key = record.key
        if not key:  # nobody waits for an answer to a request without a key
            _log_unkeyed(record, {"key": "record has no booking key"}, summary)
            continue
        correlation = record.header(messages.CORRELATION_HEADER) or key
        try:
            request, _attempt = messages.decode_request(key, record.value)
        except ValidationError as exc:
            with correlated(correlation):
                log.warning("invalid booking request", extra={"position": record.position, "errors": exc.errors})
            answered.append((record, correlation, Decision.rejected(key, model.INVALID_REQUEST, str(exc)), None))
            summary.counts["invalid"] += 1
            continue
        answered.append((record, correlation, Decision(key, model.PENDING), request))  # decided below
        to_decide.append((key, request))
    decided = iter(decide_requests(to_decide, repo, payments, quick_retries) if to_decide else [])
    for record, correlation, decision, asked in answered:
        with correlated(correlation):
            if asked is not None:
                decision = next(decided)
                summary.counts[decision.status] += 1
                if decision.status == model.CONFIRMED and on_confirmed is not None:
                    on_confirmed(decision, asked)
            log.info("decided", extra={"status": decision.status, "reason": decision.reason,
                                       "position": record.position})
            publisher.send(decisions_topic, record.key or "", messages.encode_decision(decision), correlation)
    # Offsets are committed by the event source only when we return: make sure every decision is written.
    publisher.flush()
    return summary.to_dict()


def process_decisions(event: dict, store: DecisionStore) -> dict[str, int]:
    """Decisions listener's batch: store each decision (TTL) and wake whoever waits for its key; the batch's
    decisions are saved together, in the records' order (one Redis round trip)."""
    summary = BatchSummary()
    decisions: list[Decision] = []
    for record in _records(event, summary):
        with correlated(record.header(messages.CORRELATION_HEADER) or record.key):
            try:
                decision = messages.decode_decision(record.value)
            except ValidationError as exc:
                _log_unkeyed(record, exc.errors, summary)
                continue
            if record.key and record.key != decision.booking_key:
                log.error("decision key mismatch; stored under the record key",
                          extra={"position": record.position, "value_key": decision.booking_key})
                decision.booking_key = record.key
            decisions.append(decision)
    for stored in store.save_many(decisions):
        summary.counts["stored" if stored else "kept_final"] += 1
    return summary.to_dict()
