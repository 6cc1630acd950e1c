"""The sandbox payment provider: follows Stripe's test tokens, its ledger in MySQL.

tok_visa, tok_mastercard → succeeded; tok_chargeDeclined, tok_insufficientFunds → declined;
tok_processingError → TransientPaymentError (retryable). Any other token is declined as invalid.
Charges are idempotent by key: the same key returns the first result and never charges twice.
Refunds are keyed `refund-<booking key>` the same way: a second refund for a booking returns the first.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

from booking_core.adapters.mysql import ConnectionHolder, run_again_after_lock_conflicts
from booking_core.ports import DECLINED, SUCCEEDED, Charge, ChargeResult, RefundResult, TransientPaymentError

SUCCEEDING_TOKENS = frozenset({"tok_visa", "tok_mastercard", "tok_amex"})
DECLINING_TOKENS = frozenset({"tok_chargeDeclined", "tok_insufficientFunds"})
TRANSIENT_TOKENS = frozenset({"tok_processingError"})


def sandbox_refund_outcome(idempotency_key: str, charge: ChargeResult | None, charged_cents: int,
                           provider_ref: str, amount_cents: int) -> RefundResult:
    """What the sandbox answers for a refund of the charge made under `idempotency_key` (pure rule)."""
    ref = "re_" + hashlib.sha256(("refund-" + idempotency_key).encode()).hexdigest()[:24]
    if charge is None or charge.provider_ref != provider_ref:
        return RefundResult("failed", "", "charge_not_found")
    if not charge.succeeded:
        return RefundResult("failed", "", "charge_not_refundable")
    if amount_cents <= 0 or amount_cents > charged_cents:
        return RefundResult("failed", "", "amount_too_large" if amount_cents > 0 else "amount_invalid")
    return RefundResult("succeeded", ref)


def sandbox_outcome(token: str, idempotency_key: str) -> ChargeResult:
    """What the sandbox answers for a token (pure rule, shared by the MySQL-backed sandbox and the tests' fake)."""
    ref = "ch_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
    if token in TRANSIENT_TOKENS:
        raise TransientPaymentError("processing_error: the provider could not process the charge")
    if token in SUCCEEDING_TOKENS:
        return ChargeResult(SUCCEEDED, ref)
    if token in DECLINING_TOKENS:
        code = "insufficient_funds" if token == "tok_insufficientFunds" else "card_declined"
        return ChargeResult(DECLINED, ref, code)
    return ChargeResult(DECLINED, ref, "invalid_token")


class MySqlSandboxProvider:
    """Sandbox whose ledger lives in MySQL (tables sandbox_charges, sandbox_refunds, sandbox_state), like a
    provider's servers: idempotency holds across processes and restarts, and an outage can be switched on."""

    name = "sandbox"

    def __init__(self, connections: ConnectionHolder):
        self._connections = connections

    def charge(self, idempotency_key: str, amount_cents: int, currency: str, token: str) -> ChargeResult:
        with self._connections.transaction() as cur:
            cur.execute(
                "SELECT c.status, c.provider_ref, (SELECT outage FROM sandbox_state WHERE id=1) AS outage"
                " FROM (SELECT 1) AS one LEFT JOIN sandbox_charges c ON c.idempotency_key=%s",
                (idempotency_key,),
            )
            row = cur.fetchone()
            if row["status"]:
                return ChargeResult(row["status"], row["provider_ref"])
            if row["outage"]:
                raise TransientPaymentError("provider_unavailable: sandbox outage switched on")
            result = sandbox_outcome(token, idempotency_key)
            cur.execute(
                "INSERT IGNORE INTO sandbox_charges (idempotency_key, amount_cents, currency, token, status,"
                " provider_ref) VALUES (%s, %s, %s, %s, %s, %s)",
                (idempotency_key, amount_cents, currency, token, result.status, result.provider_ref),
            )
        return result

    def charge_many(self, charges: Sequence[Charge]) -> list[ChargeResult | Exception]:
        """The charges of a batch in one transaction: one read of the ledger (and the outage switch), one insert."""
        if not charges:
            return []
        with self._connections.transaction() as cur:
            cur.execute(
                "SELECT c.idempotency_key, c.status, c.provider_ref, (SELECT outage FROM sandbox_state WHERE id=1)"
                " AS outage FROM (SELECT 1) AS one LEFT JOIN sandbox_charges c ON c.idempotency_key IN %s",
                (tuple(c.idempotency_key for c in charges),),
            )
            rows = cur.fetchall()
            outage = bool(rows[0]["outage"]) if rows else False
            known = {r["idempotency_key"]: ChargeResult(r["status"], r["provider_ref"]) for r in rows if r["status"]}
            answers: list[ChargeResult | Exception] = []
            new_rows = []
            for item in charges:
                answer: ChargeResult | Exception
                if item.idempotency_key in known:  # charged before: the first result, nothing charged again
                    answer = known[item.idempotency_key]
                elif outage:
                    answer = TransientPaymentError("provider_unavailable: sandbox outage switched on")
                else:
                    try:
                        answer = known[item.idempotency_key] = sandbox_outcome(item.token, item.idempotency_key)
                    except TransientPaymentError as exc:
                        answer = exc
                    else:
                        new_rows.append((item.idempotency_key, item.amount_cents, item.currency, item.token,
                                         answer.status, answer.provider_ref))
                answers.append(answer)
            if new_rows:
                cur.executemany(
                    "INSERT IGNORE INTO sandbox_charges (idempotency_key, amount_cents, currency, token, status,"
                    " provider_ref) VALUES (%s, %s, %s, %s, %s, %s)", new_rows)
        return answers

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        with self._connections.transaction() as cur:
            cur.execute("SELECT status, provider_ref, amount_cents FROM sandbox_charges WHERE idempotency_key=%s",
                        (idempotency_key,))
            row = cur.fetchone()
        return ChargeResult(row["status"], row["provider_ref"], amount_cents=row["amount_cents"]) if row else None

    def refund(self, idempotency_key: str, provider_ref: str, amount_cents: int) -> RefundResult:
        # Two refunds of one booking at once: InnoDB can pick the one whose INSERT IGNORE waited as deadlock victim
        # at its locking read; run again, it finds the other's stored answer.
        return run_again_after_lock_conflicts(lambda: self._refund_once(idempotency_key, provider_ref, amount_cents))

    def _refund_once(self, idempotency_key: str, provider_ref: str, amount_cents: int) -> RefundResult:
        with self._connections.transaction() as cur:
            cur.execute(
                "SELECT c.status, c.provider_ref, c.amount_cents, r.status AS refund_status, r.refund_ref,"
                " r.failure_code, (SELECT outage FROM sandbox_state WHERE id=1) AS outage"
                " FROM (SELECT 1) AS one LEFT JOIN sandbox_charges c ON c.idempotency_key=%s"
                " LEFT JOIN sandbox_refunds r ON r.idempotency_key=%s",
                (idempotency_key, idempotency_key),
            )
            row = cur.fetchone()
            if row["refund_status"]:
                return RefundResult(row["refund_status"], row["refund_ref"], row["failure_code"])
            if row["outage"]:
                raise TransientPaymentError("provider_unavailable: sandbox outage switched on")
            charge = ChargeResult(row["status"], row["provider_ref"]) if row["status"] else None
            result = sandbox_refund_outcome(idempotency_key, charge, row["amount_cents"] or 0, provider_ref,
                                            amount_cents)
            cur.execute(
                "INSERT IGNORE INTO sandbox_refunds (idempotency_key, charge_ref, amount_cents, status, refund_ref,"
                " failure_code) VALUES (%s, %s, %s, %s, %s, %s)",
                (idempotency_key, provider_ref[:64], max(amount_cents, 0), result.status, result.provider_ref,
                 result.failure_code),
            )
            if cur.rowcount == 0:
                # A concurrent refund of this booking got there first: its answer is the answer (a locking
                # read, so it is seen whatever this transaction's snapshot).
                cur.execute("SELECT status, refund_ref, failure_code FROM sandbox_refunds WHERE idempotency_key=%s"
                            " FOR UPDATE", (idempotency_key,))
                stored = cur.fetchone()
                result = RefundResult(stored["status"], stored["refund_ref"], stored["failure_code"])
        return result
