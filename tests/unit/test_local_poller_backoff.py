"""The local poller retries a failing batch whole with a growing back-off, never in a tight loop."""
from __future__ import annotations

import threading
from types import SimpleNamespace

from infra.local import template
from infra.local.poller import KafkaPoller


class RecordingStop(threading.Event):
    """A stop event whose waits return at once and are recorded."""

    def __init__(self):
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return self.is_set()


def test_a_batch_whose_decisions_cannot_be_published_is_retried_with_a_growing_back_off():
    failures_left = [8]
    calls = []

    def handler(event, context):
        calls.append(event)
        if failures_left[0]:
            failures_left[0] -= 1
            raise RuntimeError("BrokerUnavailable: record 1 of 1 not acknowledged")
        return {}

    function = template.Function("PaymentFunction", "", "app.handler", {}, timeout=5)
    event = template.Event("Requests", "MSK", {"Topics": ["booking-requests"]})
    stop = RecordingStop()
    poller = KafkaPoller(function, event, handler=handler, stop=stop)
    record = SimpleNamespace(topic="booking-requests", partition=0, offset=7, timestamp=0, key=b"k",
                             value=b"{}", headers=[])

    poller._invoke_until_success([record])

    assert len(calls) == 9 and all(call == calls[0] for call in calls)  # the same batch, whole, each time
    assert stop.waits == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
