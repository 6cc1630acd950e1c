"""The bench's report: key figures, verdicts against the targets, one table (plain and markdown), the plot,
and the files in bench/results/."""
from __future__ import annotations

import json
from pathlib import Path

from bench.stats import log

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"p50_vs_floor": 3.0, "p99_ms": 100.0, "bookings_per_s": 200.0, "replication_lag_p99_ms": 500.0,
           "read_p99_ms": 10.0, "vs_seed": 1.25}


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
    for route, s in results["reads"].items():
        if s.get("available"):
            if route in results.get("reads_c4", {}):
                add(results["reads_c4"][route])
            add(s)
        else:
            rows.append([s["name"], "32", "n/a", "n/a", "n/a", "", "", "", "", "route answers 404"])
    for share in (50, 80):
        o = results.get("open_loop", {}).get(f"{share}pct")
        if o:
            rows.append([f"booking open loop {share}% (Poisson {o['target_per_s']:.0f}/s)", "open",
                         _ms(o["p50_ms"]), _ms(o["p95_ms"]), _ms(o["p99_ms"]), _ms(o["offered_per_s"]),
                         _ms(o["ok_per_s"]), str(o["errors"] + o["unfinished"]), "", o["load"]])
    lag = results["replication"].get("lag") or {}
    rows.append(["replication lag (commit → Redis)", "1", _ms(lag.get("p50_ms")), "", _ms(lag.get("p99_ms")),
                 "", "", str(lag.get("timeouts", "")), "", lag.get("load", "")])
    busy = results.get("replication_lag_under_load") or {}
    if busy:
        rows.append(["replication lag during booking c32", "1", _ms(busy.get("p50_ms")), "",
                     _ms(busy.get("p99_ms")), "", "", str(busy.get("timeouts", "")), "", busy.get("load", "")])
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
    reads_per_s = [s["ok_per_s"] for s in results["reads"].values()
                   if s.get("available") and s.get("ok_per_s") is not None]
    open_loop = results.get("open_loop", {})
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
        # issue 15 (and 17, item 4)
        "cpu_ms_per_booking": (results.get("cpu_ms_per_booking_c32") or {}).get("total_excluding_bench_client"),
        "reads_per_s": min(reads_per_s) if reads_per_s else None,
        "open_loop_p50_ms_50pct": open_loop.get("50pct", {}).get("p50_ms"),
        "open_loop_p99_ms_50pct": open_loop.get("50pct", {}).get("p99_ms"),
        "open_loop_p50_ms_80pct": open_loop.get("80pct", {}).get("p50_ms"),
        "open_loop_p99_ms_80pct": open_loop.get("80pct", {}).get("p99_ms"),
        "replication_lag_p99_ms_under_load": (results.get("replication_lag_under_load") or {}).get("p99_ms"),
        "decision_store_bytes_per_1000_bookings":
            (results.get("decision_store_memory") or {}).get("bytes_per_1000_bookings"),
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


def issue_15_verdicts(k: dict) -> list[dict]:
    """Issue 15's targets on this run's figures (ratios to this run's floor and seed design)."""
    rows = [
        ("CPU ms per confirmed booking, all processes but the bench client, 32 clients", k["cpu_ms_per_booking"],
         "<=", 4.0),
        ("confirmed bookings/s, 32 clients", k["bookings_per_s"], ">=", 400.0),
        ("booking p50 at 32 / floor p50 at 32 (x)", _ratio(k["roundtrip_p50_ms_c32"], k["floor_p50_ms"]), "<=",
         3.0),
        ("booking p99 at 32 clients (ms)", k["roundtrip_p99_ms_c32"], "<=", 100.0),
        ("booking p50 at 32 / the original design's p50 at 32 (x)",
         _ratio(k["roundtrip_p50_ms_c32"], k["seed_design_p50_ms_c32"]), "<=", 1.0),
        ("booking p50 at 1 client / floor p50 at 1 (x)", _ratio(k["roundtrip_p50_ms_c1"], k["floor_p50_ms_c1"]),
         "<=", 1.2),
        ("reads/s at 32 connections, lowest route", k["reads_per_s"], ">=", 5000.0),
        ("read p99 at 32 connections, highest route (ms)", k["read_p99_ms"], "<=", 10.0),
        ("replication lag p99 during the 32-client booking load (ms)", k["replication_lag_p99_ms_under_load"],
         "<=", 50.0),
    ]
    return [{"figure": figure, "value": value, "target": f"{op} {limit:g}",
             "ok": None if value is None else (value <= limit if op == "<=" else value >= limit)}
            for figure, value, op, limit in rows]


def issue_15_rows(verdicts_15: list[dict]) -> list[list[str]]:
    return [["issue 15 target", "this run", "target", "met"]] + [
        [v["figure"], "n/a" if v["value"] is None else f"{v['value']:g}", v["target"], _yes_no(v["ok"])]
        for v in verdicts_15]


