"""Confirmation email: the text, SES through moto, the local outbox folder, and the send loop's bookkeeping."""
import datetime as dt
import email
import email.policy
import os

import pytest

from booking_core.adapters.mailers import DisabledMailer, OutboxFolderMailer, SesMailer, build_mailer
from booking_core.domain.emails import Email, OutboxEmail, confirmation_email
from booking_core.services.emails import send_pending_emails
from tests.fakes import FakeOutbox
from tests.support import moto_ses

SENDER = "bookings@example.com"


def _confirmation() -> Email:
    return confirmation_email(
        booking_id=4711, recipient="user3@example.com", guest_name="Carla 3",
        listing_title="Loft in Paris #9", city="Paris", check_in=dt.date(2030, 3, 1),
        check_out=dt.date(2030, 3, 4), guests=2, amount_cents=42050, currency="EUR")


def test_the_confirmation_names_the_booking_in_the_subject_and_listing_dates_and_amount_in_the_body():
    mail = _confirmation()

    assert mail.recipient == "user3@example.com"
    assert mail.subject == "Booking #4711 confirmed: Loft in Paris #9"
    for text in ("Loft in Paris #9", "2030-03-01", "2030-03-04", "3 nights", "420.50 EUR", "Reference:  booking #4711"):
        assert text in mail.body


def test_the_confirmation_is_made_only_of_the_booking_the_user_and_the_listing():
    """The Idempotency-Key once appeared as the reference: anyone could make the platform email any text."""
    import inspect

    assert set(inspect.signature(confirmation_email).parameters) == {
        "booking_id", "recipient", "guest_name", "listing_title", "city", "check_in", "check_out", "guests",
        "amount_cents", "currency"}


@pytest.fixture
def ses(monkeypatch):
    with moto_ses(monkeypatch, SENDER, "eu-west-1") as backend:
        yield backend


def test_ses_sends_the_email_to_the_user_with_subject_and_body(ses):
    message_id = SesMailer(SENDER, region="eu-west-1").send(_confirmation())

    (sent,) = ses.sent_messages
    assert message_id == sent.id
    assert sent.source == SENDER
    assert sent.destinations["ToAddresses"] == ["user3@example.com"]
    assert sent.subject == "Booking #4711 confirmed: Loft in Paris #9"
    assert "Loft in Paris #9" in sent.body and "2030-03-01" in sent.body and "420.50 EUR" in sent.body


def test_ses_refuses_an_unverified_sender_with_an_error_the_caller_sees(ses):
    with pytest.raises(Exception, match="MessageRejected|not verified"):
        SesMailer("someone-else@example.com", region="eu-west-1").send(_confirmation())
    assert ses.sent_messages == []


def test_an_email_sent_again_with_its_message_key_is_written_once_with_the_same_message_id(tmp_path):
    """Found by the chaos run: a payment poller killed after writing the file but before recording the send left the
    claim to go stale; the next sender wrote a second file for the same booking."""
    import dataclasses

    mail = dataclasses.replace(_confirmation(), message_key="outbox-17")
    first = OutboxFolderMailer(SENDER, tmp_path).send(mail)
    again = OutboxFolderMailer(SENDER, tmp_path).send(mail)

    assert first == again == "<outbox-17@booking.local>"
    assert len(list(tmp_path.glob("*.eml"))) == 1
    other = OutboxFolderMailer(SENDER, tmp_path).send(dataclasses.replace(mail, message_key="outbox-18"))
    assert other != first and len(list(tmp_path.glob("*.eml"))) == 2


def test_sending_a_keyed_email_does_not_list_the_outbox_folder(tmp_path, monkeypatch):
    """Found by `make bench`: the was-it-sent check globbed the whole folder for `*-<key>.eml`, 5.5 ms of the
    payment poller's CPU per email once 5,000 emails were there, growing with every email. The check looks up
    the key's own entry instead; listing the folder fails this test."""
    import dataclasses

    mailer = OutboxFolderMailer(SENDER, tmp_path)
    mail = dataclasses.replace(_confirmation(), message_key="outbox-19")
    mailer.send(dataclasses.replace(mail, message_key="outbox-20"))  # the folder exists and holds an email

    def listing(*args, **kwargs):
        raise AssertionError("the outbox folder was listed")

    monkeypatch.setattr(os, "scandir", listing)
    monkeypatch.setattr(os, "listdir", listing)
    first = mailer.send(mail)
    again = mailer.send(mail)
    monkeypatch.undo()
    assert first == again == "<outbox-19@booking.local>"
    assert len(list(tmp_path.glob("*.eml"))) == 2


def test_the_outbox_folder_holds_one_eml_file_a_mail_program_can_open(tmp_path):
    message_id = OutboxFolderMailer(SENDER, tmp_path).send(_confirmation())

    (path,) = tmp_path.glob("*.eml")
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed["Message-ID"] == message_id
    assert (parsed["From"], parsed["To"]) == (SENDER, "user3@example.com")
    assert parsed["Subject"] == "Booking #4711 confirmed: Loft in Paris #9"
    assert "420.50 EUR" in parsed.get_content()


