"""Business metrics in CloudWatch embedded metric format (EMF), through Powertools for AWS Lambda's Metrics.

EMF is one JSON object printed to stdout when an invocation ends; CloudWatch Logs turns it into metrics, so no
call is made on the booking path. Namespace: POWERTOOLS_METRICS_NAMESPACE (the template sets one per stack, the
alarms read it), else `BookingPlatform`; one dimension, `service` (the function). Off where
POWERTOOLS_METRICS_DISABLED is true — locally (infra/local/env.json), where stdout carries `invoke`'s result and
nothing reads EMF. While off, nothing is even collected: Powertools would keep the values and print them once
100 had piled up.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

DEFAULT_NAMESPACE = "BookingPlatform"

# The metric names, in one place (the template's alarms name them too).
BOOKINGS_CONFIRMED = "BookingsConfirmed"
BOOKINGS_REJECTED = "BookingsRejected"
BOOKINGS_QUEUED = "BookingsQueued"
DECISION_LATENCY = "DecisionLatency"  # ms, a request record's timestamp → its decision published
RETRY_ROWS_DUE = "RetryRowsDue"
RETRY_ROWS_DEAD = "RetryRowsDead"  # rows that used their attempts in this run
RETRY_ROWS_WAITING = "RetryRowsWaiting"
REPLICATION_LAG = "ReplicationLag"  # ms, the oldest change of a batch: commit → written to Redis

_metrics: Metrics | None = None
H = TypeVar("H", bound=Callable[..., Any])


def setup(service: str) -> None:
    """Name the service dimension (the first caller wins, as for logs.setup)."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE,
                           service=service)


def enabled() -> bool:
    return not is_metrics_disabled()


def _get() -> Metrics:
    if _metrics is None:
        setup(os.environ.get("POWERTOOLS_SERVICE_NAME") or "booking")
    assert _metrics is not None
    return _metrics


def count(name: str, value: float = 1) -> None:
    if enabled():
        _get().add_metric(name=name, unit=MetricUnit.Count, value=value)


def milliseconds(name: str, value: float) -> None:
    if enabled():
        _get().add_metric(name=name, unit=MetricUnit.Milliseconds, value=value)


def flush() -> None:
    """Print what this invocation collected as one EMF object (nothing when it collected nothing)."""
    if enabled() and _get().metric_set:
        _get().flush_metrics()


def flushed(handler: H) -> H:
    """Decorate a Lambda handler: its metrics are flushed when it returns or raises."""
    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> Any:
        try:
            return handler(event, context)
        finally:
            flush()

    return wrapper  # type: ignore[return-value]