def _yes_no(ok) -> str:
    return "yes" if ok else "no" if ok is False else "n/a"


def notes_lines(results: dict) -> list[str]:
    """What the table does not show: how reads and CPU were measured, the open loop's health, the store."""
    out = []
    cpu = results.get("cpu_ms_per_booking_c32") or {}
    if cpu:
        out.append(f"cpu_ms_per_booking {cpu.get('total_excluding_bench_client')}: every stack process and the"
                   f" (shared) MariaDB and Redis servers at c32, the bench client itself left out"
                   f" ({cpu.get('bench client')} ms); the lag sampler's own changes run meanwhile")
    if results.get("reads_tool", "wrk") != "wrk":
        out.append("reads: wrk is MISSING (apt-get install -y wrk): read figures are the Python client's limit")
    per_read = {name: s.get("server_cpu_ms_per_read") for name, s in results["reads"].items() if s.get("available")}
    if any(v is not None for v in per_read.values()):
        c4 = {name: s.get("server_cpu_ms_per_read") for name, s in results.get("reads_c4", {}).items()}
        out.append(f"reads ({results.get('reads_tool')}): server CPU ms per read (all stack and server processes,"
                   f" wrk not counted) at 32: {per_read}; at 4: {c4}")
    for share in (50, 80):
        o = results.get("open_loop", {}).get(f"{share}pct")
        if o:
            out.append(f"open loop {share}%: {o['offered_per_s']}/s offered of {results['open_loop']['max_rate_per_s']}"
                       f"/s max; latency from the intended start p50/p99 {o['p50_ms']}/{o['p99_ms']} ms, service"
                       f" time p50/p99 {o['service_p50_ms']}/{o['service_p99_ms']} ms; late starts"
                       f" {o['late_starts']}, max in flight {o['max_in_flight']} of {o['workers']} workers,"
                       f" unfinished {o['unfinished']}")
    store = results.get("decision_store_memory") or {}
    if store:
        out.append(f"decision store: {store.get('bytes_per_1000_bookings')} bytes per 1,000 bookings right after"
                   f" c32 (req: {store.get('req_bytes_per_1000_bookings')}, TTL {store.get('req_ttl_s')} s;"
                   f" wake: {store.get('wake_bytes_per_1000_bookings')}, TTL {store.get('wake_ttl_s')} s),"
                   f" from {store.get('sampled_bookings')} sampled bookings")
    return out


def header(results: dict) -> str:
    m = results["machine"]
    return (f"Run {results['started_at']} in {results['seconds']} s on {m['cores']} cores ({m['cpu']}); load"
            f" {results['load_at_start']} at start, {results['load_at_end']} at end; python {m['python']},"
            f" kafka-python {m['packages']['kafka-python']}, confluent-kafka {m['packages']['confluent-kafka']}"
            f" (librdkafka {m['packages'].get('librdkafka')}), {m.get('kafka_broker')}, MariaDB {m['mysql']},"
            f" Redis {m['redis']}; {results['stack']['kafka_shards']} pollers per Kafka event,"
            f" {results['floor']['partitions']} partitions.")


def write(results: dict, series: dict[str, list[float]]) -> None:
    """Write latest.json (key figures first), latest.md and latest.png, and print the summary."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = table(results)
    plotted = plot(series, RESULTS / "latest.png")
    (RESULTS / "latest.json").write_text(json.dumps({**results["key"], **results}, indent=2, default=str))
    verdict_lines = [f"- {name}: {_yes_no(ok)}" for name, ok in results["targets"].items()]
    targets_15 = issue_15_rows(results["targets_issue_15"])
    notes = notes_lines(results)
    md = "\n".join([header(results), "", markdown(rows), "", markdown(targets_15), "",
                    "Targets (issue 7):", *verdict_lines, "", *[f"- {n}" for n in notes], "",
                    "Where the time goes (ms, from Kafka record timestamps): "
                    + json.dumps(results["stages"]), "",
                    "CPU ms per confirmed booking at c32: " + json.dumps(results.get("cpu_ms_per_booking_c32")),
                    "", "![round trip](latest.png)" if plotted else ""])
    (RESULTS / "latest.md").write_text(md + "\n")
    print(header(results))
    print()
    print(plain(rows))
    print()
    print(plain(targets_15))
    print()
    print("targets (issue 7): " + "; ".join(f"{k} {_yes_no(v)}" for k, v in results["targets"].items()))
    for line in notes:
        print(line)
    print("stages (p50/p99 ms): " + "; ".join(
        f"{c}: " + ", ".join(f"{name} {s['p50_ms']}/{s['p99_ms']}" for name, s in st.items())
        for c, st in results["stages"].items()))
    print("cpu ms per confirmed booking at c32: " + json.dumps(results.get("cpu_ms_per_booking_c32")))
    print(f"written: {RESULTS / 'latest.json'}, latest.md" + (", latest.png" if plotted else ""))
