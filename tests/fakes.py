"""In-memory stand-ins for the adapters, for unit tests (the integration suite uses the real ones)."""
from __future__ import annotations

from booking_core.adapters.sandbox_payments import sandbox_outcome, sandbox_refund_outcome
from booking_core.domain import model
from booking_core.domain.model import Decision, Hold, ListingTerms
from booking_core.ports import (
    CHARGED,
    DECLINED_CHARGE,
    FAILED,
    UNREACHED,
    ChargeResult,
    RefundResult,
    TransientPaymentError,
    charge_one_by_one,
)


class FakeBookingRepository:
    def __init__(self, users=(1, 2), listings=None):
        self.users = set(users)
        self.listings = listings or {7: {"active": True, "max_guests": 4, "price": 10000, "currency": "EUR"}}
        self.bookings: dict[str, dict] = {}
        self.payments: dict[str, dict] = {}
        self.decisions: dict[str, Decision] = {}
        self.retries: dict[str, dict] = {}
        self.request_hashes: dict[str, str] = {}
        self.hold_calls: list[list[str]] = []    # the keys of each hold_many call
        self.finish_calls: list[list[str]] = []  # the keys of each finish_many call

    def _final(self, decision):
        self.decisions[decision.booking_key] = decision
        if decision.booking_key in self.retries:
            self.retries[decision.booking_key]["status"] = "succeeded"
        return decision

    def _refusal(self, booking_key, request, ignoring=()):
        listing = self.listings.get(request.listing_id)
        terms = listing and ListingTerms(listing["active"], listing["max_guests"], listing["price"], listing["currency"])
        overlaps = any(key != booking_key and key not in ignoring and b["listing_id"] == request.listing_id
                       and b["status"] in ("held", "confirmed")
                       and b["check_in"] < request.check_out and b["check_out"] > request.check_in
                       for key, b in self.bookings.items())
        return model.refusal(request, terms, request.user_id in self.users, overlaps)

    def hold(self, booking_key, request, ignoring=()):
        first_hash = self.request_hashes.setdefault(booking_key, request.fingerprint())
        if booking_key in self.decisions:
            if first_hash != request.fingerprint():
                return model.key_reused(booking_key)
            return self.decisions[booking_key]
        existing = self.bookings.get(booking_key)
        if existing and existing["status"] in ("held", "confirmed"):
            if first_hash != request.fingerprint():
                return model.key_reused(booking_key)
            return Hold(existing["id"], request.user_id, existing["amount"], "EUR")
        self.request_hashes[booking_key] = request.fingerprint()  # released (parked) before: re-held as sent now
        refused = self._refusal(booking_key, request, ignoring)
        if refused is not None:
            return self._final(Decision.rejected(booking_key, refused.reason, refused.detail))
        listing = self.listings[request.listing_id]
        amount = listing["price"] * request.nights
        booking_id = existing["id"] if existing else len(self.bookings) + 1
        self.bookings[booking_key] = {"id": booking_id, "listing_id": request.listing_id, "status": "held",
                                      "check_in": request.check_in, "check_out": request.check_out, "amount": amount}
        return Hold(booking_id, request.user_id, amount, "EUR")

    def hold_many(self, requests):
        """`hold` for each request in order, as the MySQL repository answers: a request whose nights overlap a stay
        an earlier request of this call holds (or waits for) waits (None); a booking this call carries on blocks only
        the requests before its key."""
        assert len({key for key, _ in requests}) == len(requests), "the keys of one call are distinct"
        self.hold_calls.append([key for key, _ in requests])
        answers, holding, claimed = [], set(), []
        for key, request in requests:
            existing = self.bookings.get(key)
            if key in self.decisions or (existing and existing["status"] in ("held", "confirmed")):
                answer = self.hold(key, request)
                if isinstance(answer, Hold) and existing["status"] == "held":
                    holding.add(key)
                    claimed.append(request)
                answers.append(answer)
                continue
            overlapping = [k for k, b in self.bookings.items() if k != key and b["listing_id"] == request.listing_id
                           and b["status"] in ("held", "confirmed")
                           and b["check_in"] < request.check_out and b["check_out"] > request.check_in]
            blocked = any(k not in holding or self.bookings[k]["status"] != "held" for k in overlapping)
            listing = self.listings.get(request.listing_id)
            terms = listing and ListingTerms(listing["active"], listing["max_guests"], listing["price"],
                                             listing["currency"])
            refused = model.refusal(request, terms, request.user_id in self.users, blocked)
            if refused is not None:
                self.request_hashes.setdefault(key, request.fingerprint())
                answers.append(self._final(Decision.rejected(key, refused.reason, refused.detail)))
                continue
            waits = any(r.listing_id == request.listing_id and r.check_in < request.check_out
                        and r.check_out > request.check_in for r in claimed)
            claimed.append(request)
            if waits:
                answers.append(None)
                continue
            answer = self.hold(key, request, ignoring=holding)
            assert isinstance(answer, Hold)
            holding.add(key)
            answers.append(answer)
        return answers

    def finish_many(self, outcomes):
        self.finish_calls.append([o.booking_key for o in outcomes])
        answers = []
        for o in outcomes:
            if o.kind == CHARGED:
                answers.append(self.confirm(o.booking_key, o.request, o.hold, o.provider, o.provider_ref))
            elif o.kind == DECLINED_CHARGE:
                answers.append(self.release_declined(o.booking_key, o.request, o.hold, o.provider, o.provider_ref,
                                                     o.decline_code))
            elif o.kind == UNREACHED:
                answers.append(self.park(o.booking_key, o.request, o.hold, o.reason, o.detail))
            elif o.kind == FAILED:
                answers.append(self.abandon(o.booking_key, o.request, o.hold, o.reason, o.detail))
            else:
                raise ValueError(o.kind)
        return answers

    def _decided_meanwhile(self, booking_key):
        if booking_key in self.decisions:
            if self.bookings[booking_key]["status"] == "held":
                self.bookings[booking_key]["status"] = "released"
            return self.decisions[booking_key]
        return None

    def confirm(self, booking_key, request, hold, provider, provider_ref):
        if (decided := self._decided_meanwhile(booking_key)) is not None:
            return decided
        self.bookings[booking_key]["status"] = "confirmed"
        payment = self.payments.setdefault(booking_key, {"id": len(self.payments) + 1, "status": "captured"})
        return self._final(Decision(booking_key, model.CONFIRMED, booking_id=hold.booking_id, payment_id=payment["id"],
                                    amount_cents=hold.amount_cents, currency=hold.currency))

    def release_declined(self, booking_key, request, hold, provider, provider_ref, decline_code):
        if (decided := self._decided_meanwhile(booking_key)) is not None:
            return decided
        self.bookings[booking_key]["status"] = "released"
        self.payments.setdefault(booking_key, {"id": len(self.payments) + 1, "status": "declined"})
        return self._final(Decision.rejected(booking_key, model.PAYMENT_DECLINED, decline_code))

    def abandon(self, booking_key, request, hold, reason, detail):
        if (decided := self._decided_meanwhile(booking_key)) is not None:
            return decided
        self.bookings[booking_key]["status"] = "released"
        return self._final(Decision.rejected(booking_key, reason, detail))

    def settle(self, booking_key, decision):
        if booking_key in self.decisions:
            return self.decisions[booking_key], False
        if booking_key in self.bookings and self.bookings[booking_key]["status"] == "held":
            self.bookings[booking_key]["status"] = "released"
        return self._final(decision), True

    def park(self, booking_key, request, hold, reason, error):
        if hold is not None:
            if (decided := self._decided_meanwhile(booking_key)) is not None:
                return decided
            self.bookings[booking_key]["status"] = "released"
        self.retries[booking_key] = {"request": request, "reason": reason, "error": error, "status": "pending"}
        return model.queued(booking_key, reason)


