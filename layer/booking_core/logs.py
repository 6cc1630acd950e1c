"""Structured JSON logs; every line carries the correlation id (the booking_key) of the work in hand."""
from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from booking_core import config

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)

# No token, email address or payment token in any log line. Nothing logs them on purpose; this catches what a
# library's error message quotes (SES names the address it refused, a driver error the value it could not store).
_SECRETS = (
    (re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]+"), "<jwt>"),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
    (re.compile(r"\b(tok|pm|card|src|sk|rk)_[A-Za-z0-9]{2,}[A-Za-z0-9_]*"), r"<\1_…>"),
)


def scrub(text: str) -> str:
    """The text with anything shaped like an ID/access token, an email address or a payment token masked."""
    for pattern, mask in _SECRETS:
        text = pattern.sub(mask, text)
    return text

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, function_name: str | None = None):
        super().__init__()
        self.function_name = function_name

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "booking_key", None) or correlation_id.get(),
        }
        if self.function_name:
            line["function"] = self.function_name
        # Lambda sets the invocation's X-Ray trace id here (the local runners do too): it ties together the
        # lines of one invocation, also batch-level lines that have no booking in hand.
        trace_id = os.environ.get("_X_AMZN_TRACE_ID")
        if trace_id:
            line["trace_id"] = trace_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return scrub(json.dumps(line, default=str))


def setup(function_name: str | None = None, stream: TextIO | None = None) -> None:
    """Route the root logger to one JSON line per record on stdout (idempotent: safe on warm starts).

    `stream` (default stdout, where Lambda collects logs) lets a local `invoke` keep stdout for the result.
    """
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    # Lambda's runtime installs its own handler: replace it so lines are pure JSON.
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(function_name))
    root.addHandler(handler)
    root.setLevel(config.log_level())
    for noisy in ("kafka", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def correlated(value: str | None) -> Iterator[None]:
    token = correlation_id.set(value)
    try:
        yield
    finally:
        correlation_id.reset(token)
