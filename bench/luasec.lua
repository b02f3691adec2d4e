-- bench child: what a Lua script writes by hand today: LuaSec's ssl.https.request (a new TCP + TLS
-- connection per call, certificate verified) and cjson.decode of the body.
--   lua5.4 bench/luasec.lua URL N      token from $BENCH_TOKEN, CA file from $BENCH_CAFILE
local https = require "ssl.https"
local ltn12 = require "ltn12"
local socket = require "socket"
local cjson = require "cjson"

local url, n = arg[1], tonumber(arg[2]) or 200
local token, cafile = os.getenv("BENCH_TOKEN"), os.getenv("BENCH_CAFILE")

local function one()
  local parts = {}
  local _, code = https.request {
    url = url, sink = ltn12.sink.table(parts),
    headers = { Authorization = "Bearer " .. token, Accept = "application/json" },
    protocol = "any", options = "all", verify = "peer", cafile = cafile,
  }
  if code ~= 200 then error("HTTP " .. tostring(code), 0) end
  return cjson.decode(table.concat(parts))
end

local rows = one().d.results
local w0, c0 = socket.gettime(), os.clock()
for _ = 1, n do rows = one().d.results end
local w1, c1 = socket.gettime(), os.clock()
io.write(("wall=%.6f cpu=%.6f n=%d rows=%d\n"):format(w1 - w0, c1 - c0, n, #rows))
