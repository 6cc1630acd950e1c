"""What the services need from storage: implemented by MySQL adapters and by fakes in tests."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from booking_core.domain.model import Decision, RequestBooking


@dataclass(frozen=True)
class Hold:
    """Dates held for a booking while its payment runs."""

    booking_id: int
    user_id: int
    amount_cents: int
    currency: str


class BookingRepository(Protocol):
    def hold(self, booking_key: str, request: RequestBooking) -> Hold | Decision:
        """Under a lock on the listing: the key's stored final Decision if it has one; else hold the dates
        (→ Hold, also the existing hold of a redelivered request) or refuse (→ a newly stored final Decision)."""

    def confirm(self, booking_key: str, request: RequestBooking, hold: Hold, provider: str,
                provider_ref: str) -> Decision:
        """Mark the hold confirmed, record the captured payment and the decision, in one transaction."""

    def release_declined(self, booking_key: str, request: RequestBooking, hold: Hold, provider: str,
                         provider_ref: str, decline_code: str | None) -> Decision:
        """Release the hold, record the declined payment and the rejection, in one transaction."""

    def park(self, booking_key: str, request: RequestBooking, hold: Hold | None, reason: str,
             error: str) -> Decision:
        """Release any hold and save the request in the retry table; returns a `queued` decision."""


class DecisionPublisher(Protocol):
    def publish_decision(self, decision: Decision, correlation_id: str | None = None) -> None: ...


class RetryTable(Protocol):
    def park_request(self, booking_key: str, request: RequestBooking, reason: str, error: str) -> None: ...
