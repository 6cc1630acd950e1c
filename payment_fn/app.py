"""payment_fn: decides booking requests from `booking-requests` (Lambda MSK / self-managed Kafka event).

Event: see booking_core.kafka_event. Returns a count per outcome. Raises only for outages (MySQL or the
broker unreachable), so Lambda retries the batch; a bad record is answered or logged on its own.
After the batch's decisions are published, the confirmation emails queued by this batch are sent; a send
that fails stays in the outbox for a later run and never fails the batch.
"""
import logging
import time

from booking_core import bootstrap, config, logs, metrics
from booking_core.domain.model import Decision, RequestBooking
from booking_core.kafka_event import raw_records
from booking_core.services.emails import send_pending_emails
from booking_core.services.kafka_batches import process_booking_requests

logs.setup("payment_fn")
metrics.setup("payment_fn")
log = logging.getLogger(__name__)

# Older emails a failed send left pending are retried after a batch whose own emails went out, a few at a time,
# so a mail outage never makes every batch slower; the nightly retry run sends whatever is still pending.
RETRY_PER_BATCH = 10
RETRY_UNTOUCHED_S = 300
# The older-email pass costs a claiming UPDATE: once a minute per container is plenty for 5-minute-old rows.
RETRY_EVERY_S = 60
_next_retry_pass = 0.0


@metrics.flushed
@logs.with_lambda_context
def handler(event: dict, context: object) -> dict:
    confirmed_booking_ids: list[int] = []

    def remember(decision: Decision, request: RequestBooking) -> None:
        if decision.booking_id is not None:
            confirmed_booking_ids.append(decision.booking_id)

    summary = process_booking_requests(
        event,
        repo=bootstrap.booking_repository(),
        payments=bootstrap.payment_provider(),
        publisher=bootstrap.publisher(),
        decisions_topic=config.decisions_topic(),
        quick_retries=config.payment_quick_retries(),
        on_confirmed=remember,
    )
    record_metrics(event, summary)
    send_confirmation_emails(confirmed_booking_ids)
    return summary


def record_metrics(event: dict, summary: dict) -> None:
    """Outcomes of the batch, and each request's decision latency: its record's timestamp (when the API published
    it) to now, when the batch's decisions are published."""
    metrics.count(metrics.BOOKINGS_CONFIRMED, summary.get("confirmed", 0))
    metrics.count(metrics.BOOKINGS_REJECTED, summary.get("rejected", 0) + summary.get("invalid", 0))
    metrics.count(metrics.BOOKINGS_QUEUED, summary.get("queued", 0))
    now_ms = time.time() * 1000
    for record in raw_records(event):
        if isinstance(record.get("timestamp"), int | float):
            metrics.milliseconds(metrics.DECISION_LATENCY, max(0.0, now_ms - record["timestamp"]))


def send_confirmation_emails(booking_ids: list[int]) -> dict:
    """Send this batch's queued confirmation emails, then retry a few older ones a failed send left pending
    (not attempted for RETRY_UNTOUCHED_S). Any failure leaves them pending for a later run; never raises."""
    if not booking_ids:
        return {}
    outbox = bootstrap.email_outbox()
    try:
        sent = send_pending_emails(outbox, bootstrap.mailer(), booking_ids)
        global _next_retry_pass
        # The mail service answers: worth retrying what failed earlier.
        if sent.get("sent") and time.monotonic() >= _next_retry_pass:
            _next_retry_pass = time.monotonic() + RETRY_EVERY_S
            send_pending_emails(outbox, bootstrap.mailer(), limit=RETRY_PER_BATCH, untouched_for_s=RETRY_UNTOUCHED_S)
    except Exception:  # noqa: BLE001 - the decisions are published; email is retried by a later run
        log.exception("confirmation emails left pending for a later run", extra={"bookings": len(booking_ids)})
        return {"deferred": len(booking_ids)}
    return sent