class FakePublisher:
    def __init__(self, fail: Exception | None = None):
        self.sent: list[tuple[str, str, bytes]] = []
        self.flushes = 0
        self.fail = fail

    def send(self, topic, key, value, correlation_id=None):
        if self.fail:
            raise self.fail
        self.sent.append((topic, key, value))

    def publish(self, topic, key, value, correlation_id=None, timeout_s=None):
        self.send(topic, key, value, correlation_id)

    def flush(self, timeout_s=None):
        self.flushes += 1


class FakeRetryTable:
    def __init__(self):
        self.parked: dict[str, tuple] = {}

    def park_request(self, booking_key, request, reason, error):
        self.parked[booking_key] = (request, reason, error)


class FakeOutbox:
    """The email outbox in memory: claim pending rows, save each send's outcome."""

    def __init__(self, items):
        self.rows = {i.id: {"item": i, "status": "pending", "attempts": i.attempts, "error": None} for i in items}

    def claim(self, booking_ids=None, limit=100, untouched_for_s=None):
        return [r["item"] for r in self.rows.values() if r["status"] == "pending"
                and (booking_ids is None or r["item"].booking_id in booking_ids)][:limit]

    def save_outcomes(self, outcomes, max_attempts):
        given_up = set()
        for outcome in outcomes:
            row = self.rows[outcome.item.id]
            row["attempts"] += 1
            if outcome.error is None:
                row.update(status="sent", message_id=outcome.message_id)
            else:
                row["error"] = outcome.error
                row["status"] = "failed" if row["attempts"] >= max_attempts else "pending"
                given_up |= {outcome.item.id} if row["status"] == "failed" else set()
        return given_up


class InMemorySandboxProvider:
    """The sandbox's rules with an in-process ledger (the real one keeps it in MySQL)."""

    name = "sandbox"

    def __init__(self):
        self.ledger: dict[str, ChargeResult] = {}
        self.charged_cents: dict[str, int] = {}
        self.refunds: dict[str, RefundResult] = {}
        self.calls = 0
        self.batches: list[list[str]] = []  # the keys of each charge_many call
        self.outage = False

    def charge(self, idempotency_key, amount_cents, currency, token) -> ChargeResult:
        self.calls += 1
        if idempotency_key in self.ledger:
            return self.ledger[idempotency_key]
        if self.outage:
            raise TransientPaymentError("provider_unavailable")
        result = sandbox_outcome(token, idempotency_key)
        self.ledger[idempotency_key] = result
        self.charged_cents[idempotency_key] = amount_cents
        return result

    def charge_many(self, charges):
        self.batches.append([c.idempotency_key for c in charges])
        return charge_one_by_one(self.charge, charges)

    def find_charge(self, idempotency_key):
        import dataclasses

        found = self.ledger.get(idempotency_key)
        return dataclasses.replace(found, amount_cents=self.charged_cents[idempotency_key]) if found else None

    def refund(self, idempotency_key, provider_ref, amount_cents) -> RefundResult:
        if idempotency_key in self.refunds:
            return self.refunds[idempotency_key]
        if self.outage:
            raise TransientPaymentError("provider_unavailable")
        result = sandbox_refund_outcome(idempotency_key, self.ledger.get(idempotency_key),
                                        self.charged_cents.get(idempotency_key, 0), provider_ref, amount_cents)
        self.refunds[idempotency_key] = result
        return result
