"""The sandbox payment provider: follows Stripe's test tokens, its ledger in MySQL.

tok_visa, tok_mastercard → succeeded; tok_chargeDeclined, tok_insufficientFunds → declined;
tok_processingError → TransientPaymentError (retryable). Any other token is declined as invalid.
Charges are idempotent by key: the same key returns the first result and never charges twice.
"""
from __future__ import annotations

import hashlib

from booking_core.adapters.mysql import ConnectionHolder
from booking_core.ports import DECLINED, SUCCEEDED, ChargeResult, TransientPaymentError

SUCCEEDING_TOKENS = frozenset({"tok_visa", "tok_mastercard", "tok_amex"})
DECLINING_TOKENS = frozenset({"tok_chargeDeclined", "tok_insufficientFunds"})
TRANSIENT_TOKENS = frozenset({"tok_processingError"})


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
    """Sandbox whose ledger lives in MySQL (tables sandbox_charges, sandbox_state), like a provider's servers:
    idempotency holds across processes and restarts, and an outage can be switched on for tests."""

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
