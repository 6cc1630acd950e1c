"""Latency summaries, the closed-loop driver and the progress log shared by every benchmark phase."""
from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of an already sorted list; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def load_average() -> str:
    """The 1/5/15-minute load averages, as `uptime` shows them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def log(message: str) -> None:
    """A progress line on stderr with the time and the load average."""
    print(f"[{time.strftime('%H:%M:%S')} load {load_average()}] {message}", file=sys.stderr, flush=True)


@dataclass
class LoadResult:
    """What one closed-loop phase measured. Latencies are in milliseconds, of requests started in the window."""

    name: str
    concurrency: int
    window_s: float
    latencies_ms: list[float] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)
    errors: int = 0
    load: str = ""
    error_samples: list[str] = field(default_factory=list)

    def summary(self, ok_outcome: str | None = None) -> dict:
        """p50/p95/p99/mean, requests per second, and `ok_outcome` (e.g. 201) per second when given."""
        values = sorted(self.latencies_ms)
        done = len(values)
        summary = {
            "name": self.name, "concurrency": self.concurrency, "requests": done,
            "p50_ms": _round(percentile(values, 50)), "p95_ms": _round(percentile(values, 95)),
            "p99_ms": _round(percentile(values, 99)), "max_ms": _round(values[-1] if values else None),
            "mean_ms": _round(sum(values) / done if done else None),
            "per_s": round(done / self.window_s, 1) if self.window_s else None,
            "outcomes": {str(k): v for k, v in sorted(self.outcomes.items(), key=lambda kv: str(kv[0]))},
            "errors": self.errors, "load": self.load,
        }
        if ok_outcome is not None:
            summary["ok_per_s"] = round(self.outcomes.get(ok_outcome, 0) / self.window_s, 1)
        if self.error_samples:
            summary["error_samples"] = self.error_samples[:3]
        return summary


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def closed_loop(name: str, call: Callable[[object, int], str], concurrency: int, duration_s: float,
                warmup_s: float = 0.5, worker_state: Callable[[], object] | None = None,
                error_outcomes: frozenset = frozenset(), max_requests: int | None = None) -> LoadResult:
    """Run `concurrency` workers, each calling `call(state, n)` back to back, for warmup_s + duration_s.

    `call` returns an outcome label (e.g. the HTTP status) or raises; a request counts when it *started*
    inside the measured window, so the warm-up (connections, first fetches) is left out. `n` is a number
    unique across workers, for callers that need distinct inputs. `max_requests` caps the measured requests.
    """
    counter = iter(range(10**12))
    counter_lock = threading.Lock()
    result = LoadResult(name, concurrency, duration_s)
    records: list[tuple[float, float, str]] = []
    records_lock = threading.Lock()
    start = time.perf_counter()
    window_start, window_end = start + warmup_s, start + warmup_s + duration_s
    measured = [0]

    def next_n() -> int:
        with counter_lock:
            return next(counter)

    def worker() -> None:
        state = worker_state() if worker_state else None
        mine: list[tuple[float, float, str]] = []
        try:
            while True:
                began = time.perf_counter()
                if began >= window_end:
                    break
                in_window = began >= window_start
                if in_window and max_requests is not None:
                    with counter_lock:
                        if measured[0] >= max_requests:
                            break
                        measured[0] += 1
                try:
                    outcome = call(state, next_n())
                except Exception as exc:  # noqa: BLE001 - an error is a measured outcome, not a crash
                    outcome = f"error:{type(exc).__name__}:{str(exc)[:120]}"
                if in_window:
                    mine.append((began, (time.perf_counter() - began) * 1000, outcome))
        finally:
            close = getattr(state, "close", None)
            if close:
                close()
            with records_lock:
                records.extend(mine)

    threads = [threading.Thread(target=worker, name=f"{name}-{i}", daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.load = load_average()
    if max_requests is not None and records:
        # Stopped by the cap: the window is as long as it took.
        result.window_s = max(b + latency / 1000 for b, latency, _ in records) - window_start or duration_s
    for _, latency, outcome in records:
        result.latencies_ms.append(latency)
        result.outcomes[outcome] += 1
        if outcome.startswith("error") or outcome in error_outcomes:
            result.errors += 1
            if len(result.error_samples) < 3:
                result.error_samples.append(outcome)
    return result
