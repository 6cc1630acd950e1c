"""`python -m replication_fn.reconcile` (`make reconcile`): repair the Redis read model from MySQL and print
what was missing, stale and orphan. Safe while the stack runs: it waits for the replication lock."""
from __future__ import annotations

import json
import sys

from booking_core import bootstrap
from booking_core.services.replication import ReplicatorBusy, reconcile


def main() -> int:
    try:
        report = reconcile(bootstrap.change_log(), bootstrap.read_model())
    except ReplicatorBusy as exc:
        print(f"reconcile: {exc}", file=sys.stderr)
        return 2
    finally:
        bootstrap.reset()  # closes the change log's connection (and with it the replication lock)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
