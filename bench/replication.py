"""Replication benchmarks against a running stack (its database and Redis prefix come from the environment).

    PYTHONPATH=.:layer .venv/bin/python -m bench.replication [n]

- measure_replication_lag(n): n committed changes, one at a time; for each, the time from the COMMIT call to
  the new value being readable in Redis (what the Read API would serve). Needs the stack's replication loop.
- measure_reconcile(): a full reconcile of the live read model (the drift check, normally zero repairs) and a
  full load of the same data into an empty scratch prefix (what a first start or a Redis restart costs).
"""
from __future__ import annotations

import json
import sys
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


def measure_replication_lag(n: int = 1000) -> dict:
    """p50/p99/max of commit → visible in Redis over n sequential changes to a benchmark user's row (ms)."""
    redis, prefix = get_redis(), config.redis_prefix()
    conn = connect(config.mysql_settings())
    lags_ms: list[float] = []
    timeouts = 0
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO users (email, name) VALUES (%s, 'bench')", (f"bench-{uuid.uuid4().hex}@example.com",))
            user_id = cur.lastrowid
        conn.commit()
        key = prefix + row_key("users", user_id)
        for i in range(n):
            marker = f"lag-{i}-{uuid.uuid4().hex[:6]}"
            with conn.cursor() as cur:
                cur.execute("UPDATE users SET name=%s WHERE id=%s", (marker, user_id))
            started = time.perf_counter()
            conn.commit()
            deadline = started + VISIBLE_TIMEOUT_S
            while redis.hget(key, "name") != marker:
                if time.perf_counter() > deadline:
                    timeouts += 1
                    break
                time.sleep(POLL_S)
            else:
                lags_ms.append((time.perf_counter() - started) * 1000)
            if timeouts >= 3 and not lags_ms:
                raise RuntimeError("changes never reached Redis: is the stack (its replication loop) running "
                                   "with this MYSQL_DATABASE and REDIS_PREFIX?")
        with conn.cursor() as cur:
            cur.execute("DELETE FROM users WHERE id=%s", (user_id,))
        conn.commit()
    finally:
        conn.close()
    lags_ms.sort()
    return {"changes": n, "timeouts": timeouts,
            "p50_ms": round(_percentile(lags_ms, 50), 2), "p99_ms": round(_percentile(lags_ms, 99), 2),
            "max_ms": round(lags_ms[-1], 2), "mean_ms": round(sum(lags_ms) / len(lags_ms), 2)}


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
            "full_load_seconds": full["seconds"], "full_load_keys": full["keys"]}


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 1000
    print(json.dumps({"replication_lag": measure_replication_lag(n), "reconcile": measure_reconcile()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
