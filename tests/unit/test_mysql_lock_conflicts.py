"""Only a transaction InnoDB rolled back for a lock conflict is run again; an outage is not retried here."""
from __future__ import annotations

import pymysql
import pytest

from booking_core.adapters.mysql import run_again_after_lock_conflicts
from booking_core.ports import DatabaseUnavailable


def failing(errno: int, times: int, calls: list):
    def run():
        calls.append(errno)
        if len(calls) <= times:
            try:
                raise pymysql.err.OperationalError(errno, "from the server")
            except pymysql.err.OperationalError as exc:
                raise DatabaseUnavailable(str(exc)) from exc
        return "done"
    return run


@pytest.mark.parametrize("errno", [1213, 1205])
def test_a_deadlock_victim_or_lock_wait_timeout_is_run_again(errno):
    calls: list = []
    assert run_again_after_lock_conflicts(failing(errno, 2, calls)) == "done"
    assert len(calls) == 3


def test_a_conflict_every_time_gives_up_after_the_attempts():
    calls: list = []
    with pytest.raises(DatabaseUnavailable):
        run_again_after_lock_conflicts(failing(1213, 99, calls), attempts=3)
    assert len(calls) == 3


def test_an_outage_is_not_run_again():
    calls: list = []
    with pytest.raises(DatabaseUnavailable):
        run_again_after_lock_conflicts(failing(2003, 1, calls))
    assert len(calls) == 1
