-- bench child: client:each() over bulk/CRM/Accounts (pages of 1000) for ROWS rows; prints rows, wall,
-- and the peak resident set (VmHWM) before and after the export.
--   <vm> bench/export.lua ROWS      config from the file named by $BENCH_CONFIG
local exactonline = require "exactonline"
local core = require "exactonline.core"

local FIELDS = "ID,Code,Name,City,Country,Postcode,AddressLine1,Email,Phone,Website,Status,IsSupplier," ..
  "IsSales,VATNumber,Division,Created,Modified,Blocked"

local function hwm_kb()
  local f = io.open("/proc/self/status")
  local s = f and f:read("*a") or ""
  if f then f:close() end
  return tonumber(s:match("VmHWM:%s*(%d+)")) or 0
end

local cfg = dofile(os.getenv("BENCH_CONFIG"))
local want = tonumber(arg[1]) or 10000
cfg.store = exactonline.file_store(cfg.store_path)
cfg.store_path = nil
local client = assert(exactonline.new(cfg))
assert(client:get("crm/Accounts", { ["$top"] = 1 })) -- warm-up: connection, division
local base = hwm_kb()
local n, bytes = 0, 0
local w0, c0 = core.now(), os.clock()
for row in client:each("bulk/CRM/Accounts", { ["$select"] = FIELDS, ["$top"] = want }) do
  n = n + 1
  bytes = bytes + #row.ID + #row.Name
end
local w1, c1 = core.now(), os.clock()
client:close()
io.write(("rows=%d wall=%.6f cpu=%.6f hwm_kb=%d base_kb=%d\n"):format(n, w1 - w0, c1 - c0, hwm_kb(), base))
