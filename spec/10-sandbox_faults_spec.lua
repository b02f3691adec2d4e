-- What long runs meet at Exact, on demand: each fault kind on the Nth call from now, several scheduled at
-- once (page 7 and page 13 of an export), Retry-After on 503s when asked, a server clock (and Date header)
-- minutes off the client's, and a log of the calls that reached the server.
local helpers = require "helpers"

describe("sandbox faults", function()
  local sb = helpers.use_sandbox{ accounts = 1200, reset = { data = true }, limits = { window = 1e6 } }
  local token, div
  before_each(function()
    div, token = sb.division, sb:tokens().access_token
  end)

  local function raw_get(path, timeout)
    return helpers.http("GET", sb:url(path), { cafile = sb.cafile, timeout = timeout or 30,
      headers = { Accept = "application/json", Authorization = "Bearer " .. token } })
  end

  local ME = "/api/v1/current/Me"

  -- what a call that met the fault looks like, per kind
  local KINDS = {
    html503 = function(status, h, body)
      assert.equal(503, status)
      assert.truthy(h["content-type"]:find("text/html", 1, true))
      assert.truthy(body:find("<html", 1, true))
    end,
    html500 = function(status, h) assert.equal(500, status); assert.truthy(h["content-type"]:find("html", 1, true)) end,
    json500 = function(status, h, body)
      assert.equal(500, status)
      assert.truthy(h["content-type"]:find("application/json", 1, true))
      assert.is_string(helpers.json.decode(body).error.message.value)
    end,
    json503 = function(status, _, body)
      assert.equal(503, status)
      assert.is_string(helpers.json.decode(body).error.message.value)
    end,
    ["408"] = function(status) assert.equal(408, status) end,
    ["401"] = function(status) assert.equal(401, status) end,
    garbage = function(status, _, body)
      assert.equal(200, status)
      assert.is_false((pcall(helpers.json.decode, body)))
    end,
    truncate = function(status, err, code) assert.is_nil(status); assert.equal(18, code, err) end,
    reset = function(status, err, code) assert.is_nil(status); assert.equal(52, code, err) end,
    stall = function(status, err, code) assert.is_nil(status); assert.equal(28, code, err) end,
  }

  for kind, check in pairs(KINDS) do
    it(kind .. " hits the Nth call from now, and only that one", function()
      sb:fault(kind, 1, { after = 2, seconds = 3 })
      assert.equal(200, (raw_get(ME)))
      assert.equal(200, (raw_get(ME)))
      check(raw_get(ME, 1))
      assert.equal(200, (raw_get(ME)))
      -- the log is in arrival order; a stalled call is still "pending" there
      local log = sb:requests(0).requests
      assert.equal(200, log[#log].status)
      assert.equal(kind, log[#log - 1].fault)
      assert.equal(0, sb:stats().faults_pending.api)
    end)
  end

  it("several at once: page 7 and page 13 of a 20-page export fail, each retried page completes", function()
    -- calls from now: pages 1-6 are calls 1-6, page 7 fails on call 7 and is retried as call 8, so the
    -- first try of page 13 is call 14
    sb:fault("html503", 1, { after = 6 })
    sb:fault("reset", 1, { after = 13 })
    assert.equal(2, sb:stats().faults_pending.api)
    local url, pages, ids, failures = "/api/v1/" .. div .. "/crm/Accounts?$select=ID", 0, {}, {}
    while url do
      local status, _, body = raw_get(url:gsub("^https://[^/]+", ""), 10)
      if status ~= 200 then
        failures[#failures + 1] = pages + 1
      else
        pages = pages + 1
        local d = helpers.json.decode(body).d
        for _, r in ipairs(d.results) do
          assert.is_nil(ids[r.ID])
          ids[r.ID] = true
        end
        url = d.__next
      end
    end
    assert.equal(20, pages)
    assert.same({ 7, 13 }, failures)
    local n = 0
    for _ in pairs(ids) do n = n + 1 end
    assert.equal(1200, n)
  end)

  it("without `after` replaces what is pending; count 0 clears; clear=1 clears", function()
    sb:fault("html503", 1, { after = 5 })
    sb:fault("json500", 2)
    assert.equal(2, sb:stats().faults_pending.api)
    assert.equal(500, (raw_get(ME)))
    sb:fault("json500", 0)
    assert.equal(0, sb:stats().faults_pending.api)
    for _ = 1, 6 do assert.equal(200, (raw_get(ME))) end
    sb:fault("408", 3, { after = 1 })
    sb:control("POST", "/_sandbox/fault?clear=1")
    assert.equal(0, sb:stats().faults_pending.api)
    assert.equal(400, (helpers.http("POST", sb:url("/_sandbox/fault?kind=html503&after=-1"),
      { cafile = sb.cafile, headers = sb:control_headers() })))
  end)

  it("puts Retry-After on its 503s when asked, and only then", function()
    sb:fault("html503", 1, { retry_after = 7 })
    local status, h = raw_get(ME)
    assert.equal(503, status)
    assert.equal("7", h["retry-after"])
    sb:fault("json503", 1, { retry_after = 120 })
    status, h = raw_get(ME)
    assert.equal(503, status)
    assert.equal("120", h["retry-after"])
    sb:fault("html503", 1)
    status, h = raw_get(ME)
    assert.equal(503, status)
    assert.is_nil(h["retry-after"])
  end)

  it("stall never handles the request; slow handles it after the client gave up", function()
    local path = "/api/v1/" .. div .. "/crm/Accounts"
    local function post(name)
      return helpers.http("POST", sb:url(path), { cafile = sb.cafile, timeout = 1,
        headers = { Accept = "application/json", Authorization = "Bearer " .. token,
                    ["Content-Type"] = "application/json" }, body = helpers.json.encode{ Name = name } })
    end
    sb:fault("stall", 1, { seconds = 2 })
    local status, _, code = post("Nooit gemaakt")
    assert.is_nil(status)
    assert.equal(28, code)
    sb:fault("slow", 1, { seconds = 2 })
    status, _, code = post("Toch gemaakt")
    assert.is_nil(status)
    assert.equal(28, code)
    -- the slow one is created once its wait is over; the stalled one never is
    local found
    for _ = 1, 100 do
      local _, b = sb:api("GET", path .. "?$select=Name&$filter=" .. helpers.escape("Name eq 'Toch gemaakt'"),
        token)
      found = #b.d.results
      if found > 0 then break end
      os.execute("sleep 0.1")
    end
    assert.equal(1, found)
    local _, none = sb:api("GET", path .. "?$select=Name&$filter=" .. helpers.escape("Name eq 'Nooit gemaakt'"), token)
    assert.equal(0, #none.d.results)
  end)

  describe("hold, and a reset while a call is held", function()
    -- a GET of /current/Me in the background: --> a function that returns "status curl-exit" once it is done
    local function get_in_background()
      local out = helpers.tmpdir() .. "/answer"
      helpers.sh("(curl -s -o /dev/null --cacert " .. helpers.quote(sb.cafile) .. " -H 'Accept: application/json'" ..
        " -H " .. helpers.quote("Authorization: Bearer " .. token) .. " -w '%{http_code} %{exitcode}' " ..
        helpers.quote(sb:url(ME)) .. " >" .. helpers.quote(out .. ".tmp") .. "; mv " .. helpers.quote(out .. ".tmp") ..
        " " .. helpers.quote(out) .. ") </dev/null >/dev/null 2>&1 &")
      return function() return helpers.read(out) end
    end

    local function wait_until(what, fn)
      for _ = 1, 600 do
        local v = fn()
        if v then return v end
        os.execute("sleep 0.05")
      end
      error("gave up waiting until " .. what)
    end

    local function held()
      for _, r in ipairs(sb:requests(0).requests) do
        if r.fault == "hold" and r.status == "pending" then return true end
      end
      return false
    end

    it("holds the call until the fault is cleared, then answers it as usual", function()
      sb:fault("hold", 1)
      local answer = get_in_background()
      wait_until("the call is held", held)
      assert.is_nil(answer(), "a held call was answered")
      assert.equal("hold", sb:stats().faults.api[1].kind) -- its one call arrived; the hold stays scheduled
      sb:fault("hold", 0)
      assert.equal("200 0", wait_until("the call is answered", answer))
      assert.equal(200, sb:requests(0).requests[1].status)
    end)

    it("a reset forgets a held call: it ends unanswered and counts in nothing after the reset", function()
      sb:fault("hold", 1)
      local answer = get_in_background()
      wait_until("the call is held", held)
      sb:reset()
      assert.equal("000 52", wait_until("the call ends", answer)) -- curl: empty reply from server
      local s = sb:stats()
      assert.equal(0, s.api_calls)
      assert.equal(0, s.unauthorized)
      assert.equal(0, s.faults_served)
      assert.same({}, sb:requests(0).requests)
    end)
  end)

  it("hits the token endpoint the same way (scope=token)", function()
    sb:fault("json500", 1, { scope = "token", after = 1 })
    assert.equal(200, (sb:exchange()))
    assert.equal(500, (sb:exchange()))
    assert.equal(200, (sb:exchange()))
  end)

  describe("clock", function()
    local function date_of(h)
      local d, mon, y, hh, mm, ss = h.date:match("^%a+, (%d+) (%a+) (%d+) (%d+):(%d+):(%d+) GMT$")
      local months = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9, Oct = 10,
                       Nov = 11, Dec = 12 }
      local t = os.time{ year = tonumber(y), month = months[mon], day = tonumber(d), hour = tonumber(hh),
                         min = tonumber(mm), sec = tonumber(ss) }
      -- os.time reads local time; take the offset back out
      return t + os.difftime(os.time(), os.time(os.date("!*t")))
    end

    it("the Date header is on the sandbox clock, minutes ahead of the client's with clock_offset", function()
      local _, h = raw_get(ME)
      local s0 = sb:stats().clock
      assert.truthy(math.abs(date_of(h) - s0) <= 2)
      assert.truthy(math.abs(date_of(h) - os.time()) <= 5)
      sb:configure{ clock_offset = 600 }
      token = sb:tokens().access_token
      local _, h2 = raw_get(ME)
      local s1 = sb:stats()
      assert.equal(600, s1.clock_offset)
      assert.truthy(math.abs(date_of(h2) - s1.clock) <= 2)
      assert.truthy(date_of(h2) - os.time() >= 590)
      -- rate-limit resets are on the same clock
      local _, h3 = raw_get(ME)
      local reset = tonumber(h3["x-ratelimit-reset"]) / 1000
      assert.truthy(reset > s1.clock and reset <= s1.clock + 86400)
      sb:configure{ clock_offset = -120 }
      assert.equal(-120, sb:stats().clock_offset)
      assert.equal(400, (helpers.http("POST", sb:url("/_sandbox/config?clock_offset=soon"),
        { cafile = sb.cafile, headers = sb:control_headers() })))
    end)
  end)

  it("logs the calls that reached it: method, path and query, status, fault, in order", function()
    local start = sb:requests().last
    raw_get("/api/v1/" .. div .. "/crm/Accounts?$top=1")
    sb:fault("html503", 1)
    raw_get(ME)
    local r = sb:requests(start)
    assert.equal(start + 2, r.last)
    assert.equal(2, #r.requests)
    assert.equal("GET", r.requests[1].method)
    assert.equal("/api/v1/" .. div .. "/crm/Accounts?$top=1", r.requests[1].uri)
    assert.equal(200, r.requests[1].status)
    assert.equal("api", r.requests[1].scope)
    assert.equal(503, r.requests[2].status)
    assert.equal("html503", r.requests[2].fault)
    assert.same({}, sb:requests(r.last).requests)
  end)
end)
