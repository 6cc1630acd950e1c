"""The guarantees the README promises, checked after a chaos run from the stores themselves (MySQL, the provider's
ledger, the email outbox table and folder, the read model through a reconcile) and from what each client was
answered. Each check returns the booking keys (or ids) that break it; none may.
"""
from __future__ import annotations

import email
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from infra.chaos.load import Request

FINAL = ("confirmed", "rejected")
WAITING_RETRY = ("pending", "in_flight", "dead")
SUBJECT_BOOKING = re.compile(r"Booking #(\d+) confirmed")
MAX_KEYS = 50  # keys listed per invariant in the report


@dataclass
class Result:
    name: str
    description: str
    violations: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"description": self.description, "violations": len(self.violations),
                "keys": self.violations[:MAX_KEYS]}


Sql = Callable[..., list[dict]]


def no_overlapping_confirmed_bookings(sql: Sql) -> Result:
    result = Result("no_overlap", "no two confirmed bookings of one listing overlap")
    for row in sql("SELECT a.booking_key AS k1, b.booking_key AS k2 FROM bookings a JOIN bookings b"
                   " ON a.listing_id = b.listing_id AND a.id < b.id AND a.check_in < b.check_out"
                   " AND b.check_in < a.check_out WHERE a.status = 'confirmed' AND b.status = 'confirmed'"):
        result.violations.append(f"{row['k1']} & {row['k2']}")
    return result


def charges_match_confirmed_bookings(sql: Sql) -> Result:
    """Every charge kept (taken, not refunded) belongs to exactly one confirmed booking with its captured payment
    and a confirmed decision, for the booking's amount; every confirmed booking has its charge; nothing kept is
    charged for a request that ended rejected (declined, cancelled, expired, released)."""
    result = Result("charges", "every kept charge = one confirmed booking + payment; none twice; none for a "
                               "rejected/cancelled/expired request")
    rows = sql(
        "SELECT c.idempotency_key AS k, c.amount_cents AS charged, r.status AS refund, b.status AS booking,"
        " b.amount_cents AS amount, p.status AS payment, d.status AS decision, d.reason AS reason"
        " FROM sandbox_charges c"
        " LEFT JOIN sandbox_refunds r ON r.idempotency_key = c.idempotency_key"
        " LEFT JOIN bookings b ON b.booking_key = c.idempotency_key"
        " LEFT JOIN payments p ON p.booking_key = c.idempotency_key"
        " LEFT JOIN decisions d ON d.booking_key = c.idempotency_key"
        " WHERE c.status = 'succeeded'")
    for row in rows:
        kept = row["refund"] != "succeeded"
        if kept and (row["booking"], row["payment"], row["decision"]) != ("confirmed", "captured", "confirmed"):
            result.violations.append(f"{row['k']} (charged; booking {row['booking']}, payment {row['payment']},"
                                     f" decision {row['decision']} {row['reason'] or ''})".replace(" )", ")"))
        elif kept and row["charged"] != row["amount"]:
            result.violations.append(f"{row['k']} (charged {row['charged']}, booking amount {row['amount']})")
        elif not kept and row["booking"] == "confirmed":
            result.violations.append(f"{row['k']} (confirmed but its charge was refunded)")
    for row in sql("SELECT b.booking_key AS k FROM bookings b LEFT JOIN sandbox_charges c"
                   " ON c.idempotency_key = b.booking_key AND c.status = 'succeeded'"
                   " WHERE b.status = 'confirmed' AND c.idempotency_key IS NULL"):
        result.violations.append(f"{row['k']} (confirmed without a charge)")
    for row in sql("SELECT booking_id, COUNT(*) AS n FROM payments WHERE status = 'captured'"
                   " GROUP BY booking_id HAVING n > 1"):
        result.violations.append(f"booking {row['booking_id']} ({row['n']} captured payments)")
    return result


def every_request_decided_or_parked(sql: Sql, requests: dict[str, Request]) -> tuple[Result, dict]:
    """Every request the API took ends with one final decision, or sits in the retry table with its reason; a
    request only ever answered with errors may have gone nowhere (its key left free), but if it left any trace
    in MySQL that trace must be final too."""
    result = Result("every_request_final", "every request sent: one final decision, or a retry-table row with its"
                                           " reason")
    decisions = {r["booking_key"]: r for r in sql("SELECT booking_key, status, reason FROM decisions")}
    retries = {r["booking_key"]: r for r in sql("SELECT booking_key, status, reason FROM booking_retries")}
    booked = {r["booking_key"] for r in sql("SELECT booking_key FROM bookings")}
    counts = {"decided": 0, "in_retry_table": 0, "never_accepted": 0}
    for key, request in requests.items():
        decision, retry = decisions.get(key), retries.get(key)
        traced = decision is not None or retry is not None or key in booked
        if not request.accepted() and not traced:
            counts["never_accepted"] += 1
            continue
        if decision is not None and decision["status"] in FINAL:
            counts["decided"] += 1
        elif retry is not None and retry["status"] in WAITING_RETRY and retry["reason"]:
            counts["in_retry_table"] += 1
        else:
            result.violations.append(f"{key} (decision {decision and decision['status']},"
                                     f" retry row {retry and retry['status']})")
    return result, counts


