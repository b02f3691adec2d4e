--- `make bench` (part 2): replication. Rows per second into SQLite and PostgreSQL (pages of 1000 sync rows
-- of financialtransaction/TransactionLines with every catalog field filled, no rate limit: the database
-- alone), memory as rows grow (a child process per size, its peak RSS), and pacing across divisions (per-
-- division clients over one multi handle against the sandbox with a shortened rate window).
-- Prints a markdown table; writes build/bench/replicate.json. Nothing here asserts: targets are reported.
--   BENCH_QUICK=1            a fast smoke run
--   BENCH_REPL_ROWS=200000   rows per throughput run
local io, os, table, math = io, os, table, math
local tostring, tonumber, ipairs, pairs, pcall, assert, print = tostring, tonumber, ipairs, pairs, pcall, assert, print

local ROOT
do
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  local dir = src:match("^(.*)/bench/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then
    local p = io.popen("pwd")
    dir = p:read("*l") .. (dir == "." and "" or "/" .. dir)
    p:close()
  end
  ROOT = dir
end
package.path = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;" .. ROOT .. "/spec/?.lua;" .. package.path
package.cpath = ROOT .. "/build/lua5.4/?.so;" .. package.cpath

local cjson = require "cjson"
local core = require "exactonline.core"
local catalog = require "exactonline.replicate.catalog"

local QUICK = os.getenv("BENCH_QUICK") == "1"
local ROWS = tonumber(os.getenv("BENCH_REPL_ROWS")) or (QUICK and 20000 or 200000)
local OUT = ROOT .. "/build/bench"
local TL = catalog.lookup("financialtransaction/TransactionLines")

local function log(...)
  io.stderr:write("bench replicate: ", table.concat({ ... }, ""), "\n")
end

local function sh(cmd)
  local f = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"rc=$?\""))
  local out = f:read("*a")
  f:close()
  return tonumber(out:match("rc=(%d+)%s*$")) == 0, (out:gsub("rc=%d+%s*$", ""))
end

