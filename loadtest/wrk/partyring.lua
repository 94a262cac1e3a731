-- wrk script for loadtest/compare: keep-alive GET (no arguments) or POST {"message":"x..."}
-- (`-- post SIZE`) of one room, and, when wrk is done, one line that `partyring-load exec`
-- reads (loadtest/src/exec.rs):
--   partyring-load-result {"ops":N,"secs":S,"errors":E,"latency_us":{...}}
-- The request is built once per thread (no `request` function), so wrk keeps its fast
-- static-request path and sends the next request as soon as a response is complete.
--
--   wrk -t1 -c20 -d5s -s loadtest/wrk/partyring.lua http://127.0.0.1:PORT/parties/main/ROOM
--   wrk -t1 -c20 -d5s -s loadtest/wrk/partyring.lua http://127.0.0.1:PORT/parties/main/ROOM -- post 64

function init(args)
  if args[1] == "post" then
    local size = tonumber(args[2] or "64")
    wrk.method = "POST"
    wrk.body = '{"message":"' .. string.rep("x", size) .. '"}'
    wrk.headers["Content-Type"] = "application/json"
  elseif args[1] ~= nil and args[1] ~= "get" then
    error("partyring.lua: unknown mode " .. args[1] .. " (get, or post SIZE)")
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format(
    'partyring-load-result {"driver":"wrk","ops":%d,"secs":%.6f,"errors":%d,' ..
    '"errors_by_kind":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration / 1e6, errors,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