def _claimed(answer) -> tuple[str, str | None]:
    if answer.method == "POST":
        return {201: ("confirmed", None), 402: ("rejected", "payment_declined"),
                409: ("rejected", "unavailable")}.get(answer.http, ("rejected", answer.reason))
    return answer.status, (answer.reason if answer.status == "rejected" else None)


def answers_never_contradicted(sql: Sql, requests: dict[str, Request]) -> Result:
    result = Result("answers_kept", "a client answered a final decision (201/402/409/422, a final status read, a"
                                    " cancellation) is never contradicted")
    decisions = {r["booking_key"]: r for r in sql("SELECT booking_key, status, reason FROM decisions")}
    for key, request in requests.items():
        claims = {_claimed(a) for a in request.final_claims()}
        if not claims:
            continue
        decision = decisions.get(key)
        stored = (decision["status"], decision["reason"] if decision["status"] == "rejected" else None) \
            if decision else None
        if len(claims) > 1 or stored not in claims:
            result.violations.append(f"{key} (answered {sorted(claims, key=str)}, stored {stored})")
    return result


def one_email_per_confirmed_booking(sql: Sql, outbox_dir: Path) -> Result:
    result = Result("one_email", "exactly one confirmation email per confirmed booking (outbox table and folder)")
    confirmed = {r["id"]: r["booking_key"] for r in sql("SELECT id, booking_key FROM bookings"
                                                        " WHERE status = 'confirmed'")}
    rows = {r["booking_id"]: r for r in sql("SELECT booking_id, status FROM email_outbox")}
    files: dict[int, int] = defaultdict(int)
    for path in outbox_dir.glob("*.eml"):
        match = SUBJECT_BOOKING.search(email.message_from_bytes(path.read_bytes())["Subject"] or "")
        if match:
            files[int(match.group(1))] += 1
    for booking_id, key in confirmed.items():
        row = rows.get(booking_id)
        if row is None or row["status"] != "sent" or files.get(booking_id, 0) != 1:
            result.violations.append(f"{key} (outbox row {row and row['status']}, {files.get(booking_id, 0)}"
                                     f" emails)")
    for booking_id in set(files) | set(rows):
        if booking_id not in confirmed:
            result.violations.append(f"booking {booking_id} (an email, but the booking is not confirmed)")
    return result


def no_hold_past_the_limit(sql: Sql, hold_limit_s: float) -> Result:
    result = Result("no_stale_hold", f"no booking still held past the hold limit ({hold_limit_s:.0f} s)")
    for row in sql("SELECT booking_key FROM bookings WHERE status = 'held'"
                   " AND created_at < CURRENT_TIMESTAMP(6) - INTERVAL %s SECOND", hold_limit_s):
        result.violations.append(row["booking_key"])
    return result


def read_model_equals_mysql(reconcile_report: dict) -> Result:
    """A reconcile run after settling found nothing to repair: Redis held exactly what MySQL says."""
    result = Result("read_model", "the Redis read model equals MySQL (a reconcile finds 0 differences)")
    for group in ("rows", "members"):
        for kind, n in (reconcile_report.get(group) or {}).items():
            result.violations += [f"{group} {kind}"] * int(n)
    if "error" in reconcile_report:
        result.violations.append(f"reconcile failed: {reconcile_report['error']}")
    return result


def acknowledged_requests_on_the_broker(topic_keys: set[str], requests: dict[str, Request]) -> Result:
    """Every request whose publish the broker acknowledged (answered pending, or decided by payment_fn: 201, 402,
    409) is still on booking-requests at the end: a broker restart lost nothing it had acknowledged."""
    result = Result("nothing_acknowledged_lost", "every request the broker acknowledged is still on"
                                                 " booking-requests at the end")
    for key, request in requests.items():
        acknowledged = any(a.method == "POST" and (a.http in (201, 402, 409) or (a.http == 202 and a.status ==
                                                                                  "pending"))
                           for a in request.answers)
        if acknowledged and key not in topic_keys:
            result.violations.append(key)
    return result
