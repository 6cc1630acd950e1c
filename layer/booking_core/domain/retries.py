"""The retry rule: what the re-drive run does with a due row of the retry table, and when it comes due again."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from booking_core.domain.model import RequestBooking

REDRIVE, EXPIRE, GIVE_UP = "redrive", "expire", "give_up"

# An in_flight row is a lease: it must not come due again before payment_fn has had time to decide it, or a
# second run would re-publish it. Longer than any run's clock skew plus a decision.
MIN_DELAY_S = 30.0
# Below the nightly schedule's interval, so a row with many attempts is still tried every night.
MAX_DELAY_S = 12 * 3600.0


@dataclass(frozen=True)
class RetryRow:
    """One booking_retries row as the store read it; `request` is None when request_json is unreadable."""

    booking_key: str
    request: RequestBooking | None
    reason: str
    attempts: int
    status: str
    last_error: str | None = None


@dataclass(frozen=True)
class Step:
    """What the run does with a due row, and when the row comes due again if it is re-driven."""

    action: str
    next_attempt_at: dt.datetime | None = None


def backoff_delay_s(attempt: int, base_delay_s: float) -> float:
    """Delay before attempt `attempt` + 1 may start: base, 2×base, 4×base, ... within [MIN_DELAY_S, MAX_DELAY_S]."""
    delay = base_delay_s * 2.0 ** max(attempt - 1, 0)
    return min(max(delay, MIN_DELAY_S), MAX_DELAY_S)


def plan_step(row: RetryRow, now: dt.datetime, today: dt.date, max_attempts: int, base_delay_s: float) -> Step:
    """The rule for one due row: expire a stay that has begun, give up after max_attempts, else re-drive."""
    lease_until = now + dt.timedelta(seconds=backoff_delay_s(row.attempts + 1, base_delay_s))
    if row.request is None:
        return Step(GIVE_UP)
    if row.request.check_in < today:
        # Checked before the attempt limit: the client gets a final answer rather than `queued` for ever.
        return Step(EXPIRE, lease_until)
    if row.attempts >= max_attempts:
        return Step(GIVE_UP)
    return Step(REDRIVE, lease_until)
