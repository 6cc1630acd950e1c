"""`make bench-scale`: the read side at catalogue scale (issue 18), on a stack of its own.

    make bench-scale                                   # 5,000, 50,000 and 500,000 listings
    BENCH_SCALE_SIZES=5000,50000 make bench-scale      # fewer sizes (500,000 takes a while on 2 cores)

It starts its own local stack (API_PORT 8790, KAFKA_PORT 9790, database `booking_scalebench`, Redis prefix
`scalebench:`; each overridable by the same variables with a BENCH_SCALE_ prefix), then for each size:
 1. tops the catalogue up to that many listings by SQL (ten cities, 1-6 guests, spread prices) with four
    three-night bookings per listing spread over 2031, while holding the replication lock, then releases it
    and times the stack's replication loop draining the change log: replication rows/s;
 2. drives every search shape with wrk at 4 and 32 connections (BENCH_SECONDS each, default 3): p50/p99, req/s;
 3. runs `python -m replication_fn.reconcile` in a child process: its time and peak RSS (nothing to repair).
Writes bench/results/scale-latest.json and scale-latest.md; prints the table. The database and the Redis keys
are dropped at the end (BENCH_SCALE_KEEP=1 keeps them for a re-run, which then only tops up).
BENCH_SCALE_SHAPES=name,name runs only those shapes (the names are in SHAPES); BENCH_SCALE_RECONCILE=0 skips
the reconcile step.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CITIES = 10
STAY = ("2031-03-10", "2031-03-13")
BOOKINGS_PER_LISTING = 4
INSERT_CHUNK = 25_000
DRAIN_TIMEOUT_S = 1800

STAY_Q = f"check_in={STAY[0]}&check_out={STAY[1]}"
# name -> query string of GET /v1/listings. The shapes first, then the rest of the combinations.
SHAPES = {
    "city": "city=Scale3",
    "city+dates+guests2": f"city=Scale3&{STAY_Q}&guests=2",
    "dates+guests6+max_price": f"{STAY_Q}&guests=6&max_price_cents=12000",
    "guests7 (none)": "guests=7",
    "dates+guests7 (none)": f"{STAY_Q}&guests=7",
    "all": "",
    "dates": STAY_Q,
    "city+guests6+max_price": "city=Scale3&guests=6&max_price_cents=9000",
    "max_price (none)": "max_price_cents=100",
    "unknown city": "city=Nowhere",
    "cursor page": "",  # filled in at run time: the first page's next_cursor of `city+dates+guests2`
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for name, default in (("API_PORT", "8790"), ("KAFKA_PORT", "9790"), ("MYSQL_DATABASE", "booking_scalebench"),
                          ("REDIS_PREFIX", "scalebench:")):
        env[name] = os.environ.get(f"BENCH_SCALE_{name}", default)
    env["PYTHONPATH"] = f"{ROOT}:{ROOT / 'layer'}"
    # The local gateway throttles like the stage (1,000/s): a load test of the search measures the search.
    env.setdefault("THROTTLE_RATE_LIMIT", "1000000")
    env.setdefault("THROTTLE_BURST_LIMIT", "1000000")
    return env


def log(message: str) -> None:
    one, five, _ = os.getloadavg()
    print(f"[{time.strftime('%H:%M:%S')} load {one:.2f} {five:.2f}] {message}", file=sys.stderr, flush=True)


def stack(command: str, env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "infra.local.stack", command], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise RuntimeError(f"stack {command} failed: {(done.stderr or done.stdout).strip()[-500:]}")


def top_up(conn, size: int) -> int:
    """Listings Scale* up to `size`, each with its bookings; returns the change rows this wrote."""
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n, COALESCE(MAX(id), 0) AS top FROM listings WHERE city LIKE 'Scale%'")
        row = cur.fetchone()
    have, rows = row["n"], 0
    while have < size:
        n = min(INSERT_CHUNK, size - have)
        with conn.cursor() as cur:
            # Prices 30.00-229.99 spread by a multiplicative hash; guests 1-6; ten cities in turn.
            cur.execute(
                "INSERT INTO listings (host_id, title, city, max_guests, nightly_price_cents)"
                " SELECT 1, CONCAT('Scale flat ', seq), CONCAT('Scale', MOD(seq, %s)), 1 + MOD(seq, 6),"
                f" 3000 + MOD(seq * 7919, 20000) FROM seq_1_to_{int(n)}", (CITIES,))
            first = cur.lastrowid  # first id of a multi-row insert
            # Four 3-night stays per listing, at a different place in 2031 for each listing.
            cur.execute(
                "INSERT INTO bookings (booking_key, user_id, listing_id, check_in, check_out, status, amount_cents)"
                " SELECT CONCAT('scale-', l.id, '-', k.seq), 1 + MOD(l.id, 24), l.id,"
                " '2031-01-01' + INTERVAL MOD(l.id * 37 + k.seq * 89, 360) DAY,"
                " '2031-01-01' + INTERVAL (MOD(l.id * 37 + k.seq * 89, 360) + 3) DAY, 'confirmed', 30000"
                f" FROM listings l JOIN seq_1_to_{BOOKINGS_PER_LISTING} k WHERE l.id BETWEEN %s AND %s",
                (first, first + n - 1))
        conn.commit()
        have += n
        rows += n * (1 + BOOKINGS_PER_LISTING)
    return rows


def change_rows(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM change_log")
        return cur.fetchone()["n"]


def replicator_cpu_s() -> float | None:
    """CPU seconds (user + system) the bench stack's replication process has used, from /proc; None if not found."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"ReplicationFunction" not in cmdline or Path(os.readlink(proc / "cwd")) != ROOT:
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return None


