-- Exact's clock, not ours (issue 13): a client whose clock is minutes off still paces right, because the
-- rate-limit resets (epoch times on Exact's clock) are read against the answers' Date headers; the token
-- times behind the 570 s rule likewise. Over real HTTPS to a sandbox whose clock runs ahead of or behind the
-- client's, and to a raw HTTPS server for answers without a usable Date.
local helpers = require "helpers"
local raw_https = require "support.raw_https"
local exactonline = require "exactonline"
local core = require "exactonline.core"
local exact_clock = require "exactonline.clock"
local curl_transport = require "exactonline.transport.curl"

local PAGES = 130 -- 60 rows a page on the regular endpoint: windows of 60, 60 and 10 calls
local WINDOW = 60

-- A client whose clock is real time plus what it slept (and what pass() moved it); each sleep moves the
-- sandbox's clock as far (when there is a sandbox), so a wait takes no real time and what the client slept
-- is what it waited. The requests are real HTTPS through the client's own libcurl handle.
local function timed_client(config, sb)
  local slept, sleeps, real = 0, {}, nil
  local function pass(s)
    slept = slept + s
    if sb then sb:advance(s) end
  end
  config.clock = function() return core.now() + slept end
  config.transport = {
    request = function(_, req) return real:request(req) end,
    sleep = function(_, s)
      sleeps[#sleeps + 1] = s
      pass(s)
    end,
  }
  local c = assert(exactonline.new(config))
  real = curl_transport.new(c)
  return c, sleeps, pass
end

describe("a client whose clock is 10 minutes off Exact's", function()
  local sb = helpers.use_sandbox { accounts = 60 * PAGES, limits = { minutely = 60, daily = 100000 } }

  local function timed(skew)
    sb:configure { clock_offset = skew }
    local c, sleeps, pass = timed_client(sb:client_config { division = sb.division,
      store = exactonline.memory_store() }, sb)
    -- start on a whole second 1 s into a minutely window of the sandbox's clock (both clocks move), so 60
    -- calls fit in it and the first answers' Dates pin the offset down to the time a call takes
    pass(1 + WINDOW - sb:stats().clock % WINDOW)
    assert(c:exchange(sb:code()))
    return c, sleeps, pass
  end

  for _, skew in ipairs { 600, -600 } do
    local ahead = skew > 0 and "ahead" or "behind"

    it("pages an export at 60 calls a window with no 429 and no needless wait (Exact " .. ahead .. ")", function()
      local c, sleeps = timed(skew)
      local start = sb:requests().last
      local rows = 0
      for page in c:pages("crm/Accounts", { ["$select"] = "ID" }) do rows = rows + #page end
      assert.equal(60 * PAGES, rows)
      assert.equal(0, sb:stats().rate_limited)

      local log = sb:requests(start).requests
      assert.equal(PAGES, #log)
      local per, windows, needed, prev = {}, {}, {}, nil
      for _, r in ipairs(log) do
        assert.equal(200, r.status, r.uri)
        local w = math.floor(r.clock / WINDOW)
        if not per[w] then
          windows[#windows + 1] = w
          -- a rollover: from the window's last call to its end is what the client had to wait at least
          if prev then needed[#needed + 1] = w * WINDOW - prev.clock end
        end
        per[w] = (per[w] or 0) + 1
        prev = r
      end
      assert.equal(3, #windows)
      assert.equal(windows[1] + 2, windows[3]) -- no window skipped
      assert.same({ 60, 60, 10 }, { per[windows[1]], per[windows[2]], per[windows[3]] })
      -- one sleep per spent window, ending just past the window's end (the 0.1 s landing margin): not the
      -- 10 minutes of the skew, nor a second added for the Date header's resolution
      assert.equal(2, #sleeps)
      for i, s in ipairs(sleeps) do
        assert.is_true(s > needed[i] - 0.5 and s < needed[i] + 0.5,
          ("sleep %d: %.3f s where %.3f s were needed"):format(i, s, needed[i]))
      end
    end)

    it("reads the daily limit on Exact's clock too: spent until Exact's day ends, then sent (" .. ahead .. ")",
      function()
      local c, sleeps, pass = timed(skew)
      sb:limits { minutely = 100000, daily = 1 }
      assert(c:get("crm/Accounts", { ["$top"] = 1 }))
      local before = sb:stats().api_calls
      local rows, err = c:get("crm/Accounts", { ["$top"] = 1 })
      assert.is_nil(rows)
      assert.equal("daily_limit", err.code)
      assert.equal(before, sb:stats().api_calls) -- refused here, not sent for a 429
      -- Exact's day ends at its own midnight: refused until then by the client's clock read with the offset
      local reset = c:rate_limits().daily_reset
      pass(reset - sb:stats().clock - 5)
      assert.equal("daily_limit", select(2, c:get("crm/Accounts", { ["$top"] = 1 })).code)
      assert.equal(before, sb:stats().api_calls)
      pass(6)
      sb:limits { minutely = 100000, daily = 100000 }
      assert(c:get("crm/Accounts", { ["$top"] = 1 }))
      assert.equal(before + 1, sb:stats().api_calls)
      assert.same({}, sleeps)
    end)

    it("times its tokens on Exact's clock: refreshes in the last 30 s, never too early (" .. ahead .. ")", function()
      local c, _, pass = timed(skew)
      assert(c:get("crm/Accounts", { ["$top"] = 1 }))
      local before = sb:stats()
      pass(560) -- 560 s on both clocks: not due yet
      assert(c:get("crm/Accounts", { ["$top"] = 1 }))
      assert.equal(before.token_calls, sb:stats().token_calls)
      pass(12) -- in the last 30 s: one refresh, which Exact allows
      assert(c:get("crm/Accounts", { ["$top"] = 1 }))
      local after = sb:stats()
      assert.equal(before.refreshes + 1, after.refreshes)
      assert.equal(before.too_early, after.too_early)
      assert.equal(before.unauthorized, after.unauthorized)
      -- and an explicit refresh now is refused here, with the wait counted on Exact's clock
      local t, err = c:refresh()
      assert.is_nil(t)
      assert.equal("too_early", err.code)
      assert.is_true(err.retry_after > 560 and err.retry_after <= 570, tostring(err.retry_after))
      assert.equal(after.token_calls, sb:stats().token_calls)
    end)
  end
end)

describe("a client meeting answers without a usable Date", function()
  local srv

  setup(function()
    srv = raw_https.start()
  end)

  -- its tokens fresh on Exact's clock (`ahead` seconds from ours)
  local function client(ahead)
    local now = os.time() + (ahead or 0)
    return timed_client { base_url = srv.base_url, cafile = srv.cafile, client_id = "clock", client_secret = "s",
      division = 7, store = exactonline.memory_store { access_token = "A", refresh_token = "R",
        obtained_at = now, expires_at = now + 600 } }
  end

  -- an answer that says the minutely limit is spent until `reset` (epoch seconds), with these extra headers
  local function spent_until(reset, extra)
    local h = { "X-RateLimit-Minutely-Limit: 60", "X-RateLimit-Minutely-Remaining: 0",
      ("X-RateLimit-Minutely-Reset: %.0f"):format(reset * 1000) }
    for _, x in ipairs(extra or {}) do h[#h + 1] = x end
    srv:json(200, '{"d":{"results":[]}}', h)
  end

  for _, case in ipairs {
    { "no Date", {} },
    { "a garbage Date", { "Date: soon" } },
    { "a Date from 1970", { "Date: Thu, 01 Jan 1970 00:00:10 GMT" } },
    { "an empty Date", { "Date: " } },
  } do
    it("waits by its own clock when the answer carries " .. case[1], function()
      local c, sleeps = client()
      spent_until(os.time() + 30, case[2])
      assert(c:get("crm/Accounts"))
      assert(c:get("crm/Accounts"))
      assert.equal(1, #sleeps)
      assert.is_true(sleeps[1] > 28 and sleeps[1] < 31.5, tostring(sleeps[1]))
    end)
  end

  it("waits by Exact's clock when the Date says it is 10 minutes ahead (the reset is 30 s away on it)", function()
    local c, sleeps = client(600)
    local exact = os.time() + 600
    spent_until(exact + 30, { "Date: " .. os.date("!%a, %d %b %Y %H:%M:%S GMT", exact) })
    assert(c:get("crm/Accounts"))
    assert(c:get("crm/Accounts"))
    assert.equal(1, #sleeps)
    assert.is_true(sleeps[1] > 28 and sleeps[1] < 31.5, tostring(sleeps[1]))
  end)
end)

describe("exactonline.clock", function()
  local DATE = "Tue, 03 Mar 2026 10:00:00 GMT"
  local D = 1772532000

  it("is our own clock until an answer carries a Date", function()
    local c = exact_clock.new()
    assert.is_nil(c:offset())
    assert.equal(1000, c:lower(1000))
    assert.equal(1000, c:upper(1000))
    c:learn(nil, 1, 2)
    c:learn("garbage", 1, 2)
    assert.is_nil(c:offset())
  end)

  it("keeps the offset between Date - received and Date + 1 - sent, closer with every answer", function()
    local c = exact_clock.new()
    -- Exact stamped 10:00:00 between our clock's D - 600.2 and D - 600.1: it is 600.1 to 601.2 s ahead
    c:learn(DATE, D - 600.2, D - 600.1)
    assert.near(600.1 + 100, c:lower(100), 1e-6)
    assert.near(601.2 + 100, c:upper(100), 1e-6)
    -- an answer just after Exact's second turned: the lower bound comes up to it
    c:learn("Tue, 03 Mar 2026 10:00:01 GMT", D - 599.62, D - 599.6)
    assert.near(600.6, c:offset(), 1e-6)
    -- and one just before it turns: the upper bound comes down
    c:learn("Tue, 03 Mar 2026 10:00:01 GMT", D - 598.75, D - 598.7)
    assert.near(600.75 + 100, c:upper(100), 1e-6)
    assert.near(600.6, c:offset(), 1e-6)
  end)

  it("starts over when an answer contradicts what it knows (a clock was set)", function()
    local c = exact_clock.new()
    c:learn(DATE, D - 600.2, D - 600.1)
    c:learn(DATE, D - 0.2, D - 0.1) -- our clock jumped 10 minutes ahead
    assert.near(0.1, c:offset(), 1e-6)
    c:learn(DATE, D + 300.1, D + 300.2) -- and back, past Exact's
    assert.near(-300.2, c:offset(), 1e-6)
  end)

  it("refuses a clock reading that is not epoch seconds", function()
    for _, bad in ipairs { 0 / 0, -1, 1 / 0, 1e300, "1000" } do
      local ok, err = pcall(exact_clock.check, bad)
      assert.is_false(ok)
      assert.matches("config.clock", err, 1, true)
    end
    assert.equal(1000, exact_clock.check(1000))
  end)
end)

describe("exactonline.new with a clock that is not epoch seconds", function()
  it("raises at once, and never says the refresh token expires in nan days", function()
    for _, bad in ipairs { 0 / 0, -5, 1 / 0 } do
      local warned = {}
      local now = os.time()
      local ok, err = pcall(function()
        local c = exactonline.new { base_url = "https://127.0.0.1:9", client_id = "x", client_secret = "s",
          clock = function() return bad end, on_warning = function(m) warned[#warned + 1] = m end,
          store = exactonline.memory_store { access_token = "A", refresh_token = "R", obtained_at = now,
            expires_at = now + 600, refresh_obtained_at = now - 25 * 86400 } }
        return c
      end)
      assert.is_false(ok)
      assert.matches("config.clock", tostring(err), 1, true)
      assert.matches("20%-core_clock_spec%.lua:%d+:", tostring(err)) -- at the caller's line
      assert.same({}, warned)
    end
  end)
end)
