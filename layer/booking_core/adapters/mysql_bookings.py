"""Write-side storage of bookings, payments, decisions and the retry table in MySQL."""
from __future__ import annotations

import json

from booking_core.adapters.mysql import ConnectionHolder
from booking_core.adapters.mysql_retries import upsert_retry
from booking_core.domain import model
from booking_core.domain.model import Decision, RequestBooking
from booking_core.services.ports import Hold

HELD, CONFIRMED, RELEASED = "held", "confirmed", "released"
# Bookings in these states occupy their nights.
BLOCKING_STATUSES = (HELD, CONFIRMED)


def _store_final(cur, decision: Decision, request_hash: str) -> Decision:
    """Record a final decision and close any retry row for the key, in the caller's transaction."""
    cur.execute(
        "INSERT INTO decisions (booking_key, request_hash, status, reason, booking_id, decision_json)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE booking_key = booking_key",
        (decision.booking_key, request_hash, decision.status, decision.reason, decision.booking_id,
         json.dumps(decision.to_dict())),
    )
    cur.execute(
        "UPDATE booking_retries SET status='succeeded', last_error=NULL"
        " WHERE booking_key=%s AND status IN ('pending', 'in_flight')",
        (decision.booking_key,),
    )
    return decision


class MySqlBookingRepository:
    def __init__(self, connections: ConnectionHolder):
        self._connections = connections

    def stored_decision(self, booking_key: str) -> Decision | None:
        with self._connections.transaction() as cur:
            cur.execute("SELECT decision_json FROM decisions WHERE booking_key=%s", (booking_key,))
            row = cur.fetchone()
        return Decision.from_dict(json.loads(row["decision_json"])) if row else None

    def hold(self, booking_key: str, request: RequestBooking) -> Hold | Decision:
        fingerprint = request.fingerprint()
        with self._connections.transaction() as cur:
            # The listing row lock serialises every hold on this listing: the overlap check and the insert
            # below cannot interleave with another request's, so two overlapping stays never both pass.
            # It must be the transaction's first read: InnoDB takes the REPEATABLE READ snapshot at the first
            # plain SELECT, so the overlap check then sees every booking committed by the previous lock holder.
            cur.execute(
                "SELECT id, active, max_guests, nightly_price_cents, currency FROM listings"
                " WHERE id=%s FOR UPDATE",
                (request.listing_id,),
            )
            listing = cur.fetchone()
            # Re-read under the lock: a decision stored since decide_booking looked (the retry run rejecting a
            # begun stay, or a concurrent redelivery) wins over holding and charging again.
            cur.execute("SELECT decision_json FROM decisions WHERE booking_key=%s", (booking_key,))
            stored = cur.fetchone()
            if stored:
                return Decision.from_dict(json.loads(stored["decision_json"]))
            cur.execute("SELECT id, status, user_id, amount_cents, currency FROM bookings WHERE booking_key=%s",
                        (booking_key,))
            existing = cur.fetchone()
            if existing and existing["status"] in BLOCKING_STATUSES:
                # A redelivery after a crash between hold and confirm: carry on with the same booking.
                return Hold(existing["id"], existing["user_id"], existing["amount_cents"], existing["currency"])

            reason = None
            cur.execute("SELECT id FROM users WHERE id=%s", (request.user_id,))
            if model.stay_has_begun(request):
                reason, detail = model.CHECK_IN_PASSED, f"check_in {request.check_in} has passed"
            elif cur.fetchone() is None:
                reason, detail = model.UNKNOWN_USER, f"user {request.user_id} does not exist"
            elif listing is None:
                reason, detail = model.UNKNOWN_LISTING, f"listing {request.listing_id} does not exist"
            elif not listing["active"]:
                reason, detail = model.LISTING_INACTIVE, f"listing {request.listing_id} is not bookable"
            elif request.guests > listing["max_guests"]:
                reason, detail = model.TOO_MANY_GUESTS, f"listing takes at most {listing['max_guests']} guests"
            else:
                cur.execute(
                    "SELECT id FROM bookings WHERE listing_id=%s AND status IN %s"
                    " AND check_in < %s AND check_out > %s AND booking_key <> %s LIMIT 1",
                    (request.listing_id, BLOCKING_STATUSES, request.check_out, request.check_in, booking_key),
                )
                if cur.fetchone() is not None:
                    reason, detail = model.UNAVAILABLE, "the listing is already booked for some of those nights"
            if reason is not None:
                return _store_final(cur, Decision.rejected(booking_key, reason, detail), fingerprint)

            amount = model.stay_amount_cents(listing["nightly_price_cents"], request.nights)
            values = (request.user_id, request.listing_id, request.check_in, request.check_out, request.guests,
                      amount, listing["currency"])
            if existing:  # released earlier (parked after a transient failure) and now re-driven
                cur.execute(
                    "UPDATE bookings SET user_id=%s, listing_id=%s, check_in=%s, check_out=%s, guests=%s,"
                    " amount_cents=%s, currency=%s, status='held' WHERE id=%s",
                    (*values, existing["id"]),
                )
                booking_id = existing["id"]
            else:
                cur.execute(
                    "INSERT INTO bookings (booking_key, user_id, listing_id, check_in, check_out, guests,"
                    " amount_cents, currency, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'held')",
                    (booking_key, *values),
                )
                booking_id = cur.lastrowid
            return Hold(booking_id, request.user_id, amount, listing["currency"])

    def _record_payment(self, cur, booking_key, hold: Hold, provider, provider_ref, status) -> int:
        cur.execute(
            "INSERT INTO payments (booking_id, booking_key, user_id, amount_cents, currency, provider,"
            " provider_ref, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON DUPLICATE KEY UPDATE id=LAST_INSERT_ID(id)",
            (hold.booking_id, booking_key, hold.user_id, hold.amount_cents, hold.currency, provider,
             provider_ref, status),
        )
        return cur.lastrowid

    def confirm(self, booking_key, request, hold, provider, provider_ref) -> Decision:
        # Imported here so this method's change stays within the method (the module is shared work).
        from booking_core.adapters.mysql_email_outbox import enqueue_confirmation_email

        with self._connections.transaction() as cur:
            cur.execute("UPDATE bookings SET status='confirmed' WHERE id=%s", (hold.booking_id,))
            payment_id = self._record_payment(cur, booking_key, hold, provider, provider_ref, "captured")
            decision = Decision(booking_key, model.CONFIRMED, booking_id=hold.booking_id, payment_id=payment_id,
                                amount_cents=hold.amount_cents, currency=hold.currency)
            # The confirmation email is queued in the confirm transaction (outbox): sent after the batch, and
            # a failed send can never undo or block the confirmation.
            enqueue_confirmation_email(cur, booking_key, request, hold)
            return _store_final(cur, decision, request.fingerprint())

    def release_declined(self, booking_key, request, hold, provider, provider_ref, decline_code) -> Decision:
        with self._connections.transaction() as cur:
            cur.execute("UPDATE bookings SET status='released' WHERE id=%s", (hold.booking_id,))
            self._record_payment(cur, booking_key, hold, provider, provider_ref, "declined")
            decision = Decision.rejected(booking_key, model.PAYMENT_DECLINED, decline_code)
            decision.amount_cents, decision.currency = hold.amount_cents, hold.currency
            return _store_final(cur, decision, request.fingerprint())

    def park(self, booking_key, request, hold, reason, error) -> Decision:
        with self._connections.transaction() as cur:
            if hold is not None:
                cur.execute("UPDATE bookings SET status='released' WHERE id=%s AND status='held'",
                            (hold.booking_id,))
            upsert_retry(cur, booking_key, request, reason, error)
        return Decision(booking_key, model.QUEUED, reason=reason, detail=error[:200])
