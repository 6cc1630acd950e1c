"""replication_fn: applies the MySQL change log to the Redis read model.

Event shapes:
- `{"mode": "tail"}` (the template's schedule Input) or an EventBridge scheduled event: tail the change log for
  REPLICATION_RUN_S seconds (55 on AWS, each run of the 1-minute schedule; "0" locally: until the process
  stops, a continuous loop), bounded by the invocation's remaining time when that is set;
- `{"mode": "once"}`: apply what is committed now and return;
- `{"mode": "reconcile"}`: compare the whole read model with MySQL, repair it and report the counts.
On first start with an empty read model (or after Redis lost it) the tail does a full load first.
"""
from __future__ import annotations

from booking_core import bootstrap, config, logs, metrics
from booking_core.services import replication

logs.setup("replication_fn")
metrics.setup("replication_fn")

MODES = ("tail", "once", "reconcile")
# Time left for the last batch and the reply after the tail stops, out of the invocation's timeout.
TIMEOUT_MARGIN_S = 3.0


def mode_of(event: object) -> str:
    """The mode an event asks for; EventBridge's scheduled-event shape (no `mode`) means tail."""
    mode = (event or {}).get("mode", "tail") if isinstance(event, dict) else "tail"
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    return mode


def run_seconds(context: object) -> float:
    """How long this tail runs: REPLICATION_RUN_S, cut to finish before the invocation times out (0: no end)."""
    run_s = config.replication_run_s()
    if run_s <= 0:
        return 0.0
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is not None:
        run_s = min(run_s, max(0.1, remaining() / 1000 - TIMEOUT_MARGIN_S))
    return run_s


def _observe_lag(lag_ms: float) -> None:
    metrics.milliseconds(metrics.REPLICATION_LAG, lag_ms)


@metrics.flushed
@logs.with_lambda_context
def handler(event: dict, context: object) -> dict:
    """Run one replication mode and return its summary (counts, and for reconcile what it repaired)."""
    mode = mode_of(event)
    change_log, read_model = bootstrap.change_log(), bootstrap.read_model()
    if mode == "reconcile":
        return replication.reconcile(change_log, read_model)
    if mode == "once":
        replication.ensure_loaded(change_log, read_model)
        return replication.drain(change_log, read_model, observe_lag=_observe_lag)
    return replication.tail(change_log, read_model, run_seconds(context), observe_lag=_observe_lag)
