"""In-memory stand-ins for the adapters, for unit tests (the integration suite uses the real ones)."""
from __future__ import annotations

from booking_core.domain import model
from booking_core.domain.model import Decision
from booking_core.services.ports import Hold


class FakeBookingRepository:
    def __init__(self, users=(1, 2), listings=None):
        self.users = set(users)
        self.listings = listings or {7: {"active": True, "max_guests": 4, "price": 10000, "currency": "EUR"}}
        self.bookings: dict[str, dict] = {}
        self.payments: dict[str, dict] = {}
        self.decisions: dict[str, Decision] = {}
        self.retries: dict[str, dict] = {}

    def _final(self, decision):
        self.decisions[decision.booking_key] = decision
        if decision.booking_key in self.retries:
            self.retries[decision.booking_key]["status"] = "succeeded"
        return decision

    def hold(self, booking_key, request):
        if booking_key in self.decisions:
            return self.decisions[booking_key]
        existing = self.bookings.get(booking_key)
        if existing and existing["status"] in ("held", "confirmed"):
            return Hold(existing["id"], request.user_id, existing["amount"], "EUR")
        listing = self.listings.get(request.listing_id)
        if model.stay_has_begun(request):
            return self._final(Decision.rejected(booking_key, model.CHECK_IN_PASSED))
        if request.user_id not in self.users:
            return self._final(Decision.rejected(booking_key, model.UNKNOWN_USER))
        if listing is None:
            return self._final(Decision.rejected(booking_key, model.UNKNOWN_LISTING))
        if request.guests > listing["max_guests"]:
            return self._final(Decision.rejected(booking_key, model.TOO_MANY_GUESTS))
        for key, b in self.bookings.items():
            if (key != booking_key and b["listing_id"] == request.listing_id and b["status"] in ("held", "confirmed")
                    and b["check_in"] < request.check_out and b["check_out"] > request.check_in):
                return self._final(Decision.rejected(booking_key, model.UNAVAILABLE))
        amount = listing["price"] * request.nights
        booking_id = existing["id"] if existing else len(self.bookings) + 1
        self.bookings[booking_key] = {"id": booking_id, "listing_id": request.listing_id, "status": "held",
                                      "check_in": request.check_in, "check_out": request.check_out, "amount": amount}
        return Hold(booking_id, request.user_id, amount, "EUR")

    def confirm(self, booking_key, request, hold, provider, provider_ref):
        self.bookings[booking_key]["status"] = "confirmed"
        payment = self.payments.setdefault(booking_key, {"id": len(self.payments) + 1, "status": "captured"})
        return self._final(Decision(booking_key, model.CONFIRMED, booking_id=hold.booking_id, payment_id=payment["id"],
                                    amount_cents=hold.amount_cents, currency=hold.currency))

    def release_declined(self, booking_key, request, hold, provider, provider_ref, decline_code):
        self.bookings[booking_key]["status"] = "released"
        self.payments.setdefault(booking_key, {"id": len(self.payments) + 1, "status": "declined"})
        return self._final(Decision.rejected(booking_key, model.PAYMENT_DECLINED, decline_code))

    def park(self, booking_key, request, hold, reason, error):
        if hold is not None:
            self.bookings[booking_key]["status"] = "released"
        self.retries[booking_key] = {"request": request, "reason": reason, "error": error, "status": "pending"}
        return Decision(booking_key, model.QUEUED, reason=reason)


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
    """The email outbox in memory: claim pending rows, record each send's outcome."""

    def __init__(self, items):
        self.rows = {i.id: {"item": i, "status": "pending", "attempts": i.attempts, "error": None} for i in items}

    def claim(self, booking_ids=None, limit=100, untouched_for_s=None):
        return [r["item"] for r in self.rows.values() if r["status"] == "pending"
                and (booking_ids is None or r["item"].booking_id in booking_ids)][:limit]

    def record(self, outcomes, max_attempts):
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
