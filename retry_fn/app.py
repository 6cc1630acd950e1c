"""retry_fn: re-drives the retry table (booking_retries) — nightly by EventBridge, or on demand (`make retry`).

Event: EventBridge's scheduled event (`{"detail-type": "Scheduled Event", "source": "aws.events", ...}`) or `{}`
re-drives every due row; `{"booking_keys": ["k1", ...]}` re-drives only those rows (when they are due).
Returns the summary (due, republished, still_failing, dead, expired, waiting, last_error) and logs it; then sends
the confirmation emails a failed send left pending (summary["emails"]).
"""
import logging

from booking_core import bootstrap, config, logs, metrics
from booking_core.services.emails import send_pending_emails
from booking_core.services.retry import redrive_due_requests

logs.setup("retry_fn")
metrics.setup("retry_fn")
log = logging.getLogger(__name__)

# Stop claiming rows while this much of the Lambda timeout is left, so the run ends on its own.
RESERVE_MS = 30_000


@metrics.flushed
@logs.with_lambda_context
def handler(event: dict, context: object) -> dict:
    summary = redrive_due_requests(
        retries=bootstrap.retry_store(),
        publisher=bootstrap.publisher(),
        requests_topic=config.requests_topic(),
        max_attempts=config.retry_max_attempts(),
        base_delay_s=config.retry_base_delay_s(),
        booking_keys=booking_keys_in(event),
        keep_going=_time_left(context),
    )
    summary["emails"] = _send_pending_emails()
    log.info("retry run finished", extra={"summary": summary})
    metrics.count(metrics.RETRY_ROWS_DUE, summary.get("due", 0))
    metrics.count(metrics.RETRY_ROWS_DEAD, summary.get("dead", 0))
    metrics.count(metrics.RETRY_ROWS_WAITING, summary.get("waiting", 0))
    return summary


def _send_pending_emails() -> dict:
    """Confirmation emails a failed send left pending (payment_fn retries only a few per batch)."""
    try:
        return send_pending_emails(bootstrap.email_outbox(), bootstrap.mailer())
    except Exception as exc:  # noqa: BLE001 - email never fails the re-drive; the rows stay pending
        log.exception("pending confirmation emails not sent")
        return {"error": repr(exc)}


def booking_keys_in(event: object) -> list[str] | None:
    """The keys an on-demand event names, or None (every due row) for a scheduled event or `{}`."""
    keys = event.get("booking_keys") if isinstance(event, dict) else None
    if keys is None:
        return None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ValueError("booking_keys must be a list of strings")
    return keys


def _time_left(context):
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return lambda: True
    return lambda: context.get_remaining_time_in_millis() > RESERVE_MS
