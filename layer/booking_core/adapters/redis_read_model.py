"""The Redis side of replication: reads stored row hashes and applies plans under the key prefix."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from booking_core.adapters.redis_client import PrefixedRedis
from booking_core.domain.read_model import (
    HASH,
    LOADED_MARKER,
    REGISTRY_BIG_IDS,
    REGISTRY_CHUNK,
    REGISTRY_FAMILIES,
    REGISTRY_INDEXES,
    REGISTRY_MARKER,
    STRING,
    ZSET,
    Plan,
    family_key,
    is_model_key,
    registry_chunks_key,
    registry_ids_key,
    row_key,
)

SCAN_BATCH = 1000

# A plan's writes in one script call: the ops travel as one JSON argument, so the replicator packs one command per
# batch instead of one per write (redis-py's packing and reply parsing were a third of its CPU). A script runs
# atomically like MULTI/EXEC; like EXEC it applies every op and then reports the first error (pcall), so a
# wrong-typed key fails the batch as before instead of stopping halfway. Each op's arguments come flat, as the
# command takes them (field, value, ... / score, member, ...): a Lua loop re-flattening a JSON object doubled the
# script's time. They go in slices of 1,000 (Lua's unpack has a stack limit). A number from cjson reaches
# redis.call as a string of its exact double value.
# Registers a (relative) model key in the registry (read_model.REGISTRY_*): a bit for `{name}:{id}[:{suffix}]`,
# a set member for the named indexes and for ids past a Lua number's exact range.
_REGISTER = f"""
local registered, chunks = {{}}, {{}}
local function register(prefix, key)
  if registered[key] then return end
  registered[key] = true
  local name, id, suffix = string.match(key, '^(%a+):(%d+)(.*)$')
  if not name then
    redis.call('SADD', prefix .. '{REGISTRY_INDEXES}', key)
  elseif #id > 15 then
    redis.call('SADD', prefix .. '{REGISTRY_BIG_IDS}', key)
  else
    local family, n = name .. suffix, tonumber(id)
    local chunk = math.floor(n / {REGISTRY_CHUNK})
    local chunk_key = family .. ':' .. chunk
    if not chunks[chunk_key] then
      chunks[chunk_key] = true
      redis.call('SADD', prefix .. '{registry_chunks_key("")}' .. family, chunk)
    end
    redis.call('SETBIT', prefix .. '{registry_ids_key("", 0)[:-len(":0")]}' .. chunk_key, n % {REGISTRY_CHUNK}, 1)
  end
