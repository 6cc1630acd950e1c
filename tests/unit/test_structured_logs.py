"""Structured logs: one JSON object per line, with the booking_key of the work in hand as correlation_id."""
import io
import json
import logging
import uuid

import pytest

from booking_core.logs import JsonFormatter, correlated


@pytest.fixture
def log_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("PaymentFunction"))
    logger = logging.getLogger("test.structured")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


def test_lines_inside_a_correlated_block_carry_its_booking_key(log_lines, monkeypatch):
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-6765a1b2-0123456789abcdef01234567")
    logger, lines = log_lines

    with correlated("key-123"):
        logger.info("decided", extra={"status": "confirmed"})
    logger.info("batch done")

    first, second = lines()
    assert (first["correlation_id"], first["status"], first["function"]) == ("key-123", "confirmed",
                                                                              "PaymentFunction")
    assert second["correlation_id"] is None and "correlation_id" in second
    assert first["trace_id"] == second["trace_id"] == "Root=1-6765a1b2-0123456789abcdef01234567"


def test_an_explicit_booking_key_wins_and_exceptions_stay_on_one_json_line(log_lines):
    logger, lines = log_lines

    with correlated("outer"):
        try:
            raise RuntimeError("provider down")
        except RuntimeError:
            logger.exception("charge failed", extra={"booking_key": "inner"})

    (line,) = lines()
    assert line["correlation_id"] == "inner"
    assert "RuntimeError: provider down" in line["exception"]


@pytest.mark.parametrize("secret", [
    "eyJraWQiOiJkdW1teSJ9.eyJzdWIiOiI1ODMyNzI0ZiIsImVtYWlsIjoiYUBiLmMifQ.c2lnbmF0dXJlLXBhcnQ",
    "user3@example.com", "first.last+tag@mail.example.org", "tok_visa", "tok_chargeDeclined", "pm_card_visa",
    "sk_test_51Abc",
])
def test_no_token_email_address_or_payment_token_reaches_a_log_line(secret):
    stream = io.StringIO()
    logger = logging.getLogger(f"secrets-{uuid.uuid4().hex}")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    logger.addHandler(handler)
    try:
        raise ValueError(f"a library quoting what it refused: {secret!r}")
    except ValueError:
        logger.exception("send failed: %s", secret, extra={"error": f"MessageRejected: {secret}"})
    line = stream.getvalue()
    assert secret not in line and json.loads(line)["message"].startswith("send failed: <")
