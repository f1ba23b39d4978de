-- A single edit's commit (after write_records.lua): checks that the records and sets it read
-- are unchanged, then writes and publishes each changed identifier.
--
-- ARGV[1] is JSON: {"lock": key, "journal": key, "records": [[key, kind, target, changed_at,
-- changed_by, reason]...], "sets": [[key, member...]...]} (a missing field reads as "");
-- then the prefix, the time, the author and the records (see write_records.lua).
-- Answers "ok", "locked", "unfinished" or "conflict".
local plan = cjson.decode(ARGV[1])
if redis.call('EXISTS', plan.lock) == 1 then return 'locked' end
if redis.call('EXISTS', plan.journal) == 1 then return 'unfinished' end
for _, r in ipairs(plan.records) do
  local now = redis.call('HMGET', r[1], 'kind', 'target', 'changed_at', 'changed_by', 'reason')
  for i = 1, 5 do
    if (now[i] or '') ~= r[i + 1] then return 'conflict' end
  end
end
for _, s in ipairs(plan.sets) do
  if redis.call('SCARD', s[1]) ~= #s - 1 then return 'conflict' end
  for i = 2, #s do
    if redis.call('SISMEMBER', s[1], s[i]) == 0 then return 'conflict' end
  end
end
local p = ARGV[2]
write_records(5, p, ARGV[3], ARGV[4])
for i = 5, #ARGV, 7 do
  redis.call('PUBLISH', p .. 'invalidate', ARGV[i])
end
return 'ok'
