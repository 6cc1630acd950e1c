"""`make bench`: every benchmark of issues 7 and 15 in one run against the running local stack.

    make up && make bench          # same environment for both: API_PORT, KAFKA_PORT or
                                   # KAFKA_BOOTSTRAP_SERVERS, MYSQL_DATABASE, REDIS_PREFIX

Prints one table and writes bench/results/latest.json, latest.md and latest.png (round-trip latency
distribution per concurrency). Phases (bench/phases.py), in order:
 1. broker floor, kafka-python: request → consume → reply → consume, no work (bench/floor.py)
 2. booking round trip over HTTP at concurrency 1, 8, 32 (distinct stays) + where the time goes (stages);
    at 32 also the CPU each process spent per booking, the replication lag sampled during the load and the
    decision store's Redis memory per 1,000 bookings
 3. the seed design (bench/seed_design.py) at concurrency 1 and 32, right after ours, same payment pollers
 4. a contended variant: 32 clients, 4 listings, the same nights per group of 32 requests
 4b. open loop: bookings at Poisson arrivals, 50% and 80% of the highest confirmed/s of phase 2, latency from
    the intended start (bench/open_loop.py)
 5. the read API with wrk at 4 and 32 connections: search with dates, availability, a user's bookings,
    and the server processes' CPU per read (bench/wrk.py)
 6. replication lag and reconcile (bench/replication.py, when present)
 7. the floor again with confluent-kafka (librdkafka)
The report (key figures, verdicts against issue 7's and issue 15's targets, table, plot) is bench/report.py.
Every request carries the headers of the user it acts for from bench/auth.py (the hook for bearer tokens).
BENCH_SECONDS (default 5) sets the measured window of each load phase.
"""
from __future__ import annotations

import datetime as dt
import os
import sys
import time

from bench import floor, phases, report
from bench.http_load import BookingBodies
from bench.machine import kafka_shards, machine
from bench.stats import load_average, log


def main() -> int:
    from booking_core import config
    from infra.topics import ensure_topics

    seconds = float(os.environ.get("BENCH_SECONDS", "5"))
    host, port = phases.api_base()
    if not phases.api_healthy(host, port):
        print(f"bench: no healthy API on http://{host}:{port}: start the stack with `make up` (same environment)",
              file=sys.stderr)
        return 2
    started = time.monotonic()
    results: dict = {"started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                     "load_at_start": load_average(), "machine": machine(), "window_s": seconds,
                     "stack": {"api": f"http://{host}:{port}", "kafka": config.kafka_bootstrap_or_local(),
                               "mysql_database": config.mysql_settings().database,
                               "redis_prefix": config.redis_prefix(), "kafka_shards": kafka_shards()}}
    partitions = ensure_topics()[config.requests_topic()]
    floor_topics = floor.bench_topics(f"{int(time.time())}", partitions)
    series: dict[str, list[float]] = {}

    results["floor"] = {"partitions": partitions, "responders": kafka_shards()}
    results["floor"]["kafka-python"] = phases.floor_runs("kafka-python", floor_topics, seconds, kafka_shards(),
                                                         series)
    bodies = BookingBodies()
    results["bookings_year"] = bodies.start.year
    results.update(phases.bookings(port, seconds, bodies, series))
    results["seed_design"] = phases.seed_design(seconds, bodies, series)  # right after ours: the same machine
    results["bookings"].append(phases.contended(port, seconds, bodies, series))
    max_rate = max((s["ok_per_s"] or 0 for s in results["bookings"] if s["name"] == "booking"), default=None)
    results["open_loop"] = phases.open_loop_bookings(port, seconds, bodies, max_rate)
    results.update(phases.reads(port, min(seconds, 4)))
    results["replication"] = phases.replication()
    try:
        results["floor"]["confluent-kafka"] = phases.floor_runs("confluent-kafka", floor_topics, seconds,
                                                                kafka_shards(), series)
    except ImportError:
        log("confluent-kafka is not installed (pip install -r bench/requirements.txt): n/a")

    results["key"] = report.key_figures(results)
    results["targets"] = report.verdicts(results["key"])
    results["targets_issue_15"] = report.issue_15_verdicts(results["key"])
    results["load_at_end"] = load_average()
    results["seconds"] = round(time.monotonic() - started, 1)
    report.write(results, series)
    return 0


if __name__ == "__main__":
    sys.exit(main())
