"""Listing search as one Lua script run inside Redis: the filters are answered by the indexes, the work is capped.

Why a script: the page is found where the data is, in one round trip, without shipping candidates to Python.
Why capped: the dates filter is checked per candidate (a listing's nights hash), so a stay that almost every
listing has booked would otherwise walk the whole index; after WORK_BUDGET units the script stops and answers
what it found with a cursor at the last listing it examined, and the client goes on from there.

KEYS: the indexes to merge in (price, member) order (search_indexes(): one, or the capacity buckets).
ARGV: key prefix, max price ("+inf" or an integer), cursor price ("" for none), cursor member, limit, work
      budget, guests to check per candidate (0: none; set only above GUEST_BUCKETS), then the stay's nights.
Returns {cursor price or "", cursor member or "", the page's items as one JSON array}: a cursor when more may
follow. Each item is the listing's JSON key (listing:{id}:json, its public JSON, written with the hash by the
replicator and reconcile), or, where a listing lacks it, written out here from the hash's fields the way
decode_row() + json.dumps would (cjson escapes "/" as "\\/" and leaves non-ASCII as UTF-8: the same JSON values, other bytes).
Single instance only: the listing and nights keys it reads are derived inside the script (not in KEYS), which
Redis Cluster would refuse (as it would the bucket KEYS of different slots); the read model lives in one Redis.
docs/decisions.md (issue 18, the stored listing JSON) says why and what a cluster would need.
"""
from __future__ import annotations

import json
import re

from booking_core.domain.read_model import BOOL, FIELDS, INT, json_key

WORK_BUDGET = 4000  # units per request: one per candidate examined, plus one per night checked for it


def _fields_lua() -> str:
    """The listing's public fields as Lua tables (name, JSON kind, `"name":` label), from domain FIELDS: the
    script writes each item as decode_row() then json.dumps() would (ints as numbers, active as a bool, a missing
    field as null, the rest as strings)."""
    names, kinds, labels = [], [], []
    for name, kind in FIELDS["listings"].items():
        assert re.fullmatch(r"[a-z_]+", name), name  # safe inside a Lua literal as it is
        names.append(f"'{name}'")
        kinds.append(f"'{kind if kind in (INT, BOOL) else 'str'}'")
        labels.append(f"'{json.dumps(name)}:'")
    return (f"local FIELD_NAMES = {{{', '.join(names)}}}\n"
            f"local FIELD_KINDS = {{{', '.join(kinds)}}}\n"
            f"local FIELD_LABELS = {{{', '.join(labels)}}}\n"
            f"local JSON_SUFFIX = '{json_key(0).removeprefix('listing:0')}'\n")


SCRIPT = _fields_lua() + """
local prefix, max_price = ARGV[1], ARGV[2]
local after_price, after_member = ARGV[3], ARGV[4]
local limit, budget, check_guests = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local nights = {}
for i = 8, #ARGV do nights[#nights + 1] = ARGV[i] end
local high = math.huge
if max_price ~= '+inf' then high = tonumber(max_price) end
local CHUNK = 64  -- index members fetched per ZRANGE of one source

local sources = {}
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local rank = 0
    if after_price ~= '' then
      -- The first member after (price, member): members of equal price sit in member order between these two
      -- ranks, found by bisection, so a run of equal prices is never walked.
      rank = redis.call('ZCOUNT', key, '-inf', '(' .. after_price)
      local hi = redis.call('ZCOUNT', key, '-inf', after_price)
      while rank < hi do
        local mid = math.floor((rank + hi) / 2)
        if redis.call('ZRANGE', key, mid, mid)[1] <= after_member then rank = mid + 1 else hi = mid end
      end
    end
    sources[#sources + 1] = {key = key, rank = rank, buf = {}, pos = 1, done = false}
  end
end

local function head(s)
  if s.pos > #s.buf then
    if s.done then return nil end
    local got = redis.call('ZRANGE', s.key, s.rank, s.rank + CHUNK - 1, 'WITHSCORES')
    s.rank = s.rank + #got / 2
    if #got < 2 * CHUNK then s.done = true end
    s.buf, s.pos = {}, 1
    for i = 1, #got, 2 do
      local price = tonumber(got[i + 1])
      if price > high then s.done = true break end
      s.buf[#s.buf + 1] = {got[i], price}
    end
    if #s.buf == 0 then s.done = true return nil end
  end
  return s.buf[s.pos]
end

local found, spent, last, capped = {}, 0, nil, false
local cost = 1 + #nights
while #found <= limit do
  local best, from = nil, nil
  for _, s in ipairs(sources) do
    local h = head(s)
    if h and (best == nil or h[2] < best[2] or (h[2] == best[2] and h[1] < best[1])) then best, from = h, s end
  end
  if best == nil then break end
  if spent + cost > budget and spent > 0 then capped = true break end
  from.pos = from.pos + 1
  spent = spent + cost
  last = best
  local id = string.gsub(best[1], '^0+', '')
  local key = prefix .. 'listing:' .. id
  local ok = true
  if check_guests > 0 then
    ok = (tonumber(redis.call('HGET', key, 'max_guests')) or 0) >= check_guests
  end
  if ok and #nights > 0 then
    local booked = redis.call('HMGET', key .. ':nights', unpack(nights))
    for i = 1, #booked do
      if booked[i] then ok = false break end
    end
  end
  if ok then found[#found + 1] = {best, key} end
end

local reply = {'', ''}
local n = #found
if n > limit then
  n = limit
  reply = {string.format('%d', found[limit][1][2]), found[limit][1][1]}
elseif capped then
  reply = {string.format('%d', last[2]), last[1]}
end
-- The page as the API's JSON text: each listing's own JSON as the replicator stored it with the row (its JSON key),
-- so the API joins one string instead of decoding and re-encoding every item (that was the page's per-item cost).
-- A listing without it (written before the key existed, or damaged) is written out here from its hash instead.
local function written_out(key)
  local values = redis.call('HMGET', key, unpack(FIELD_NAMES))
  local parts = {}
  for j = 1, #FIELD_NAMES do
    local v, kind = values[j], FIELD_KINDS[j]
    if not v then
      v = 'null'
    elseif kind == 'int' then
      if not (v == '0' or string.match(v, '^%-?[1-9]%d*$')) then
        error('listing field ' .. FIELD_NAMES[j] .. ' is not an integer: ' .. key)
      end
    elseif kind == 'bool' then
      if v == '1' then v = 'true' else v = 'false' end
    else
      v = cjson.encode(v)
    end
    parts[j] = FIELD_LABELS[j] .. v
  end
  return '{' .. table.concat(parts, ',') .. '}'
end
local items = {}
for i = 1, n do
  items[i] = redis.call('GET', found[i][2] .. JSON_SUFFIX) or written_out(found[i][2])
end
reply[3] = '[' .. table.concat(items, ',') .. ']'
return reply
"""
