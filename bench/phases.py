"""The measurements of `make bench`, one function each; each returns its part of the results.

`series` (where a phase takes it) collects round-trip latencies per curve for the report's plot.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from bench import floor, stages, wrk
from bench import replication as measures
from bench.auth import headers_for
from bench.http_load import USERS, BookingBodies, Connection, get, post_booking, run_year
from bench.machine import cpu_per_item, cpu_snapshot, stack_children
from bench.open_loop import open_loop
from bench.stats import LoadResult, closed_loop, load_average, log

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCIES = [1, 8, 32]
WARMUP_S = 0.5  # closed_loop's default warm-up
BOOKING_ERRORS = frozenset({"202", "400", "402", "422", "500", "502", "503", "504"})

Series = dict[str, list[float]]


def api_base() -> tuple[str, int]:
    from booking_core import config

    return "127.0.0.1", config.api_port()


def api_healthy(host: str, port: int) -> bool:
    try:
        return Connection(host, port, timeout=2).request("GET", "/health")[0] == 200
    except OSError:
        return False


# ---- the broker floor ------------------------------------------------------------------------------------

def floor_runs(client: str, topics: tuple[str, str], seconds: float, responders: int, series: Series) -> list:
    """The broker's request-reply floor with one client library at each concurrency (bench/floor.py)."""
    log(f"floor ({client})")
    runs = floor.measure_floor(client, *topics, CONCURRENCIES, seconds, responders)
    series[f"floor {client} c32"] = runs[-1].latencies_ms
    return [r.summary() for r in runs]


# ---- bookings --------------------------------------------------------------------------------------------

def booking_load(name: str, port: int, concurrency: int, seconds: float, bodies: BookingBodies,
                 contended: bool = False, samples: list | None = None) -> LoadResult:
    """Closed loop of POST /v1/bookings: distinct stays, or the contended mix."""
    host = api_base()[0]

    def call(conn, n):
        body = bodies.contended(n) if contended else bodies.distinct()
        return post_booking(conn, body, samples)

    return closed_loop(name, call, concurrency, seconds, worker_state=lambda: Connection(host, port),
                       error_outcomes=BOOKING_ERRORS)


def bookings(port: int, seconds: float, bodies: BookingBodies, series: Series) -> dict:
    """Booking round trip at each concurrency, where the time goes, and the CPU per booking at 32."""
    from booking_core import config

    out: dict = {"bookings": [], "stages": {}}
    topics = [config.requests_topic(), config.decisions_topic()]
    for c in CONCURRENCIES:
        log(f"bookings c{c}")
        samples: list = []
        offsets = stages.end_offsets(topics)
        # At 32, the replication lag is sampled during the load (from the end of the closed loop's warm-up).
        sampler = measures.LagSampler(start_delay_s=WARMUP_S).start() if c == 32 else None
        before = cpu_snapshot()
        result = booking_load("booking", port, c, seconds, bodies, samples=samples)
        after = cpu_snapshot()
        lag = sampler.stop() if sampler else None
        summary = result.summary("201")
        out["bookings"].append(summary)
        series[f"booking c{c}"] = result.latencies_ms
        out["stages"][f"c{c}"] = stages.breakdown(samples, offsets, *topics)
        if c == 32:
            out["replication_lag_under_load"] = {**lag, "load": summary["load"]}
            out["cpu_ms_per_booking_c32"] = cpu_per_item(before, after, summary["outcomes"].get("201", 0))
            out["decision_store_memory"] = decision_store_memory([key for key, _, _ in samples])
            log(f"  replication lag under load {out['replication_lag_under_load']}")
            log(f"  decision store {out['decision_store_memory']}")
        log(f"  p50 {summary['p50_ms']} p99 {summary['p99_ms']} ms, {summary.get('ok_per_s')} confirmed/s,"
            f" stages {out['stages'][f'c{c}']}")
    return out


