-- One batch of an import (after write_records.lua): writes the records, drops as many entries
-- from the head of the journal, and keeps the import lock alive.
--
-- Arguments: journal key, entries to drop, lock key, lock time-to-live (ms), prefix, time,
-- author, then the records (see write_records.lua).
write_records(8, ARGV[5], ARGV[6], ARGV[7])
local dropped = tonumber(ARGV[2])
if dropped > 0 then redis.call('LTRIM', ARGV[1], dropped, -1) end
redis.call('PEXPIRE', ARGV[3], ARGV[4])
return 0
