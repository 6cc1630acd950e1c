"""The email outbox in MySQL (table email_outbox, migration 004): queued in the confirm transaction, sent later.

Senders claim rows with one UPDATE (status 'sending', their own claim token), so two payment_fn instances
never send the same email; a claim older than EMAIL_STALE_CLAIM_S (a sender that crashed mid-send) is claimable
again, which makes delivery at-least-once.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from booking_core import config
from booking_core.adapters.mysql import ConnectionHolder, Cursor
from booking_core.domain.emails import Email, OutboxEmail, SendOutcome, confirmation_email
from booking_core.domain.model import Hold, RequestBooking

log = logging.getLogger(__name__)


def enqueue_confirmation_emails(cur: Cursor, confirmed: list[tuple[str, RequestBooking, Hold]]) -> None:
    """Queue each confirmed booking's email in the caller's (confirm) transaction; once per booking. One read of
    the users and listings named, one insert."""
    if not confirmed:
        return
    cur.execute(
        "SELECT 'user' AS kind, id, email AS a, name AS b FROM users WHERE id IN %s"
        " UNION ALL SELECT 'listing', id, title, city FROM listings WHERE id IN %s",
        (tuple({hold.user_id for _, _, hold in confirmed}), tuple({r.listing_id for _, r, _ in confirmed})),
    )
    found = {(row["kind"], row["id"]): row for row in cur.fetchall()}
    rows = []
    for booking_key, request, hold in confirmed:
        user, listing = found.get(("user", hold.user_id)), found.get(("listing", request.listing_id))
        if user is None or listing is None or not user["a"]:
            log.warning("no email address for the booking's user; no confirmation email queued",
                        extra={"booking_id": hold.booking_id, "user_id": hold.user_id})
            continue
        email = confirmation_email(
            booking_id=hold.booking_id, recipient=user["a"], guest_name=user["b"],
            listing_title=listing["a"], city=listing["b"], check_in=request.check_in, check_out=request.check_out,
            guests=request.guests, amount_cents=hold.amount_cents, currency=hold.currency,
        )
        rows.append((hold.booking_id, booking_key, email.recipient, email.subject, email.body))
    if rows:
        cur.executemany(
            "INSERT INTO email_outbox (booking_id, booking_key, recipient, subject, body) VALUES (%s, %s, %s, %s, %s)"
            " ON DUPLICATE KEY UPDATE booking_id=booking_id", rows)


class MySqlEmailOutbox:
    def __init__(self, connections: ConnectionHolder):
        self._connections = connections

    def claim(self, booking_ids: Iterable[int] | None = None, limit: int = 100,
              untouched_for_s: float | None = None) -> list[OutboxEmail]:
        """Claim up to `limit` sendable rows (pending, or stale 'sending'): only these bookings' when ids are
        given; only rows untouched (no send attempt) for `untouched_for_s` when that is given."""
        ids = None if booking_ids is None else tuple(int(b) for b in booking_ids)
        if ids == ():
            return []
        token = uuid.uuid4().hex
        sql = ("UPDATE email_outbox SET status='sending', claimed_by=%s, claimed_at=CURRENT_TIMESTAMP(6)"
               " WHERE (status='pending' OR (status='sending'"
               " AND claimed_at < CURRENT_TIMESTAMP(6) - INTERVAL %s SECOND))")
        args: list = [token, config.email_stale_claim_s()]
        if ids is not None:
            sql += " AND booking_id IN %s"
            args.append(ids)
        if untouched_for_s is not None:
            sql += " AND updated_at < CURRENT_TIMESTAMP(6) - INTERVAL %s SECOND"
            args.append(float(untouched_for_s))
        sql += " ORDER BY id LIMIT %s"
        args.append(int(limit))
        with self._connections.transaction() as cur:
            cur.execute(sql, args)
            cur.execute("SELECT id, booking_id, booking_key, recipient, subject, body, attempts FROM email_outbox"
                        " WHERE claimed_by=%s AND status='sending' ORDER BY id", (token,))
            rows = cur.fetchall()
        return [OutboxEmail(r["id"], r["booking_id"], r["booking_key"],
                            Email(r["recipient"], r["subject"], r["body"], message_key=f"outbox-{r['id']}"),
                            r["attempts"], token) for r in rows]

    def save_outcomes(self, outcomes: list[SendOutcome], max_attempts: int) -> set[int]:
        """Save every outcome in one transaction (one commit per batch of emails, not one per email)."""
        sent = [(o.message_id, o.item.id, o.item.claim_token) for o in outcomes if o.error is None]
        given_up = {o.item.id for o in outcomes if o.error is not None and o.item.attempts + 1 >= max_attempts}
        failed = [("failed" if o.item.id in given_up else "pending", o.error[:2000], o.item.id, o.item.claim_token)
                  for o in outcomes if o.error is not None]
        with self._connections.transaction() as cur:
            if sent:
                cur.executemany(
                    "UPDATE email_outbox SET status='sent', attempts=attempts+1, message_id=%s, last_error=NULL,"
                    " sent_at=CURRENT_TIMESTAMP(6), claimed_by=NULL WHERE id=%s AND claimed_by=%s", sent)
            if failed:
                cur.executemany(
                    "UPDATE email_outbox SET status=%s, attempts=attempts+1, last_error=%s, claimed_by=NULL"
                    " WHERE id=%s AND claimed_by=%s", failed)
        return given_up
