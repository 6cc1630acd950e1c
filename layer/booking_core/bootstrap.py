"""Wiring: builds the real adapters on first use and reuses them across warm invocations.

Handlers get every dependency from here (never from an adapter module), typed by its port. Tests swap any of them
with `override(name, obj)` and restore with `reset()`.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from booking_core import config

if TYPE_CHECKING:
    from booking_core.adapters.mysql import ConnectionHolder
    from booking_core.adapters.redis_views import RedisReadViews
    from booking_core.ports import (
        BookingRepository,
        ChangeLog,
        DecisionStore,
        EmailOutbox,
        IdentityDirectory,
        Mailer,
        PaymentProvider,
        Publisher,
        ReadModel,
        RequestLog,
        Retention,
        RetryStore,
        RetryTable,
        UserAccounts,
    )

T = TypeVar("T")
_instances: dict[str, Any] = {}
_lock = threading.RLock()  # factories call other getters


def _get(name: str, factory: Callable[[], T]) -> T:
    obj = _instances.get(name)
    if obj is None:
        with _lock:
            obj = _instances.get(name)
            if obj is None:
                obj = _instances[name] = factory()
    return cast(T, obj)


def override(name: str, obj: object) -> None:
    _instances[name] = obj


def reset() -> None:
    """Forget every instance, closing those that hold a connection (the producer, the change log's)."""
    instances = list(_instances.values())
    _instances.clear()
    for obj in instances:
        close = getattr(obj, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001 - one broken client must not keep the others open
                logging.getLogger(__name__).warning("closing %s failed", type(obj).__name__, exc_info=True)


def connections() -> ConnectionHolder:
    from booking_core.adapters.mysql import ConnectionHolder

    return _get("connections", ConnectionHolder)


def booking_repository() -> BookingRepository:
    from booking_core.adapters.mysql_bookings import MySqlBookingRepository

    return _get("booking_repository", lambda: MySqlBookingRepository(connections()))


def retry_table() -> RetryTable:
    from booking_core.adapters.mysql_retries import MySqlRetryTable

    return _get("retry_table", lambda: MySqlRetryTable(connections()))


def request_log() -> RequestLog:
    from booking_core.adapters.mysql_decisions import MySqlRequestLog

    return _get("request_log", lambda: MySqlRequestLog(connections()))


def retention() -> Retention:
    from booking_core.adapters.mysql_retries import MySqlRetention

    return _get("retention", lambda: MySqlRetention(connections()))


def retry_store() -> RetryStore:
    from booking_core.adapters.mysql_retries import MySqlRetryStore

    return _get("retry_store", lambda: MySqlRetryStore(connections()))


def payment_provider() -> PaymentProvider:
    def build() -> PaymentProvider:
        from booking_core.adapters.sandbox_payments import MySqlSandboxProvider

        name = config.payment_provider()
        if name == "stripe":
            from booking_core.adapters.stripe_payments import StripePaymentProvider

            return StripePaymentProvider.from_environment()
        if config.stage() == "prod":
            raise config.ConfigurationError(
                f"PAYMENT_PROVIDER={name!r} is refused where STAGE=prod: set PAYMENT_PROVIDER=stripe")
        if name == "sandbox":
            return MySqlSandboxProvider(connections())
        raise ValueError(f"unknown PAYMENT_PROVIDER {name!r}")

    return _get("payment_provider", build)


def publisher() -> Publisher:
    from booking_core.adapters.kafka import KafkaPublisher

    return _get("publisher", KafkaPublisher)


def decision_store() -> DecisionStore:
    from booking_core.adapters.redis_decision_store import RedisDecisionStore

    return _get("decision_store", RedisDecisionStore)


def read_views() -> RedisReadViews:
    """The read API's queries, answered from the Redis read model."""
    from booking_core.adapters.redis_views import RedisReadViews

    return _get("read_views", RedisReadViews)


def mailer() -> Mailer:
    from booking_core.adapters.mailers import build_mailer

    return _get("mailer", build_mailer)


def email_outbox() -> EmailOutbox:
    from booking_core.adapters.mysql_email_outbox import MySqlEmailOutbox

    return _get("email_outbox", lambda: MySqlEmailOutbox(connections()))


def change_log() -> ChangeLog:
    """The replicator's MySQL side: its own connection (READ COMMITTED, holds the replication lock)."""
    from booking_core.adapters.mysql_change_log import MySqlChangeLog

    return _get("change_log", MySqlChangeLog)


def read_model() -> ReadModel:
    from booking_core.adapters.redis_read_model import RedisReadModel

    return _get("read_model", RedisReadModel)


def user_accounts() -> UserAccounts:
    from booking_core.adapters.mysql_users import MySqlUserAccounts

    return _get("user_accounts", lambda: MySqlUserAccounts(connections()))


def identity_directory() -> IdentityDirectory:
    from booking_core.adapters.cognito_directory import CognitoIdentityDirectory

    return _get("identity_directory", CognitoIdentityDirectory)
