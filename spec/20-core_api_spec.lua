-- The core against the sandbox over HTTPS: paths, queries, bodies, pages, errors, rate limits, XML.
local helpers = require "helpers"
local exactonline = require "exactonline"
local core = require "exactonline.core"
local curl_transport = require "exactonline.transport.curl"

describe("core against the sandbox: API", function()
  local sb = helpers.use_sandbox{ accounts = 130 }
  local mem

  local function new(over)
    local c = assert(exactonline.new(sb:client_config(over)))
    return c
  end
  local function authorized(over)
    over = over or {}
    mem = exactonline.memory_store()
    over.store = over.store or mem
    local c = new(over)
    assert(c:exchange(sb:code()))
    return c
  end
  local function stat(name) return sb:stats()[name] end

  -- An authorized client whose clock and sleeps move the sandbox's clock along: a rate-limit wait takes
  -- no real time and is recorded ({ at = client clock, seconds = s }); the requests are real HTTPS through
  -- the client's own libcurl handle. One per test (sb:reset() puts the sandbox's clock back).
  local function timed(over)
    local offset, sleeps, real = 0, {}, nil
    local function clock() return core.now() + offset end
    local function advance(sec)
      offset = offset + sec
      sb:advance(sec)
    end
    over = over or {}
    mem = exactonline.memory_store()
    over.store, over.clock, over.division = mem, clock, sb.division
    over.transport = {
      request = function(_, req) return real:request(req) end,
      sleep = function(_, sec)
        sleeps[#sleeps + 1] = { at = clock(), seconds = sec }
        advance(sec)
      end,
    }
    local c = new(over)
    real = curl_transport.new(c)
    assert(c:exchange(sb:code()))
    -- start 1 s into a fresh rate-limit window of w seconds (windows are aligned on the epoch)
    local function align(w) advance(w - clock() % w + 1) end
    return c, sleeps, align
  end
  -- someone else (same app, same division) spends calls behind the client's back
  local function spend_until(status)
    local token = mem.load().access_token
    local got
    repeat
      got = sb:api("GET", "/api/v1/" .. sb.division .. "/crm/Accounts?$top=1", token)
    until got == status or got ~= 200
    assert.equal(status, got)
  end

  it("looks the division up once, then resolves relative paths against it", function()
    local c = authorized()
    assert.equal(sb.division, c:division())
    local calls = stat("api_calls")
    assert.equal(sb.division, c:division())
    local rows = assert(c:get("crm/Accounts", { ["$select"] = "ID,Name", ["$top"] = 3 }))
    assert.equal(3, #rows)
    assert.equal(calls + 1, stat("api_calls"))
    local divs = assert(c:divisions())
    assert.equal(2, #divs)
    assert.equal(sb.division, divs[1].Code)
  end)

  it("sends query values percent-encoded once ($filter with quotes and spaces)", function()
    local c = authorized{ division = sb.division }
    local first = assert(c:get("crm/Accounts", { ["$select"] = "ID,Name", ["$top"] = 1 }))[1]
    local name = first.Name
    local rows = assert(c:get("crm/Accounts", { ["$filter"] = "Name eq '" .. name:gsub("'", "''") .. "'",
                                                 ["$select"] = "ID,Name" }))
    assert.equal(1, #rows)
    assert.equal(first.ID, rows[1].ID)
  end)

  it("posts, puts and deletes with JSON bodies", function()
    local c = authorized{ division = sb.division }
    local made = assert(c:post("crm/Accounts", { Name = "Nieuw & Co \"quoted\"" }))
    assert.equal("Nieuw & Co \"quoted\"", made.Name)
    local path = "crm/Accounts(guid'" .. made.ID .. "')"
    assert.is_true(c:put(path, { Name = "Renamed" }))
    assert.equal("Renamed", assert(c:get(path)).Name)
    assert.is_true(c:delete(path))
    -- the reused handle forgets the DELETE: the next call is a GET (a DELETE on the list would be refused)
    assert.is_table(assert(c:get("crm/Accounts", { ["$top"] = 1 })))
    local none, err = c:get(path)
    assert.is_nil(none)
    assert.same({ "api", 404 }, { err.kind, err.status })
    none, err = c:post("crm/Accounts", {})
    assert.is_nil(none)
    assert.equal(400, err.status)
    assert.truthy(err.message:find("Name", 1, true))
  end)

  it("streams pages following __next and each row once", function()
    local c = authorized{ division = sb.division }
    local sizes, seen, n = {}, {}, 0
    for page in c:pages("crm/Accounts", { ["$select"] = "ID,Name" }) do sizes[#sizes + 1] = #page end
    assert.same({ 60, 60, 10 }, sizes)
    for row in c:each("crm/Accounts", { ["$select"] = "ID" }) do
      assert.is_nil(seen[row.ID])
      seen[row.ID] = true
      n = n + 1
    end
    assert.equal(130, n)
  end)

  it("stops a listing at config.max_pages with an error, after the pages it allows", function()
    local c = authorized{ division = sb.division, max_pages = 2 }
    local calls, sizes = stat("api_calls"), {}
    local ok, err = pcall(function()
      for page in c:pages("crm/Accounts", { ["$select"] = "ID" }) do sizes[#sizes + 1] = #page end
    end)
    assert.is_false(ok)
    assert.equal("max_pages", err.code)
    assert.same({ 60, 60 }, sizes)
    assert.equal(calls + 2, stat("api_calls"))
  end)

  it("raises the error object when a page fails mid-stream", function()
    local c = authorized{ division = sb.division, retries = 1 } -- no retries (20-client_retry has them)
    local pages = 0
    local ok, err = pcall(function()
      for _ in c:pages("crm/Accounts", { ["$select"] = "ID" }) do
        pages = pages + 1
        sb:fault("html503", 1)
      end
    end)
    assert.is_false(ok)
    assert.equal(1, pages)
    assert.is_true(exactonline.is_error(err))
    assert.same({ "http", 503, "an HTML page: Service Unavailable" }, { err.kind, err.status, err.message })
  end)

  it("refuses an absolute URL on another origin before any connection", function()
    local c = authorized{ division = sb.division }
    local calls = stat("api_calls")
    local port = sb.base_url:match(":(%d+)$")
    for _, url in ipairs{ "https://evil.example/api/v1/current/Me",
                          "https://localhost:" .. port .. "/api/v1/current/Me" } do
      local res, err = c:request("GET", url)
      assert.is_nil(res)
      assert.equal("foreign_origin", err.code)
    end
    assert.equal(calls, stat("api_calls"))
    assert(c:request("GET", sb.base_url .. "/api/v1/current/Me"))
  end)

  it("reports broken answers by kind: decode, network (truncated, reset, timeout), size cap", function()
    local c = authorized{ division = sb.division, timeout = 0.5, retries = 1 } -- as one try reports them
    sb:fault("garbage", 1)
    local res, err = c:get("crm/Accounts")
    assert.is_nil(res)
    assert.equal("decode", err.kind)
    sb:fault("truncate", 1)
    res, err = c:get("crm/Accounts")
    assert.is_nil(res)
    assert.equal("network", err.kind)
    assert.equal("CURLE_PARTIAL_FILE", err.code)
    sb:fault("reset", 1)
    res, err = c:get("crm/Accounts")
    assert.is_nil(res)
    assert.equal("network", err.kind)
    sb:fault("slow", 1, 2)
    res, err = c:get("crm/Accounts")
    assert.is_nil(res)
    assert.equal("CURLE_OPERATION_TIMEDOUT", err.code)
    local small = authorized{ division = sb.division, max_response_size = 2048 }
    res, err = small:get("crm/Accounts")
    assert.is_nil(res)
    assert.equal("CURLE_FILESIZE_EXCEEDED", err.code)
    assert.truthy(err.message:find("max_response_size", 1, true))
    assert(c:get("crm/Accounts", { ["$top"] = 1 })) -- the reused handle still works
  end)

  it("reads both rate-limit families on every answer (resets in epoch seconds)", function()
    local c = authorized{ division = sb.division }
    assert(c:get("crm/Accounts", { ["$top"] = 1 }))
    local rl = c:rate_limits()
    assert.same({ 60, 59, 5000, 4999 }, { rl.minutely_limit, rl.minutely_remaining, rl.daily_limit,
                                          rl.daily_remaining })
    assert.equal(0, rl.minutely_reset % 60)
    assert.equal(0, rl.daily_reset % 86400)
    assert.truthy(rl.minutely_reset > os.time() - 1 and rl.minutely_reset <= os.time() + 61)
  end)

  it("with on_rate_limit = \"error\", stops at a spent minutely budget without calling", function()
    sb:limits{ minutely = 2, window = 60 }
    local c, sleeps, align = timed{ on_rate_limit = "error" }
    align(60)
    assert(c:get("crm/Accounts", { ["$top"] = 1 }))
    assert(c:get("crm/Accounts", { ["$top"] = 1 }))
    local calls = stat("api_calls")
    local res, err = c:get("crm/Accounts", { ["$top"] = 1 })
    assert.is_nil(res)
    assert.same({ "rate_limit", "minutely_limit" }, { err.kind, err.code })
    assert.truthy(err.retry_after > 55 and err.retry_after < 60)
    assert.truthy(tostring(err):find("on_rate_limit", 1, true))
    assert.same({ calls, 0, 0 }, { stat("api_calls"), stat("rate_limited"), #sleeps })
  end)

  it("with on_rate_limit = \"wait\", waits for the minutely reset before calling (no 429)", function()
    sb:limits{ minutely = 2, window = 60 }
    local c, sleeps, align = timed{ max_wait = 120 }
    align(60)
    for _ = 1, 5 do assert(c:get("crm/Accounts", { ["$top"] = 1 })) end
    assert.same({ 5, 0, 2 }, { stat("api_calls"), stat("rate_limited"), #sleeps })
    for _, s in ipairs(sleeps) do
      assert.truthy(s.seconds > 55 and s.seconds <= 60.2, s.seconds)
      assert.truthy((s.at + s.seconds) % 60 < 1) -- landed just past a window's reset
    end
  end)

  it("never waits longer than max_wait: a rate_limit error that says so", function()
    sb:limits{ minutely = 2, window = 60 }
    local c, sleeps, align = timed{ max_wait = 30 }
    align(60)
    assert(c:get("crm/Accounts", { ["$top"] = 1 }))
    assert(c:get("crm/Accounts", { ["$top"] = 1 }))
    local res, err = c:get("crm/Accounts", { ["$top"] = 1 })
    assert.is_nil(res)
    assert.same({ "rate_limit", "minutely_limit" }, { err.kind, err.code })
    assert.truthy(tostring(err):find("max_wait", 1, true))
    assert.same({ 2, 0 }, { stat("api_calls"), #sleeps })
  end)

  it("after a 429, waits once for the reset its headers give, then retries", function()
    -- a 30 s window: the headers' reset (the window's end) is not the next minute boundary
    sb:limits{ minutely = 2, window = 30 }
    local c, sleeps, align = timed{ max_wait = 120 }
    align(60)
    assert(c:get("crm/Accounts", { ["$top"] = 1 })) -- the client thinks one call is left
    spend_until(429)
    local rows = assert(c:get("crm/Accounts", { ["$top"] = 1 }))
    assert.equal(1, #rows)
    assert.equal(1, #sleeps)
    assert.truthy(sleeps[1].seconds > 25 and sleeps[1].seconds <= 30.2, sleeps[1].seconds)
    assert.truthy((sleeps[1].at + sleeps[1].seconds) % 30 < 1)
    assert.equal(2, stat("rate_limited")) -- the other caller's 429 and ours; the retry got through
  end)

  it("after a 429 without rate-limit headers, waits for the next minute boundary", function()
    sb:configure{ no429headers = true, minutely = 2, window = 30 }
    local c, sleeps, align = timed{ max_wait = 120 }
    align(60)
    assert(c:get("crm/Accounts", { ["$top"] = 1 }))
    spend_until(429)
    assert(c:get("crm/Accounts", { ["$top"] = 1 }))
    assert.equal(1, #sleeps)
    assert.truthy(sleeps[1].seconds > 55 and sleeps[1].seconds <= 60.2, sleeps[1].seconds)
    assert.truthy((sleeps[1].at + sleeps[1].seconds) % 60 < 1)
    assert.equal(2, stat("rate_limited"))
  end)

  it("a 429 for the daily limit is an immediate error: no wait, no retry", function()
    sb:limits{ daily = 2 }
    local c, sleeps = timed{ max_wait = 86400 }
    assert(c:get("crm/Accounts", { ["$top"] = 1 }))
    spend_until(429) -- the other caller spends the last call of the day
    local calls = stat("api_calls")
    local res, err = c:get("crm/Accounts", { ["$top"] = 1 })
    assert.is_nil(res)
    assert.same({ "rate_limit", "daily_limit", 429 }, { err.kind, err.code, err.status })
    assert.same({ calls + 1, 0 }, { stat("api_calls"), #sleeps })
  end)

  it("sends a User-Agent naming the module, asks for gzip and JSON, and keeps one connection", function()
    local c = authorized{ division = sb.division }
    local tok = sb:stats().last_token_request
    local prefix = "exactonline/" .. exactonline.version .. " (libcurl/"
    assert.equal(prefix, tok.user_agent:sub(1, #prefix))
    local res = assert(c:request("GET", "crm/Accounts", { query = { ["$select"] = "ID,Name,City" } }))
    assert.equal("gzip", res.headers["content-encoding"]) -- it came compressed and reads as 60 rows
    assert.equal(60, #res.data.d.results)
    assert(c:get("crm/Accounts", { ["$top"] = 1 }))
    local last = sb:stats().last_api_request
    assert.equal(tok.user_agent, last.user_agent)
    assert.equal("application/json", last.accept)
    assert.truthy(last.accept_encoding:find("gzip", 1, true))
    assert.is_nil(last.connection_header) -- no "Connection: close"
    -- the token call and both API calls went over one connection
    assert.equal(tok.connection, last.connection)
    assert.equal(tok.connection_requests + 2, last.connection_requests)
  end)

  it("fails at once when the daily budget is spent", function()
    sb:limits{ daily = 2 }
    local c = authorized{ division = sb.division, max_wait = 600 }
    assert(c:get("crm/Accounts", { ["$top"] = 1 }))
    assert(c:get("crm/Accounts", { ["$top"] = 1 }))
    local res, err = c:get("crm/Accounts", { ["$top"] = 1 })
    assert.is_nil(res)
    assert.same({ "rate_limit", "daily_limit" }, { err.kind, err.code })
    assert.equal(0, c:rate_limits().daily_remaining)
  end)

  it("downloads XML following TSPaging and uploads XML", function()
    local c = authorized()
    local pages = assert(c:xml_download("Accounts"))
    assert.equal(2, #pages)
    local n = 0
    for _, xml in ipairs(pages) do
      for _ in xml:gmatch("<Account ") do n = n + 1 end
    end
    assert.equal(130, n)
    local answer = assert(c:xml_upload("Accounts",
      '<eExact><Accounts><Account code="990001"><Name>Via XML</Name></Account></Accounts></eExact>'))
    assert.truthy(answer:find("Created", 1, true))
    assert.equal(1, #assert(c:get("crm/Accounts", { ["$filter"] = "Name eq 'Via XML'" })))
  end)
end)
