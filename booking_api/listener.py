"""Decisions listener: stores each decision from `booking-decisions` in the decision store (Redis) and wakes
the API instance waiting for its key. Event: Lambda MSK / self-managed Kafka (booking_core.kafka_event)."""
from booking_core import bootstrap, logs
from booking_core.services.kafka_batches import process_decisions

logs.setup("decisions_listener")


@logs.with_lambda_context
def handler(event: dict, context: object) -> dict:
    return process_decisions(event, store=bootstrap.decision_store())
