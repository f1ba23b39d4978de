-- The one place records are written, shared by single edits and imports (see store/scripts.rs).
--
-- write_records(first, p, at, by) writes the records described by ARGV[first..], seven
-- arguments each: identifier, whether it had a record ("1"/"0"), its target before (or ""),
-- its kind after (or "" to remove the record), its target after (or ""), its reason after, and
-- its history entry (JSON). It keeps `ids` and `pointing:*` in step and caps the history at
-- 100 entries (HISTORY_LIMIT). The key names are those of keys.rs, built from the prefix p.
local function write_records(first, p, at, by)
  -- New identifiers join `ids` a thousand at a time (one ZADD per record costs twice as much).
  local added = {}
  local function add_ids()
    if #added > 0 then redis.call('ZADD', p .. 'ids', unpack(added)) end
    added = {}
  end
  for i = first, #ARGV, 7 do
    local id, had, old_t, kind, t, reason, entry =
      ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
    local key = p .. 'redirect:' .. id
    if kind == '' then
      redis.call('DEL', key)
      redis.call('ZREM', p .. 'ids', id)
    else
      if t ~= '' then
        redis.call('HSET', key, 'kind', kind, 'changed_at', at, 'changed_by', by,
                   'reason', reason, 'target', t)
      else
        redis.call('HSET', key, 'kind', kind, 'changed_at', at, 'changed_by', by,
                   'reason', reason)
        if had == '1' then redis.call('HDEL', key, 'target') end
      end
      if had == '0' then
        added[#added + 1] = 0
        added[#added + 1] = id
        if #added >= 2000 then add_ids() end
      end
    end
    if old_t ~= t then
      if old_t ~= '' then redis.call('SREM', p .. 'pointing:' .. old_t, id) end
      if t ~= '' then redis.call('SADD', p .. 'pointing:' .. t, id) end
    end
    local history = p .. 'history:' .. id
    if redis.call('LPUSH', history, entry) > 100 then
      redis.call('LTRIM', history, 0, 99)
    end
  end
  add_ids()
end
