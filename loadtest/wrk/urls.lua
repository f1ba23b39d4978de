-- wrk script: replays a list of request paths.
--   wrk -t2 -c10 -d20s --latency -s urls.lua http://127.0.0.1:PORT -- LIST PREFIX
-- LIST has one path per line (from gen-urls.py); PREFIX ("/iiif/", "/iiif/2/", ...)
-- goes in front of each. Each thread walks the whole list from its own offset, so
-- every target gets the same requests. done() prints one machine-readable line:
--   RESULT {"requests":...,"p50_us":...,...}

local thread_count = 0

function setup(thread)
   thread:set("thread_index", thread_count)
   thread_count = thread_count + 1
end

local requests_list = {}
local n_requests = 0
local position = 0

function init(args)
   local list, prefix = args[1], args[2] or "/"
   if list == nil then
      error("usage: wrk ... -s urls.lua URL -- LIST [PREFIX]")
   end
   for line in io.lines(list) do
      if #line > 0 then
         n_requests = n_requests + 1
         requests_list[n_requests] = wrk.format("GET", prefix .. line)
      end
   end
   if n_requests == 0 then
      error("no paths in " .. list)
   end
   -- A prime stride keeps the threads apart in the list.
   position = ((thread_index or 0) * 7919) % n_requests
end

function request()
   position = position % n_requests + 1
   return requests_list[position]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
      '"write":%d,"status":%d,"timeout":%d,"mean_us":%.1f,"p50_us":%d,"p90_us":%d,' ..
      '"p99_us":%d,"max_us":%d}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read,
      e.write, e.status, e.timeout, latency.mean, latency:percentile(50),
      latency:percentile(90), latency:percentile(99), latency.max))
end
