-- wrk script for bench/bench_replies.py: every request is one Graph change notification for a new channel reply
-- (a unique resource, so the endpoint stores each one). `wrk ... -- OFFSET` starts the reply numbers at OFFSET.
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  offset = tonumber(args[1] or "0") + id * 10000000
  counter = 0
end

local template = '{"value":[{"subscriptionId":"sub-1","clientState":"' .. string.rep("s", 64) .. '",' ..
  '"changeType":"created","tenantId":"00000000-0000-4000-8000-000000000001",' ..
  '"resource":"teams(\'g\')/channels(\'c\')/messages(\'1\')/replies(\'%d\')",' ..
  '"subscriptionExpirationDateTime":"2026-12-31T00:00:00Z"}]}'

function request()
  counter = counter + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, string.format(template, offset + counter))
end
