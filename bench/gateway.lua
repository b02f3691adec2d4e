--- `make bench` (and `make bench-gateway`): what `exactonline gateway` adds to a call on loopback, and how many
-- requests a second pass through it, measured against direct calls to the same sandbox in the same run.
-- One curl process per run, its connection kept alive, per-request times from curl's own %{time_total};
-- the runs alternate (direct, gateway over HTTP, gateway over HTTPS) and the medians are reported.
-- Prints a markdown table; writes build/bench/gateway.json. Nothing is asserted: the targets are reported.
--   lua5.4 bench/gateway.lua      BENCH_GW_N=1000 requests per latency run, BENCH_GW_ROUNDS=3,
--                                 BENCH_GW_LOAD=3000 requests per throughput run (16 at a time), BENCH_QUICK=1
local io, os, table, math, string = io, os, table, math, string
local tostring, tonumber, ipairs, pcall, assert, print = tostring, tonumber, ipairs, pcall, assert, print

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
local gw_harness = require "support.gateway"
local cjson = require "cjson"

local q = helpers.quote
local env = os.getenv
local QUICK = env("BENCH_QUICK") == "1"
local N = tonumber(env("BENCH_GW_N")) or (QUICK and 200 or 1000)
local ROUNDS = tonumber(env("BENCH_GW_ROUNDS")) or (QUICK and 2 or 3)
local LOAD = tonumber(env("BENCH_GW_LOAD")) or (QUICK and 600 or 3000)
local PARALLEL = 16
local OUT = ROOT .. "/build/bench"

local function log(...) io.stderr:write("bench: ", table.concat({ ... }, ""), "\n") end

