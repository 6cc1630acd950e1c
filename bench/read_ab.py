"""A/B of the read routes between checkouts: each checkout's API server (infra/local/api.py, its workers) runs
against the same running stack (its Redis read model, Cognito pool), on a port of its own, and wrk drives the
routes at 32 connections in the interleaved order given (A B B A ...), the load average beside each figure.

    python -m bench.read_ab --variant A=/work/wt-base --variant B=. --order ABBA --seconds 5 \
        --routes search,availability,user_bookings --out bench/results/NAME.json

Run it in the stack's environment plus the API's (COGNITO_*, AWS_ENDPOINT_URL: what the stack hands its API).
Per read it reports the CPU of the variant's API processes (supervisor and workers), of the Redis server, and of
every process of the stack and its servers (`bench.machine.cpu_snapshot`: the stack's idle pollers included,
this script and wrk not), all in ms.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import wrk
from bench.http_load import USERS, Connection
from bench.machine import _cpu_ticks, _servers, cpu_per_item, cpu_snapshot
from bench.phases import read_paths
from bench.stats import load_average, log

HZ = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _ticks(pids: list[int]) -> int:
    return sum(t for p in pids if (t := _cpu_ticks(p)) is not None)


def start_api(checkout: Path, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{checkout}:{checkout / 'layer'}", "LOCAL_API_WORKERS": str(workers)}
    proc = subprocess.Popen([sys.executable, "-m", "infra.local.api", "--port", str(port)], cwd=checkout, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(f"/tmp/read_ab-{port}.log", "w"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if Connection("127.0.0.1", port, timeout=2).request("GET", "/health")[0] == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"the API of {checkout} did not answer on {port}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", action="append", required=True, help="NAME=checkout directory")
    parser.add_argument("--order", default="ABBA")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--routes", default="search,availability,user_bookings")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--base-port", type=int, default=8416)
    parser.add_argument("--year", type=int, default=9991, help="the year the search and availability ask for")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    variants = dict(v.split("=", 1) for v in args.variant)
    binary = wrk.ensure_wrk()
    if binary is None:
        raise SystemExit("wrk is missing")
    paths = read_paths(args.year - 1)
    procs = {name: start_api(Path(d).resolve(), args.base_port + i, args.workers)
             for i, (name, d) in enumerate(variants.items())}
    ports = {name: args.base_port + i for i, name in enumerate(variants)}
    redis_pid = _servers().get("redis (shared)")
    runs = []
    try:
        time.sleep(1)
        for round_no, name in enumerate(args.order, 1):
            api_pids = [procs[name].pid, *_children(procs[name].pid)]
            for route in args.routes.split(","):
                requests = wrk.requests_as_users(read_paths(args.year - 1)[route], USERS)
                wrk.run(binary, "127.0.0.1", ports[name], requests, args.connections, 1)  # warm
                load_before = load_average()
                api0, redis0, stack0 = _ticks(api_pids), _ticks([redis_pid] if redis_pid else []), cpu_snapshot()
                summary = wrk.run(binary, "127.0.0.1", ports[name], requests, args.connections, args.seconds)
                api1, redis1, stack1 = _ticks(api_pids), _ticks([redis_pid] if redis_pid else []), cpu_snapshot()
                n = max(summary["requests"], 1)
                stack = cpu_per_item(stack0, stack1, n)
                run = {"variant": name, "round": round_no, "route": route, "path": paths[route],
                       "checkout": variants[name], "load_before": load_before, "load_after": load_average(),
                       "api_cpu_ms_per_read": round((api1 - api0) * 1000 / HZ / n, 3),
                       "redis_cpu_ms_per_read": round((redis1 - redis0) * 1000 / HZ / n, 3),
                       "stack_other_cpu_ms_per_read": round(stack["total_excluding_bench_client"]
                                                            - stack.get("redis (shared)", 0), 3),
                       **{k: summary[k] for k in ("concurrency", "requests", "per_s", "ok_per_s", "p50_ms", "p90_ms",
                                                  "p99_ms", "max_ms", "errors", "window_s")}}
                runs.append(run)
                log(f"{name}{round_no} {route}: {run['ok_per_s']}/s p50 {run['p50_ms']} p99 {run['p99_ms']} ms, API"
                    f" {run['api_cpu_ms_per_read']} + redis {run['redis_cpu_ms_per_read']} ms/read, errors"
                    f" {run['errors']}, load {load_before}")
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(10)
    if args.out:
        Path(args.out).write_text(json.dumps({"variants": variants, "order": args.order, "seconds": args.seconds,
                                              "runs": runs}, indent=1) + "\n")
    print(json.dumps(summarize(runs), indent=1))


def summarize(runs: list[dict]) -> dict:
    out: dict = {}
    for run in runs:
        key = f"{run['route']} {run['variant']}"
        out.setdefault(key, []).append(f"{run['ok_per_s']}/s p99 {run['p99_ms']} api {run['api_cpu_ms_per_read']}"
                                       f" redis {run['redis_cpu_ms_per_read']}")
    return out


if __name__ == "__main__":
    main()
