"""The replicator alone on an insert burst: rows/s of wall time and per CPU-second, with an optional profile.

    python bench/replication_burst.py [--listings 10000] [--runs 1] [--profile out.pstats] [--label A]

A database of its own (BURST_DATABASE, default `booking_replic_burst`) holds `--listings` listings with four
bookings each (50,000 rows for 10,000 listings, as `make bench-scale` makes them). Each run empties the Redis
prefix (BURST_PREFIX, default `replic:burst:`) and the change log, writes one change row per listing and booking
(what their INSERTs' triggers wrote: to the replicator an insert burst), then times `replication.drain` in this
process: wall seconds and this process's CPU seconds (the replicator's own; MariaDB's and Redis's are not in it).
Run as a file (not `-m`), so PYTHONPATH alone picks the code measured: another checkout's `layer` gives the A of
an A/B. Appends one JSON line per run to bench/results/replication-burst.jsonl. BURST_KEEP=1 keeps the database.
"""
from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.append(str(RESULTS.parents[1]))  # the bench package, after PYTHONPATH's code (run as a file)
BOOKINGS_PER_LISTING = 4


def load(settings, listings: int) -> None:
    from booking_core.adapters.mysql import connect

    conn = connect(settings)
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM listings WHERE city LIKE 'Scale%%'")
        if cur.fetchone()["n"] >= listings:
            return
        # The rows of bench/scale.py's top_up: ten cities, 1-6 guests, spread prices, four stays each in 2031.
        cur.execute("INSERT INTO listings (host_id, title, city, max_guests, nightly_price_cents)"
                    " SELECT 1, CONCAT('Scale flat ', seq), CONCAT('Scale', MOD(seq, 10)), 1 + MOD(seq, 6),"
                    f" 3000 + MOD(seq * 7919, 20000) FROM seq_1_to_{int(listings)}")
        cur.execute(
            "INSERT INTO bookings (booking_key, user_id, listing_id, check_in, check_out, status, amount_cents)"
            " SELECT CONCAT('scale-', l.id, '-', k.seq), 1 + MOD(l.id, 24), l.id,"
            " '2031-01-01' + INTERVAL MOD(l.id * 37 + k.seq * 89, 360) DAY,"
            " '2031-01-01' + INTERVAL (MOD(l.id * 37 + k.seq * 89, 360) + 3) DAY, 'confirmed', 30000"
            f" FROM listings l JOIN seq_1_to_{BOOKINGS_PER_LISTING} k WHERE l.city LIKE 'Scale%%'")
    conn.commit()
    conn.close()


def prepare(settings, client, prefix: str) -> int:
    """An empty read model under the prefix and one change row per Scale listing and its bookings (listings
    first, as the triggers of the INSERTs ordered them); returns how many."""
    from bench.scale import delete_prefix
    from booking_core.adapters.mysql import connect

    delete_prefix(client, prefix)
    conn = connect(settings)
    with conn.cursor() as cur:
        cur.execute("DELETE FROM change_log")
        cur.execute("INSERT INTO change_log (entity, entity_id, op) SELECT 'listings', id, 'I' FROM listings"
                    " WHERE city LIKE 'Scale%%' ORDER BY id")
        cur.execute("INSERT INTO change_log (entity, entity_id, op) SELECT 'bookings', b.id, 'I' FROM bookings b"
                    " JOIN listings l ON l.id = b.listing_id WHERE l.city LIKE 'Scale%%' ORDER BY b.id")
        cur.execute("SELECT COUNT(*) AS n FROM change_log")
        n = cur.fetchone()["n"]
    conn.commit()
    conn.close()
    return n


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listings", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--profile", help="write a cProfile of the last run's drain here")
    parser.add_argument("--label", default="")
    parser.add_argument("--batch", type=int, help="rows per batch (default: the replicator's BATCH_SIZE)")
    args = parser.parse_args()

    from booking_core import config
    from booking_core.adapters.mysql_change_log import MySqlChangeLog
    from booking_core.adapters.redis_client import get_redis
    from booking_core.adapters.redis_read_model import RedisReadModel
    from booking_core.services import replication
    from infra.migrate import drop_database, migrate

    settings = dataclasses.replace(config.mysql_settings(),
                                   database=os.environ.get("BURST_DATABASE", "booking_replic_burst"))
    prefix = os.environ.get("BURST_PREFIX", "replic:burst:")
    client = get_redis()
    migrate(settings)
    load(settings, args.listings)
    code = str(Path(replication.__file__).resolve().parents[2])
    try:
        for run in range(args.runs):
            rows = prepare(settings, client, prefix)
            change_log, model = MySqlChangeLog(settings), RedisReadModel(client, prefix)
            profiler = cProfile.Profile() if args.profile and run == args.runs - 1 else None
            load_before = os.getloadavg()[0]
            wall, cpu = time.perf_counter(), time.process_time()
            if profiler:
                profiler.enable()
            summary = replication.drain(change_log, model, args.batch or replication.BATCH_SIZE)
            if profiler:
                profiler.disable()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            change_log.close()
            assert summary["applied"] == rows, summary
            line = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "label": args.label, "code": code,
                    "rows": rows, "batch_size": args.batch or replication.BATCH_SIZE, "batches": summary["batches"], "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                    "rows_per_s": round(rows / wall), "rows_per_cpu_s": round(rows / cpu),
                    "load": f"{load_before:.2f} {os.getloadavg()[0]:.2f}", "redis_keys": client.dbsize()}
            print(json.dumps(line), flush=True)
            RESULTS.mkdir(exist_ok=True)
            with (RESULTS / "replication-burst.jsonl").open("a") as out:
                out.write(json.dumps(line) + "\n")
            if profiler:
                profiler.dump_stats(args.profile)
    finally:
        if os.environ.get("BURST_KEEP") != "1":
            drop_database(settings)
            prepare_keys = list(client.scan_iter(match=prefix + "*", count=5000))
            for start in range(0, len(prepare_keys), 5000):
                client.unlink(*prepare_keys[start:start + 5000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
