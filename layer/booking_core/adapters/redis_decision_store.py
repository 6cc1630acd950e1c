"""The short-lived decision store in Redis, shared by every API instance.

Per booking key:
- `{prefix}req:{key}`   hash: status, request_hash, decision (JSON), request (JSON: what a re-drive publishes
                        again), redrives; TTL = DECISION_TTL_S
- `{prefix}wake:{key}`  list: the listener pushes one token per decision; waiters BLPOP it
Per user:
- `{prefix}pending:{user_id}` sorted set: the user's keys awaiting a decision, score = claim time (ms); a key
  leaves it when any non-pending decision (final or queued) is saved, or after PENDING_STALE_S (a lost request
  must not hold the user's quota for ever); the set expires with its newest member.
For the whole store:
- `{prefix}pending` sorted set: every key awaiting a decision, score = claim (or last re-drive) time (ms); the
  maintenance sweep re-drives the ones waiting too long (`stranded`) and drops the ones the store has forgotten.
The entry is written *before* the request is published, so a decision can never arrive for a key
that nobody is watching; the wake list keeps the token even if the waiter has not started waiting yet.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import redis

from booking_core import config
from booking_core.adapters.redis_client import PrefixedRedis
from booking_core.domain.model import (
    PENDING,
    Decision,
    RequestBooking,
    ValidationError,
    owner_of_booking_key,
    parse_booking_request,
)
from booking_core.ports import StoreUnavailable

# A final decision (confirmed/rejected) is never replaced by a non-final one (pending/queued), so a late
# "queued" message cannot hide the answer; then wake the waiters. A key no longer pending leaves the store's
# pending set (KEYS[3]) and its user's (KEYS[4], when the key names a user).
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
if ARGV[1] ~= 'pending' then
  redis.call('ZREM', KEYS[3], ARGV[6])
  if KEYS[4] then
    redis.call('ZREM', KEYS[4], ARGV[6])
  end
end
return 1
"""

# Claim in one round trip: a new key is marked pending with its request (unless its user is at the limit of keys
# awaiting a decision: then {2} and nothing is written); a known key returns what is stored.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  local limit = tonumber(ARGV[5])
  if limit > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[4]) - tonumber(ARGV[6]))
    if redis.call('ZCARD', KEYS[2]) >= limit then
      return {2}
    end
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[7])
    redis.call('PEXPIRE', KEYS[2], ARGV[6])
  end
  redis.call('HSET', KEYS[1], 'request_hash', ARGV[1], 'status', 'pending', 'decision', ARGV[2],
             'request', ARGV[8])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[7])
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
# Longest single BLPOP of a wait: below the client's socket timeout (REDIS_SOCKET_TIMEOUT_S, at least 3 s), which
# would otherwise end a longer block with a TimeoutError; a wait is as many slices as its timeout needs.
BLOCK_SLICE_S = 2.0


_F = TypeVar("_F", bound=Callable[..., Any])