-- rows/s of apply_page in a child process of `vm`: pages of 1000 sync rows, every catalog field set (the
-- worst case for the writer); first load (inserts), then the same keys again (updates). Rows are built
-- outside the timed part: only the replica writer and the database are measured (wall and CPU).
local THROUGHPUT = [==[
local ROOT, VM, TARGET, ROWS = ...
ROWS = tonumber(ROWS)
package.path = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;" .. package.path
package.cpath = ROOT .. "/build/" .. VM .. "/?.so;" .. package.cpath
local core = require "exactonline.core"
local TL = require("exactonline.replicate.catalog").lookup("financialtransaction/TransactionLines")
local R = assert(require("exactonline.replicate.db").open(TARGET))
local function page(ts, n, version)
  local rows = {}
  for i = 1, n do
    local t = ts + i
    local r = {}
    for _, f in ipairs(TL.fields) do
      local ty = f.type
      if ty == "guid" then r[f.name] = ("%08x-0000-4000-a000-%012d"):format(i % 65536, (t * 7919) % 1e12)
      elseif ty == "datetime" then r[f.name] = "/Date(" .. (1700000000000 + t * 1000) .. ")/"
      elseif ty == "double" then r[f.name] = t * 1.25 + version
      elseif ty == "int" then r[f.name] = t % 100000
      elseif ty == "bool" then r[f.name] = t % 2 == 0
      else r[f.name] = "text " .. f.name .. " " .. t end
    end
    r.ID = ("00000000-0000-4000-a000-%012d"):format((t - 1) % ROWS + 1)
    r.Timestamp = t
    r.Division = 7
    rows[i] = r
  end
  return rows
end
local out = {}
for pass, what in ipairs { "insert", "update" } do
  local ts, wall, cpu, done = (pass - 1) * ROWS, 0, 0, 0
  while done < ROWS do
    local rows = page(ts, 1000, pass)
    local w0, c0 = core.now(), os.clock()
    assert(R:apply_page(7, TL, rows, ts + #rows))
    wall, cpu = wall + (core.now() - w0), cpu + (os.clock() - c0)
    ts, done = ts + #rows, done + #rows
  end
  out[#out + 1] = ("%s_wall=%d %s_cpu=%d"):format(what, math.floor(done / wall), what, math.floor(done / cpu))
end
R:close()
print(table.concat(out, " "))
]==]

local function throughput(vm, target)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(THROUGHPUT)
  f:close()
  local ok, out = sh(("%s %s %q %q %q %d"):format(vm, script, ROOT, vm, target, ROWS))
  os.remove(script)
  if not ok then return { error = out:gsub("%s+$", "") } end
  local r = {}
  for k, v in out:gmatch("(%w+_%w+)=(%d+)") do r[k] = tonumber(v) end
  return r
end

-- peak RSS (MB) of a child that applies `rows` rows in pages of 1000
local function memory(target, rows)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(([[
package.path = %q .. "/lua/?.lua;" .. %q .. "/lua/?/init.lua;" .. package.path
package.cpath = %q .. "/build/lua5.4/?.so;" .. package.cpath
local catalog = require "exactonline.replicate.catalog"
local TL = catalog.lookup("financialtransaction/TransactionLines")
local R = assert(require("exactonline.replicate.db").open(%q))
local ts = 0
while ts < %d do
  local rows = {}
  for i = 1, 1000 do
    local t = ts + i
    local r = { ID = ("00000000-0000-4000-a000-%%012d"):format(t), Timestamp = t }
    for _, fd in ipairs(TL.fields) do
      if fd.type == "string" then r[fd.name] = "text " .. t elseif fd.type == "double" then r[fd.name] = t * 0.5 end
    end
    r.ID, r.Timestamp = ("00000000-0000-4000-a000-%%012d"):format(t), t
    rows[i] = r
  end
  ts = ts + 1000
  assert(R:apply_page(7, TL, rows, ts))
end
R:close()
for line in io.lines("/proc/self/status") do
  local kb = line:match("^VmHWM:%%s+(%%d+)")
  if kb then print(kb) end
end
]]):format(ROOT, ROOT, ROOT, target, rows))
  f:close()
  local ok, out = sh("lua5.4 " .. script)
  os.remove(script)
  if not ok then return nil, out end
  return tonumber(out:match("(%d+)%s*$")) / 1024
end

-- pacing: D divisions (as many as the sandbox has, up to 8), each making `per` calls at `limit` per
-- `window` seconds through its own client over one multi handle. Efficiency = calls made per second
-- over D × limit / window.
local function pacing(limit, window, per)
  local helpers = require "helpers"
  local exactonline = require "exactonline"
  local multi = require "exactonline.transport.multi"
  local client_mod = require "exactonline.client"
  local sb = helpers.sandbox { accounts = 250, divisions = 8 }
  local ok, res = pcall(function()
    local c = assert(exactonline.new(sb:client_config {}))
    assert(c:exchange(sb:code()))
    local divs = {}
    for _, d in ipairs(assert(c:divisions())) do divs[#divs + 1] = math.floor(d.Code) end
    if #divs > 8 then divs = { table.unpack(divs, 1, 8) } end
    sb:limits { minutely = limit, window = window, daily = 100000 }
    local before = sb:stats().rate_limited
    local function run(list)
      local sched = multi.scheduler()
      local clients = {}
      -- start on a window boundary, so every division has its whole first window
      local now = core.now()
      core.sleep(window - now % window + 0.05)
      local t0 = core.now()
      for i, d in ipairs(list) do
        local t = sched:transport()
        clients[i] = t:bind(client_mod.sibling(c, { division = d, transport = t }))
        sched:spawn(function()
          for _ = 1, per do assert(clients[i]:get("crm/Accounts", { ["$select"] = "ID", ["$top"] = 1 })) end
        end)
      end
      local errors = sched:run()
      local spent = core.now() - t0
      sched:close()
      for _, cl in ipairs(clients) do cl:close() end
      assert(#errors == 0, tostring(errors[1]))
      return spent
    end
    local one = run { divs[1] }
    local all = run(divs)
    local calls = per * #divs
    c:close()
    -- the calls the divisions were allowed in the windows the run touched
    local allowed = #divs * limit * (math.floor(all / window) + 1)
    return { divisions = #divs, one_s = one, all_s = all, ratio = all / one,
      efficiency = calls / allowed, rate_limited = sb:stats().rate_limited - before }
  end)
  sb:stop()
  if not ok then return { error = tostring(res) } end
  return res
end

-- calls per run of the standard set in one division: the first, one with nothing changed, one after changes
local function calls_per_run()
  local helpers = require "helpers"
  local exactonline = require "exactonline"
  local sb = helpers.sandbox { divisions = 1, sizes = { transactionlines = 5000 } }
  local ok, res = pcall(function()
    sb:limits { minutely = 100000, daily = 100000 }
    local c = assert(exactonline.new(sb:client_config {}))
    assert(c:exchange(sb:code()))
    local dir = select(2, sh("mktemp -d /tmp/exactonline-bench.XXXXXX")):match("%S+")
    local to = "sqlite:" .. dir .. "/calls.db"
    local out = {}
    local function run(name)
      local s = assert(exactonline.replicate(c, { to = to }))
      assert(s.status == "done", s.status)
      local dv = s.divisions[s.order[1]]
      local rows = 0
      for _, st in pairs(dv.entities) do rows = rows + st.inserted + st.updated + st.deleted end
      out[#out + 1] = { run = name, calls = dv.calls, rows = rows }
    end
    run("first")
    run("nothing changed")
    for _, e in ipairs { "accounts", "transactionlines", "salesinvoices" } do
      sb:change(e, { create = 5, update = 20, delete = 3 })
    end
    run("after 84 changes in 3 entities")
    c:close()
    sh("rm -rf " .. dir)
    return out
  end)
  sb:stop()
  if not ok then return { error = tostring(res) } end
  return res
end

local results = { rows = ROWS, sqlite = {}, postgres = {} }
local pg
local ok, err = pcall(function()
  local dir = select(2, sh("mktemp -d /tmp/exactonline-bench.XXXXXX")):match("%S+")
  local okp, perr = pcall(function() pg = require("support.postgres").start() end)
  for _, vm in ipairs { "lua5.4", "luajit" } do
    log(vm, ": SQLite, ", ROWS, " rows of TransactionLines (", #TL.fields, " fields)")
    results.sqlite[vm] = throughput(vm, "sqlite:" .. dir .. "/bench-" .. vm .. ".db")
    log(vm, ": PostgreSQL")
    if okp then
      local db = "b" .. vm:gsub("%W", "")
      sh("psql " .. ("%q"):format(pg.conninfo) .. " -qc 'CREATE DATABASE " .. db .. "'")
      results.postgres[vm] = throughput(vm, (pg.conninfo:gsub("dbname=%S+", "dbname=" .. db)))
    else
      results.postgres[vm] = { error = tostring(perr) }
    end
  end
  log("SQLite memory")
  results.sqlite_mem = { memory("sqlite:" .. dir .. "/mem1.db", ROWS / 4),
    memory("sqlite:" .. dir .. "/mem2.db", ROWS) }
  sh("rm -rf " .. dir)
  log("calls per run")
  results.calls = calls_per_run()
  log("pacing across divisions")
  results.pacing = pacing(QUICK and 5 or 10, 2, QUICK and 10 or 30)
end)
if pg then pg:stop() end
if not ok then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end

local L = {}
local function p(s) L[#L + 1] = s or "" end
local pc = results.pacing
p("#### Replication: rows/s into the database (pages of 1000 TransactionLines, " .. #TL.fields ..
  " fields each set, no rate limit; wall clock, and per CPU second of the client)")
p("| backend | VM | first load (insert) | again (update) |")
p("|---|---|---|---|")
local function row(name, vm, r)
  if r.error then p(("| %s | %s | %s | |"):format(name, vm, r.error)) return end
  p(("| %s | %s | %d rows/s (%d per CPU s) | %d rows/s (%d per CPU s) |"):format(name, vm, r.insert_wall,
    r.insert_cpu, r.update_wall, r.update_cpu))
end
for _, vm in ipairs { "lua5.4", "luajit" } do row("SQLite", vm, results.sqlite[vm]) end
for _, vm in ipairs { "lua5.4", "luajit" } do row("PostgreSQL", vm, results.postgres[vm]) end
p()
if results.calls.error then
  p("Calls per run: " .. results.calls.error)
else
  p("#### Calls per run: the standard set (11 entities + sync/Deleted), one division, 5000 transaction lines")
  p("| run | calls | rows written |")
  p("|---|---|---|")
  for _, r in ipairs(results.calls) do p(("| %s | %d | %d |"):format(r.run, r.calls, r.rows)) end
end
p()
local m = results.sqlite_mem
p(("Memory: peak RSS %.1f MB after %d rows, %.1f MB after %d rows (%.2f×)."):format(m[1], ROWS / 4, m[2], ROWS,
  m[2] / m[1]))
p()
if pc.error then
  p("Pacing: " .. pc.error)
else
  p(("#### Pacing: %d divisions at once vs one, each %s calls at %s per %s s"):format(pc.divisions,
    QUICK and 10 or 30, QUICK and 5 or 10, 2))
  p("| one division | all at once | ratio | pacing efficiency (calls ÷ N × limit × windows touched) | 429s |")
  p("|---|---|---|---|---|")
  p(("| %.1f s | %.1f s | %.2f× | %.1f %% | %d |"):format(pc.one_s, pc.all_s, pc.ratio, pc.efficiency * 100,
    pc.rate_limited))
end
p()
p("| target | result | |")
p("|---|---|---|")
for _, vm in ipairs { "lua5.4", "luajit" } do
  local r = results.sqlite[vm]
  local v = r.insert_wall or 0
  p(("| ≥ 50 000 rows/s into SQLite (%s) | %d rows/s | %s |"):format(vm, v, v >= 50000 and "met" or "**missed**"))
end
p(("| memory flat as rows grow (≤ 1.2×) | %.2f× | %s |"):format(m[2] / m[1], m[2] / m[1] <= 1.2 and "met" or
  "**missed**"))
if not pc.error then
  p(("| N divisions in ≤ 1.3× one division's time, 0 × 429 | %.2f×, %d | %s |"):format(pc.ratio, pc.rate_limited,
    (pc.ratio <= 1.3 and pc.rate_limited == 0) and "met" or "**missed**"))
end
local md = table.concat(L, "\n")
results.markdown = md
sh("mkdir -p " .. OUT)
local f = io.open(OUT .. "/replicate.json", "w")
if f then
  f:write(cjson.encode(results))
  f:close()
end
print(md)
