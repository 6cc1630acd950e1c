"""The retry table for a person, without SQL (an operator's tool, not Lambda code).

    python -m infra.retries                 # `make retries`: rows by status with their reasons
    python -m infra.retries --json          # the same as JSON
    python -m infra.retries reopen KEY      # `make reopen KEY=...`: re-open a dead row

Open rows (pending, in_flight) and dead ones are listed, the oldest change first, up to --limit per status;
succeeded rows are only counted. Re-opening gives a dead row its attempts back, due now, and deletes the
`retries_exhausted` rejection it stored: the next retry run (`make retry`, or the nightly schedule) re-drives it.
Works against the database the environment names (MYSQL_*, or DB_SECRET_ARN), like `make migrate`.
"""
from __future__ import annotations

import argparse
import json
import sys

from booking_core.adapters.mysql import ConnectionHolder
from booking_core.adapters.mysql_retries import MySqlRetryStore

LISTED = ("dead", "pending", "in_flight")


def report(store: MySqlRetryStore, limit: int) -> dict:
    counts = store.counts_by_status()
    return {"counts": counts, "rows": {status: store.rows_with_status(status, limit) for status in LISTED}}


def render(result: dict) -> str:
    counts, lines = result["counts"], []
    for status in LISTED:
        rows = result["rows"][status]
        shown = f", {len(rows)} shown" if len(rows) < counts.get(status, 0) else ""
        lines.append(f"{status}: {counts.get(status, 0)}{shown}")
        for row in rows:
            error = (row["last_error"] or "").replace("\n", " ")
            lines.append(f"  {row['booking_key']}  reason={row['reason']}  attempts={row['attempts']}"
                         f"  next_attempt_at={row['next_attempt_at']:%Y-%m-%d %H:%M:%S}"
                         + (f"  last_error={error[:160]}" if error else ""))
    others = {s: n for s, n in sorted(counts.items()) if s not in LISTED}
    if others:
        lines.append("not listed: " + ", ".join(f"{s} {n}" for s, n in others.items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", choices=["list", "reopen"], default="list")
    parser.add_argument("key", nargs="?", help="the booking key to re-open")
    parser.add_argument("--limit", type=int, default=50, help="rows listed per status (default 50)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    connections = ConnectionHolder()
    try:
        store = MySqlRetryStore(connections)
        if args.command == "reopen":
            if not args.key:
                parser.error("reopen needs the booking key: python -m infra.retries reopen KEY")
            if not store.reopen(args.key):
                print(f"no dead retry row for {args.key!r}: nothing re-opened (make retries lists the rows)",
                      file=sys.stderr)
                return 1
            print(f"re-opened {args.key}: pending, attempts 0, due now; the next retry run (make retry) re-drives it")
            return 0
        result = report(store, args.limit)
        print(json.dumps(result, default=str, indent=2) if args.json else render(result))
        return 0
    finally:
        connections.discard()


if __name__ == "__main__":
    sys.exit(main())
