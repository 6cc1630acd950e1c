"""Faults the tests and the chaos run switch on in the local services (never deployed: not in the layer)."""
from __future__ import annotations


def set_sandbox_outage(connections, on: bool) -> None:
    """The MySQL-backed sandbox provider answers every new charge with a transient error while this is on."""
    with connections.transaction() as cur:
        cur.execute("UPDATE sandbox_state SET outage=%s WHERE id=1", (1 if on else 0,))
