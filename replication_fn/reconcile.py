"""`python -m replication_fn.reconcile [--scan]` (`make reconcile`): repair the Redis read model from MySQL and print
what was missing, stale and orphan. Safe while the stack runs: it waits for the replication lock. `--scan` looks
for orphans with a SCAN of the prefix (every key of the database is visited) instead of the registry of model
keys the replicator keeps: it also finds model-shaped keys written by hand, around the replicator."""
from __future__ import annotations

import json
import sys

from booking_core import bootstrap
from booking_core.services.replication import ReplicatorBusy, reconcile


def main() -> int:
    try:
        report = reconcile(bootstrap.change_log(), bootstrap.read_model(), full_scan="--scan" in sys.argv[1:])
    except ReplicatorBusy as exc:
        print(f"reconcile: {exc}", file=sys.stderr)
        return 2
    finally:
        bootstrap.reset()  # closes the change log's connection (and with it the replication lock)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
