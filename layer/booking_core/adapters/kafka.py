"""Kafka clients (kafka-python): connection settings, MSK IAM auth and the producer."""
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
    """Keyed JSON publishing with a correlation header; one producer per process, created on first use."""

    def __init__(self, producer_factory=new_producer):
        self._factory = producer_factory
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        self._unflushed: list = []

    def _get(self) -> KafkaProducer:
        if self._producer is None:
            with self._lock:
                if self._producer is None:
                    self._producer = self._factory()
        return self._producer

    def send(self, topic: str, key: str, value: bytes, correlation_id: str | None = None) -> FutureRecordMetadata:
        """Queue a record; returns a future. flush() then waits for it and raises if it was not written."""
        future = self._send(topic, key, value, correlation_id)
        with self._lock:
            self._unflushed.append(future)
        return future

    def _send(self, topic: str, key: str, value: bytes, correlation_id: str | None) -> FutureRecordMetadata:
        headers = [("correlation_id", (correlation_id or key).encode())]
        try:
            return self._get().send(topic, key=key.encode(), value=value, headers=headers)
        except KafkaError as exc:
            raise BrokerUnavailable(str(exc)) from exc

    def publish(self, topic: str, key: str, value: bytes, correlation_id: str | None = None,
                timeout_s: float | None = None) -> None:
        """Send and wait for the broker's acknowledgement (acks=all), or raise BrokerUnavailable."""
        future = self._send(topic, key, value, correlation_id)
        try:
            future.get(timeout=timeout_s or config.publish_timeout_s())
        except Exception as exc:  # KafkaTimeoutError, KafkaError, concurrent timeout
            raise BrokerUnavailable(f"publish to {topic} failed: {exc!r}") from exc

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every record sent so far is acknowledged; raise BrokerUnavailable if any was not.

        The producer's own flush() returns even when a delivery failed, so each future is checked: a batch
        whose decisions were not all written must fail, so that its offsets are not committed.
        """
        if self._producer is None:
            return
        with self._lock:
            pending, self._unflushed = self._unflushed, []
        try:
            self._producer.flush(timeout=timeout_s or config.publish_timeout_s() * 2)
        except KafkaError as exc:
            raise BrokerUnavailable(f"flush failed: {exc!r}") from exc
        failed = [f for f in pending if not f.succeeded()]
        if failed:
            raise BrokerUnavailable(f"{len(failed)} of {len(pending)} records not acknowledged: "
                                    f"{failed[0].exception!r}")

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=2)
            self._producer = None
