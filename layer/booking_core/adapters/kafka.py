"""Kafka clients (kafka-python): connection settings, MSK IAM auth, the producer and topic admin."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.net.sasl.oauth import AbstractTokenProvider
from kafka.producer.future import FutureRecordMetadata

from booking_core import config
from booking_core.ports import BrokerUnavailable

log = logging.getLogger(__name__)


class MskIamTokenProvider(AbstractTokenProvider):
    """OAUTHBEARER tokens for MSK IAM, signed locally from the AWS credentials; cached until near expiry."""

    REFRESH_MARGIN_S = 60

    def __init__(self, region: str, signer: Callable[[str], tuple[str, int]] | None = None):
        super().__init__()
        self._region = region
        self._signer = signer
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.time() >= self._expires_at - self.REFRESH_MARGIN_S:
                signer = self._signer
                if signer is None:
                    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

                    signer = MSKAuthTokenProvider.generate_auth_token
                token, expiry_ms = signer(self._region)
                self._token, self._expires_at = token, expiry_ms / 1000.0
            return self._token


def client_settings() -> dict:
    """Connection settings shared by every client: bootstrap servers, security, fast failure."""
    settings = {
        "bootstrap_servers": config.kafka_bootstrap_or_local().split(","),
        # Without this, a missing broker makes the constructor wait 30 s before failing.
        "bootstrap_timeout_ms": 5000,
        "request_timeout_ms": 10000,
    }
    if config.kafka_auth() == "iam":
        settings.update(
            security_protocol="SASL_SSL",
            sasl_mechanism="OAUTHBEARER",
            sasl_oauth_token_provider=MskIamTokenProvider(config.aws_region()),
        )
    return settings


def producer_settings() -> dict:
    publish_ms = max(int(config.publish_timeout_s() * 1000), 500)
    return {
        **client_settings(),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 0,
        # A publish is given up (and the request parked for retry) once publish_ms has passed.
        "max_block_ms": publish_ms,
        "request_timeout_ms": publish_ms,
        "delivery_timeout_ms": publish_ms + 1,
    }


def new_producer() -> KafkaProducer:
    try:
        return KafkaProducer(**producer_settings())
    except KafkaError as exc:
        raise BrokerUnavailable(f"cannot reach Kafka at {config.kafka_bootstrap_or_local()}: {exc}") from exc


class KafkaPublisher:
    """Keyed JSON publishing with a correlation header; one producer per process, created on first use.

    A producer that failed to deliver a record is closed and the next send builds a new one. kafka-python
    3.0.12 can leave an idempotent producer without a producer id for good after a batch it had retried
    expires (a short broker stall is enough; see docs/decisions.md, 2026-11-25): every later record then
    waits for ever. A new producer costs a few milliseconds once the broker answers; the records of a failed
    flush or publish are sent again by their caller (the poller retries the batch, the API parks the
    request), and their consumers are idempotent.
    """

    def __init__(self, producer_factory=new_producer):
        self._factory = producer_factory
        self._producer: KafkaProducer | None = None
        self._lock = threading.Condition()
        self._building = False
        self._builds_failed = 0
        self._build_error = ""
        self._unflushed: list[tuple[KafkaProducer, FutureRecordMetadata]] = []  # (producer, future) since the last flush

    def _current(self) -> KafkaProducer:
        """The producer, built by one thread at a time: callers that waited for a build that failed get its
        error instead of each waiting for a bootstrap timeout of their own, one after another."""
        producer = self._producer
        if producer is not None:
            return producer
        with self._lock:
            failed_before = self._builds_failed
            while self._building:
                self._lock.wait()
            if self._producer is not None:
                return self._producer
            if self._builds_failed != failed_before:
                raise BrokerUnavailable(self._build_error)
            self._building = True
        try:
            producer = self._factory()
        except BaseException as exc:
            with self._lock:
                self._building = False
                self._builds_failed += 1
                self._build_error = str(exc)
                self._lock.notify_all()
            raise
        with self._lock:
            self._producer = producer
            self._building = False
            self._lock.notify_all()
        return producer

    def _replace(self, producer: KafkaProducer, error: Exception) -> None:
        """Close `producer` after a failed delivery, unless another thread has already replaced it."""
        with self._lock:
            if self._producer is not producer:
                return
            self._producer = None
        log.warning("Kafka producer closed after a failed delivery; the next send builds a new one",
                    extra={"error": repr(error)})
        close_producer(producer, timeout_s=0.5)

    def send(self, topic: str, key: str, value: bytes, correlation_id: str | None = None) -> FutureRecordMetadata:
        """Queue a record; returns a future. flush() then waits for it and raises if it was not written."""
        producer = self._current()
        future = self._send(producer, topic, key, value, correlation_id)
        with self._lock:
            self._unflushed.append((producer, future))
        return future

    @staticmethod
    def _send(producer: KafkaProducer, topic: str, key: str, value: bytes,
              correlation_id: str | None) -> FutureRecordMetadata:
        headers = [("correlation_id", (correlation_id or key).encode())]
        try:
            return producer.send(topic, key=key.encode(), value=value, headers=headers)
        except KafkaError as exc:
            raise BrokerUnavailable(str(exc)) from exc

    def publish(self, topic: str, key: str, value: bytes, correlation_id: str | None = None,
                timeout_s: float | None = None) -> None:
        """Send and wait for the broker's acknowledgement (acks=all), or raise BrokerUnavailable."""
        producer = self._current()
        future = self._send(producer, topic, key, value, correlation_id)
        try:
            future.get(timeout=timeout_s or config.publish_timeout_s())
        except Exception as exc:  # KafkaTimeoutError, KafkaError
            self._replace(producer, exc)
            raise BrokerUnavailable(f"publish to {topic} failed: {exc!r}") from exc

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every record sent so far is acknowledged; raise BrokerUnavailable if any was not.

        Each record's own future is awaited (the producer's flush() returns even when a delivery failed): a
        batch whose decisions were not all written must fail, so that its offsets are not committed. The first
        failure fails the flush; with linger_ms=0 every record is sent as soon as it is queued.
        """
        with self._lock:
            pending, self._unflushed = self._unflushed, []
        deadline = time.monotonic() + (timeout_s or config.publish_timeout_s() * 2)
        for position, (producer, future) in enumerate(pending, 1):
            try:
                future.get(timeout=max(deadline - time.monotonic(), 0))
            except Exception as exc:  # KafkaTimeoutError, KafkaError
                self._replace(producer, exc)
                raise BrokerUnavailable(
                    f"record {position} of {len(pending)} not acknowledged: {exc!r}") from exc

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
            self._unflushed = []
        if producer is not None:
            close_producer(producer, timeout_s=2.0)


def close_producer(producer: KafkaProducer, timeout_s: float) -> None:
    """Close a producer within about timeout_s, also one whose records can no longer be delivered.

    kafka-python 3.0.12's close() flushes first and raises KafkaTimeoutError when a record is still pending
    at the timeout (producer/kafka.py, close → flush → record_accumulator.await_flush_completion), before it
    stops the sender thread, whose sockets would then stay open. So that case stops the sender without
    waiting: force_close() fails the pending records and closes the network client (producer/sender.py,
    run()).
    """
    try:
        producer.close(timeout=timeout_s)
        return
    except KafkaError as exc:
        log.warning("Kafka producer did not close cleanly; stopping it", extra={"error": repr(exc)})
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
        sender.join(timeout_s)
    try:
        producer.close(timeout=0)  # its records are failed now: marks it closed, stops its metrics
    except KafkaError as exc:
        log.error("Kafka producer could not be closed", extra={"error": repr(exc)})
