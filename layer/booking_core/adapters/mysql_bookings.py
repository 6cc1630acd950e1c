"""Write-side storage of bookings, payments, decisions and the retry table in MySQL.

payment_fn decides a Kafka batch as a set: `hold_many` holds (or refuses) the batch's requests in one transaction,
`finish_many` records how their payments ended in another. The one-request methods are those with one item.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from booking_core.adapters.mysql import ConnectionHolder, Cursor
from booking_core.adapters.mysql_decisions import decision_from_json, insert_decision, insert_decisions
from booking_core.adapters.mysql_email_outbox import enqueue_confirmation_emails
from booking_core.adapters.mysql_retries import close_retries, close_retry, upsert_retry
from booking_core.domain import model
from booking_core.domain.model import Decision, Hold, ListingTerms, RequestBooking, StaleHold
from booking_core.ports import CHARGED, DECLINED_CHARGE, FAILED, UNREACHED, PaymentOutcome

HELD, CONFIRMED, RELEASED = "held", "confirmed", "released"
# Bookings in these states occupy their nights.
BLOCKING_STATUSES = (HELD, CONFIRMED)
OPEN_RETRY_STATUSES = ("pending", "in_flight")

# Everything a hold decision needs to know of one request, as one row (`i` is its place in the batch): its key's
# stored decision, its user, a booking already made under its key, an overlapping booking, an open retry row.
_FACTS = (
    "SELECT %s AS i, d.decision_json, d.request_hash, u.id AS user_found, b.id AS existing_id,"
    " b.status AS existing_status, b.user_id AS existing_user_id, b.listing_id AS existing_listing_id,"
    " b.check_in AS existing_check_in, b.check_out AS existing_check_out, b.guests AS existing_guests,"
    " b.amount_cents AS existing_amount, b.currency AS existing_currency, r.id AS open_retry_id,"
    " (SELECT COUNT(*) FROM bookings o WHERE o.listing_id=%s AND o.status IN %s AND o.check_in < %s"
    "   AND o.check_out > %s AND o.booking_key <> %s) AS overlapping"
    " FROM (SELECT 1) AS one"
    " LEFT JOIN decisions d ON d.booking_key=%s"
    " LEFT JOIN users u ON u.id=%s"
    " LEFT JOIN bookings b ON b.booking_key=%s"
    " LEFT JOIN booking_retries r ON r.booking_key=%s AND r.status IN %s"
)


def _store_final(cur: Cursor, decision: Decision, request_hash: str) -> Decision:
    """Record a final decision and close any retry row for the key, in the caller's transaction."""
    insert_decision(cur, decision, request_hash)
    close_retry(cur, decision.booking_key)
    return decision


def _overlaps(request: RequestBooking, stays: list[tuple[dt.date, dt.date]]) -> bool:
    return any(check_in < request.check_out and check_out > request.check_in for check_in, check_out in stays)


