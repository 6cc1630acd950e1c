"""Confirmation email after a confirmed booking: payment_fn on real MySQL and Kafka, SES through moto.

The email is queued in the confirm transaction (email_outbox) and sent after the batch; a failed send leaves
the decision confirmed and the email pending, and a later send_pending_emails call delivers it.
"""
from __future__ import annotations

import uuid

import pytest

from booking_core import bootstrap, config
from booking_core.adapters.mailers import SesMailer
from booking_core.adapters.mysql import connect
from booking_core.adapters.mysql_email_outbox import MySqlEmailOutbox
from booking_core.domain import messages
from booking_core.domain.emails import SendOutcome
from booking_core.domain.model import parse_booking_request
from booking_core.kafka_event import build_event
from booking_core.services.emails import send_pending_emails
from tests.support import booking_body, moto_ses, outbox_row, sql_rows

pytestmark = pytest.mark.integration
SENDER = "bookings@example.com"


def _row(sql: str, *args) -> dict | None:
    found = sql_rows(sql, *args)
    return found[0] if found else None


@pytest.fixture
def ses(monkeypatch):
    with moto_ses(monkeypatch, SENDER, "us-east-1") as backend:
        yield backend


def _use_mailer(monkeypatch, mailer) -> None:
    monkeypatch.setitem(bootstrap._instances, "mailer", mailer)


def _book(user_id: int, listing_id: int) -> tuple[str, dict]:
    """Run payment_fn on one booking request; return its key and the request body."""
    from payment_fn.app import handler

    key = f"mail-{uuid.uuid4().hex}"
    body = booking_body(listing_id=listing_id, user_id=user_id, nights=3)
    request = parse_booking_request(body)
    event = build_event([(config.requests_topic(), 0, 0, 0, key.encode(), messages.encode_request(key, request), [])])
    assert handler(event, None) == {"confirmed": 1}
    return key, body


class BrokenMailer:
    enabled = True

    def send(self, mail):
        raise ConnectionError("SES is unreachable")


def test_a_confirmed_booking_emails_the_user_with_booking_id_listing_dates_and_amount(
        mysql_db, kafka_broker, ses, monkeypatch):
    _use_mailer(monkeypatch, SesMailer(SENDER, region="us-east-1"))

    key, body = _book(user_id=5, listing_id=13)

    booking = _row("SELECT id, amount_cents FROM bookings WHERE booking_key=%s", key)
    listing = _row("SELECT title FROM listings WHERE id=13")
    (sent,) = [m for m in ses.sent_messages if f"#{booking['id']} " in m.subject]
    assert sent.destinations["ToAddresses"] == ["user5@example.com"]
    assert sent.subject == f"Booking #{booking['id']} confirmed: {listing['title']}"
    assert listing["title"] in sent.body
    assert body["check_in"] in sent.body and body["check_out"] in sent.body
    assert f"{booking['amount_cents'] // 100:,}.{booking['amount_cents'] % 100:02d} EUR" in sent.body
    row = outbox_row(booking["id"])
    assert (row["status"], row["attempts"], row["message_id"]) == ("sent", 1, sent.id)


def test_a_failed_send_keeps_the_booking_confirmed_and_the_email_pending_until_a_later_run_sends_it(
        mysql_db, kafka_broker, ses, monkeypatch):
    # GIVEN SES fails while payment_fn confirms a booking
    _use_mailer(monkeypatch, BrokenMailer())
    key, _ = _book(user_id=6, listing_id=14)

    # THEN the decision stands and the email waits in the outbox with the error
    decision = _row("SELECT status, booking_id FROM decisions WHERE booking_key=%s", key)
    assert decision["status"] == "confirmed"
    assert _row("SELECT status FROM bookings WHERE booking_key=%s", key)["status"] == "confirmed"
    outbox = MySqlEmailOutbox(bootstrap.connections())
    pending = outbox_row(decision["booking_id"])
    assert (pending["status"], pending["attempts"]) == ("pending", 1)
    assert "unreachable" in pending["last_error"]

    # WHEN a later run sends this booking's pending email with SES working again (a run over every pending email
    # takes the oldest 100: in a whole-suite run other tests' emails can fill that batch)
    summary = send_pending_emails(outbox, SesMailer(SENDER, region="us-east-1"), [decision["booking_id"]])

    # THEN it is delivered once, to the user
    assert summary.get("sent", 0) >= 1
    sent = [m for m in ses.sent_messages if f"#{decision['booking_id']} " in m.subject]
    assert len(sent) == 1 and sent[0].destinations["ToAddresses"] == ["user6@example.com"]
    assert outbox_row(decision["booking_id"])["status"] == "sent"