def test_an_outbox_email_with_any_title_reads_back_as_sent(tmp_path):
    """Listing titles are the hosts' text: non-ASCII, long, or with a line break (which must not start a header).
    Before, a line break in the title made every send of that email fail (ValueError from EmailMessage)."""
    import dataclasses

    mail = confirmation_email(
        booking_id=4712, recipient="user4@example.com", guest_name="Zoë 4",
        listing_title="Château à Zürich — vue sur le lac\r\nBcc: victim@example.com", city="Zürich",
        check_in=dt.date(2030, 3, 1), check_out=dt.date(2030, 3, 4), guests=2, amount_cents=42050, currency="EUR")
    mail = dataclasses.replace(mail, body=mail.body + "x" * 1200 + "\n")

    OutboxFolderMailer(SENDER, tmp_path).send(mail)

    (path,) = tmp_path.glob("*.eml")
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed["Bcc"] is None and parsed.defects == []
    assert parsed["Subject"] == "Booking #4712 confirmed: Château à Zürich — vue sur le lac Bcc: victim@example.com"
    assert parsed.get_content() == mail.body
    assert (parsed["From"], parsed["To"]) == (SENDER, "user4@example.com")


def test_the_outbox_refuses_a_header_value_with_a_line_break(tmp_path):
    with pytest.raises(ValueError, match="line break"):
        OutboxFolderMailer(SENDER, tmp_path).send(Email("user4@example.com", "Hello\nBcc: victim@example.com", "."))
    assert list(tmp_path.glob("*.eml")) == []


@pytest.mark.parametrize("mode, kind", [("ses", SesMailer), ("outbox", OutboxFolderMailer), ("off", DisabledMailer)])
def test_mail_mode_picks_the_mailer(monkeypatch, mode, kind):
    monkeypatch.setenv("MAIL_MODE", mode)
    assert isinstance(build_mailer(), kind)


class FlakyMailer:
    enabled = True

    def __init__(self, failures: int):
        self.failures = failures
        self.sent = []

    def send(self, mail):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("SES endpoint unreachable")
        self.sent.append(mail)
        return f"msg-{len(self.sent)}"


def _item(booking_id, attempts=0):
    return OutboxEmail(booking_id, booking_id, f"key-{booking_id}", _confirmation(), attempts)


def test_a_failed_send_is_recorded_and_left_pending_then_a_later_call_sends_it():
    outbox, mailer = FakeOutbox([_item(1)]), FlakyMailer(failures=1)

    assert send_pending_emails(outbox, mailer) == {"failed": 1}
    assert outbox.rows[1]["status"] == "pending" and "unreachable" in outbox.rows[1]["error"]

    assert send_pending_emails(outbox, mailer) == {"sent": 1}
    assert outbox.rows[1]["status"] == "sent" and len(mailer.sent) == 1


def test_only_the_named_bookings_are_sent_when_ids_are_given():
    outbox, mailer = FakeOutbox([_item(1), _item(2)]), FlakyMailer(failures=0)

    assert send_pending_emails(outbox, mailer, booking_ids=[2]) == {"sent": 1}
    assert (outbox.rows[1]["status"], outbox.rows[2]["status"]) == ("pending", "sent")


def test_batches_of_emails_are_sent_by_threads_kept_between_calls():
    """A pool started and joined per call cost about a tenth of a payment poller's CPU under load (make bench)."""
    import threading

    from booking_core.services.emails import SEND_CONCURRENCY

    threads = set()

    class Recording(FlakyMailer):
        def send(self, mail):
            threads.add(threading.current_thread())
            return super().send(mail)

    for call in range(SEND_CONCURRENCY + 2):  # a pool per call would use at least one new thread per call
        outbox = FakeOutbox([_item(10 * call + n) for n in range(1, 4)])
        assert send_pending_emails(outbox, Recording(failures=0)) == {"sent": 3}
    assert len(threads) <= SEND_CONCURRENCY and all(t.is_alive() for t in threads)


def test_an_email_is_given_up_after_the_maximum_attempts():
    outbox = FakeOutbox([_item(1, attempts=2)])

    assert send_pending_emails(outbox, FlakyMailer(failures=5), max_attempts=3) == {"gave_up": 1}
    assert outbox.rows[1]["status"] == "failed"


def test_with_mail_off_nothing_is_claimed_and_everything_stays_pending():
    outbox = FakeOutbox([_item(1)])

    assert send_pending_emails(outbox, DisabledMailer()) == {"disabled": 1}
    assert outbox.rows[1]["status"] == "pending"


def test_a_batch_of_emails_is_sent_several_at_a_time_and_recorded_together():
    import threading
    import time

    class SlowMailer:
        enabled = True

        def __init__(self):
            self.in_flight = self.most_in_flight = 0
            self.lock = threading.Lock()

        def send(self, mail):
            with self.lock:
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
            time.sleep(0.05)
            with self.lock:
                self.in_flight -= 1
            return "ok"

    outbox, mailer = FakeOutbox([_item(i) for i in range(1, 9)]), SlowMailer()

    assert send_pending_emails(outbox, mailer) == {"sent": 8}
    assert mailer.most_in_flight > 1
