"""Upserts that must answer the existing row's id: on tables with the change-log triggers, an upsert that changes
nothing reports insert id 0 (LAST_INSERT_ID(id) in the UPDATE part notwithstanding)."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest

from booking_core import bootstrap
from booking_core.domain.model import Hold, RequestBooking
from tests.support import sql_rows

pytestmark = pytest.mark.integration


def test_confirming_a_key_twice_answers_the_same_payment_id(mysql_db):
    repo = bootstrap.booking_repository()
    key = f"twice-{uuid.uuid4().hex}"
    check_in = dt.date.today() + dt.timedelta(days=3000 + uuid.uuid4().int % 3000)
    request = RequestBooking(2, 33, check_in, check_in + dt.timedelta(days=2), 1, "tok_visa")
    hold = repo.hold(key, request)
    assert isinstance(hold, Hold)

    first = repo.confirm(key, request, hold, "sandbox", "ch_1")
    second = repo.confirm(key, request, hold, "sandbox", "ch_1")  # a concurrent redelivery's confirm

    (payment,) = sql_rows("SELECT id FROM payments WHERE booking_key=%s", key)
    assert first.payment_id == second.payment_id == payment["id"]


def test_a_known_address_confirming_again_keeps_its_user_id(mysql_db):
    accounts = bootstrap.user_accounts()
    email = f"again-{uuid.uuid4().hex[:10]}@example.com"
    user_id = accounts.ensure_user(email, "Again")
    assert user_id > 0
    assert accounts.ensure_user(email, "Again") == user_id
    assert accounts.ensure_user(email.upper().lower(), "") == user_id
