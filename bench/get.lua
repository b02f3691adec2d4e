-- bench child: N x client:get(path) on one client (warm-up call first); prints wall and CPU of the loop.
--   <vm> bench/get.lua N [path]     config from the file named by $BENCH_CONFIG
local exactonline = require "exactonline"
local core = require "exactonline.core"

local cfg = dofile(os.getenv("BENCH_CONFIG"))
local n, path = tonumber(arg[1]) or 3000, arg[2] or "crm/Accounts"
cfg.store = exactonline.file_store(cfg.store_path)
cfg.store_path = nil

local client = assert(exactonline.new(cfg))
local rows = assert(client:get(path)) -- warm-up: connection, TLS handshake, division
local w0, c0 = core.now(), os.clock()
for _ = 1, n do
  local r, err = client:get(path)
  if not r then error(tostring(err), 0) end
  rows = r
end
local w1, c1 = core.now(), os.clock()
client:close()
io.write(("wall=%.6f cpu=%.6f n=%d rows=%d\n"):format(w1 - w0, c1 - c0, n, #rows))
