"""The seed's design, as a baseline: one API process whose own listener thread fills an in-memory
key → (event, decision) map, and waiters wait on the event (wait/notify).

    python -m bench.seed_design --port 8299      # against the stack configured by the environment

Everything else is the stack's: the same Chalice app and HTTP server (infra.local.api), the same producer,
the same `booking-requests` topic decided by the stack's payment pollers, the same `booking-decisions`
topic. Only the decision path differs: no Redis decision store and no listener process. The entry is made
before publishing and every wait is bounded (the seed's races fixed), so only the speed is compared. It
works with one instance only: a decision consumed by another instance would never wake this one's waiter.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time

from booking_core import config
from booking_core.domain.model import Decision

log = logging.getLogger("seed_design")


class InMemoryDecisionStore:
    """The DecisionStore port (claim/save/get/wait_decided) over a dict of key → [event, decision]."""

    def __init__(self):
        self._entries: dict[str, list] = {}  # key → [threading.Event, Decision | None, request_hash]
        self._lock = threading.Lock()

    def claim(self, booking_key: str, request, max_pending: int = 0):
        request_hash = request.fingerprint()
        with self._lock:
            entry = self._entries.get(booking_key)
            if entry is None:
                self._entries[booking_key] = [threading.Event(), None, request_hash]
                return True, request_hash, None
            return False, entry[2], entry[1]

    def save(self, decision: Decision) -> bool:
        with self._lock:
            entry = self._entries.setdefault(decision.booking_key, [threading.Event(), None, None])
            if entry[1] is not None and entry[1].is_final and not decision.is_final:
                return False
            entry[1] = decision
        entry[0].set()
        return True

    def save_many(self, decisions: list[Decision]) -> list[bool]:
        return [self.save(d) for d in decisions]

    def release(self, booking_key: str, user_id: int) -> None:
        with self._lock:
            self._entries.pop(booking_key, None)

    def get(self, booking_key: str) -> Decision | None:
        entry = self._entries.get(booking_key)
        return entry[1] if entry else None

    def wait_decided(self, booking_key: str, timeout_s: float, known_pending: bool = False) -> Decision | None:
        entry = self._entries.get(booking_key)
        if entry is None:
            return None
        entry[0].wait(timeout_s)
        return entry[1]


def listen(store: InMemoryDecisionStore, ready: threading.Event, stop: threading.Event) -> None:
    """The API's own listener thread: every decision on booking-decisions goes into the map."""
    from kafka import KafkaConsumer, TopicPartition

    from booking_core.adapters.kafka import client_settings
    from booking_core.domain import messages
    from booking_core.domain.model import ValidationError
    from infra.local.poller import consumer_latency_settings

    consumer = KafkaConsumer(**client_settings(), enable_auto_commit=False, **consumer_latency_settings())
    topic = config.decisions_topic()
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(parts)
    consumer.seek_to_end(*parts)
    for tp in parts:
        consumer.position(tp)
    ready.set()
    while not stop.is_set():
        for batch in consumer.poll(timeout_ms=100).values():
            for record in batch:
                try:
                    store.save(messages.decode_decision(record.value))
                except ValidationError:
                    continue
    consumer.close(autocommit=False)


def main(argv=None) -> None:
    from booking_core import bootstrap, logs
    from infra.local import api, template

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    function = api.api_function(template.functions())
    function.apply_environment()
    # The same sign-in as the stack's gateway: the measured stack's user pool (its /config.json says which); without
    # it every booking would be answered 401 and the comparison would measure nothing.
    from infra.local.stack import api_url
    from infra.local.token import web_config

    cognito = web_config(api_url())
    os.environ.update({"COGNITO_ENDPOINT": cognito["cognitoEndpoint"], "COGNITO_USER_POOL_ID": cognito["userPoolId"],
                       "COGNITO_CLIENT_ID": cognito["userPoolClientId"], "AWS_REGION": cognito["region"]})
    logs.setup("seed_design")
    store = InMemoryDecisionStore()
    bootstrap.override("decision_store", store)
    ready, stop = threading.Event(), threading.Event()
    threading.Thread(target=listen, args=(store, ready, stop), daemon=True, name="decisions-listener").start()
    if not ready.wait(30):
        raise SystemExit("the seed-design listener did not start")
    app = function.load_handler()
    server = api.make_server(app, "127.0.0.1", args.port)
    print(json.dumps({"seed_design": "serving", "port": args.port, "at": time.time()}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
