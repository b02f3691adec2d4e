-- bench child: one of several processes sharing a file store. PHASES+1 phases of PER requests to
-- /api/v1/current/Me; between phases it waits at a barrier while the driver moves the sandbox clock.
--   <vm> bench/share.lua ID BARRIER_DIR PHASES PER      config from the file named by $BENCH_CONFIG
local exactonline = require "exactonline"

local id, bar = arg[1], arg[2]
local phases, per = tonumber(arg[3]) or 3, tonumber(arg[4]) or 25
local cfg = dofile(os.getenv("BENCH_CONFIG"))
cfg.store = exactonline.file_store(cfg.store_path)
cfg.store_path = nil
-- the driver moves the sandbox's clock only, so every process meets a 401 per jump: more than Exact's 10 error
-- answers an hour, which the error budget would refuse; what is measured here is the refresh coordination
cfg.error_budget = false

local function exists(p)
  local f = io.open(p)
  if f then f:close() return true end
  return false
end

local client = assert(exactonline.new(cfg))
local ok_n, failed = 0, {}
for phase = 0, phases do
  if phase > 0 then
    io.open(bar .. "/ready." .. phase .. "." .. id, "w"):close()
    while not exists(bar .. "/go." .. phase) do os.execute("sleep 0.01") end
  end
  for _ = 1, per do
    local me, err = client:get("/api/v1/current/Me")
    if me then ok_n = ok_n + 1 else failed[#failed + 1] = tostring(err) end
  end
end
client:close()
io.write("ok=", ok_n, " failed=", #failed, "\n", table.concat(failed, "\n"), "\n")
