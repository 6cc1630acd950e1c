"""Open-loop load: requests arrive on a Poisson schedule fixed in advance, whatever the server does, and each
latency runs from the request's *intended* start, so a slow answer cannot hold back the requests behind it
and hide their wait (no coordinated omission).

A pool of workers, each with its own connection, takes the scheduled requests in order; a request whose
worker was busy starts late and that wait counts in its latency. `late_starts` and `max_in_flight` show
whether the pool, not the server, was the limit (it should not be: keep late starts near zero).
"""
from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable

from bench.stats import load_average, percentile

LATE_MS = 5.0  # a start this much after its intended time means every worker was busy
DRAIN_S = 30.0  # requests scheduled in the window may finish this long after it; later ones are unfinished


def poisson_schedule(rate_per_s: float, until_s: float, rng: random.Random) -> list[float]:
    """Arrival times (s from the start) of a Poisson process with the given rate, up to `until_s`."""
    times, t = [], 0.0
    while True:
        t += rng.expovariate(rate_per_s)
        if t >= until_s:
            return times
        times.append(t)


def open_loop(name: str, call: Callable[[object, int], str], rate_per_s: float, duration_s: float,
              workers: int = 64, warmup_s: float = 0.5, worker_state: Callable[[], object] | None = None,
              ok_outcome: str = "201", error_outcomes: frozenset = frozenset(), seed: int = 15) -> dict:
    """Send `call(state, n)` at Poisson arrivals of `rate_per_s` for warmup_s + duration_s; summarise the
    requests intended inside the measured window (after the warm-up)."""
    schedule = poisson_schedule(rate_per_s, warmup_s + duration_s, random.Random(seed))
    lock = threading.Lock()
    next_index = [0]
    in_flight, max_in_flight = [0], [0]
    records: list[tuple[float, float, float, str]] = []  # intended, started, finished (perf_counter s), outcome
    start = time.perf_counter() + 0.2  # time for the workers to open their connections
    give_up = start + warmup_s + duration_s + DRAIN_S

    def take() -> int | None:
        with lock:
            i = next_index[0]
            if i >= len(schedule):
                return None
            next_index[0] += 1
            return i

    def worker() -> None:
        state = worker_state() if worker_state else None
        mine = []
        try:
            while (i := take()) is not None:
                intended = start + schedule[i]
                if intended > give_up:
                    break
                delay = intended - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                began = time.perf_counter()
                with lock:
                    in_flight[0] += 1
                    max_in_flight[0] = max(max_in_flight[0], in_flight[0])
                try:
                    outcome = call(state, i)
                except Exception as exc:  # noqa: BLE001 - an error is a measured outcome
                    outcome = f"error:{type(exc).__name__}:{str(exc)[:120]}"
                with lock:
                    in_flight[0] -= 1
                mine.append((intended, began, time.perf_counter(), outcome))
        finally:
            close = getattr(state, "close", None)
            if close:
                close()
            with lock:
                records.extend(mine)

    threads = [threading.Thread(target=worker, name=f"{name}-{i}", daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, give_up - time.perf_counter()) + 10)
    window_start, window_end = start + warmup_s, start + warmup_s + duration_s
    measured = [r for r in records if window_start <= r[0] < window_end]
    scheduled = sum(1 for t in schedule if warmup_s <= t < warmup_s + duration_s)
    latencies = sorted((finished - intended) * 1000 for intended, _, finished, _ in measured)
    service = sorted((finished - began) * 1000 for _, began, finished, _ in measured)
    outcomes = Counter(outcome for *_, outcome in measured)
    errors = [o for o in outcomes.elements() if o.startswith("error") or o in error_outcomes]

    def r(value):
        return None if value is None else round(value, 2)

    return {
        "name": name, "target_per_s": round(rate_per_s, 1), "workers": workers, "window_s": duration_s,
        "scheduled": scheduled, "requests": len(measured), "unfinished": scheduled - len(measured),
        "offered_per_s": round(scheduled / duration_s, 1),
        "ok_per_s": round(outcomes.get(ok_outcome, 0) / duration_s, 1),
        "p50_ms": r(percentile(latencies, 50)), "p95_ms": r(percentile(latencies, 95)),
        "p99_ms": r(percentile(latencies, 99)), "max_ms": r(latencies[-1] if latencies else None),
        "service_p50_ms": r(percentile(service, 50)), "service_p99_ms": r(percentile(service, 99)),
        "late_starts": sum(1 for intended, began, _, _ in measured if (began - intended) * 1000 > LATE_MS),
        "max_in_flight": max_in_flight[0],
        "outcomes": dict(sorted(outcomes.items())), "errors": len(errors), "error_samples": sorted(set(errors))[:3],
        "load": load_average(),
    }
