"""Write-side storage of bookings, payments, decisions and the retry table in MySQL."""
from __future__ import annotations

from booking_core.adapters.mysql import ConnectionHolder, Cursor
from booking_core.adapters.mysql_decisions import decision_from_json, insert_decision
from booking_core.adapters.mysql_email_outbox import enqueue_confirmation_email
from booking_core.adapters.mysql_retries import close_retry, upsert_retry
from booking_core.domain import model
from booking_core.domain.model import Decision, Hold, ListingTerms, RequestBooking, StaleHold

HELD, CONFIRMED, RELEASED = "held", "confirmed", "released"
# Bookings in these states occupy their nights.
BLOCKING_STATUSES = (HELD, CONFIRMED)


def _store_final(cur: Cursor, decision: Decision, request_hash: str) -> Decision:
    """Record a final decision and close any retry row for the key, in the caller's transaction."""
    insert_decision(cur, decision, request_hash)
    close_retry(cur, decision.booking_key)
    return decision


class MySqlBookingRepository:
    def __init__(self, connections: ConnectionHolder):
        self._connections = connections

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
            # Everything else the decision needs, in one round trip (this runs once per booking). Read under
            # the lock: a decision stored since the request was fetched (the retry run rejecting a begun stay,
            # a concurrent redelivery) wins over holding and charging again.
            cur.execute(
                "SELECT d.decision_json, d.request_hash, u.id AS user_found, b.id AS existing_id,"
                " b.status AS existing_status, b.user_id AS existing_user_id, b.listing_id AS existing_listing_id,"
                " b.check_in AS existing_check_in, b.check_out AS existing_check_out, b.guests AS existing_guests,"
                " b.amount_cents AS existing_amount, b.currency AS existing_currency,"
                " (SELECT o.id FROM bookings o WHERE o.listing_id=%s AND o.status IN %s AND o.check_in < %s"
                "   AND o.check_out > %s AND o.booking_key <> %s LIMIT 1) AS overlapping_id"
                " FROM (SELECT 1) AS one"
                " LEFT JOIN decisions d ON d.booking_key=%s"
                " LEFT JOIN users u ON u.id=%s"
                " LEFT JOIN bookings b ON b.booking_key=%s",
                (request.listing_id, BLOCKING_STATUSES, request.check_out, request.check_in, booking_key,
                 booking_key, request.user_id, booking_key),
            )
            found = cur.fetchone()
            if found["decision_json"]:
                close_retry(cur, booking_key)  # the key is decided: nothing of it waits for a re-drive
                # The key's request is the one decided: MySQL keeps its hash as long as the decision, so a reused
                # key is caught after the decision store has forgotten it. Refused, not stored: the key's decision
                # stays the first request's.
                if found["request_hash"] and found["request_hash"] != fingerprint:
                    return model.key_reused(booking_key)
                return decision_from_json(found["decision_json"])
            existing_id = found["existing_id"]
            if existing_id and found["existing_status"] in BLOCKING_STATUSES:
                if (found["existing_user_id"], found["existing_listing_id"], found["existing_check_in"],
                        found["existing_check_out"], found["existing_guests"]) != (
                        request.user_id, request.listing_id, request.check_in, request.check_out, request.guests):
                    return model.key_reused(booking_key)  # another request under the key of one being decided
                # A redelivery after a crash between hold and confirm: carry on with the same booking.
                return Hold(existing_id, found["existing_user_id"], found["existing_amount"],
                            found["existing_currency"])

            terms = None if listing is None else ListingTerms(
                bool(listing["active"]), listing["max_guests"], listing["nightly_price_cents"], listing["currency"])
            refused = model.refusal(request, terms, user_exists=found["user_found"] is not None,
                                    overlaps_a_booking=found["overlapping_id"] is not None)
            if refused is not None:
                return _store_final(cur, Decision.rejected(booking_key, refused.reason, refused.detail), fingerprint)
            assert terms is not None  # refusal() answers a missing listing

            amount = model.stay_amount_cents(terms.nightly_price_cents, request.nights)
            values = (request.user_id, request.listing_id, request.check_in, request.check_out, request.guests,
                      amount, terms.currency, fingerprint)
            if existing_id:  # released earlier (parked after a transient failure) and now re-driven
                cur.execute(
                    "UPDATE bookings SET user_id=%s, listing_id=%s, check_in=%s, check_out=%s, guests=%s,"
                    " amount_cents=%s, currency=%s, request_hash=%s, status='held' WHERE id=%s",
                    (*values, existing_id),
                )
                booking_id = existing_id
            else:
                cur.execute(
                    "INSERT INTO bookings (booking_key, user_id, listing_id, check_in, check_out, guests,"
                    " amount_cents, currency, request_hash, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
                    " 'held')",
                    (booking_key, *values),
                )
                booking_id = cur.lastrowid
            return Hold(booking_id, request.user_id, amount, terms.currency)

    def _record_payment(self, cur: Cursor, booking_key: str, hold: Hold, provider: str, provider_ref: str,
                        status: str) -> int:
        cur.execute(
            "INSERT INTO payments (booking_id, booking_key, user_id, amount_cents, currency, provider,"
            " provider_ref, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON DUPLICATE KEY UPDATE id=LAST_INSERT_ID(id)",
            (hold.booking_id, booking_key, hold.user_id, hold.amount_cents, hold.currency, provider,
             provider_ref, status),
        )
        if cur.lastrowid:
            return int(cur.lastrowid)
        # The key's payment already existed and nothing changed: on a table with triggers (the change log's) the
        # insert id is then 0, LAST_INSERT_ID(id) or not.
        cur.execute("SELECT id FROM payments WHERE booking_key=%s", (booking_key,))
        return int(cur.fetchone()["id"])

    def confirm(self, booking_key: str, request: RequestBooking, hold: Hold, provider: str,
                provider_ref: str) -> Decision:
        with self._connections.transaction() as cur:
            return self._confirm(cur, booking_key, request, request.fingerprint(), hold, provider, provider_ref)

    def _confirm(self, cur: Cursor, booking_key: str, request: RequestBooking, request_hash: str, hold: Hold,
                 provider: str, provider_ref: str) -> Decision:
        decided = _decided_meanwhile(cur, booking_key, hold)
        if decided is not None:
            return decided
        cur.execute("UPDATE bookings SET status='confirmed' WHERE id=%s AND status='held'", (hold.booking_id,))
        if cur.rowcount == 0:  # released by something that stored no decision: the nights are not ours
            return _store_final(cur, Decision.rejected(booking_key, model.HOLD_EXPIRED, HOLD_LOST_DETAIL),
                                request_hash)
        payment_id = self._record_payment(cur, booking_key, hold, provider, provider_ref, "captured")
        decision = Decision(booking_key, model.CONFIRMED, booking_id=hold.booking_id, payment_id=payment_id,
                            amount_cents=hold.amount_cents, currency=hold.currency)
        # The confirmation email is queued in the confirm transaction (outbox): sent after the batch, and
        # a failed send can never undo or block the confirmation.
        enqueue_confirmation_email(cur, booking_key, request, hold)
        return _store_final(cur, decision, request_hash)

    def stale_holds(self, older_than_s: float, limit: int) -> list[StaleHold]:
        with self._connections.transaction() as cur:
            cur.execute(
                "SELECT id, booking_key, user_id, listing_id, check_in, check_out, guests, amount_cents, currency,"
                " request_hash FROM bookings WHERE status='held'"
                " AND updated_at < CURRENT_TIMESTAMP(6) - INTERVAL %s SECOND ORDER BY updated_at LIMIT %s",
                (float(older_than_s), int(limit)))
            return [StaleHold(r["booking_key"], Hold(r["id"], r["user_id"], r["amount_cents"], r["currency"]),
                              r["listing_id"], r["check_in"], r["check_out"], r["guests"], r["request_hash"] or "")
                    for r in cur.fetchall()]

    def complete_stale(self, stale: StaleHold, provider: str, provider_ref: str) -> Decision:
        # The request as the booking row keeps it; its payment token is not kept and not needed any more.
        request = RequestBooking(stale.hold.user_id, stale.listing_id, stale.check_in, stale.check_out, stale.guests,
                                 "tok_settled")
        with self._connections.transaction() as cur:
            return self._confirm(cur, stale.booking_key, request, stale.request_hash, stale.hold, provider,
                                 provider_ref)

    def release_declined(self, booking_key: str, request: RequestBooking, hold: Hold, provider: str,
                         provider_ref: str, decline_code: str | None) -> Decision:
        with self._connections.transaction() as cur:
            decided = _decided_meanwhile(cur, booking_key, hold)
            if decided is not None:
                return decided
            cur.execute("UPDATE bookings SET status='released' WHERE id=%s AND status='held'", (hold.booking_id,))
            self._record_payment(cur, booking_key, hold, provider, provider_ref, "declined")
            decision = Decision.rejected(booking_key, model.PAYMENT_DECLINED, decline_code)
            decision.amount_cents, decision.currency = hold.amount_cents, hold.currency
            return _store_final(cur, decision, request.fingerprint())

    def abandon(self, booking_key: str, request: RequestBooking, hold: Hold, reason: str,
                detail: str) -> Decision:
        with self._connections.transaction() as cur:
            decided = _decided_meanwhile(cur, booking_key, hold)
            if decided is not None:
                return decided
            cur.execute("UPDATE bookings SET status='released' WHERE id=%s AND status='held'", (hold.booking_id,))
            return _store_final(cur, Decision.rejected(booking_key, reason, detail), request.fingerprint())

    def park(self, booking_key: str, request: RequestBooking, hold: Hold | None, reason: str,
             error: str) -> Decision:
        with self._connections.transaction() as cur:
            if hold is not None:
                decided = _decided_meanwhile(cur, booking_key, hold)
                if decided is not None:
                    return decided
                cur.execute("UPDATE bookings SET status='released' WHERE id=%s AND status='held'",
                            (hold.booking_id,))
            upsert_retry(cur, booking_key, request, reason, error)
        return model.queued(booking_key, reason)


    def settle(self, booking_key: str, decision: Decision) -> tuple[Decision, bool]:
        with self._connections.transaction() as cur:
            cur.execute("SELECT decision_json FROM decisions WHERE booking_key=%s FOR UPDATE", (booking_key,))
            row = cur.fetchone()
            if row is not None:
                return decision_from_json(row["decision_json"]), False
            # A payment in flight finds the decision when it confirms (locking it as this did): it releases the
            # hold itself and refunds. The request hash is the held booking's, when there is one; otherwise a later
            # reuse of the key is answered from this decision.
            cur.execute("SELECT request_hash FROM bookings WHERE booking_key=%s", (booking_key,))
            held = cur.fetchone()
            cur.execute("UPDATE bookings SET status='released' WHERE booking_key=%s AND status='held'", (booking_key,))
            return _store_final(cur, decision, (held or {}).get("request_hash") or ""), True


HOLD_LOST_DETAIL = "the held nights were released before the payment completed"


def _decided_meanwhile(cur: Cursor, booking_key: str, hold: Hold) -> Decision | None:
    """The key's final decision if one was stored while its payment ran (a cancellation, the hold sweep), with the
    hold released; else None. The decision row is locked (FOR UPDATE), so whatever decides the key next waits for
    this transaction: one decision per key, whoever writes it."""
    cur.execute("SELECT decision_json FROM decisions WHERE booking_key=%s FOR UPDATE", (booking_key,))
    row = cur.fetchone()
    if row is None:
        return None
    cur.execute("UPDATE bookings SET status='released' WHERE id=%s AND status='held'", (hold.booking_id,))
    return decision_from_json(row["decision_json"])
