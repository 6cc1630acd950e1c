"""The `decisions` table (the final decision per request key, the write side's record for idempotent replay), and a
request's status as MySQL knows it."""
from __future__ import annotations

import json

from booking_core.adapters.mysql import ConnectionHolder, Cursor
from booking_core.domain import model
from booking_core.domain.model import Decision


def insert_decision(cur: Cursor, decision: Decision, request_hash: str) -> Decision:
    """Record a final decision in the caller's transaction; a key that already has one keeps it."""
    cur.execute(
        "INSERT INTO decisions (booking_key, request_hash, status, reason, booking_id, decision_json)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE booking_key = booking_key",
        (decision.booking_key, request_hash, decision.status, decision.reason, decision.booking_id,
         json.dumps(decision.to_dict())),
    )
    return decision


def insert_decisions(cur: Cursor, decisions: list[tuple[Decision, str]]) -> None:
    """`insert_decision` for many (decision, request hash) pairs, in one statement."""
    if decisions:
        cur.executemany(
            "INSERT INTO decisions (booking_key, request_hash, status, reason, booking_id, decision_json)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE booking_key = booking_key",
            [(d.booking_key, request_hash, d.status, d.reason, d.booking_id, json.dumps(d.to_dict()))
             for d, request_hash in decisions],
        )


def decision_from_json(decision_json: str) -> Decision:
    """A decision as stored in decision_json."""
    return Decision.from_dict(json.loads(decision_json))


class MySqlRequestLog:
    """A request's status from MySQL: its final decision, else `queued` while its retry row is open, else `pending`
    while its booking is held; None when MySQL has never seen the key (it may still be on its way)."""

    def __init__(self, connections: ConnectionHolder):
        self._connections = connections

    def status_of(self, booking_key: str) -> Decision | None:
        with self._connections.transaction() as cur:
            cur.execute(
                "SELECT d.decision_json, r.reason AS retry_reason, r.status AS retry_status, b.status AS booking_status"
                " FROM (SELECT 1) AS one LEFT JOIN decisions d ON d.booking_key=%s"
                " LEFT JOIN booking_retries r ON r.booking_key=%s LEFT JOIN bookings b ON b.booking_key=%s",
                (booking_key, booking_key, booking_key))
            row = cur.fetchone()
        if row["decision_json"]:
            return decision_from_json(row["decision_json"])
        if row["retry_status"] in ("pending", "in_flight"):
            return model.queued(booking_key, row["retry_reason"])
        if row["booking_status"] == "held":
            return Decision(booking_key, model.PENDING)
        return None
