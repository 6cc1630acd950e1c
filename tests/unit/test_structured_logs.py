"""Structured logs (Powertools Logger): one JSON object per line, with the booking_key of the work in hand as
correlation_id, the X-Ray trace id, and inside an invocation the Lambda request id and cold start; metrics as EMF."""
import base64
import io
import json
import logging
import uuid

import pytest

from booking_core import logs, metrics
from booking_core.logs import JsonFormatter, correlated
from infra.local.lambda_context import LocalContext

TRACE = "Root=1-6765a1b2-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=0"


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
    monkeypatch.setenv("_X_AMZN_TRACE_ID", TRACE)
    logger, lines = log_lines

    with correlated("key-123"):
        logger.info("decided", extra={"status": "confirmed"})
    logger.info("batch done")

    first, second = lines()
    assert (first["correlation_id"], first["status"], first["service"]) == ("key-123", "confirmed",
                                                                             "PaymentFunction")
    assert second["correlation_id"] is None and "correlation_id" in second
    assert first["xray_trace_id"] == second["xray_trace_id"] == "1-6765a1b2-0123456789abcdef01234567"
    assert first["logger"] == "test.structured" and first["level"] == "INFO"


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


@pytest.mark.parametrize("text", [
    "decided booking_key=12.abc status=confirmed reason=None",
    "user3@example.com paid with tok_visa", "a@b.c", "@ alone", "eyJ alone", "tok_", "tok_x1", "xtok_visa",
    "card_1234 and src_abc and rk_live_9 and pm_card_visa",
    "eyJraWQiOiJkdW1teSJ9.eyJzdWIiOiI1ODMyNzI0ZiJ9.c2lnbmF0dXJl mailed to first.last+tag@mail.example.org",
    '{"message": "confirmation email sent", "booking_id": 4711, "message_id": "<outbox-17@booking.local>"}',
    "x.+y@a.b", "a@b.c.+x@y.z", "@a.b first", "words before, then é.ü+1@ñ.example and two@x.y", "a@b", "a@@b.c",
    "tail-run_x.+@only", "run.é@ends.here.", "-@-.-",
])
def test_scrub_masks_exactly_what_the_three_patterns_mask(text):
    """scrub skips a pattern when the line lacks what that pattern needs (speed); the result must be the same as
    running every pattern."""
    from booking_core.logs import _SECRETS, scrub

    expected = text
    for pattern, mask in _SECRETS:
        expected = pattern.sub(mask, expected)
    assert scrub(text) == expected


def test_the_outbox_message_id_stays_readable_but_an_address_at_a_lookalike_domain_does_not():
    """"<outbox-17@booking.local>" is the local outbox's Message-ID (RFC 5322 gives every one an @): masked as an
    address, the "confirmation email sent" line lost the one value it is there to carry."""
    from booking_core.logs import scrub

    line = '{"message_id": "<outbox-17@booking.local>", "to": "u@booking.local.example.com", "x": "v@booking.local"}'
    assert scrub(line) == '{"message_id": "<outbox-17@booking.local>", "to": "<email>", "x": "<email>"}'


def _forget_powertools_logger(name: str) -> None:
    # Powertools marks the stdlib logger of a service as configured and reuses it: start each test afresh.
    named = logging.getLogger(name)
    named.handlers.clear()
    named.propagate = True
    for attr in ("init", "powertools_handler", "powertools_buffer_config", "powertools_buffer_cache"):
        named.__dict__.pop(attr, None)


@pytest.fixture
def powertools_logger(monkeypatch):
    """logs.setup() as a handler module calls it, writing to a buffer; restored afterwards."""
    monkeypatch.setenv("LOG_LEVEL", "INFO")
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    monkeypatch.setattr(logs, "_logger", None)
    monkeypatch.setattr(logs, "_cold_start", True)
    monkeypatch.setattr("aws_lambda_powertools.logging.logger.is_cold_start", True)
    _forget_powertools_logger("payment_fn")
    stream = io.StringIO()
    logger = logs.setup("payment_fn", stream=stream)
    yield logger, lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)
    _forget_powertools_logger("payment_fn")


