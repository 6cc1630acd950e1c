"""A short chaos run (infra/chaos): every fault kind at least once under load, then 0 violations of the guarantees.

Its stack, MariaDB, Redis and broker are its own (free ports, a folder under .local/chaos/); `make chaos` is the
same run, longer (about 3 minutes, several faults of each kind).
"""
from __future__ import annotations

import os
import random

import pytest

from infra.chaos import invariants
from infra.chaos.faults import KINDS
from infra.chaos.run import ChaosRun, Settings
from tests.support import sql_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_short_chaos_run_injects_every_fault_kind_and_breaks_no_guarantee():
    seed = int(os.environ.get("CHAOS_SEED", "0")) or random.randint(1, 1 << 30)
    chaos = ChaosRun(Settings(seconds=35, clients=8, per_kind=1, seed=seed, settle_s=120))
    report, path = chaos.run_and_report()

    broken = {name: result for name, result in report["invariants"].items() if result["violations"]}
    assert broken == {}, f"seed {seed} (CHAOS_SEED={seed} reproduces the plan), report {path}"
    assert {kind: report["faults"][kind] >= 1 for kind in KINDS} == {kind: True for kind in KINDS}, \
        (report["faults"], report["fault_errors"])
    assert report["requests"]["decided"] > 50 and report["settle"]["left"] == \
        {"requests": 0, "holds": 0, "changes": 0, "emails": 0}, (report["requests"], report["settle"])


def test_the_charge_check_reads_the_real_ledger_a_refunded_charge_is_fine_a_kept_one_is_not(mysql_db):
    """The checker's SQL against MariaDB's tables (a fake would not notice a join on the wrong key)."""
    import uuid

    from booking_core import bootstrap

    kept, refunded = (f"chk-{name}-{uuid.uuid4().hex[:8]}" for name in ("kept", "refunded"))
    with bootstrap.connections().transaction() as cur:
        for key in (kept, refunded):
            cur.execute("INSERT INTO sandbox_charges (idempotency_key, amount_cents, currency, token, status,"
                        " provider_ref) VALUES (%s, 100, 'EUR', 'tok_visa', 'succeeded', %s)", (key, f"ch_{key}"))
            cur.execute("INSERT INTO decisions (booking_key, request_hash, status, reason, decision_json)"
                        " VALUES (%s, '', 'rejected', 'cancelled', '{}')", (key,))
        cur.execute("INSERT INTO sandbox_refunds (idempotency_key, charge_ref, amount_cents, status, refund_ref)"
                    " VALUES (%s, %s, 100, 'succeeded', 're_1')", (refunded, f"ch_{refunded}"))
    try:
        found = invariants.charges_match_confirmed_bookings(sql_rows).violations
        assert [v.split()[0] for v in found if v.startswith("chk-")] == [kept]
    finally:
        with bootstrap.connections().transaction() as cur:
            for table, column in (("sandbox_charges", "idempotency_key"), ("sandbox_refunds", "idempotency_key"),
                                  ("decisions", "booking_key")):
                cur.execute(f"DELETE FROM {table} WHERE {column} IN (%s, %s)", (kept, refunded))
