"""Structured JSON logs through Powertools for AWS Lambda's Logger: one JSON line per record.

Every line carries the service, the logger, the X-Ray trace id (`xray_trace_id`) and `correlation_id` — the
booking_key of the work in hand, null outside a booking (a replication run, the nightly summary). Lines written
during an invocation also carry the Lambda request id (`function_request_id`), `cold_start` and the function's
name, memory and ARN (`with_lambda_context`, or `bind_lambda_context` for the Chalice app). Modules log with
`logging.getLogger(__name__)` as before: the root logger writes through the same Powertools handler.
Nothing logs a request body, a payment token, a password or an email address; the event is never logged
(POWERTOOLS_LOGGER_LOG_EVENT cannot switch that on: a Kafka record's value carries the payment token).
"""
from __future__ import annotations

import contextvars
import functools
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.logging.lambda_context import build_lambda_context_model

from booking_core import config

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)

# No token, email address or payment token in any log line. Nothing logs them on purpose; this catches what a
# library's error message quotes (SES names the address it refused, a driver error the value it could not store).
_SECRETS = (
    (re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]+"), "<jwt>"),
    (re.compile(r"[\w.+-]+@(?!booking\.local>)[\w-]+(?:\.[\w-]+)+"), "<email>"),  # not our outbox Message-ID
    (re.compile(r"\b(tok|pm|card|src|sk|rk)_[A-Za-z0-9]{2,}[A-Za-z0-9_]*"), r"<\1_…>"),
)


# What each pattern cannot match without. The address pattern starts a match at every run of word characters and
# backtracks: the three took ~130 us per 500-character line, more than the rest of writing it (a payment poller
# writes two lines per booking). A line without the marker skips the pattern, with the same result.
_MARKERS = (("eyJ",), ("@",), ("tok_", "pm_", "card_", "src_", "sk_", "rk_"))


def scrub(text: str) -> str:
    """The text with anything shaped like an ID/access token, an email address or a payment token masked."""
    for (pattern, mask), markers in zip(_SECRETS, _MARKERS, strict=True):
        if any(marker in text for marker in markers):
            start = _first_address_start(text) if markers == ("@",) else 0
            text = text[:start] + pattern.sub(mask, text[start:])
    return text


def _first_address_start(text: str) -> int:
    r"""Where the run of local-part characters ([\w.+-]) reaching the first "@" begins: no address can start before
    it, and the pattern looks at nothing before its match, so matching from here masks what matching from the
    start masks, without trying every word of the line before it (a line's "@" is mostly near its end)."""
    start = text.find("@")
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_.+-"):  # isalnum() or _ is re's \w
        start -= 1
    return max(start, 0)


# The key order of a line; keys a record adds (extra=...) follow.
LINE_ORDER = ["timestamp", "level", "service", "logger", "message", "correlation_id"]


class JsonFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON line (UTC ISO timestamps), plus the logger's name and the correlation id."""

    def __init__(self, service: str | None = None, **kwargs: Any):
        kwargs.setdefault("log_record_order", LINE_ORDER)
        kwargs.setdefault("utc", True)
        kwargs.setdefault("use_rfc3339", True)
        kwargs.setdefault("serialize_stacktrace", False)  # the exception's text is enough; lines stay short
        if service:
            kwargs["service"] = service
        super().__init__(**kwargs)

    def format(self, record: logging.LogRecord) -> str:
        record.logger = record.name
        # A line about one booking names it with booking_key=...; otherwise the block's correlated() value.
        record.correlation_id = getattr(record, "booking_key", None) or correlation_id.get()
        return super().format(record)

    def serialize(self, log: Any) -> str:
        # Powertools drops keys whose value is None: a line about no booking still says so.
        log.setdefault("correlation_id", None)
        return scrub(super().serialize(log))


_logger: Logger | None = None
_cold_start = True
H = TypeVar("H", bound=Callable[..., Any])


def setup(service: str | None = None, stream: TextIO | None = None) -> Logger:
    """Route every logger to one JSON line per record on stdout (where Lambda collects logs); idempotent, so the
    first caller names the service (a local runner passes the function's logical id before the handler module
    is imported). `stream` lets a local `invoke` keep stdout for the result."""
    global _logger
    if _logger is not None:
        return _logger
    root = logging.getLogger()
    # Lambda's runtime installs its own handler: replace it so lines are pure JSON.
    for handler in list(root.handlers):
        root.removeHandler(handler)
    logger = Logger(service=service, level=config.log_level(), stream=stream or sys.stdout,
                    logger_formatter=JsonFormatter())
    # One handler, on the service's logger (Powertools keeps it there) and on the root logger for every module;
    # the service's logger stops there so a line is written once.
    logger._logger.propagate = False
    root.addHandler(logger.registered_handler)
    root.setLevel(config.log_level())
    for noisy in ("kafka", "botocore", "urllib3", "stripe"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _logger = logger
    return logger


def with_lambda_context(handler: H) -> H:
    """Decorate a Lambda handler: Powertools adds the request id, cold start and function keys to every line of
    the invocation. The event itself is never logged (it carries payment tokens). A call without a Lambda
    context (a test calling the handler directly) runs the handler as it is."""
    injected = setup().inject_lambda_context(handler, log_event=False)

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> Any:
        if not hasattr(context, "aws_request_id"):
            return handler(event, context)
        return injected(event, context)

    return wrapper  # type: ignore[return-value]


def bind_lambda_context(context: object) -> None:
    """The same keys for a handler that cannot be decorated (the Chalice app object), from its middleware."""
    global _cold_start
    try:
        keys = build_lambda_context_model(context).__dict__
    except AttributeError:  # no context (a direct call in a test) or one without Lambda's attributes
        return
    setup().append_keys(cold_start=_cold_start, **keys)
    _cold_start = False


@contextmanager
def correlated(value: str | None) -> Iterator[None]:
    token = correlation_id.set(value)
    try:
        yield
    finally:
        correlation_id.reset(token)
