"""Local EventBridge: invokes every Schedule/ScheduleV2 event of template.yaml when it is due.

Rate schedules also fire once at start (so the replication tail starts with the stack). The `Input` of an
event, when set, is passed instead of the scheduled-event shape, as EventBridge does. An on-demand trigger:
`python -m infra.local.scheduler --trigger RetryFunction` runs the function's schedule once and prints the result.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import threading
from pathlib import Path

from booking_core import logs
from infra.local import template
from infra.local.lambda_context import LocalContext
from infra.local.lifetime import stop_event_on_signals
from infra.local.schedule import Schedule, scheduled_event

log = logging.getLogger("scheduler")
SCHEDULE_TYPES = ("Schedule", "ScheduleV2")


def event_for(function: template.Function, event: template.Event) -> dict:
    raw_input = event.properties.get("Input")
    if isinstance(raw_input, str):
        return json.loads(raw_input)
    return scheduled_event(f"arn:aws:events:us-east-1:123456789012:rule/{function.logical_id}-{event.name}")


def expression(event: template.Event) -> str:
    return event.properties.get("Schedule") or event.properties.get("ScheduleExpression")


def invoke(function: template.Function, event_payload: dict):
    handler = function.load_handler()
    return handler(event_payload, LocalContext(function.logical_id, function.timeout))


def _run_schedule(function, event, stop: threading.Event) -> None:
    schedule = Schedule(expression(event))
    now = dt.datetime.now(dt.UTC)
    due = now if schedule.interval_s is not None else schedule.next_after(now)
    while not stop.is_set():
        wait = (due - dt.datetime.now(dt.UTC)).total_seconds()
        if wait > 0 and stop.wait(wait):
            return
        started = dt.datetime.now(dt.UTC)
        try:
            result = invoke(function, event_for(function, event))
            log.info("scheduled run finished", extra={"function": function.logical_id, "result": result})
        except Exception:  # noqa: BLE001 - a failed run is logged; the next one is still scheduled
            log.exception("scheduled run failed", extra={"function": function.logical_id})
        due = schedule.next_after(due)
        if due < started:  # a run longer than the interval: skip missed slots, as EventBridge would
            due = schedule.next_after(started)


def scheduled(functions: dict[str, template.Function]):
    for function in functions.values():
        for event in function.events:
            if event.type in SCHEDULE_TYPES:
                yield function, event


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--template", default=str(template.TEMPLATE))
    parser.add_argument("--trigger", help="run this function's schedule once now, print the result and exit")
    parser.add_argument("--function", help="only this function's schedules (one process per function keeps "
                        "each function's environment its own)")
    parser.add_argument("--ready-file")
    args = parser.parse_args(argv)
    functions = template.functions(Path(args.template))
    if args.trigger:
        function = functions.get(args.trigger)
        events = [e for e in function.events if e.type in SCHEDULE_TYPES] if function else []
        if not events:
            scheduled_ids = sorted({f.logical_id for f, _ in scheduled(functions)})
            raise SystemExit(f"{args.trigger} has no Schedule event in {args.template}; "
                             f"scheduled functions: {', '.join(scheduled_ids)}")
        function.apply_environment()
        # The result alone goes to stdout (it is the summary a person or script reads); logs go to stderr.
        logs.setup(function.logical_id, stream=sys.stderr)
        print(json.dumps(invoke(function, event_for(function, events[0])), default=str, indent=2))
        return
    logs.setup("scheduler")
    stop = stop_event_on_signals()
    threads = []
    for function, event in scheduled(functions):
        if args.function and function.logical_id != args.function:
            continue
        function.apply_environment()
        thread = threading.Thread(target=_run_schedule, args=(function, event, stop), daemon=True,
                                  name=f"{function.logical_id}:{event.name}")
        thread.start()
        threads.append(thread)
    if args.ready_file:
        Path(args.ready_file).write_text("ready\n")
    stop.wait()
    for thread in threads:
        # A never-ending run (the local replication tail) is a daemon thread: stop waiting for it quickly;
        # its open transaction rolls back and its Redis writes are atomic per batch.
        thread.join(timeout=1)


if __name__ == "__main__":
    main()
