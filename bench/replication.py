"""Replication benchmarks against a running stack (its database and Redis prefix come from the environment).

    PYTHONPATH=.:layer .venv/bin/python -m bench.replication [n]

- measure_replication_lag(n): n committed changes, one at a time; for each, the time from the COMMIT call to
  the new value being readable in Redis (what the Read API would serve). Needs the stack's replication loop.
- LagSampler: the same measurement in a background thread while something else runs (a booking load).
- measure_reconcile(): a full reconcile of the live read model (the drift check, normally zero repairs) and a
  full load of the same data into an empty scratch prefix (what a first start or a Redis restart costs).
"""
from __future__ import annotations

import json
import sys
import threading
import time
import uuid

from booking_core import config
from booking_core.adapters.mysql import connect
from booking_core.adapters.mysql_change_log import MySqlChangeLog
from booking_core.adapters.redis_client import get_redis
from booking_core.adapters.redis_read_model import RedisReadModel
from booking_core.domain.read_model import row_key
from booking_core.services.replication import reconcile

VISIBLE_TIMEOUT_S = 5.0
POLL_S = 0.0005


def _percentile(sorted_values: list[float], q: float) -> float:
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


class LagProbe:
    """A benchmark user row of its own: each sample commits a new name to it and times commit → the name
    readable in Redis (what the Read API would serve)."""

    def __init__(self, poll_s: float = POLL_S):
        self.poll_s = poll_s
        self.redis = get_redis()
        self.conn = connect(config.mysql_settings())
        with self.conn.cursor() as cur:
            cur.execute("INSERT INTO users (email, name) VALUES (%s, 'bench')",
                        (f"bench-{uuid.uuid4().hex}@example.com",))
            self.user_id = cur.lastrowid
        self.conn.commit()
        self.key = config.redis_prefix() + row_key("users", self.user_id)
        self.samples = 0

    def sample(self) -> float | None:
        """One change's lag in ms, or None when it was not visible within VISIBLE_TIMEOUT_S."""
        marker = f"lag-{self.samples}-{uuid.uuid4().hex[:6]}"
        self.samples += 1
        with self.conn.cursor() as cur:
            cur.execute("UPDATE users SET name=%s WHERE id=%s", (marker, self.user_id))
        started = time.perf_counter()
        self.conn.commit()
        deadline = started + VISIBLE_TIMEOUT_S
        while self.redis.hget(self.key, "name") != marker:
            if time.perf_counter() > deadline:
                return None
            time.sleep(self.poll_s)
        return (time.perf_counter() - started) * 1000

    def close(self) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.execute("DELETE FROM users WHERE id=%s", (self.user_id,))
            self.conn.commit()
        finally:
            self.conn.close()


def _summary(lags_ms: list[float], changes: int, timeouts: int) -> dict:
    lags_ms = sorted(lags_ms)
    if not lags_ms:
        return {"changes": changes, "timeouts": timeouts, "p50_ms": None, "p99_ms": None, "max_ms": None,
                "mean_ms": None}
    return {"changes": changes, "timeouts": timeouts,
            "p50_ms": round(_percentile(lags_ms, 50), 2), "p99_ms": round(_percentile(lags_ms, 99), 2),
            "max_ms": round(lags_ms[-1], 2), "mean_ms": round(sum(lags_ms) / len(lags_ms), 2)}


def measure_replication_lag(n: int = 1000) -> dict:
    """p50/p99/max of commit → visible in Redis over n sequential changes to a benchmark user's row (ms)."""
    probe = LagProbe()
    lags_ms: list[float] = []
    timeouts = 0
    try:
        for _ in range(n):
            lag = probe.sample()
            if lag is None:
                timeouts += 1
            else:
                lags_ms.append(lag)
            if timeouts >= 3 and not lags_ms:
                raise RuntimeError("changes never reached Redis: is the stack (its replication loop) running "
                                   "with this MYSQL_DATABASE and REDIS_PREFIX?")
    finally:
        probe.close()
    return _summary(lags_ms, n, timeouts)


class LagSampler:
    """Samples the lag in a background thread, one change every `interval_s`, e.g. during a booking load:
    `start()` before it, `stop()` after it returns the summary. It polls Redis every `poll_s` (2 ms: the
    idle measurement's 0.5 ms would cost the load's client and Redis a thousand reads a second), so the lags
    are up to that much late; its own changes (under 40 a second) add a little replication work."""

    def __init__(self, interval_s: float = 0.025, start_delay_s: float = 0.0, poll_s: float = 0.002):
        self.interval_s, self.start_delay_s, self.poll_s = interval_s, start_delay_s, poll_s
        self._stop = threading.Event()
        self._lags: list[float] = []
        self._timeouts = 0
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)

    def _run(self) -> None:
        try:
            probe = LagProbe(self.poll_s)
        except Exception as exc:  # noqa: BLE001 - reported by stop()
            self._error = repr(exc)[:300]
            return
        try:
            if self._stop.wait(self.start_delay_s):
                return
            while not self._stop.is_set():
                lag = probe.sample()
                if lag is None:
                    self._timeouts += 1
                else:
                    self._lags.append(lag)
                self._stop.wait(self.interval_s)
        except Exception as exc:  # noqa: BLE001 - reported by stop()
            self._error = repr(exc)[:300]
        finally:
            probe.close()

    def start(self) -> LagSampler:
        self._thread.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(VISIBLE_TIMEOUT_S + 5)
        out = _summary(self._lags, len(self._lags) + self._timeouts, self._timeouts)
        if self._error:
            out["error"] = self._error
        return out


def measure_reconcile() -> dict:
    """Seconds and counts of a reconcile of the live model, and of a full load into an empty scratch prefix."""
    change_log = MySqlChangeLog()
    redis = get_redis()
    scratch = f"{config.redis_prefix()}bench-reconcile-{uuid.uuid4().hex[:6]}:"
    try:
        live = reconcile(change_log, RedisReadModel(redis, config.redis_prefix()))
        full = reconcile(change_log, RedisReadModel(redis, scratch))
    finally:
        change_log.close()
        for key in redis.scan_iter(match=scratch + "*", count=1000):
            redis.delete(key)
    return {"seconds": live["seconds"], "counts": {"rows": live["rows"], "members": live["members"]},
            "scanned": live["scanned"], "keys": live["keys"],
            "full_load_seconds": full["seconds"],
            # reconcile's `keys` counts what its scan found; into an empty prefix, the rows it wrote say the size
            "full_load_rows": full["rows"]["missing"]}


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 1000
    print(json.dumps({"replication_lag": measure_replication_lag(n), "reconcile": measure_reconcile()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
