"""payment_fn: decides booking requests from `booking-requests` (Lambda MSK / self-managed Kafka event).

Event: see booking_core.kafka_event. Returns a count per outcome. Raises only for outages (MySQL or the
broker unreachable), so Lambda retries the batch; a bad record is answered or logged on its own.
"""
from booking_core import bootstrap, config, logs
from booking_core.services.records import process_booking_requests

logs.setup("payment_fn")


def handler(event, context):
    return process_booking_requests(
        event,
        repo=bootstrap.booking_repository(),
        payments=bootstrap.payment_provider(),
        publisher=bootstrap.publisher(),
        decisions_topic=config.decisions_topic(),
        quick_retries=config.payment_quick_retries(),
    )
