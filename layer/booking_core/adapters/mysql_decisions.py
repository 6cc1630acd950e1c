"""The `decisions` table: the final decision per request key, the write side's record for idempotent replay."""
from __future__ import annotations

import json

from booking_core.adapters.mysql import Cursor
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


def decision_from_json(decision_json: str) -> Decision:
    """A decision as stored in decision_json."""
    return Decision.from_dict(json.loads(decision_json))
