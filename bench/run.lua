--- `make bench`: what a call costs, what a big export holds in memory, how close pacing gets to the
-- rate limit, and how processes sharing a store refresh -- against the sandbox over HTTPS on loopback.
-- Prints a markdown table; writes build/bench/results.json. Nothing here asserts: targets are reported.
--
--   lua5.4 bench/run.lua        (make bench builds core.so for both VMs first)
--   BENCH_N=3000      GETs per timed run of the cheap columns (client, floor)
--   BENCH_SLOW_N=200  GETs per timed run of LuaSec and the curl command (scaled per request)
--   BENCH_ROUNDS=5    alternating rounds; the median is reported
--   BENCH_QUICK=1     a fast smoke run (small N, 3 rounds, 10k/20k rows, 2 pacing windows)
--   BENCH_BASELINE=DIR   another built checkout (e.g. `git worktree add DIR main && make -C DIR lua54 luajit`):
--                        its client:get is timed in the same alternating rounds, beside this one
local io, os, table, math = io, os, table, math
local tostring, tonumber, ipairs, pairs, pcall, error, assert, setmetatable, getmetatable, print =
  tostring, tonumber, ipairs, pairs, pcall, error, assert, setmetatable, getmetatable, print

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

local helpers = require "helpers"
local runner = require "exactonline.sandbox"
local exactonline = require "exactonline"
local core = require "exactonline.core"
local cjson = require "cjson"

local q = helpers.quote
local env = os.getenv
local QUICK = env("BENCH_QUICK") == "1"
local N = tonumber(env("BENCH_N")) or (QUICK and 300 or 3000)
local SLOW_N = tonumber(env("BENCH_SLOW_N")) or (QUICK and 30 or 200)
local ROUNDS = tonumber(env("BENCH_ROUNDS")) or (QUICK and 3 or 5)
local CG_N = tonumber(env("BENCH_CG_N")) or (QUICK and 50 or 200)
local EXPORT_SMALL, EXPORT_BIG = 10000, QUICK and 20000 or 100000
local PACE_WINDOWS, PACE_LIMIT, PACE_WINDOW = QUICK and 2 or 4, 60, 5
local SHARE_PROCS, SHARE_JUMPS, SHARE_PER = 8, 3, 25
local OUT = ROOT .. "/build/bench"

local function sh(cmd)
  local f = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"rc=$?\""))
  local out = f:read("*a")
  f:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc == 0, (out:gsub("rc=%d+%s*$", "")), rc
end

local function have(cmd) return (sh("command -v " .. cmd .. " >/dev/null")) end

local function log(...)
  io.stderr:write("bench: ", table.concat({ ... }, ""), "\n")
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n == 0 then return nil end
  if n % 2 == 1 then return s[(n + 1) / 2] end
  return (s[n / 2] + s[n / 2 + 1]) / 2
end

local function kv(line)
  local t = {}
  for k, v in (line or ""):gmatch("([%w_]+)=(%S+)") do t[k] = tonumber(v) or v end
  return t
end

local function write_file(path, text, mode)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  if mode then os.execute("chmod " .. mode .. " " .. q(path)) end
end

-- ---- setup ------------------------------------------------------------------------------------

sh("mkdir -p " .. q(OUT))
local TMP = select(2, sh("mktemp -d /tmp/exactonline-bench.XXXXXX")):match("(%S+)")
local started = {}
local function cleanup()
  for _, sb in ipairs(started) do pcall(sb.stop, sb) end
  if TMP and TMP:match("^/tmp/exactonline%-bench") then os.execute("rm -rf " .. q(TMP)) end
end

