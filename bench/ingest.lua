-- wrk script for bench/bench_ingest.py: every request is a unique PO-confirmed Business Event (the durable server
-- stores each one). `wrk ... -- OFFSET [usmf]` starts the control numbers at OFFSET so rounds never collide;
-- `usmf` names the sandbox's seeded purchase orders (USMF-000001..USMF-000040) so a pipeline can enrich them.
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  offset = tonumber(args[1] or "0") + id * 10000000
  seeded = args[2] == "usmf"
  counter = 0
end

local template = '{"BusinessEventId":"PurchaseOrderConfirmedBusinessEvent","BusinessEventLegalEntity":"usmf",' ..
  '"ContextRecordSubject":"","ControlNumber":%d,"EventId":"9C091AF1-5BAF-4CA9-B0A4-%012X",' ..
  '"EventTime":"/Date(1697470966000)/","EventTimeIso8601":"2023-10-16T15:42:46.3440655Z",' ..
  '"InitiatingUserAADObjectId":"{C600136F-6814-41D9-8642-40CA0EC4EDD4}","LegalEntity":"usmf",' ..
  '"MajorVersion":0,"MinorVersion":0,"ParentContextRecordSubjects":[],"PurchaseJournal":"%08d-1",' ..
  '"PurchaseOrderDate":"/Date(1697414400000)/","PurchaseOrderNumber":"%s","PurchaseType":"Purch",' ..
  '"TransactionCurrencyAmount":%d.5,"TransactionCurrencyCode":"USD","VendorAccount":"US-101"}'

function request()
  counter = counter + 1
  local n = offset + counter
  local po = seeded and string.format("USMF-%06d", n % 40 + 1) or string.format("%08d", n % 100000000)
  local body = string.format(template, 5637144576 + n, n, n % 100000000, po, 1250 + n % 1000)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