def test_a_redelivered_request_does_not_send_a_second_email(mysql_db, kafka_broker, ses, monkeypatch):
    from payment_fn.app import handler

    _use_mailer(monkeypatch, SesMailer(SENDER, region="us-east-1"))
    key = f"mail-dup-{uuid.uuid4().hex}"
    request = parse_booking_request(booking_body(listing_id=15, user_id=7))
    event = build_event([(config.requests_topic(), 0, 0, 0, key.encode(), messages.encode_request(key, request), [])])

    handler(event, None)
    handler(event, None)

    booking_id = _row("SELECT id FROM bookings WHERE booking_key=%s", key)["id"]
    assert len([m for m in ses.sent_messages if f"#{booking_id} " in m.subject]) == 1


def test_two_senders_never_claim_the_same_email(mysql_db, kafka_broker, monkeypatch):
    _use_mailer(monkeypatch, BrokenMailer())
    key, _ = _book(user_id=8, listing_id=16)
    booking_id = _row("SELECT id FROM bookings WHERE booking_key=%s", key)["id"]
    outbox = MySqlEmailOutbox(bootstrap.connections())

    first = outbox.claim([booking_id])
    second = outbox.claim([booking_id])

    assert [i.booking_id for i in first] == [booking_id] and second == []
    assert outbox.save_outcomes([SendOutcome(first[0], error="test")], max_attempts=8) == set()
    assert outbox_row(booking_id)["status"] == "pending"


def test_the_next_batch_whose_email_goes_out_also_retries_an_email_that_failed_minutes_ago(
        mysql_db, kafka_broker, ses, monkeypatch):
    # GIVEN an email that failed to send more than five minutes ago
    _use_mailer(monkeypatch, BrokenMailer())
    failed_key, _ = _book(user_id=9, listing_id=17)
    failed_id = _row("SELECT id FROM bookings WHERE booking_key=%s", failed_key)["id"]
    conn = connect(config.mysql_settings(), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("UPDATE email_outbox SET updated_at = updated_at - INTERVAL 10 MINUTE WHERE booking_id=%s",
                        (failed_id,))
    finally:
        conn.close()

    # WHEN payment_fn confirms another booking with SES working, its older-email pass being due
    import payment_fn.app

    monkeypatch.setattr(payment_fn.app, "_next_retry_pass", 0.0)
    _use_mailer(monkeypatch, SesMailer(SENDER, region="us-east-1"))
    _book(user_id=10, listing_id=18)

    # THEN the earlier email is sent too
    assert outbox_row(failed_id)["status"] == "sent"
    assert [m.destinations["ToAddresses"] for m in ses.sent_messages if f"#{failed_id} " in m.subject] == [
        ["user9@example.com"]]


def test_an_email_that_failed_just_now_is_left_for_later(mysql_db, kafka_broker, ses, monkeypatch):
    _use_mailer(monkeypatch, BrokenMailer())
    failed_key, _ = _book(user_id=11, listing_id=19)
    failed_id = _row("SELECT id FROM bookings WHERE booking_key=%s", failed_key)["id"]

    _use_mailer(monkeypatch, SesMailer(SENDER, region="us-east-1"))
    _book(user_id=12, listing_id=20)

    assert outbox_row(failed_id)["status"] == "pending"
