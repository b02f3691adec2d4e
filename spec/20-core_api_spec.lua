-- The core against the sandbox over HTTPS: paths, queries, bodies, pages, errors, rate limits, XML.
local helpers = require "helpers"
local exactonline = require "exactonline"

describe("core against the sandbox: API", function()
  local sb, mem

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

  setup(function()
    sb = helpers.sandbox{ accounts = 130 }
  end)
  teardown(function()
    sb:stop()
  end)
  before_each(function()
    sb:reset()
  end)

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

  it("raises the error object when a page fails mid-stream", function()
    local c = authorized{ division = sb.division }
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
    local c = authorized{ division = sb.division, timeout = 0.5 }
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

  it("stops at a spent minutely budget with on_rate_limit = error, and waits with wait", function()
    sb:limits{ minutely = 2, window = 2 }
    local e = authorized{ division = sb.division, on_rate_limit = "error" }
    assert(e:get("crm/Accounts", { ["$top"] = 1 }))
    assert(e:get("crm/Accounts", { ["$top"] = 1 }))
    local calls = stat("api_calls")
    local res, err = e:get("crm/Accounts", { ["$top"] = 1 })
    if res == nil then -- (unless the 2 s window turned over in between)
      assert.equal("rate_limit", err.kind)
      assert.equal(calls, stat("api_calls"))
    end
    -- the budget is per app and division: start afresh for the next client
    sb:reset()
    sb:limits{ minutely = 2, window = 2 }
    local w = authorized{ division = sb.division, max_wait = 5 }
    for _ = 1, 5 do assert(w:get("crm/Accounts", { ["$top"] = 1 })) end
    assert.equal(0, stat("rate_limited"))
    sb:reset()
    sb:limits{ minutely = 2, window = 2 }
    local z = authorized{ division = sb.division, max_wait = 0 }
    assert(z:get("crm/Accounts", { ["$top"] = 1 }))
    assert(z:get("crm/Accounts", { ["$top"] = 1 }))
    res, err = z:get("crm/Accounts", { ["$top"] = 1 })
    if res == nil then
      assert.equal("rate_limit", err.kind)
      assert.truthy(tostring(err):find("max_wait", 1, true))
    end
  end)

  it("waits out a 429 once and retries", function()
    sb:limits{ minutely = 2, window = 2 }
    local c = authorized{ division = sb.division, max_wait = 5 }
    assert(c:get("crm/Accounts", { ["$top"] = 1 }))
    -- someone else spends the rest of the budget behind our back
    local token = mem.load().access_token
    repeat
      local status = sb:api("GET", "/api/v1/" .. sb.division .. "/crm/Accounts?$top=1", token)
    until status == 429
    local limited = stat("rate_limited")
    assert(c:get("crm/Accounts", { ["$top"] = 1 }))
    assert.truthy(stat("rate_limited") <= limited + 1)
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
