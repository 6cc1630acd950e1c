"""Wiring: builds the real adapters on first use and reuses them across warm invocations.

Tests swap any of them with `override(name, obj)` and restore with `reset()`.
"""
from __future__ import annotations

import threading

from booking_core import config

_instances: dict[str, object] = {}
_lock = threading.RLock()  # factories call other getters


def _get(name: str, factory):
    obj = _instances.get(name)
    if obj is None:
        with _lock:
            obj = _instances.get(name)
            if obj is None:
                obj = _instances[name] = factory()
    return obj


def override(name: str, obj) -> None:
    _instances[name] = obj


def reset() -> None:
    publisher = _instances.get("publisher")
    _instances.clear()
    if publisher is not None and hasattr(publisher, "close"):
        publisher.close()


def connections():
    from booking_core.adapters.mysql import ConnectionHolder

    return _get("connections", ConnectionHolder)


def booking_repository():
    from booking_core.adapters.mysql_bookings import MySqlBookingRepository

    return _get("booking_repository", lambda: MySqlBookingRepository(connections()))


def retry_table():
    from booking_core.adapters.mysql_retries import MySqlRetryTable

    return _get("retry_table", lambda: MySqlRetryTable(connections()))


def retry_store():
    from booking_core.adapters.mysql_retries import MySqlRetryStore

    return _get("retry_store", lambda: MySqlRetryStore(connections()))


def payment_provider():
    """Stripe where PAYMENT_PROVIDER=stripe; a sandbox (test cards always pass) is refused where STAGE=prod."""
    def build():
        from booking_core.adapters import payments

        name = config.payment_provider()
        if name == "stripe":
            from booking_core.adapters.stripe_payments import StripePaymentProvider

            return StripePaymentProvider.from_environment()
        if config.stage() == "prod":
            raise config.ConfigurationError(
                f"PAYMENT_PROVIDER={name!r} is refused where STAGE=prod: set PAYMENT_PROVIDER=stripe")
        if name == "sandbox":
            return payments.MySqlSandboxProvider(connections())
        if name == "sandbox-memory":
            return payments.InMemorySandboxProvider()
        raise config.ConfigurationError(f"unknown PAYMENT_PROVIDER {name!r} (stripe, sandbox, sandbox-memory)")

    return _get("payment_provider", build)


def publisher():
    from booking_core.adapters.kafka import KafkaPublisher

    return _get("publisher", KafkaPublisher)


def decision_store():
    from booking_core.adapters.decision_store import RedisDecisionStore

    return _get("decision_store", RedisDecisionStore)


def mailer():
    from booking_core.adapters.mail import build_mailer

    return _get("mailer", build_mailer)


def email_outbox():
    from booking_core.adapters.mysql_email_outbox import MySqlEmailOutbox

    return _get("email_outbox", lambda: MySqlEmailOutbox(connections()))


def change_log():
    """The replicator's MySQL side: its own connection (READ COMMITTED, holds the replication lock)."""
    from booking_core.adapters.change_log import MySqlChangeLog

    return _get("change_log", MySqlChangeLog)


def read_model():
    from booking_core.adapters.read_model import RedisReadModel

    return _get("read_model", RedisReadModel)
