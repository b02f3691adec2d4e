-- Inside nginx the client never blocks its worker, and many requests across an access-token expiry make
-- exactly one refresh on Exact's side, for all workers together.
local helpers = require "helpers"
local ngx_harness = require "support.nginx"
local cjson = require "cjson"

local quote = helpers.quote

local function exchange(app, sb)
  local status, _, body = app:get("/exchange?code=" .. helpers.escape(sb:code()))
  assert.equal(200, status, body)
end

describe("inside nginx, one worker", function()
  local sb = helpers.use_sandbox{ accounts = 3, reset = false }
  local app = ngx_harness.use{ sandbox = sb, workers = 1 }
  setup(function() exchange(app, sb) end)

  it("answers another request in well under 100 ms while one waits 2 s on a slow Exact answer", function()
    -- warm the cosocket pool so the timed request measures the worker, not a TLS handshake
    assert.equal(200, (app:get("/accounts")))
    local before = sb:stats().faults_served
    sb:fault("slow", 1, { seconds = 2 })
    local dir = helpers.tmpdir()
    local slow_out = dir .. "/slow"
    os.execute("curl -s -o /dev/null -w '%{http_code} %{time_total}' " .. quote(app.url .. "/accounts") ..
      " > " .. quote(slow_out) .. " 2>&1 &")
    -- the slow request is inside the sandbox's 2 s wait once the fault is taken
    local taken = false
    for _ = 1, 100 do
      if sb:stats().faults_served > before then taken = true break end
      os.execute("sleep 0.02")
    end
    assert.is_true(taken)

    local p = io.popen("curl -s -o " .. quote(dir .. "/fast") .. " -w '%{http_code} %{time_total}' " ..
      quote(app.url .. "/accounts"))
    local code, secs = p:read("*a"):match("(%d+) ([%d.]+)")
    p:close()
    assert.equal("200", code)
    assert.equal(3, cjson.decode(helpers.read(dir .. "/fast")).count)
    assert.is_true(tonumber(secs) < 0.1, "the second request took " .. secs .. " s")

    -- the slow one still finishes, after its 2 s
    local slow
    for _ = 1, 200 do
      slow = helpers.read(slow_out) or ""
      if slow:match("%d+ [%d.]+") then break end
      os.execute("sleep 0.05")
    end
    local scode, ssecs = slow:match("(%d+) ([%d.]+)")
    assert.equal("200", scode)
    assert.is_true(tonumber(ssecs) >= 1.9, "the slow request took " .. tostring(ssecs) .. " s")
  end)
end)

describe("inside nginx, two workers", function()
  local sb = helpers.use_sandbox{ accounts = 3, reset = false, limits = { minutely = 100000, daily = 100000 } }
  -- sb:advance moves Exact's clock, not the workers': the token expires inside Exact while the client holds
  -- it, and every call in flight then gets a 401, which Exact counts towards its block (10 an hour per
  -- endpoint). The client's error budget would refuse the rest of the hour; what is under test here is the
  -- one refresh, so the budget is off (spec/20-core_error_budget_spec.lua has its own nginx test)
  local app = ngx_harness.use{ sandbox = sb, workers = 2, settings = { error_budget = false } }
  setup(function() exchange(app, sb) end)

  it("serves 200 concurrent requests across an access-token expiry with exactly one refresh and no 429", function()
    -- both workers hold the current token before it expires
    local pids, seen = {}, 0
    for _ = 1, 80 do
      local status, _, body = app:get("/accounts")
      assert.equal(200, status, body)
      local pid = cjson.decode(body).worker
      if not pids[pid] then seen = seen + 1 end
      pids[pid] = true
      if seen == 2 then break end
    end
    assert.equal(2, seen)
    local before = sb:stats()
    sb:advance(600) -- Exact's clock: every access token issued so far has expired

    -- one curl process, 50 connections at a time (a process per request would cost more than the test)
    local dir = helpers.tmpdir()
    local cfg = dir .. "/curl.cfg"
    local f = assert(io.open(cfg, "w"))
    for i = 1, 200 do f:write('url = "', app.url, '/accounts?n=', i, '"\noutput = "/dev/null"\n') end
    f:close()
    local p = io.popen("curl -s --no-progress-meter -Z --parallel-immediate --parallel-max 50 " ..
      "-w '%{http_code}\\n' -K " .. quote(cfg) .. " 2>/dev/null")
    local codes = {}
    for line in p:lines() do codes[#codes + 1] = line end
    p:close()

    assert.equal(200, #codes)
    local tally = {}
    for _, c in ipairs(codes) do tally[c] = (tally[c] or 0) + 1 end
    assert.same({ ["200"] = 200 }, tally)

    local after = sb:stats()
    assert.equal(before.refreshes + 1, after.refreshes)
    assert.equal(before.refresh_attempts + 1, after.refresh_attempts)
    assert.equal(before.rate_limited, after.rate_limited)
    assert.is_true(after.unauthorized > before.unauthorized) -- the expiry was really crossed
    assert.equal(before.api_calls + 200 + (after.unauthorized - before.unauthorized), after.api_calls)
  end)
end)

describe("inside nginx, two workers on one minutely budget", function()
  local sb = helpers.use_sandbox{ accounts = 3, reset = false }
  local app = ngx_harness.use{ sandbox = sb, workers = 2, settings = { on_rate_limit = "error" } }
  setup(function()
    -- Exact's clock to the start of an hour, so the test's hour-long rate window cannot roll over mid-test
    local clock = sb:stats().clock
    sb:advance(3600 - clock % 3600 + 1)
    exchange(app, sb)
  end)

  it("stops every worker once the budget is spent, before Exact answers 429", function()
    sb:limits{ minutely = 12, daily = 100000, window = 3600 }
    local ok_calls, refused, refused_by = 0, 0, {}
    for _ = 1, 60 do
      local status, _, body = app:get("/accounts")
      local data = cjson.decode(body)
      if status == 200 then
        ok_calls = ok_calls + 1
      else
        assert.equal(502, status)
        assert.equal("rate_limit", data.kind, data.error)
        refused = refused + 1
        refused_by[data.worker] = true
      end
      local n = 0
      for _ in pairs(refused_by) do n = n + 1 end
      if n == 2 and refused >= 6 then break end
    end
    local n = 0
    for _ in pairs(refused_by) do n = n + 1 end
    assert.equal(2, n) -- both workers refused on their own, one of them knowing only the other's answer
    assert.equal(12, ok_calls)
    assert.equal(0, sb:stats().rate_limited)
  end)
end)