def _store_errors(method: _F) -> _F:
    """Redis failures leave as the port's StoreUnavailable (callers know ports, not redis-py)."""
    @functools.wraps(method)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"decision store: {exc!r}") from exc
    return cast(_F, wrapped)


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

    def _pending_set(self, user_id: int) -> str:
        return f"{self.prefix}pending:{user_id}"

    @property
    def _all_pending(self) -> str:
        return f"{self.prefix}pending"

    @_store_errors
    def claim(self, booking_key: str, request: RequestBooking,
              max_pending: int = 0) -> tuple[bool, str | None, Decision | None] | None:
        """Mark the key pending with its request if it is new (and its user below `max_pending` keys awaiting a
        decision, when that is set). Returns (created, stored request_hash, stored decision), or None for a new key
        over the limit."""
        entry, _ = self._keys(booking_key)
        pending = json.dumps({"booking_key": booking_key, "status": PENDING})
        request_hash = request.fingerprint()
        reply = self._script(_CLAIM)(
            keys=[entry, self._pending_set(request.user_id), self._all_pending],
            args=[request_hash, pending, self.ttl_s, _now_ms(), max_pending, int(config.pending_stale_s() * 1000),
                  booking_key, json.dumps(request.to_dict())])
        if reply[0] == 2:
            return None
        if reply[0] == 1:
            return True, request_hash, None
        _, stored_hash, decision_json = reply
        return False, stored_hash, _decoded(decision_json)

    @_store_errors
    def save(self, decision: Decision) -> bool:
        """Store a decision and wake its waiters; False when a final decision was already there."""
        entry, wake = self._keys(decision.booking_key)
        owner = owner_of_booking_key(decision.booking_key)
        return bool(self._script(_SAVE)(
            keys=[entry, wake, self._all_pending] + ([self._pending_set(owner)] if owner is not None else []),
            args=[decision.status, json.dumps(decision.to_dict()), "1" if decision.is_final else "0",
                  self.ttl_s, WAKE_TTL_S, decision.booking_key],
        ))

    @_store_errors
    def save_many(self, decisions: list[Decision]) -> list[bool]:
        """`save` for each decision, in order, in one round trip (a pipeline of the same script)."""
        if not decisions:
            return []
        script = self._script(_SAVE)
        calls = []
        for decision in decisions:
            entry, wake = self._keys(decision.booking_key)
            owner = owner_of_booking_key(decision.booking_key)
            keys = [entry, wake, self._all_pending] + ([self._pending_set(owner)] if owner is not None else [])
            calls.append((len(keys), *keys, decision.status, json.dumps(decision.to_dict()),
                          "1" if decision.is_final else "0", self.ttl_s, WAKE_TTL_S, decision.booking_key))
        replies = self._evalsha_all(script, calls)
        return [bool(reply) for reply in replies]

    def _evalsha_all(self, script: Any, calls: list[tuple]) -> list[Any]:
        """EVALSHA each call in one pipeline; a server that does not know the script (restarted, flushed) is given
        it and asked again for those calls only. (redis-py's own scripts in a pipeline ask SCRIPT EXISTS first: a
        second round trip every time.)"""
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for index in todo:
                pipe.evalsha(script.sha, *calls[index])
            results = pipe.execute(raise_on_error=False)
            missing = []
            for index, result in zip(todo, results, strict=True):
                if isinstance(result, redis.exceptions.NoScriptError) and attempt == 0:
                    missing.append(index)
                elif isinstance(result, Exception):
                    raise result
                else:
                    replies[index] = result
            if not missing:
                break
            self.redis.script_load(script.script)
            todo = missing
        return replies

    @_store_errors
    def release(self, booking_key: str, user_id: int) -> None:
        entry, wake = self._keys(booking_key)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(entry, wake)
        pipe.zrem(self._pending_set(user_id), booking_key)
        pipe.zrem(self._all_pending, booking_key)
        pipe.execute()

    @_store_errors
    def stranded(self, older_than_s: float, limit: int) -> list[tuple[str, RequestBooking | None, int]]:
        """Keys pending for longer than `older_than_s` since their claim or last re-drive: (key, request, re-drives so
        far). Keys the store has forgotten (TTL) or that were decided are dropped from its pending set."""
        redis = self.redis
        keys = redis.zrangebyscore(self._all_pending, "-inf", _now_ms() - int(older_than_s * 1000),
                                   start=0, num=limit)
        pipe = redis.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(self._keys(key)[0], "status", "request", "redrives")
        found, gone = [], []
        for key, (status, request_json, redrives) in zip(keys, pipe.execute() if keys else [], strict=True):
            if status != PENDING or request_json is None:
                gone.append(key)
                continue
            try:
                request: RequestBooking | None = parse_booking_request(json.loads(request_json), today=dt.date.min)
            except (ValueError, ValidationError):
                request = None
            found.append((key, request, int(redrives or 0)))
        if gone:
            redis.zrem(self._all_pending, *gone)
        return found

    @_store_errors
    def mark_redriven(self, booking_key: str) -> None:
        """Count a re-drive and restart the key's clock in the pending set."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(self._keys(booking_key)[0], "redrives", 1)
        pipe.zadd(self._all_pending, {booking_key: _now_ms()})
        pipe.execute()

    @_store_errors
    def get(self, booking_key: str) -> Decision | None:
        entry, _ = self._keys(booking_key)
        return _decoded(self.redis.hget(entry, "decision"))

    @_store_errors
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
            popped = self.redis.blpop([wake], timeout=min(max(remaining, 0.01), BLOCK_SLICE_S))
            if popped is None:
                decision = self.get(booking_key)
                continue
            decision = _decoded(self._script(_TAKEN)(keys=[entry, wake], args=[WAKE_TTL_S]))
        return decision


def _now_ms() -> int:
    return int(time.time() * 1000)


def _decoded(decision_json: str | None) -> Decision | None:
    return Decision.from_dict(json.loads(decision_json)) if decision_json else None