def decision_store_memory(booking_keys: list[str], sample: int = 200) -> dict:
    """Redis memory of the decision store per 1,000 bookings: MEMORY USAGE of the `req:` hash and `wake:` list
    of up to `sample` of the keys just booked, scaled. Measured right after the load, so the wake lists (kept
    WAKE_TTL_S after the decision) are still there; each part is given with its TTL."""
    from booking_core import config
    from booking_core.adapters.redis_client import get_redis
    from booking_core.adapters.redis_decision_store import WAKE_TTL_S

    redis, prefix = get_redis(), config.redis_prefix()
    keys = booking_keys[:: max(1, len(booking_keys) // sample)][:sample]
    pipe = redis.pipeline(transaction=False)
    for key in keys:  # the store's key layout (booking_core.adapters.redis_decision_store)
        pipe.memory_usage(f"{prefix}req:{key}", samples=0)
        pipe.memory_usage(f"{prefix}wake:{key}", samples=0)
    sizes = pipe.execute() if keys else []
    req, wake = [b for b in sizes[0::2] if b is not None], [b for b in sizes[1::2] if b is not None]
    if keys and not req:
        log("  decision store: no req: entry found for the booked keys (has the store's key layout changed?)")
    per_1000 = 1000 / len(keys) if keys else 0
    return {"sampled_bookings": len(keys), "req_found": len(req), "wake_found": len(wake),
            "req_bytes_mean": round(sum(req) / len(req), 1) if req else None,
            "req_bytes_per_1000_bookings": round(sum(req) * per_1000) if keys else None,
            "wake_bytes_per_1000_bookings": round(sum(wake) * per_1000) if keys else None,
            "bytes_per_1000_bookings": round((sum(req) + sum(wake)) * per_1000) if keys else None,
            "req_ttl_s": config.decision_ttl_s(), "wake_ttl_s": WAKE_TTL_S}


OPEN_LOOP_SHARES = (50, 80)


def open_loop_bookings(port: int, seconds: float, bodies: BookingBodies, max_rate_per_s: float | None) -> dict:
    """Bookings arriving at Poisson times at 50% and 80% of the maximum rate measured in this run, latency
    from each request's intended start (bench/open_loop.py)."""
    out: dict = {"max_rate_per_s": max_rate_per_s}
    if not max_rate_per_s:
        log("open loop: no maximum booking rate measured → n/a")
        return out
    host = api_base()[0]
    for share in OPEN_LOOP_SHARES:
        rate = max_rate_per_s * share / 100
        log(f"bookings open loop {share}% ({rate:.0f}/s)")
        result = open_loop(f"booking open loop {share}%", lambda conn, _n: post_booking(conn, bodies.distinct()),
                           rate, seconds, warmup_s=WARMUP_S, worker_state=lambda: Connection(host, port),
                           error_outcomes=BOOKING_ERRORS)
        out[f"{share}pct"] = result
        log(f"  p50 {result['p50_ms']} p99 {result['p99_ms']} ms at {result['offered_per_s']}/s offered,"
            f" {result['ok_per_s']} confirmed/s, late starts {result['late_starts']},"
            f" max in flight {result['max_in_flight']}")
    return out


def contended(port: int, seconds: float, bodies: BookingBodies, series: Series) -> dict:
    """32 clients, 4 listings, the same nights per group of 32 requests: one wins per listing."""
    log("bookings contended c32")
    result = booking_load("booking contended (4 listings)", port, 32, seconds, bodies, contended=True)
    series["booking contended c32"] = result.latencies_ms
    return result.summary("201")


# ---- the seed design -------------------------------------------------------------------------------------

def start_seed_design(port: int) -> subprocess.Popen:
    from infra.local.stack import LOG_DIR, child_env, stack_id

    env = child_env()
    log_path = LOG_DIR / f"{stack_id()}-bench-seed-design.log"
    with open(log_path, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "bench.seed_design", "--port", str(port)], cwd=ROOT,
                                   env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    conn = Connection("127.0.0.1", port, timeout=1)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the seed-design API exited; see {log_path}")
        try:
            if conn.request("GET", "/health")[0] == 200:
                conn.close()
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the seed-design API did not answer on port {port}; see {log_path}")


def pause_listeners(paused: bool) -> list[int]:
    """SIGSTOP/SIGCONT the stack's decisions-listener pollers: while the seed design runs they would only add
    work (Redis writes nobody waits for) to the machine the baseline is measured on."""
    pids = [pid for name, pid in stack_children().items() if name.startswith("DecisionsListenerFunction")]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGSTOP if paused else signal.SIGCONT)
        except ProcessLookupError:
            pass
    return pids


def seed_design(seconds: float, bodies: BookingBodies, series: Series) -> dict:
    """The seed design (bench/seed_design.py) at 1 and 32 on its own port, the stack's listeners paused."""
    from infra.local import services

    seed_port = services.free_port()
    out: dict = {"port": seed_port, "runs": []}
    log("seed design")
    process = None
    try:
        process = start_seed_design(seed_port)
        out["paused_listener_pids"] = pause_listeners(True)
        for c in (1, 32):
            result = booking_load("seed design", seed_port, c, seconds, bodies)
            out["runs"].append(result.summary("201"))
            series[f"seed design c{c}"] = result.latencies_ms
            log(f"  c{c} p50 {result.summary()['p50_ms']} ms")
    except Exception as exc:  # noqa: BLE001 - report, keep the rest of the run
        out["error"] = repr(exc)
        traceback.print_exc()
    finally:
        pause_listeners(False)
        if process is not None:
            process.terminate()
            process.wait(10)
    return out


# ---- reads -----------------------------------------------------------------------------------------------

def read_paths(year: int) -> dict[str, str]:
    """The read routes measured: a dated city search, a listing's availability, a user's bookings."""
    return {
        "search": f"/v1/listings?city=Lisbon&check_in={year}-02-01&check_out={year}-02-04",
        "availability": f"/v1/listings/7/availability?from={year}-01-01&to={year}-03-01",
        "user_bookings": "/v1/users/{user}/bookings",
    }


READ_CONNECTIONS = (4, 32)


def _read_call(path: str):
    """GET `path` as request n's user (users in turn; `{user}` in the path is that user)."""
    def call(conn, n):
        user = n % USERS + 1
        return get(conn, path.format(user=user), user)

    return call


def _python_reads(port: int, path: str, name: str, seconds: float) -> dict:
    """The Python closed loop at 32 (the fallback without wrk: its threads share the cores and the GIL)."""
    result = closed_loop(f"read {name}", _read_call(path), 32, seconds,
                         worker_state=lambda: Connection("127.0.0.1", port),
                         error_outcomes=frozenset({"400", "404", "500", "503"}))
    return result.summary("200")


def _wrk_reads(binary: str, port: int, path: str, connections: int, seconds: float) -> dict:
    """One wrk run."""
    summary = wrk.run(binary, "127.0.0.1", port, wrk.requests_as_users(path, USERS), connections, seconds)
    return {**summary, "load": load_average()}


def reads(port: int, seconds: float) -> dict:
    """The read routes with wrk at 4 and 32 connections (`reads` holds 32, `reads_c4` 4), each with the
    server processes' CPU per read; without wrk, the Python closed loop at 32 only, and the report says so.
    A route that answers 404 is reported n/a."""
    log("read API")
    binary = wrk.ensure_wrk()
    if binary is None:
        log("wrk is MISSING (apt-get install -y wrk): reads measured with the Python client at 32, which is"
            " itself the bottleneck; reads_per_s and read_p99_ms are the client's limit, not the API's")
    tool = "wrk" if binary else "python (wrk missing)"
    out: dict = {"reads": {}, "reads_c4": {}, "reads_tool": tool}
    for name, path in read_paths(run_year() + 1).items():
        probe = Connection("127.0.0.1", port)
        status = probe.request("GET", path.format(user=1), headers=headers_for(1))[0]
        probe.close()
        if status == 404:
            out["reads"][name] = {"name": f"read {name}", "available": False, "status": 404}
            log(f"read {name}: 404 (route not there yet) → n/a")
            continue
        for c in READ_CONNECTIONS if binary else (32,):
            label = f"read {name}" + (" (wrk)" if binary else "")
            try:
                before = cpu_snapshot()
                summary = (_wrk_reads(binary, port, path, c, seconds) if binary
                           else _python_reads(port, path, name, seconds))
                # The stack's and servers' CPU per read; wrk is not among them, the Python client is left out.
                cpu = cpu_per_item(before, cpu_snapshot(), summary["requests"])
                summary.update(cpu_ms_per_read=cpu, server_cpu_ms_per_read=cpu["total_excluding_bench_client"])
            except Exception as exc:  # noqa: BLE001 - report it, keep the other routes
                summary = {"concurrency": c, "error": repr(exc)[:300], "p50_ms": None, "p95_ms": None,
                           "p99_ms": None, "per_s": None, "errors": "failed"}
                traceback.print_exc()
            summary = {**summary, "name": label, "available": True, "path": path, "tool": tool}
            out["reads" if c == 32 else f"reads_c{c}"][name] = summary
            log(f"{label} c{c}: {summary.get('ok_per_s')}/s, p50 {summary['p50_ms']} p99 {summary['p99_ms']} ms,"
                f" server CPU {summary.get('server_cpu_ms_per_read')} ms/read")
    return out


# ---- replication -----------------------------------------------------------------------------------------

def replication() -> dict:
    """Replication lag (commit → Redis, idle) and a reconcile (bench/replication.py)."""
    log("replication")
    out: dict = {"available": True}
    for name, call in (("lag", lambda: measures.measure_replication_lag(n=1000)),
                       ("reconcile", measures.measure_reconcile)):
        started = time.monotonic()
        try:
            out[name] = call()
        except Exception as exc:  # noqa: BLE001 - report it, keep the other figures
            out[name] = {"error": repr(exc)[:300]}
            traceback.print_exc()
        out[name]["load"] = load_average()
        log(f"replication {name} in {time.monotonic() - started:.1f}s: {out[name]}")
    return out