local function vm_env(vm, root)
  local vars = helpers.lua_env(vm)
  if root then -- the same variables, naming the other checkout's lua/ and build/
    vars = "LUA_PATH=" .. q(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;") .. " LUA_CPATH=" ..
      q(root .. "/build/" .. vm .. "/?.so;;") .. " LUA_CPATH_5_4=" .. q(root .. "/build/" .. vm .. "/?.so;;")
  end
  return vars .. " BENCH_CONFIG=" .. q(TMP .. "/config.lua")
end
local BASELINE = env("BENCH_BASELINE")

-- the floor program: one reused libcurl handle; "decode" adds cjson.decode in an embedded Lua 5.4
local FLOOR = OUT .. "/floor"
do
  local ok, out = sh("cc -O2 -std=gnu99 -Wall -Wextra -o " .. q(FLOOR) .. " " .. q(ROOT .. "/bench/floor.c") ..
    " $(pkg-config --cflags --libs libcurl lua5.4)")
  if not ok then error("bench: building the floor program failed:\n" .. out) end
end

local results = { started_at = os.date("!%Y-%m-%dT%H:%M:%SZ"), quick = QUICK, n = N, slow_n = SLOW_N,
                  rounds = ROUNDS }
do
  local _, un = sh("uname -srm")
  local _, cpu = sh("grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'")
  local _, load = sh("cut -d' ' -f1-3 /proc/loadavg")
  results.machine = { uname = un:gsub("%s+$", ""), cpu = cpu:gsub("%s+$", ""), nproc = tonumber(select(2,
    sh("nproc")):match("%d+")), loadavg_start = load:gsub("%s+$", "") }
end

-- a sandbox of `accounts` accounts (generated on demand: any size starts at once)
local Sandbox
local function big_sandbox(accounts)
  local info, err
  for _ = 1, 3 do
    info, err = runner.prepare { port = helpers.free_port(), tls_dir = helpers.tls_dir, accounts = accounts }
    if not info then error("sandbox: " .. tostring(err)) end
    local ok
    ok, err = runner.start(info)
    if ok then break end
    runner.stop(info)
    info = nil
  end
  if not info then error("sandbox: " .. tostring(err)) end
  runner.watchdog(info, tonumber(select(2, sh("echo $PPID")):match("%d+")))
  local sb = setmetatable({ info = info, port = info.port, prefix = info.prefix, cafile = info.cafile,
    base_url = "https://127.0.0.1:" .. info.port, client_id = info.client_id, client_secret = info.client_secret,
    redirect_uri = info.redirect_uri, division = info.division, accounts = info.accounts,
    control_token = info.control_token }, Sandbox)
  started[#started + 1] = sb
  for _ = 1, 100 do
    if helpers.http("GET", sb.base_url .. "/_sandbox/stats", { cafile = sb.cafile, timeout = 2,
        headers = { ["X-Sandbox-Token"] = info.control_token } }) == 200 then
      return sb
    end
    os.execute("sleep 0.05")
  end
  error("sandbox: the big sandbox did not answer")
end

-- first tokens into a file store the children share; the config file names the store
local function authorize(sb, name)
  local store_path = TMP .. "/" .. name .. ".tokens.json"
  local cfg = sb:client_config { division = sb.division }
  cfg.store = exactonline.file_store(store_path)
  local client = assert(exactonline.new(cfg))
  assert(client:exchange(sb:code()))
  client:close()
  local lines = { "return {" }
  for _, k in ipairs { "base_url", "cafile", "client_id", "client_secret", "redirect_uri" } do
    lines[#lines + 1] = ("  %s = %q,"):format(k, cfg[k])
  end
  lines[#lines + 1] = ("  division = %d, store_path = %q,"):format(sb.division, store_path)
  lines[#lines + 1] = "}"
  write_file(TMP .. "/config.lua", table.concat(lines, "\n") .. "\n", "600")
  return store_path
end

local function token_env(store_path, sb)
  local t = assert(exactonline.file_store(store_path).load())
  return "BENCH_TOKEN=" .. q(t.access_token) .. " BENCH_CAFILE=" .. q(sb.cafile)
end

-- ---- 1. per-request cost ---------------------------------------------------------------------

local function per_request(sb, store_path)
  local url = sb.base_url .. "/api/v1/" .. sb.division .. "/crm/Accounts"
  local methods = {
    { id = "floor", n = N, run = function(n)
        return sh(token_env(store_path, sb) .. " " .. q(FLOOR) .. " " .. q(url) .. " " .. n) end },
    { id = "floor_cjson", n = N, run = function(n)
        return sh(token_env(store_path, sb) .. " " .. q(FLOOR) .. " " .. q(url) .. " " .. n .. " decode") end },
    { id = "client_lua54", n = N, run = function(n)
        return sh(vm_env("lua5.4") .. " lua5.4 " .. q(ROOT .. "/bench/get.lua") .. " " .. n) end },
    { id = "client_luajit", n = N, run = function(n)
        return sh(vm_env("luajit") .. " luajit " .. q(ROOT .. "/bench/get.lua") .. " " .. n) end },
    { id = "luasec", n = SLOW_N, run = function(n)
        return sh(token_env(store_path, sb) .. " lua5.4 " .. q(ROOT .. "/bench/luasec.lua") .. " " .. q(url) ..
          " " .. n) end },
    { id = "curl_cli", n = SLOW_N, run = function(n)
        -- wall from here, CPU from the shell's `times` (its children: every curl process)
        local hdr = TMP .. "/curl.headers"
        local t = assert(exactonline.file_store(store_path).load())
        write_file(hdr, "Authorization: Bearer " .. t.access_token .. "\nAccept: application/json\n", "600")
        local one = "curl -sS --fail -o /dev/null --cacert " .. q(sb.cafile) .. " -H @" .. q(hdr) .. " " .. q(url)
        local w0 = core.now()
        local ok, out = sh(one .. " && i=0 && while [ $i -lt " .. n .. " ]; do " .. one ..
          " || exit 1; i=$((i+1)); done; times")
        local wall = core.now() - w0
        if not ok then return ok, out end
        local nums = {}
        for m, s in out:gmatch("(%d+)m([%d.]+)s") do nums[#nums + 1] = tonumber(m) * 60 + tonumber(s) end
        local cpu = (nums[3] or 0) + (nums[4] or 0)
        return true, ("wall=%.6f cpu=%.6f n=%d"):format(wall, cpu, n)
      end },
  }
  if not have("curl") then table.remove(methods) end
  if BASELINE then
    for _, vm in ipairs { "lua5.4", "luajit" } do
      methods[#methods + 1] = { id = "baseline_" .. vm:gsub("%.", ""), n = N, run = function(n)
        return sh(vm_env(vm, BASELINE) .. " " .. vm .. " " .. q(ROOT .. "/bench/get.lua") .. " " .. n) end }
    end
  end
  local samples = {}
  for _, m in ipairs(methods) do samples[m.id] = { wall = {}, cpu = {} } end
  for round = 1, ROUNDS do
    -- alternate: each round starts one method later, and every other round runs backwards
    local order = {}
    for i = 1, #methods do order[i] = methods[(i + round - 2) % #methods + 1] end
    if round % 2 == 0 then
      local r = {}
      for i = #order, 1, -1 do r[#r + 1] = order[i] end
      order = r
    end
    for _, m in ipairs(order) do
      local ok, out = m.run(m.n)
      local r = kv(out:match("wall=[^\n]*"))
      if not ok or not r.wall then error("bench: " .. m.id .. " failed:\n" .. out) end
      local s = samples[m.id]
      s.wall[#s.wall + 1] = r.wall / r.n
      s.cpu[#s.cpu + 1] = r.cpu / r.n
    end
    log("per-request round ", round, "/", ROUNDS, " done")
  end
  local out = { order = {} }
  for _, m in ipairs(methods) do
    local s = samples[m.id]
    out[m.id] = { n = m.n, wall_us = median(s.wall) * 1e6, cpu_us = median(s.cpu) * 1e6,
                  wall_samples_us = s.wall, cpu_samples_us = s.cpu }
    for _, k in ipairs { "wall_samples_us", "cpu_samples_us" } do
      for i, v in ipairs(out[m.id][k]) do out[m.id][k][i] = math.floor(v * 1e7 + 0.5) / 10 end
    end
    out.order[#out.order + 1] = m.id
  end
  return out
end

-- ---- 2. instructions per request (callgrind) -------------------------------------------------

-- self cost per object of a callgrind profile: { [object] = Ir }, total
local function cg_objects(file)
  local ok, out = sh("callgrind_annotate --inclusive=no --threshold=100 " .. q(file))
  if not ok then return nil, out end
  local by, total = {}, tonumber((out:match("([%d,]+)%s*%(100%.0%%%)%s*PROGRAM TOTALS") or
    out:match("([%d,]+)%s+PROGRAM TOTALS") or ""):gsub(",", ""), nil)
  for line in out:gmatch("[^\n]+") do
    local ir, obj = line:match("^%s*([%d,]+)%s.-%[([^%]]+)%]%s*$")
    if ir then
      obj = obj:match("([^/]+)$")
      by[obj] = (by[obj] or 0) + tonumber((ir:gsub(",", "")))
    end
  end
  return by, total
end

local function group_of(obj)
  if obj:match("^core%.so") then return "core.so (the module's C)" end
  if obj:match("cjson") then return "lua-cjson" end
  if obj:match("^liblua") or obj:match("^lua5") then return "Lua 5.4 VM (client.lua, tables, GC)" end
  if obj:match("^floor") then return "floor program" end
  if obj:match("^libcurl") or obj:match("^libnghttp") or obj:match("^libz") then return "libcurl (+zlib)" end
  if obj:match("^libssl") or obj:match("^libcrypto") then return "OpenSSL" end
  if obj:match("^libc%.") or obj:match("^libm%.") or obj:match("^ld%-linux") then return "libc / ld.so" end
  return "other"
end

-- Ir per call of one command (cmd(n) runs n calls after a warm-up): two profiles, n = 20 and 20 + CG_N,
-- subtracted, so start-up and the TLS handshake drop out; the self cost is grouped by object.
local function cg_per_call(name, cmd)
  local function profile(n)
    local file = TMP .. "/callgrind." .. name .. "." .. n
    local prefix, command = cmd(n)
    local ok, out = sh(prefix .. " valgrind --tool=callgrind --callgrind-out-file=" .. q(file) .. " " .. command)
    if not ok then error("bench: callgrind run of " .. name .. " failed:\n" .. out) end
    local by, total = cg_objects(file)
    return by, total, file
  end
  local lo_n, hi_n = 20, 20 + CG_N
  local lo, lo_total = profile(lo_n)
  local hi, hi_total, hi_file = profile(hi_n)
  if not lo or not hi_total or not lo_total then error("bench: callgrind_annotate output not understood") end
  local groups, sum = {}, 0
  for obj, ir in pairs(hi) do
    local d = ir - (lo[obj] or 0)
    local g = group_of(obj)
    groups[g] = (groups[g] or 0) + d
    sum = sum + d
  end
  local shares = {}
  for g, ir in pairs(groups) do
    shares[#shares + 1] = { group = g, ir_per_call = ir / (hi_n - lo_n), share = sum > 0 and ir / sum or 0 }
  end
  table.sort(shares, function(x, y) return x.ir_per_call > y.ir_per_call end)
  sh("cp " .. q(hi_file) .. " " .. q(OUT .. "/callgrind." .. name .. ".out"))
  return { calls = hi_n - lo_n, ir_per_call = (hi_total - lo_total) / (hi_n - lo_n), groups = shares,
           profile = "build/bench/callgrind." .. name .. ".out" }
end

local function instructions(sb, store_path)
  if not have("valgrind") or not have("callgrind_annotate") then
    return { skipped = "valgrind (callgrind) is not installed: Debian package valgrind" }
  end
  local url = sb.base_url .. "/api/v1/" .. sb.division .. "/crm/Accounts"
  local out = {}
  out.client_lua54 = cg_per_call("client_get", function(n)
    return vm_env("lua5.4"), "lua5.4 " .. q(ROOT .. "/bench/get.lua") .. " " .. n end)
  out.floor_cjson = cg_per_call("floor_cjson", function(n)
    return token_env(store_path, sb), q(FLOOR) .. " " .. q(url) .. " " .. n .. " decode" end)
  out.floor = cg_per_call("floor", function(n)
    return token_env(store_path, sb), q(FLOOR) .. " " .. q(url) .. " " .. n end)
  return out
end

-- ---- 3. export memory -----------------------------------------------------------------------

local function export_memory()
  local t0 = core.now()
  local ok, sb = pcall(big_sandbox, EXPORT_BIG)
  if not ok then return { error = tostring(sb) } end
  local start_s = core.now() - t0
  sb:limits { minutely = 1e9, daily = 1e9 }
  local _, nginx_rss = sh("ps -o rss= --ppid " .. (runner.pid(sb.info) or 0) .. " | awk '{s+=$1} END {print s}'")
  authorize(sb, "export")
  local out = { sandbox = { accounts = EXPORT_BIG, start_s = start_s,
                            workers_rss_mb = (tonumber(nginx_rss:match("%d+")) or 0) / 1024 } }
  for _, vm in ipairs { "lua5.4", "luajit" } do
    out[vm] = {}
    for _, rows in ipairs { EXPORT_SMALL, EXPORT_BIG } do
      local okc, text = sh(vm_env(vm) .. " " .. vm .. " " .. q(ROOT .. "/bench/export.lua") .. " " .. rows)
      local r = kv(text:match("rows=[^\n]*"))
      if not okc or not r.rows then error("bench: export " .. vm .. " " .. rows .. " failed:\n" .. text) end
      out[vm][#out[vm] + 1] = { rows = r.rows, wall_s = r.wall, cpu_s = r.cpu, rows_per_s = r.rows / r.wall,
                                hwm_mb = r.hwm_kb / 1024, base_mb = r.base_kb / 1024 }
      log("export ", vm, " ", rows, " rows done")
    end
  end
  return out, sb
end

-- ---- 4. pacing --------------------------------------------------------------------------------

local function pacing(sb, store_path)
  sb:limits { minutely = PACE_LIMIT, daily = 1e9, window = PACE_WINDOW }
  local before = sb:stats()
  local calls = {} -- minutely reset (ms) -> calls answered in that window
  local resets = {}
  local inner
  local wrapper = {}
  function wrapper.request(_, req)
    local resp, err = inner:request(req)
    if resp and resp.status ~= 429 then
      local r = resp.headers["x-ratelimit-minutely-reset"]
      if r then
        if not calls[r] then resets[#resets + 1] = r end
        calls[r] = (calls[r] or 0) + 1
      end
    end
    return resp, err
  end
  local cfg = sb:client_config { division = sb.division, on_rate_limit = "wait", transport = wrapper,
                                 store = exactonline.file_store(store_path) }
  local client = assert(exactonline.new(cfg))
  inner = require("exactonline.transport.curl").new(client)
  -- several windows' worth of 60-row pages, starting mid-window: the first and last windows are partial
  local pages_wanted = PACE_LIMIT * PACE_WINDOWS + PACE_LIMIT / 2
  local t0, pages = core.now(), 0
  local okp, perr = pcall(function()
    for _ in client:pages("crm/Accounts", { ["$top"] = 60 * pages_wanted }) do
      pages = pages + 1
    end
  end)
  local wall = core.now() - t0
  client:close()
  local after = sb:stats()
  sb:limits { minutely = 1e9, daily = 1e9, window = 60 }
  local per_window = {}
  for _, r in ipairs(resets) do per_window[#per_window + 1] = calls[r] end
  local full = {}
  for i = 2, #per_window - 1 do full[#full + 1] = per_window[i] end
  local sum, min = 0, nil
  for _, c in ipairs(full) do
    sum = sum + c
    min = (not min or c < min) and c or min
  end
  return { ok = okp, error = not okp and tostring(perr) or nil, pages = pages, wall_s = wall,
           allowed = PACE_LIMIT, window_s = PACE_WINDOW, calls_per_window = per_window,
           full_windows = #full, mean_full = #full > 0 and sum / #full or nil, min_full = min,
           share = #full > 0 and (sum / #full) / PACE_LIMIT or nil,
           rate_limited = after.rate_limited - before.rate_limited }
end

-- ---- 5. refresh coordination ------------------------------------------------------------------

local function exists(p)
  local f = io.open(p)
  if f then f:close() return true end
  return false
end

local function wait_for(p, limit)
  local t0 = core.now()
  while not exists(p) do
    if core.now() - t0 > limit then return false end
    core.sleep(0.01)
  end
  return true
end

local function refresh_coordination(sb)
  sb:limits { minutely = 1e9, daily = 1e9 }
  authorize(sb, "shared")
  local bar = TMP .. "/barrier"
  sh("mkdir -p " .. q(bar))
  local before = sb:stats()
  local parts = {}
  for i = 1, SHARE_PROCS do
    local o = bar .. "/out." .. i
    parts[#parts + 1] = "(" .. vm_env("lua5.4") .. " lua5.4 " .. q(ROOT .. "/bench/share.lua") .. " " .. i .. " " ..
      q(bar) .. " " .. SHARE_JUMPS .. " " .. SHARE_PER .. " > " .. q(o) .. " 2>&1; echo $? > " .. q(o .. ".rc") ..
      ") >/dev/null 2>&1 &"
  end
  sh(table.concat(parts, " "))
  local stuck
  for phase = 1, SHARE_JUMPS do
    for i = 1, SHARE_PROCS do
      if not wait_for(bar .. "/ready." .. phase .. "." .. i, 60) then stuck = stuck or ("process " .. i) end
    end
    sb:advance(700) -- past every process's access token expiry on the server's clock
    write_file(bar .. "/go." .. phase, "")
  end
  local ok_n, failed = 0, 0
  for i = 1, SHARE_PROCS do
    local o = bar .. "/out." .. i
    if not wait_for(o .. ".rc", 120) then stuck = stuck or ("process " .. i) end
    local f = io.open(o)
    local text = f and f:read("*a") or ""
    if f then f:close() end
    local a, b = text:match("ok=(%d+) failed=(%d+)")
    ok_n = ok_n + (tonumber(a) or 0)
    failed = failed + (tonumber(b) or SHARE_PER * (SHARE_JUMPS + 1))
  end
  local after = sb:stats()
  return { processes = SHARE_PROCS, expiries = SHARE_JUMPS, requests = ok_n + failed, ok = ok_n,
           failed = failed, refreshes = after.refreshes - before.refreshes,
           old_refresh_used = after.old_refresh_used - before.old_refresh_used,
           too_early = after.too_early - before.too_early, stuck = stuck }
end

-- ---- report -----------------------------------------------------------------------------------

local function f1(x) return x and ("%.1f"):format(x) or "–" end
local function f2(x) return x and ("%.2f"):format(x) or "–" end
local function commas(x)
  local s = ("%d"):format(math.floor(x + 0.5))
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end
local function mark(ok) return ok and "met" or "**missed**" end

local LABEL = {
  floor = "(a) floor: C, libcurl, one reused handle, no decoding",
  floor_cjson = "(b) floor + lua-cjson decode (embedded Lua 5.4)",
  client_lua54 = "client:get, Lua 5.4",
  client_luajit = "client:get, LuaJIT",
  baseline_lua54 = "client:get, Lua 5.4, BENCH_BASELINE",
  baseline_luajit = "client:get, LuaJIT, BENCH_BASELINE",
  luasec = "(c) LuaSec ssl.https.request + cjson (new TLS connection per call)",
  curl_cli = "(d) curl command per request",
}

local function report(r)
  local L = {}
  local function p(s) L[#L + 1] = s or "" end
  local pr = r.per_request
  p(("### Per-request cost: GET of one 60-row page (median of %d alternating runs; %d calls per run, %d for (c) "
    .. "and (d))"):format(ROUNDS, N, SLOW_N))
  p()
  p("| | wall µs/call | CPU µs/call | wall ÷ (a) | CPU ÷ (a) | wall ÷ (b) | CPU ÷ (b) |")
  p("|---|---:|---:|---:|---:|---:|---:|")
  local a, b = pr.floor, pr.floor_cjson
  for _, id in ipairs(pr.order) do
    local m = pr[id]
    p(("| %s | %s | %s | %s | %s | %s | %s |"):format(LABEL[id], f1(m.wall_us), f1(m.cpu_us),
      f2(m.wall_us / a.wall_us), f2(m.cpu_us / a.cpu_us), f2(m.wall_us / b.wall_us), f2(m.cpu_us / b.cpu_us)))
  end
  p()
  local ins = r.instructions
  if ins.skipped then
    p("Instructions per call: skipped (" .. ins.skipped .. ").")
  else
    local cl, fb, fa = ins.client_lua54, ins.floor_cjson, ins.floor
    p(("### Instructions per call (callgrind, %d calls, start-up subtracted; does not drift with load)"):format(
      cl.calls))
    p()
    p(("client:get (Lua 5.4) %s Ir/call; (b) %s; (a) %s: client ÷ (b) = %.2f, client ÷ (a) = %.2f"):format(
      commas(cl.ir_per_call), commas(fb.ir_per_call), commas(fa.ir_per_call), cl.ir_per_call / fb.ir_per_call,
      cl.ir_per_call / fa.ir_per_call))
    p()
    local names, rows = {}, {}
    for _, col in ipairs { cl, fb } do
      for _, g in ipairs(col.groups) do
        if not rows[g.group] then names[#names + 1] = g.group rows[g.group] = {} end
      end
    end
    for i, col in ipairs { cl, fb } do
      for _, g in ipairs(col.groups) do rows[g.group][i] = g end
    end
    p("| where | client:get Ir/call | share | (b) Ir/call | share |")
    p("|---|---:|---:|---:|---:|")
    for _, name in ipairs(names) do
      local x, y = rows[name][1], rows[name][2]
      p(("| %s | %s | %s | %s | %s |"):format(name, x and commas(x.ir_per_call) or "–",
        x and ("%.1f %%"):format(x.share * 100) or "–", y and commas(y.ir_per_call) or "–",
        y and ("%.1f %%"):format(y.share * 100) or "–"))
    end
  end
  p()
  local ex = r.export
  if ex.error then
    p("### Export memory: failed: " .. ex.error)
  else
    p(("### Export memory: each() over bulk/CRM/Accounts, pages of 1000, 18 fields (sandbox with %s accounts: "
      .. "started in %.1f s, workers %.0f MB)"):format(commas(ex.sandbox.accounts), ex.sandbox.start_s,
      ex.sandbox.workers_rss_mb))
    p()
    p("| VM | rows | peak RSS MB | RSS before export MB | rows/s | RSS ÷ RSS at " .. commas(EXPORT_SMALL) .. " |")
    p("|---|---:|---:|---:|---:|---:|")
    for _, vm in ipairs { "lua5.4", "luajit" } do
      for _, e in ipairs(ex[vm]) do
        p(("| %s | %s | %.1f | %.1f | %s | %.2f |"):format(vm, commas(e.rows), e.hwm_mb, e.base_mb,
          commas(e.rows_per_s), e.hwm_mb / ex[vm][1].hwm_mb))
      end
    end
  end
  p()
  local pc = r.pacing
  p(("### Pacing: %d calls per %d s window, on_rate_limit = \"wait\", %d pages of 60 rows in %.1f s"):format(
    pc.allowed, pc.window_s, pc.pages, pc.wall_s))
  p()
  p("calls per window (first and last are partial): " .. table.concat(pc.calls_per_window, ", ") ..
    (pc.error and (" — stopped: " .. pc.error) or ""))
  p()
  p(("full windows: %d, mean %s, min %s of %d allowed (%s %%); 429 answers: %d"):format(pc.full_windows,
    f1(pc.mean_full), tostring(pc.min_full or "–"), pc.allowed, f1(pc.share and pc.share * 100), pc.rate_limited))
  p()
  local rc = r.refresh
  p(("### Refresh coordination: %d processes, one file store, %d expiries: %d requests, %d refreshes, %d failed "
    .. "requests, %d old-refresh-token uses, %d too-early refreshes%s"):format(rc.processes, rc.expiries,
    rc.requests, rc.refreshes, rc.failed, rc.old_refresh_used, rc.too_early, rc.stuck and (", stuck: " ..
    rc.stuck) or ""))
  p()
  p("### Targets")
  p()
  p("| target | measured | |")
  p("|---|---|---|")
  local c = pr.client_lua54
  local tw, tc = c.wall_us / b.wall_us, c.cpu_us / b.cpu_us
  p(("| client:get within 1.10× of (b), wall and CPU | %.2f× wall, %.2f× CPU (Lua 5.4) | %s |"):format(tw, tc,
    mark(tw <= 1.10 and tc <= 1.10)))
  local ls = pr.luasec.wall_us / c.wall_us
  p(("| ≥ 50× faster per call than (c) | %.0f× wall, %.0f× CPU | %s |"):format(ls,
    pr.luasec.cpu_us / c.cpu_us, mark(ls >= 50)))
  if not ex.error then
    local e = ex["lua5.4"]
    local ratio = e[2].hwm_mb / e[1].hwm_mb
    p(("| RSS at %s rows ≤ 1.2× RSS at %s | %.2f× (Lua 5.4), %.2f× (LuaJIT) | %s |"):format(commas(EXPORT_BIG),
      commas(EXPORT_SMALL), ratio, ex.luajit[2].hwm_mb / ex.luajit[1].hwm_mb,
      mark(ratio <= 1.2 and ex.luajit[2].hwm_mb / ex.luajit[1].hwm_mb <= 1.2)))
  end
  p(("| pacing ≥ 97 %% of allowed calls per window, 0 429s | %s %%, %d 429s | %s |"):format(
    f1(pc.share and pc.share * 100), pc.rate_limited, mark(pc.share and pc.share >= 0.97 and pc.rate_limited == 0)))
  p(("| exactly 3 refreshes, 0 failures | %d refreshes, %d failures | %s |"):format(rc.refreshes,
    rc.failed + rc.old_refresh_used + rc.too_early,
    mark(rc.refreshes == 3 and rc.failed + rc.old_refresh_used + rc.too_early == 0)))
  p()
  p(("Machine: %s, %s, %d cores, load average %s at start. Client-side time only (the sandbox's nginx runs on the "
    .. "same cores)."):format(r.machine.uname, r.machine.cpu, r.machine.nproc or 0, r.machine.loadavg_start))
  return table.concat(L, "\n")
end

-- ---- main -------------------------------------------------------------------------------------

local ok, err = pcall(function()
  local sb = helpers.sandbox { accounts = 250 }
  started[#started + 1] = sb
  Sandbox = getmetatable(sb)
  sb:limits { minutely = 1e9, daily = 1e9 }
  local store_path = authorize(sb, "main")
  log("per-request cost (", ROUNDS, " rounds)")
  results.per_request = per_request(sb, store_path)
  log("instructions (callgrind)")
  results.instructions = instructions(sb, store_path)
  log("refresh coordination")
  results.refresh = refresh_coordination(sb)
  sb:stop()
  log("export memory (sandbox with ", EXPORT_BIG, " accounts)")
  local big
  results.export, big = export_memory()
  if not big then
    big = helpers.sandbox { accounts = 60 * (PACE_LIMIT * PACE_WINDOWS + PACE_LIMIT) }
    started[#started + 1] = big
  end
  log("pacing (", PACE_WINDOWS, " windows of ", PACE_WINDOW, " s)")
  results.pacing = pacing(big, authorize(big, "pacing"))
  local _, load = sh("cut -d' ' -f1-3 /proc/loadavg")
  results.machine.loadavg_end = load:gsub("%s+$", "")
  local md = report(results)
  results.markdown = md
  write_file(OUT .. "/results.json", cjson.encode(results))
  print(md)
  log("results: build/bench/results.json")
end)
cleanup()
if not ok then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