class MySqlBookingRepository:
    def __init__(self, connections: ConnectionHolder):
        self._connections = connections

    def hold(self, booking_key: str, request: RequestBooking) -> Hold | Decision:
        answer = self.hold_many([(booking_key, request)])[0]
        assert answer is not None  # only a later request of the same call waits
        return answer

    def hold_many(self, requests: Sequence[tuple[str, RequestBooking]]) -> list[Hold | Decision | None]:
        if not requests:
            return []
        with self._connections.transaction() as cur:
            # The listing row locks serialise every hold on these listings: the overlap check and the inserts below
            # cannot interleave with another request's, so two overlapping stays never both pass. One statement
            # locks them in id order (the primary key's), so two batches sharing listings never wait on each other
            # in a cycle. It must be the transaction's first read: InnoDB takes the REPEATABLE READ snapshot at the
            # first plain SELECT, so the facts below then see every booking committed by the previous lock holders.
            cur.execute(
                "SELECT id, active, max_guests, nightly_price_cents, currency FROM listings"
                " WHERE id IN %s ORDER BY id FOR UPDATE",
                (tuple(sorted({request.listing_id for _, request in requests})),),
            )
            listings = {row["id"]: row for row in cur.fetchall()}
            # Everything else, in one round trip for the batch. Read under the locks: a decision stored since the
            # request was fetched (the retry run rejecting a begun stay, a concurrent redelivery) wins over holding
            # and charging again.
            args: list = []
            for i, (key, request) in enumerate(requests):
                args += [i, request.listing_id, BLOCKING_STATUSES, request.check_out, request.check_in, key,
                         key, request.user_id, key, key, OPEN_RETRY_STATUSES]
            cur.execute(" UNION ALL ".join([_FACTS] * len(requests)), args)
            facts = sorted(cur.fetchall(), key=lambda row: row["i"])

            # Bookings made earlier under keys of this call (a redelivered hold; one confirmed): counted in the facts'
            # `overlapping`, but whether one blocks a request depends on where its key stands in the call.
            batch_bookings = {key: found for (key, _), found in zip(requests, facts, strict=True)
                              if found["existing_id"] and found["existing_status"] in BLOCKING_STATUSES}
            answers: list[Hold | Decision | None] = []
            finals: list[tuple[Decision, str]] = []
            retries_to_close: list[str] = []
            new_holds: dict[int, tuple[str, tuple, int | None]] = {}  # answer index → key, row values, id to reuse
            # Per listing, the stays this call holds or keeps waiting: a later request overlapping one waits too,
            # so overlapping requests are answered in the call's order, as one at a time would answer them.
            claimed: dict[int, list[tuple[dt.date, dt.date]]] = {}
            holding: set[str] = set()  # keys of this call answered with the hold they already had
            for (key, request), found in zip(requests, facts, strict=True):
                fingerprint = request.fingerprint()
                if found["decision_json"]:
                    if found["open_retry_id"]:
                        retries_to_close.append(key)  # the key is decided: nothing of it waits for a re-drive
                    # The key's request is the one decided: MySQL keeps its hash as long as the decision, so a reused
                    # key is caught after the decision store has forgotten it. Refused, not stored: the key's
                    # decision stays the first request's.
                    if found["request_hash"] and found["request_hash"] != fingerprint:
                        answers.append(model.key_reused(key))
                    else:
                        answers.append(decision_from_json(found["decision_json"]))
                    continue
                existing_id = found["existing_id"]
                if key in batch_bookings:
                    if (found["existing_user_id"], found["existing_listing_id"], found["existing_check_in"],
                            found["existing_check_out"], found["existing_guests"]) != (
                            request.user_id, request.listing_id, request.check_in, request.check_out,
                            request.guests):
                        answers.append(model.key_reused(key))  # another request under the key of one being decided
                    else:  # a redelivery after a crash between hold and confirm: carry on with the same booking
                        answers.append(Hold(existing_id, found["existing_user_id"], found["existing_amount"],
                                            found["existing_currency"]))
                        if found["existing_status"] == HELD:
                            holding.add(key)
                            claimed.setdefault(request.listing_id, []).append((request.check_in, request.check_out))
                    continue

                # Overlapping bookings block, except a hold this call carries on for an earlier request: that one's
                # outcome decides (below). A later key's hold is still there when this request comes first.
                ours = [k for k, b in batch_bookings.items() if k != key and b["existing_listing_id"] == request.listing_id
                        and b["existing_check_in"] < request.check_out and b["existing_check_out"] > request.check_in]
                blocked = found["overlapping"] > len(ours) or any(
                    k not in holding or batch_bookings[k]["existing_status"] != HELD for k in ours)
                listing = listings.get(request.listing_id)
                terms = None if listing is None else ListingTerms(
                    bool(listing["active"]), listing["max_guests"], listing["nightly_price_cents"],
                    listing["currency"])
                refused = model.refusal(request, terms, user_exists=found["user_found"] is not None,
                                        overlaps_a_booking=blocked)
                if refused is not None:
                    decision = Decision.rejected(key, refused.reason, refused.detail)
                    finals.append((decision, fingerprint))
                    if found["open_retry_id"]:
                        retries_to_close.append(key)
                    answers.append(decision)
                    continue
                assert terms is not None  # refusal() answers a missing listing
                stays = claimed.setdefault(request.listing_id, [])
                waits = _overlaps(request, stays)
                stays.append((request.check_in, request.check_out))
                if waits:
                    answers.append(None)  # free unless an earlier request of this call keeps its hold: ask again
                    continue
                amount = model.stay_amount_cents(terms.nightly_price_cents, request.nights)
                values = (request.user_id, request.listing_id, request.check_in, request.check_out, request.guests,
                          amount, terms.currency, fingerprint)
                # An existing booking here was released (parked after a transient failure) and is now re-driven.
                new_holds[len(answers)] = (key, values, existing_id)
                answers.append(Hold(existing_id or 0, request.user_id, amount, terms.currency))

            inserts = [(key, *values, HELD) for key, values, existing_id in new_holds.values() if not existing_id]
            if inserts:
                cur.executemany(
                    "INSERT INTO bookings (booking_key, user_id, listing_id, check_in, check_out, guests,"
                    " amount_cents, currency, request_hash, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    inserts)
                cur.execute("SELECT id, booking_key FROM bookings WHERE booking_key IN %s",
                            (tuple(row[0] for row in inserts),))
                ids = {row["booking_key"]: row["id"] for row in cur.fetchall()}
            for index, (key, values, existing_id) in new_holds.items():
                if existing_id:
                    cur.execute(
                        "UPDATE bookings SET user_id=%s, listing_id=%s, check_in=%s, check_out=%s, guests=%s,"
                        " amount_cents=%s, currency=%s, request_hash=%s, status='held' WHERE id=%s",
                        (*values, existing_id),
                    )
                else:
                    hold = answers[index]
                    assert isinstance(hold, Hold)
                    answers[index] = Hold(ids[key], hold.user_id, hold.amount_cents, hold.currency)
            insert_decisions(cur, finals)
            close_retries(cur, retries_to_close)
        return answers

    def confirm(self, booking_key: str, request: RequestBooking, hold: Hold, provider: str,
                provider_ref: str) -> Decision:
        return self.finish_many([PaymentOutcome(CHARGED, booking_key, request, hold, provider, provider_ref)])[0]

    def release_declined(self, booking_key: str, request: RequestBooking, hold: Hold, provider: str,
                         provider_ref: str, decline_code: str | None) -> Decision:
        return self.finish_many([PaymentOutcome(DECLINED_CHARGE, booking_key, request, hold, provider, provider_ref,
                                                decline_code)])[0]

    def abandon(self, booking_key: str, request: RequestBooking, hold: Hold, reason: str,
                detail: str) -> Decision:
        return self.finish_many([PaymentOutcome(FAILED, booking_key, request, hold, reason=reason,
                                                detail=detail)])[0]

    def park(self, booking_key: str, request: RequestBooking, hold: Hold | None, reason: str,
             error: str) -> Decision:
        if hold is not None:
            return self.finish_many([PaymentOutcome(UNREACHED, booking_key, request, hold, reason=reason,
                                                    detail=error)])[0]
        with self._connections.transaction() as cur:
            upsert_retry(cur, booking_key, request, reason, error)
        return model.queued(booking_key, reason)

    def finish_many(self, outcomes: Sequence[PaymentOutcome]) -> list[Decision]:
        if not outcomes:
            return []
        keys = tuple(o.booking_key for o in outcomes)
        answers: dict[str, Decision] = {}
        # READ COMMITTED: the locking reads below lock the rows they find and no gaps, so two batches that then insert
        # decisions (or retry rows) for keys in the same gap of the index never deadlock on each other's gap lock;
        # and every read sees the latest committed row, which is what "decided meanwhile" asks.
        with self._connections.transaction(read_committed=True) as cur:
            # The keys' decision rows first, locked as a cancellation or the hold sweep locks them: a decision stored
            # meanwhile wins, and whatever decides one of these keys next waits for this transaction.
            cur.execute("SELECT booking_key, decision_json FROM decisions WHERE booking_key IN %s FOR UPDATE",
                        (keys,))
            for row in cur.fetchall():
                answers[row["booking_key"]] = decision_from_json(row["decision_json"])
            cur.execute("SELECT id, status FROM bookings WHERE id IN %s FOR UPDATE",
                        (tuple(o.hold.booking_id for o in outcomes),))
            held = {row["id"] for row in cur.fetchall() if row["status"] == HELD}
            # A hold no longer held may have been finished by another poller given the same request: with no decision
            # row yet, the locking read above locked nothing and saw none; its decision is committed now that its
            # booking row's lock is ours, and it is the answer.
            unsettled = tuple(o.booking_key for o in outcomes
                              if o.hold.booking_id not in held and o.booking_key not in answers)
            if unsettled:
                cur.execute("SELECT booking_key, decision_json FROM decisions WHERE booking_key IN %s FOR UPDATE",
                            (unsettled,))
                for row in cur.fetchall():
                    answers[row["booking_key"]] = decision_from_json(row["decision_json"])

            confirm: list[PaymentOutcome] = []
            release: list[int] = []
            payments: list[tuple[PaymentOutcome, str]] = []
            finals: list[tuple[Decision, str]] = []
            for o in outcomes:
                request_hash = o.request.fingerprint() if o.request_hash is None else o.request_hash
                if o.booking_key in answers:  # decided meanwhile (cancelled, expired): its hold goes
                    release.append(o.hold.booking_id)
                elif o.kind == CHARGED:
                    if o.hold.booking_id in held:
                        confirm.append(o)
                        payments.append((o, "captured"))
                    else:  # released by something that stored no decision: the nights are not ours
                        finals.append((Decision.rejected(o.booking_key, model.HOLD_EXPIRED, HOLD_LOST_DETAIL),
                                       request_hash))
                elif o.kind == DECLINED_CHARGE:
                    release.append(o.hold.booking_id)
                    payments.append((o, "declined"))
                    decision = Decision.rejected(o.booking_key, model.PAYMENT_DECLINED, o.decline_code)
                    decision.amount_cents, decision.currency = o.hold.amount_cents, o.hold.currency
                    finals.append((decision, request_hash))
                elif o.kind == FAILED:
                    release.append(o.hold.booking_id)
                    finals.append((Decision.rejected(o.booking_key, o.reason, o.detail), request_hash))
                elif o.kind == UNREACHED:
                    release.append(o.hold.booking_id)
                    upsert_retry(cur, o.booking_key, o.request, o.reason, o.detail)
                    answers[o.booking_key] = model.queued(o.booking_key, o.reason)
                else:
                    raise ValueError(f"unknown payment outcome {o.kind!r}")

            if confirm:
                cur.execute("UPDATE bookings SET status='confirmed' WHERE id IN %s",
                            (tuple(o.hold.booking_id for o in confirm),))
            if release:
                cur.execute("UPDATE bookings SET status='released' WHERE id IN %s AND status='held'",
                            (tuple(release),))
            payment_ids = self._record_payments(cur, payments)
            for o in confirm:
                finals.append((Decision(o.booking_key, model.CONFIRMED, booking_id=o.hold.booking_id,
                                        payment_id=payment_ids[o.booking_key], amount_cents=o.hold.amount_cents,
                                        currency=o.hold.currency),
                               o.request.fingerprint() if o.request_hash is None else o.request_hash))
            # The confirmation emails are queued in the confirm transaction (outbox): sent after the batch, and a
            # failed send can never undo or block a confirmation.
            enqueue_confirmation_emails(cur, [(o.booking_key, o.request, o.hold) for o in confirm])
            insert_decisions(cur, finals)
            close_retries(cur, [decision.booking_key for decision, _ in finals])
        for decision, _ in finals:
            answers[decision.booking_key] = decision
        return [answers[o.booking_key] for o in outcomes]

    @staticmethod
    def _record_payments(cur: Cursor, payments: list[tuple[PaymentOutcome, str]]) -> dict[str, int]:
        """Insert each payment (a key's existing one is kept) and return the payment id per key."""
        if not payments:
            return {}
        cur.executemany(
            "INSERT INTO payments (booking_id, booking_key, user_id, amount_cents, currency, provider,"
            " provider_ref, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE id=id",
            [(o.hold.booking_id, o.booking_key, o.hold.user_id, o.hold.amount_cents, o.hold.currency, o.provider,
              o.provider_ref, status) for o, status in payments],
        )
        cur.execute("SELECT id, booking_key FROM payments WHERE booking_key IN %s",
                    (tuple(o.booking_key for o, _ in payments),))
        return {row["booking_key"]: int(row["id"]) for row in cur.fetchall()}

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
        return self.finish_many([PaymentOutcome(CHARGED, stale.booking_key, request, stale.hold, provider,
                                                provider_ref, request_hash=stale.request_hash)])[0]

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
