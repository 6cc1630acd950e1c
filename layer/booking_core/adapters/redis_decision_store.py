"""The short-lived decision store in Redis, shared by every API instance.

Per booking key:
- `{prefix}req:{key}`   hash: status, request_hash, decision (JSON), TTL = DECISION_TTL_S
- `{prefix}wake:{key}`  list: the listener pushes one token per decision; waiters BLPOP it
The entry is written *before* the request is published, so a decision can never arrive for a key
that nobody is watching; the wake list keeps the token even if the waiter has not started waiting yet.
"""
from __future__ import annotations

import json
import time
from typing import Any

import redis

from booking_core import config
from booking_core.adapters.redis_client import PrefixedRedis
from booking_core.domain.model import PENDING, Decision

# A final decision (confirmed/rejected) is never replaced by a non-final one (pending/queued), so a late
# "queued" message cannot hide the answer; then wake the waiters.
_SAVE = """
local current = redis.call('HGET', KEYS[1], 'status')
local incoming_final = ARGV[3] == '1'
if (current == 'confirmed' or current == 'rejected') and not incoming_final then
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'decision', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('RPUSH', KEYS[2], '1')
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
"""

# Claim in one round trip: mark the key pending if it is new, else return what is stored.
_CLAIM = """
if redis.call('HSETNX', KEYS[1], 'request_hash', ARGV[1]) == 1 then
  redis.call('HSETNX', KEYS[1], 'status', 'pending')
  redis.call('HSETNX', KEYS[1], 'decision', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return {1}
end
return {0, redis.call('HGET', KEYS[1], 'request_hash'), redis.call('HGET', KEYS[1], 'decision')}
"""

# After a waiter popped a token: read the decision and, if it is no longer pending, pass the token on (for a
# second waiter on the key) with the list's TTL, which BLPOP dropped when it emptied the list. One round trip.
_TAKEN = """
local decision = redis.call('HGET', KEYS[1], 'decision')
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then
  redis.call('RPUSH', KEYS[2], '1')
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
return decision
"""

WAKE_TTL_S = 120


class RedisDecisionStore(PrefixedRedis):
    def __init__(self, client: redis.Redis | None = None, prefix: str | None = None, ttl_s: int | None = None):
        super().__init__(client, prefix)
        self._ttl_s = ttl_s
        self._scripts: dict = {}

    def _script(self, source: str) -> Any:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.redis.register_script(source)
        return script

    @property
    def ttl_s(self) -> int:
        return self._ttl_s or config.decision_ttl_s()

    def _keys(self, booking_key: str) -> tuple[str, str]:
        return f"{self.prefix}req:{booking_key}", f"{self.prefix}wake:{booking_key}"

    def claim(self, booking_key: str, request_hash: str) -> tuple[bool, str | None, Decision | None]:
        """Mark the key pending if it is new. Returns (created, stored request_hash, stored decision)."""
        entry, _ = self._keys(booking_key)
        pending = json.dumps({"booking_key": booking_key, "status": PENDING})
        reply = self._script(_CLAIM)(keys=[entry], args=[request_hash, pending, self.ttl_s])
        if reply[0] == 1:
            return True, request_hash, None
        _, stored_hash, decision_json = reply
        return False, stored_hash, _decoded(decision_json)

    def save(self, decision: Decision) -> bool:
        """Store a decision and wake its waiters; False when a final decision was already there."""
        entry, wake = self._keys(decision.booking_key)
        return bool(self._script(_SAVE)(
            keys=[entry, wake],
            args=[decision.status, json.dumps(decision.to_dict()), "1" if decision.is_final else "0",
                  self.ttl_s, WAKE_TTL_S],
        ))

    def get(self, booking_key: str) -> Decision | None:
        entry, _ = self._keys(booking_key)
        return _decoded(self.redis.hget(entry, "decision"))

    def wait_decided(self, booking_key: str, timeout_s: float, known_pending: bool = False) -> Decision | None:
        """Block until the key leaves `pending` (decided or queued) or timeout_s passes; return the latest state.

        Woken by BLPOP on the key's wake list, never by polling. A waiter that consumes the token passes it
        on (RPUSH) so a second waiter on the same key (a client retrying with its Idempotency-Key) wakes too.
        `known_pending`: the caller has just claimed the key, so the first read is skipped (a decision that came
        since has left its token, so BLPOP returns at once).
        """
        entry, wake = self._keys(booking_key)
        deadline = time.monotonic() + timeout_s
        decision = Decision(booking_key, PENDING) if known_pending else self.get(booking_key)
        while decision is None or decision.status == PENDING:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            popped = self.redis.blpop([wake], timeout=max(remaining, 0.01))
            if popped is None:
                decision = self.get(booking_key)
                continue
            decision = _decoded(self._script(_TAKEN)(keys=[entry, wake], args=[WAKE_TTL_S]))
        return decision


def _decoded(decision_json: str | None) -> Decision | None:
    return Decision.from_dict(json.loads(decision_json)) if decision_json else None