def load(size: int, env: dict[str, str]) -> dict:
    """Top up under the replication lock, then time the stack's loop draining the change log."""
    from booking_core.adapters.mysql import connect
    from booking_core.adapters.mysql_change_log import MySqlChangeLog
    from booking_core.config import mysql_settings

    settings = mysql_settings()
    conn = connect(settings)
    lock_name = MySqlChangeLog(settings).lock_name()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 60) AS got", (lock_name,))
            if cur.fetchone()["got"] != 1:
                raise RuntimeError("could not take the replication lock")
        started = time.monotonic()
        written = top_up(conn, size)
        inserted_s = time.monotonic() - started
        pending = change_rows(conn)
        log(f"{size}: wrote {written} rows in {inserted_s:.1f}s; {pending} change rows pending; releasing the lock")
        with conn.cursor() as cur:
            cur.execute("SELECT RELEASE_LOCK(%s)", (lock_name,))
        conn.commit()
        released, cpu_before = time.monotonic(), replicator_cpu_s()
        while change_rows(conn) > 0:
            conn.commit()  # a fresh snapshot for the next count
            if time.monotonic() - released > DRAIN_TIMEOUT_S:
                raise RuntimeError("replication did not drain the change log")
            time.sleep(0.05)
        drained_s = time.monotonic() - released
        cpu_after = replicator_cpu_s()
    finally:
        conn.close()
    cpu_s = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    return {"rows": pending, "seconds": round(drained_s, 2),
            "rows_per_s": round(pending / drained_s) if pending and drained_s else None,
            "replicator_cpu_s": round(cpu_s, 2) if cpu_s is not None else None,
            "rows_per_cpu_s": round(pending / cpu_s) if pending and cpu_s else None,
            "sql_insert_s": round(inserted_s, 1)}


def reconcile_rss(env: dict[str, str]) -> dict:
    """reconcile() with the child's own peak RSS from wait4."""
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "replication_fn.reconcile"], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    if child.returncode != 0:
        raise RuntimeError(f"reconcile exited {child.returncode}")
    report = json.loads(out)
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "repaired": report.get("repaired"), "keys": report.get("keys")}


def first_cursor(port: int) -> str | None:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/listings?{SHAPES['city+dates+guests2']}",
                                timeout=30) as reply:
        return json.loads(reply.read())["next_cursor"]


DIRECT_CALLS = 200