end
"""
APPLY_SCRIPT = _REGISTER + """
local prefix, ops = ARGV[1], cjson.decode(ARGV[2])
local COMMANDS = {hset = 'HSET', zadd = 'ZADD', hdel = 'HDEL', zrem = 'ZREM'}
local failed
local function run(...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err and not failed then failed = reply.err end
end
local function sliced(command, key, list)
  for i = 1, #list, 1000 do run(command, key, unpack(list, i, math.min(i + 999, #list))) end
end
for _, op in ipairs(ops) do
  local name, key, arg = op[1], prefix .. op[2], op[3]
  if name == 'delete' then
    run('DEL', key)
  elseif name == 'set' then
    register(prefix, op[2])
    run('SET', key, arg)
  else
    if name == 'hset' or name == 'zadd' then register(prefix, op[2]) end
    sliced(COMMANDS[name], key, arg)
  end
end
if failed then return redis.error_reply(failed) end
return #ops
"""
# Registers keys found by a SCAN (reconcile's first orphan pass over a model written before the registry).
REGISTER_SCRIPT = _REGISTER + """
for i = 2, #ARGV do register(ARGV[1], ARGV[i]) end
return #ARGV - 1
"""
# The stored hashes of a batch's rows in one call and one JSON reply (each a flat field/value list, {} when none):
# json.loads in C instead of a reply parsed per key. A wrong-typed key fails the call, as HGETALL did.
STORED_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGETALL', key) end
return cjson.encode(out)
"""


_MERGEABLE = ("hset", "hdel", "zadd", "zrem")


def coalesce(ops: list[tuple]) -> list[tuple[str, str, Any]]:
    """The plan's ops as (name, key, argument), where an op follows the last op on the same key and is of the
    same kind, merged into it: one ZADD of 500 members to the price index instead of 500 commands (replication's
    batches are mostly such runs). Merging is safe because nothing in between touched that key, and ops on
    other keys commute."""
    out: list[tuple[str, str, Any]] = []
    last_on: dict[str, int] = {}
    for op in ops:
        name, key = op[0], op[1]
        if name not in ("delete", "set", *_MERGEABLE):
            raise ValueError(f"unknown plan op {name!r}")
        at = last_on.get(key)
        if at is not None and out[at][0] == name and name in _MERGEABLE:
            merged = out[at][2]
            if name == "zadd":
                merged[op[2]] = op[3]
            elif name == "zrem":
                merged.append(op[2])
            elif name == "hset":
                merged.update(op[2])
            else:
                merged.extend(op[2])
            continue
        arg: Any = ({op[2]: op[3]} if name == "zadd" else [op[2]] if name == "zrem"
                       else dict(op[2]) if name == "hset" else list(op[2]) if name == "hdel"
                       else op[2] if name == "set" else None)
        out.append((name, key, arg))
        last_on[key] = len(out) - 1
    return out


_SCRIPTS: dict[tuple[int, str], Any] = {}


def _flat(op: tuple[str, str, Any]) -> tuple[str, str, Any]:
    """A coalesced op with its arguments as the command takes them: HSET field value ..., ZADD score member ..."""
    name, key, arg = op
    if name == "hset":
        return name, key, [x for pair in arg.items() for x in pair]
    if name == "zadd":
        return name, key, [x for member, score in arg.items() for x in (score, member)]
    return op


class RedisReadModel(PrefixedRedis):
    """Writes each plan in one atomic script call, so a reader never sees a row hash without its memberships."""

    def _script(self, source: str) -> Any:
        # Registered once per client: redis-py sends EVALSHA and falls back to EVAL after a Redis restart.
        script = _SCRIPTS.get((id(self.redis), source))
        if script is None:
            script = _SCRIPTS[(id(self.redis), source)] = self.redis.register_script(source)
        return script

    def stored(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], dict[str, str] | None]:
        """The hash currently stored for each (entity, id); None where there is none."""
        if not keys:
            return {}
        p = self.prefix
        reply = json.loads(self._script(STORED_SCRIPT)(keys=[p + row_key(e, i) for e, i in keys]))
        return {key: dict(zip(flat[::2], flat[1::2], strict=True)) if flat else None
                for key, flat in zip(keys, reply, strict=True)}

    def execute(self, plan: Plan) -> None:
        """Apply every write of the plan, prefixed, in one atomic script call (writes to one key merged: see
        coalesce)."""
        if not plan.ops:
            return
        self._script(APPLY_SCRIPT)(args=[self.prefix, json.dumps([_flat(op) for op in coalesce(plan.ops)],
                                                                 separators=(",", ":"))])

    def model_keys(self) -> list[str]:
        """Every key of the read model under the prefix (relative), never the decision store's keys."""
        p = self.prefix
        found = []
        for key in self.redis.scan_iter(match=p + "*", count=SCAN_BATCH):
            relative = key[len(p):]
            if is_model_key(relative):
                found.append(relative)
        return found

    def snapshot(self) -> dict[str, tuple[str, dict]]:
        """The read model as it is: relative key -> (type, hash fields | zset member scores)."""
        keys = self.model_keys()
        p = self.prefix
        found: dict[str, tuple[str, dict]] = {}
        for start in range(0, len(keys), SCAN_BATCH):
            chunk = keys[start:start + SCAN_BATCH]
            pipe = self.redis.pipeline(transaction=False)
            for key in chunk:
                pipe.type(p + key)
            types = pipe.execute()
            pipe = self.redis.pipeline(transaction=False)
            for key, kind in zip(chunk, types, strict=True):
                if kind == HASH:
                    pipe.hgetall(p + key)
                elif kind == ZSET:
                    pipe.zrange(p + key, 0, -1, withscores=True)
                elif kind == STRING:
                    pipe.get(p + key)
                else:
                    pipe.exists(p + key)
            for key, kind, value in zip(chunk, types, pipe.execute(), strict=True):
                if kind == "none":
                    continue  # deleted while scanning
                if kind == ZSET:
                    value = dict(value)
                elif kind not in (HASH, STRING):
                    value = {}
                found[key] = (kind, value)
        return found

    # -- reconcile, a chunk at a time (bounded memory whatever the catalogue) ---------------------------------
    def scan_model_keys(self, count: int = SCAN_BATCH, full: bool = False) -> Iterator[list[str]]:
        """The read model's keys (relative) in chunks, never the decision store's: walked from the registry the
        replicator keeps (never visiting another key of the database), or, with `full` or while the registry is
        not known complete, by one SCAN of the prefix that registers what it finds and then marks it complete."""
        if full or not self.redis.exists(self.prefix + REGISTRY_MARKER):
            yield from self._scanned_model_keys(count)
            self.redis.set(self.prefix + REGISTRY_MARKER, "1")
            return
        chunk: list[str] = []
        for key in self._registered_keys():
            chunk.append(key)
            if len(chunk) >= count:
                yield from self._existing(chunk)
                chunk = []
        if chunk:
            yield from self._existing(chunk)

    def _scanned_model_keys(self, count: int) -> Iterator[list[str]]:
        p = self.prefix
        register = self._script(REGISTER_SCRIPT)
        chunk: list[str] = []
        for key in self.redis.scan_iter(match=p + "*", count=count):
            relative = key[len(p):]
            if is_model_key(relative):
                chunk.append(relative)
                if len(chunk) >= count:
                    register(args=[p, *chunk])
                    yield chunk
                    chunk = []
        if chunk:
            register(args=[p, *chunk])
            yield chunk

    def _registered_keys(self) -> Iterator[str]:
        """Every registered key, a bitmap chunk at a time (its bits set = ids), then the sets' members."""
        p = self.prefix
        for family in REGISTRY_FAMILIES:
            for chunk in sorted(int(c) for c in self.redis.smembers(p + registry_chunks_key(family))):
                bitmap = self.redis.execute_command("GET", p + registry_ids_key(family, chunk), NEVER_DECODE=True)
                base = chunk * REGISTRY_CHUNK
                for at, byte in enumerate(bitmap or b""):
                    if byte:
                        for bit in range(8):
                            if byte & (0x80 >> bit):  # Redis numbers a byte's bits from its most significant
                                yield family_key(family, base + at * 8 + bit)
        for registry in (REGISTRY_INDEXES, REGISTRY_BIG_IDS):
            yield from (key for key in self.redis.sscan_iter(p + registry, count=SCAN_BATCH) if is_model_key(key))

    def _existing(self, keys: list[str]) -> Iterator[list[str]]:
        """The keys that exist; the registry forgets the others (keys replication deleted or Redis emptied)."""
        p = self.prefix
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.exists(p + key)
        found = pipe.execute()
        gone = [key for key, exists in zip(keys, found, strict=True) if not exists]
        if gone:
            self._forget(gone)
        present = [key for key, exists in zip(keys, found, strict=True) if exists]
        if present:
            yield present

    def _forget(self, keys: list[str]) -> None:
        p = self.prefix
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            name, _, rest = key.partition(":")
            raw_id, _, suffix = rest.partition(":")
            family = f"{name}:{suffix}" if suffix else name
            if raw_id.isdigit() and family in REGISTRY_FAMILIES and len(raw_id) <= 15:
                entity_id = int(raw_id)
                pipe.setbit(p + registry_ids_key(family, entity_id // REGISTRY_CHUNK), entity_id % REGISTRY_CHUNK, 0)
            else:
                pipe.srem(p + (REGISTRY_BIG_IDS if raw_id.isdigit() else REGISTRY_INDEXES), key)
        pipe.execute()

    def types(self, keys: list[str]) -> dict[str, str]:
        """Each key's Redis type ("none" where it does not exist)."""
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.type(self.prefix + key)
        return dict(zip(keys, pipe.execute(), strict=True))

    def hashes(self, keys: list[str]) -> dict[str, tuple[str, dict]]:
        """(type, fields) of each existing key: the fields where it is a hash, {} where it is of another type.
        One HGETALL per key; TYPE only for the keys it refused (wrong type)."""
        if not keys:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(self.prefix + key)
        replies = pipe.execute(raise_on_error=False)
        refused = [key for key, reply in zip(keys, replies, strict=True) if isinstance(reply, Exception)]
        found: dict[str, tuple[str, dict]] = {key: (HASH, reply) for key, reply in zip(keys, replies, strict=True)
                                              if reply and not isinstance(reply, Exception)}
        found.update({key: (kind, {}) for key, kind in self.types(refused).items() if kind != "none"})
        return found

    def texts(self, keys: list[str]) -> dict[str, str]:
        """The value of each string key (a listing's JSON) that exists and is a string: one MGET."""
        if not keys:
            return {}
        values = self.redis.mget([self.prefix + key for key in keys])  # nil for a missing or non-string key
        return {key: value for key, value in zip(keys, values, strict=True) if value is not None}

    def scores(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], float | None]:
        """The score of each (sorted set, member), None where it is not a member (or the key is no sorted set).
        One ZMSCORE per key: a chunk of listings asks the price index once, not once per listing."""
        by_key: dict[str, list[str]] = {}
        for key, member in pairs:
            by_key.setdefault(key, []).append(member)
        pipe = self.redis.pipeline(transaction=False)
        for key, members in by_key.items():
            pipe.zmscore(self.prefix + key, members)
        found: dict[tuple[str, str], float | None] = {}
        for (key, members), reply in zip(by_key.items(), pipe.execute(raise_on_error=False) if by_key else [],
                                         strict=True):
            scores = [None] * len(members) if isinstance(reply, Exception) else reply
            found.update({(key, member): score for member, score in zip(members, scores, strict=True)})
        return found

    def members(self, key: str, count: int = SCAN_BATCH) -> Iterator[dict[str, float]]:
        """A sorted set's members and scores in chunks (ZSCAN), so the price index is never held whole."""
        chunk: dict[str, float] = {}
        for member, score in self.redis.zscan_iter(self.prefix + key, count=count):
            chunk[member] = score
            if len(chunk) >= count:
                yield chunk
                chunk = {}
        if chunk:
            yield chunk

    def size(self, key: str, kind: str) -> int:
        """How many members or fields a key of this type holds (1 for other types)."""
        command = {HASH: "HLEN", ZSET: "ZCARD", "set": "SCARD", "list": "LLEN"}.get(kind)
        return int(self.redis.execute_command(command, self.prefix + key)) if command else 1

    def is_loaded(self) -> bool:
        """Whether a full load has run since this Redis last lost its data."""
        return bool(self.redis.exists(self.prefix + LOADED_MARKER))

    def mark_loaded(self) -> None:
        """Set after a full load (reconcile); Redis losing its data loses the marker with it."""
        self.redis.set(self.prefix + LOADED_MARKER, "1")