local function quantile(sorted, p)
  if #sorted == 0 then return nil end
  local i = math.max(1, math.min(#sorted, math.ceil(p * #sorted)))
  return sorted[i]
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  return quantile(s, 0.5)
end

-- a curl config: the same GET n times, with the headers a tool sends
local function config(path, url, n, key, cafile)
  local f = assert(io.open(path, "w"))
  if key then f:write('header = "X-Api-Key: ', key, '"\n') end
  f:write('header = "Accept: application/json"\n')
  if cafile then f:write('cacert = "', cafile, '"\n') end
  for _ = 1, n do f:write('url = "', url, '"\noutput = "/dev/null"\n') end
  f:close()
end

-- one run: per-request seconds (sequential, one kept-alive connection), and the statuses
local function latency_run(cfg)
  local p = io.popen("curl -s --no-progress-meter -w '%{http_code} %{time_total}\\n' -K " .. q(cfg) .. " 2>&1")
  local times, bad = {}, 0
  for line in p:lines() do
    local code, t = line:match("^(%d+) ([%d.]+)")
    if code == "200" then times[#times + 1] = tonumber(t) * 1000 else bad = bad + 1 end
  end
  p:close()
  table.sort(times)
  return { p50 = quantile(times, 0.5), p90 = quantile(times, 0.9), p99 = quantile(times, 0.99), n = #times,
    failed = bad }
end

local function now()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("*l"))
  p:close()
  return t
end

-- one run: LOAD requests, PARALLEL at a time --> requests per second
local function throughput_run(cfg)
  local t0 = now()
  local p = io.popen("curl -s --no-progress-meter -Z --parallel-immediate --parallel-max " .. PARALLEL ..
    " -w '%{http_code}\\n' -K " .. q(cfg) .. " 2>&1")
  local ok, bad = 0, 0
  for line in p:lines() do if line == "200" then ok = ok + 1 else bad = bad + 1 end end
  p:close()
  local wall = now() - t0
  return { rps = ok / wall, failed = bad, wall_s = wall }
end

local sb, gw_http, gw_tls
local function cleanup()
  for _, g in ipairs { gw_http, gw_tls } do pcall(g and g.stop, g) end
  if sb then pcall(sb.stop, sb) end
end

local ok, err = pcall(function()
  os.execute("mkdir -p " .. q(OUT))
  sb = helpers.sandbox { accounts = 250 }
  sb:limits { minutely = 1e9, daily = 1e9 }
  local div = ("%d"):format(sb.division)
  local path = "/api/v1/" .. div .. "/crm/Accounts?$select=ID,Code,Name,City,Email&$top=60"
  log("gateways (2 workers each): plain HTTP and HTTPS on loopback")
  gw_http = gw_harness.start { sandbox = sb, workers = 2, keys = { "bench" },
    args = { "--access-log", "/dev/null" } }
  gw_tls = gw_harness.prepare { sandbox = sb, keys = { "bench" } }
  gw_tls.url = "https://localhost:" .. gw_tls.port
  gw_tls:launch { workers = 2, args = { "--access-log", "/dev/null", "--tls-cert", helpers.tls_dir ..
    "/server.pem", "--tls-key", helpers.tls_dir .. "/server.key" } }
  local dir = helpers.tmpdir()
  local targets = {
    { id = "direct", label = "direct to the sandbox (HTTPS)", url = "https://localhost:" .. sb.port .. path,
      cafile = sb.cafile, token = true },
    { id = "gateway_http", label = "through the gateway (HTTP on loopback)", url = gw_http.url .. path,
      key = gw_http.keys.bench },
    { id = "gateway_https", label = "through the gateway (HTTPS on loopback)", url = gw_tls.url .. path,
      key = gw_tls.keys.bench, cafile = sb.cafile },
  }
  -- the direct calls carry a bearer token of their own chain (the sandbox's, not the gateway's)
  local direct_token = sb:tokens().access_token
  for _, t in ipairs(targets) do
    t.lat_cfg, t.load_cfg = dir .. "/" .. t.id .. ".lat", dir .. "/" .. t.id .. ".load"
    for _, c in ipairs { { t.lat_cfg, N }, { t.load_cfg, LOAD } } do
      config(c[1], t.url, c[2], t.key, t.cafile)
      if t.token then
        local f = assert(io.open(c[1], "a"))
        f:write('header = "Authorization: Bearer ', direct_token, '"\n')
        f:close()
      end
    end
    latency_run(t.lat_cfg) -- warm-up: connections, the gateway's clients and pools
    t.lat, t.load = {}, {}
  end
  for round = 1, ROUNDS do
    log("round ", round, " of ", ROUNDS, ": ", N, " sequential calls, then ", LOAD, " with ", PARALLEL, " at a time")
    local order = {}
    for i, t in ipairs(targets) do order[i] = t end
    if round % 2 == 0 then table.sort(order, function(a, b) return a.id > b.id end) end
    for _, t in ipairs(order) do t.lat[#t.lat + 1] = latency_run(t.lat_cfg) end
    for _, t in ipairs(order) do t.load[#t.load + 1] = throughput_run(t.load_cfg) end
  end
  local results = { n = N, rounds = ROUNDS, load = LOAD, parallel = PARALLEL, targets = {} }
  for _, t in ipairs(targets) do
    local r = { label = t.label, failed = 0 }
    for _, k in ipairs { "p50", "p90", "p99" } do
      local v = {}
      for i, run in ipairs(t.lat) do v[i] = run[k] end
      r[k] = median(v)
    end
    local rps = {}
    for i, run in ipairs(t.load) do
      rps[i] = run.rps
      r.failed = r.failed + run.failed
    end
    for _, run in ipairs(t.lat) do r.failed = r.failed + run.failed end
    r.rps = median(rps)
    results.targets[t.id] = r
  end
  local d = results.targets.direct
  local L = {}
  local function p(s) L[#L + 1] = s or "" end
  p(("### The gateway on loopback: GET of one 60-row page (median of %d alternating runs; %d sequential calls "
    .. "per run on one connection, then %d with %d at a time)"):format(ROUNDS, N, LOAD, PARALLEL))
  p()
  p("| | p50 ms | p90 ms | p99 ms | added p50 ms | added p99 ms | requests/s | failed |")
  p("|---|---:|---:|---:|---:|---:|---:|---:|")
  for _, id in ipairs { "direct", "gateway_http", "gateway_https" } do
    local r = results.targets[id]
    local direct = id == "direct"
    p(("| %s | %.2f | %.2f | %.2f | %s | %s | %.0f | %d |"):format(r.label, r.p50, r.p90, r.p99,
      direct and "–" or ("%.2f"):format(r.p50 - d.p50), direct and "–" or ("%.2f"):format(r.p99 - d.p99),
      r.rps, r.failed))
  end
  p()
  local g = results.targets.gateway_http
  local added50, added99 = g.p50 - d.p50, g.p99 - d.p99
  results.added_p50_ms, results.added_p99_ms = added50, added99
  p(("Targets (HTTP on loopback, the default): added p50 %.2f ms (goal ≤ 1 ms: %s), added p99 %.2f ms "
    .. "(goal ≤ 5 ms: %s); through the gateway %.0f requests/s, %.0f %% of direct."):format(added50,
    added50 <= 1 and "met" or "**missed**", added99, added99 <= 5 and "met" or "**missed**", g.rps,
    100 * g.rps / d.rps))
  local lf = io.open("/proc/loadavg")
  local load = lf and lf:read("*l") or ""
  if lf then lf:close() end
  p(("Machine load at the end: %s (the sandbox, both gateways and curl share its cores)."):format(
    load:match("^(%S+ %S+ %S+)") or "?"))
  local md = table.concat(L, "\n")
  results.markdown = md
  local f = assert(io.open(OUT .. "/gateway.json", "w"))
  f:write(cjson.encode(results))
  f:close()
  print(md)
  log("results: build/bench/gateway.json")
end)
cleanup()
if not ok then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
local _ = string