def direct(query: str) -> dict:
    """The view called in-process (no HTTP): p50/p99 ms of one search as the API calls it (the JSON text), i.e.
    the script in Redis plus one round trip; the figure that shows the search's own cost apart from the API
    process's."""
    from urllib.parse import parse_qsl

    from booking_core.adapters.redis_views import RedisReadViews

    views, params = RedisReadViews(), dict(parse_qsl(query))
    views.search_listings_json(params)  # registers the script
    took = []
    for _ in range(DIRECT_CALLS):
        started = time.perf_counter()
        text = views.search_listings_json(params)
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    page = json.loads(text)
    return {"p50_ms": round(took[len(took) // 2], 3), "p99_ms": round(took[int(len(took) * 0.99) - 1], 3),
            "items": len(page["items"]), "next_cursor": page["next_cursor"] is not None}


def searches(port: int, seconds: float, wrk_binary: str | None, only: set[str] | None) -> list[dict]:
    from bench import wrk

    shapes = dict(SHAPES)
    cursor = first_cursor(port)
    shapes["cursor page"] = f"{SHAPES['city+dates+guests2']}&cursor={cursor}" if cursor else "city=Scale3"
    results = []
    for name, query in [("floor: GET one listing", None), *shapes.items()]:
        if only and name not in only:
            continue
        path = "/v1/listings/1" if query is None else "/v1/listings" + (f"?{query}" if query else "")
        row: dict = {"shape": name, "path": path, "direct": direct(query) if query is not None else None}
        for connections in (4, 32):
            if wrk_binary is None:
                row[f"c{connections}"] = None
                continue
            got = wrk.run(wrk_binary, "127.0.0.1", port, [(path, {})], connections, seconds)
            row[f"c{connections}"] = {k: got[k] for k in ("p50_ms", "p99_ms", "per_s", "requests", "errors")}
            log(f"  {name:28} c={connections:<2} p50 {got['p50_ms']} ms p99 {got['p99_ms']} ms {got['per_s']}/s"
                f" errors {got['errors']}; in-process {row['direct']}")
        results.append(row)
    return results


def cleanup(env: dict[str, str]) -> None:
    import redis

    from booking_core.config import mysql_settings
    from infra.migrate import drop_database

    drop_database(mysql_settings())
    delete_prefix(redis.Redis.from_url(env.get("REDIS_URL", "redis://127.0.0.1:6379/0")), env["REDIS_PREFIX"])


def delete_prefix(client, prefix: str) -> None:
    """Every key under the prefix, 5,000 per UNLINK (the bench's keys only: the Redis may be shared)."""
    batch = []
    for key in client.scan_iter(match=prefix + "*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            client.unlink(*batch)
            batch = []
    if batch:
        client.unlink(*batch)


def table(results: dict) -> str:
    lines = ["| listings | shape | HTTP p50 ms c4 | p99 c4 | req/s c4 | p50 ms c32 | p99 c32 | req/s c32 | errors |"
             " in-process p50 ms | p99 | items | cursor |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for size in results["sizes"]:
        for row in size["search"]:
            c4, c32, d = row.get("c4") or {}, row.get("c32") or {}, row.get("direct") or {}
            lines.append(f"| {size['listings']:,} | {row['shape']} | {c4.get('p50_ms')} | {c4.get('p99_ms')} |"
                         f" {c4.get('per_s')} | {c32.get('p50_ms')} | {c32.get('p99_ms')} | {c32.get('per_s')} |"
                         f" {(c4.get('errors') or 0) + (c32.get('errors') or 0)} | {d.get('p50_ms', '')} |"
                         f" {d.get('p99_ms', '')} | {d.get('items', '')} | {d.get('next_cursor', '')} |")
    lines += ["", "| listings | replication rows | rows/s (wall) | replicator CPU s | rows per CPU s | reconcile s |"
              " reconcile peak RSS MB | load |", "|---|---|---|---|---|---|---|---|"]
    for size in results["sizes"]:
        rep, rec = size["replication"], size["reconcile"]
        lines.append(f"| {size['listings']:,} | {rep['rows']:,} | {rep['rows_per_s']} | {rep.get('replicator_cpu_s')} |"
                     f" {rep.get('rows_per_cpu_s')} | {rec['seconds']} | {rec['peak_rss_mb']} | {size['load']} |")
    return "\n".join(lines)


def main() -> int:
    env = _env()
    os.environ.update({k: env[k] for k in ("API_PORT", "KAFKA_PORT", "MYSQL_DATABASE", "REDIS_PREFIX")})
    from bench import wrk

    sizes = [int(s) for s in os.environ.get("BENCH_SCALE_SIZES", "5000,50000,500000").split(",") if s]
    seconds = float(os.environ.get("BENCH_SECONDS", "3"))
    only = {s for s in os.environ.get("BENCH_SCALE_SHAPES", "").split(",") if s} or None
    binary = wrk.ensure_wrk()
    if binary is None:
        log("wrk is missing and could not be installed (apt-get install wrk): latencies are left out")
    port = int(env["API_PORT"])
    results: dict = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "load_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()), "window_s": seconds,
                     "stack": {k: env[k] for k in ("API_PORT", "MYSQL_DATABASE", "REDIS_PREFIX")},
                     "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                           text=True).stdout.strip(), "sizes": []}
    log(f"starting the bench stack on API port {port}, database {env['MYSQL_DATABASE']}")
    stack("up", env)
    try:
        for size in sizes:
            replication = load(size, env)
            log(f"{size}: replication {replication}")
            entry = {"listings": size, "replication": replication, "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}
            entry["search"] = searches(port, seconds, binary, only)
            entry["reconcile"] = (reconcile_rss(env) if os.environ.get("BENCH_SCALE_RECONCILE", "1") == "1"
                                  else {"seconds": None, "peak_rss_mb": None})
            log(f"{size}: reconcile {entry['reconcile']}")
            results["sizes"].append(entry)
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / "scale-latest.json").write_text(json.dumps(results, indent=2))
    finally:
        stack("down", env)
        if os.environ.get("BENCH_SCALE_KEEP") != "1":
            log("dropping the bench database and its Redis keys")
            cleanup(env)
    results["load_at_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = table(results)
    (RESULTS / "scale-latest.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "scale-latest.md").write_text(f"bench-scale {results['started_at']} git {results['git']}, load "
                                             f"{results['load_at_start']} → {results['load_at_end']}\n\n{text}\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