def test_a_decorated_handler_logs_the_request_id_and_cold_start_once_from_any_module(powertools_logger,
                                                                                      monkeypatch):
    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")  # must not make the event appear in a line
    _, lines = powertools_logger
    module_log = logging.getLogger("payment_fn.app")  # a module under the service's own logger name
    deep_log = logging.getLogger("booking_core.services.kafka_batches")
    event = {"records": {"t-0": [{"value": base64.b64encode(b'{"payment_token": "tok_visa"}').decode()}]}}

    @logs.with_lambda_context
    def handler(event, context):
        with correlated("bk-1"):
            module_log.info("from the handler")
            deep_log.info("from a service")
        return "done"

    first_context = LocalContext("PaymentFunction")
    handler(event, first_context)
    handler(event, LocalContext("PaymentFunction"))

    written = lines()
    assert [line["message"] for line in written] == ["from the handler", "from a service"] * 2  # each once
    assert [line["cold_start"] for line in written] == [True, True, False, False]
    assert written[0]["function_request_id"] == first_context.aws_request_id != written[2]["function_request_id"]
    assert {line["service"] for line in written} == {"payment_fn"}
    assert {line["function_name"] for line in written} == {"PaymentFunction"}
    assert {line["correlation_id"] for line in written} == {"bk-1"}
    text = "\n".join(json.dumps(line) for line in written)
    assert "tok_visa" not in text and event["records"]["t-0"][0]["value"] not in text


def test_the_chalice_app_binds_the_same_keys_from_its_middleware(powertools_logger):
    _, lines = powertools_logger
    context = LocalContext("BookingApiFunction")

    logs.bind_lambda_context(context)
    # A logger under no service's name: booking_api.app may belong to a Logger an earlier test imported.
    logging.getLogger("booking_core.adapters.redis_views").warning("served")
    logs.bind_lambda_context(None)  # a direct call without a context changes nothing

    (line,) = lines()
    assert (line["function_request_id"], line["cold_start"]) == (context.aws_request_id, True)


def test_metrics_are_flushed_as_one_emf_object_per_invocation_with_the_service_dimension(monkeypatch, capsys):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "BookingPlatform/test")
    monkeypatch.setattr(metrics, "_metrics", None)
    metrics.setup("payment_fn")

    @metrics.flushed
    def handler(event, context):
        metrics.count(metrics.BOOKINGS_CONFIRMED, 2)
        metrics.milliseconds(metrics.DECISION_LATENCY, 12.5)
        metrics.milliseconds(metrics.DECISION_LATENCY, 30)

    handler({}, None)
    handler({}, None)  # a second invocation prints its own object

    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(objects) == 2
    emf = objects[0]
    (directive,) = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "BookingPlatform/test" and directive["Dimensions"] == [["service"]]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {"BookingsConfirmed": "Count",
                                                                    "DecisionLatency": "Milliseconds"}
    assert emf["service"] == "payment_fn" and emf["BookingsConfirmed"] == [2.0]
    assert emf["DecisionLatency"] == [12.5, 30.0]


def test_disabled_metrics_print_nothing_and_collect_nothing(monkeypatch, capsys):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setattr(metrics, "_metrics", None)
    metrics.setup("payment_fn")

    for _ in range(150):  # Powertools itself would print at 100 values even while disabled
        metrics.milliseconds(metrics.DECISION_LATENCY, 1)
    metrics.flush()

    assert capsys.readouterr().out == ""
    assert not metrics._get().metric_set


def test_payment_fn_counts_each_outcome_and_the_decision_latency_of_each_record(monkeypatch, capsys):
    from payment_fn import app

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setattr(metrics, "_metrics", None)
    metrics.setup("payment_fn")
    monkeypatch.setattr(app.time, "time", lambda: 1_000.0)
    event = {"eventSource": "aws:kafka", "records": {"booking-requests-0": [
        {"timestamp": 999_900, "key": "", "value": ""}, {"timestamp": 999_750, "key": "", "value": ""}]}}

    app.record_metrics(event, {"confirmed": 3, "rejected": 1, "invalid": 1, "queued": 2})
    metrics.flush()

    emf = json.loads(capsys.readouterr().out)
    assert (emf["BookingsConfirmed"], emf["BookingsRejected"], emf["BookingsQueued"]) == ([3.0], [2.0], [2.0])
    assert emf["DecisionLatency"] == [100.0, 250.0]
