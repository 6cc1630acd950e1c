"""Refunds of the sandbox payment provider: one contract for the in-memory sandbox and the MySQL-backed one
(on MariaDB), like Stripe's — keyed per booking, a second refund returns the first."""
from __future__ import annotations

import threading
import time
import uuid

import pymysql
import pytest

from booking_core import bootstrap
from booking_core.adapters.sandbox_payments import MySqlSandboxProvider
from booking_core.ports import TransientPaymentError
from infra.local.faults import set_sandbox_outage
from tests.fakes import InMemorySandboxProvider
from tests.support import sql_rows

pytestmark = pytest.mark.integration


@pytest.fixture(params=["in-memory", "mysql"])
def sandbox(request):
    if request.param == "in-memory":
        return InMemorySandboxProvider()
    request.getfixturevalue("mysql_db")
    return MySqlSandboxProvider(bootstrap.connections())


def new_key(label: str) -> str:
    return f"refund-test-{label}-{uuid.uuid4().hex[:12]}"


def outage(sandbox, on: bool) -> None:
    if isinstance(sandbox, InMemorySandboxProvider):
        sandbox.outage = on
    else:
        set_sandbox_outage(bootstrap.connections(), on)


def test_a_charged_booking_is_refunded_once_whatever_the_number_of_calls(sandbox):
    key = new_key("once")
    charge = sandbox.charge(key, 30000, "EUR", "tok_visa")

    first = sandbox.refund(key, charge.provider_ref, 12000)
    again = sandbox.refund(key, charge.provider_ref, 12000)

    assert first.status == "succeeded" and first.provider_ref.startswith("re_")
    assert again == first
    if isinstance(sandbox, MySqlSandboxProvider):
        rows = sql_rows("SELECT amount_cents, status, charge_ref FROM sandbox_refunds WHERE idempotency_key=%s", key)
        assert rows == [{"amount_cents": 12000, "status": "succeeded", "charge_ref": charge.provider_ref}]


def test_refusals_name_their_reason(sandbox):
    declined_key, big_key = new_key("declined"), new_key("big")
    declined = sandbox.charge(declined_key, 30000, "EUR", "tok_chargeDeclined")
    charged = sandbox.charge(big_key, 30000, "EUR", "tok_visa")

    assert sandbox.refund(declined_key, declined.provider_ref, 100).failure_code == "charge_not_refundable"
    assert sandbox.refund(big_key, charged.provider_ref, 30001).failure_code == "amount_too_large"
    assert sandbox.refund(new_key("none"), "ch_unknown", 100).failure_code == "charge_not_found"


def test_a_refund_during_an_outage_is_transient_and_succeeds_after_it(sandbox):
    key = new_key("outage")
    charge = sandbox.charge(key, 30000, "EUR", "tok_visa")
    outage(sandbox, True)
    try:
        with pytest.raises(TransientPaymentError):
            sandbox.refund(key, charge.provider_ref, 30000)
    finally:
        outage(sandbox, False)
    assert sandbox.refund(key, charge.provider_ref, 30000).status == "succeeded"


def test_a_refund_racing_another_for_the_same_booking_answers_what_the_other_stored(mysql_db):
    """GIVEN another refund of the booking that has written its answer but not committed it yet,
    WHEN a second refund runs (its read sees nothing, so it computes its own answer and waits on the insert),
    THEN once the first commits, the second answers what the first stored, not what it computed."""
    from booking_core.adapters.mysql import connect

    sandbox = MySqlSandboxProvider(bootstrap.connections())
    key = new_key("race")
    charge = sandbox.charge(key, 30000, "EUR", "tok_visa")
    first = connect(mysql_db)
    answers = []
    try:
        with first.cursor() as cur:
            cur.execute("INSERT INTO sandbox_refunds (idempotency_key, charge_ref, amount_cents, status, refund_ref,"
                        " failure_code) VALUES (%s, %s, 30001, 'failed', '', 'amount_too_large')",
                        (key, charge.provider_ref))
        second = threading.Thread(target=lambda: answers.append(sandbox.refund(key, charge.provider_ref, 1000)))
        second.start()
        # The second must wait on the first's insert; the assertion below fails if it answered on its own.
        wait_for_lock_wait_on_sandbox_refunds()
        first.commit()
        second.join(timeout=30)
    finally:
        first.close()

    assert [(a.status, a.failure_code) for a in answers] == [("failed", "amount_too_large")]


def wait_for_lock_wait_on_sandbox_refunds(timeout: float = 10) -> None:
    """Until a transaction waits for a lock on an insert into sandbox_refunds (a bounded wait: in whole-suite runs
    INNODB_TRX sometimes never showed the wait, so past the bound the test goes on and its answer decides)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sql_rows("SELECT trx_id FROM information_schema.INNODB_TRX WHERE trx_state='LOCK WAIT'"
                    " AND trx_query LIKE %s", "%INTO sandbox_refunds%"):
            return
        time.sleep(0.02)


class FirstTransactionADeadlockVictim:
    """Connections whose first transaction InnoDB rolls back as a deadlock victim (1213), as it did to the racing
    refund above in a whole-suite run (its locking read after the INSERT IGNORE had waited)."""

    def __init__(self, connections):
        self.connections, self.victims = connections, 0

    def transaction(self):
        if self.victims == 0:
            self.victims += 1
            from booking_core.ports import DatabaseUnavailable

            try:
                raise pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")
            except pymysql.err.OperationalError as exc:
                raise DatabaseUnavailable(str(exc)) from exc
        return self.connections.transaction()


def test_a_refund_chosen_as_a_deadlock_victim_runs_again_and_answers(mysql_db):
    key = new_key("victim")
    charge = MySqlSandboxProvider(bootstrap.connections()).charge(key, 30000, "EUR", "tok_visa")
    victim = FirstTransactionADeadlockVictim(bootstrap.connections())

    refund = MySqlSandboxProvider(victim).refund(key, charge.provider_ref, 30000)

    assert (refund.status, victim.victims) == ("succeeded", 1)
