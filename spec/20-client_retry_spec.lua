-- Retries (issue 13) over real HTTPS against the sandbox's faults: a GET is tried again after a 5xx, a 408, a
-- dropped or refused connection, a timeout, a truncated or unreadable answer; a write only when it never
-- reached the server. Small backoff settings keep it fast; nothing here times anything.
local helpers = require "helpers"
local cli = require "support.cli_run"
local tcp_relay = require "support.tcp_relay"
local gw_harness = require "support.gateway"
local exactonline = require "exactonline"
local client_mod = require "exactonline.client" -- core(c): the private C half, for what only it can tell
local cjson = require "cjson"

local ACCOUNTS = 1200 -- 20 pages of 60 on the regular endpoint

-- each kind, as the sandbox serves it on a page: seconds (stall, slow), how many calls it hits, and how many
-- of those the client sees fail (libcurl itself re-sends once a request whose reused connection closed
-- without an answer, so a lone reset never reaches the client: two in a row do)
local KINDS = {
  html503 = {}, html500 = {}, json500 = {}, json503 = {}, ["408"] = {}, truncate = {}, garbage = {}, ["401"] = {},
  reset = { count = 2, seen = 1 },
  stall = { seconds = 4, timeout = 2 },  -- longer than the client's timeout: a timeout
  slow = { seconds = 4, timeout = 2 },   -- answered after the client gave up: a timeout too
}

describe("retry policy", function()
  local retry = require "exactonline.retry"
  local core = require "exactonline.core"

  it("classifies what a try got: unsent, again (a GET only), or final", function()
    local function net(code, message) return core.error { kind = "network", code = code, message = message } end
    local CASES = {
      { net("CURLE_COULDNT_CONNECT"), nil, "unsent", "a refused or unreachable connection" },
      { net("connect"), nil, "unsent", "a refused or unreachable connection" },  -- the ngx transport
      { net("CURLE_OPERATION_TIMEDOUT", "Timeout was reached: Connection timed out after 30001 milliseconds"), nil,
        "unsent", "no connection in time (timeout)" },
      { net("CURLE_OPERATION_TIMEDOUT", "Timeout was reached: Operation timed out after 30001 milliseconds with "
        .. "0 bytes received"), nil, "again", "no answer in time (timeout)" },
      { net("timeout"), nil, "again", "no answer in time (timeout)" },
      { net("CURLE_PARTIAL_FILE"), nil, "again", "a truncated answer" },
      { net("receive"), nil, "again", "a dropped connection" },
      { net("CURLE_FILESIZE_EXCEEDED", "too big"), nil, nil, "too big" },
      { core.error { kind = "tls", code = "CURLE_PEER_FAILED_VERIFICATION", message = "bad cert" }, nil, nil,
        "bad cert" },
      { core.error { kind = "http", status = 502, message = "an HTML page: Bad Gateway" }, { status = 502 }, "again",
        "HTTP 502 (an HTML page)" },
      { core.error { kind = "api", status = 404, message = "Not found" }, { status = 404 }, nil, "HTTP 404" },
      { core.error { kind = "decode", status = 200, message = "bad JSON" }, { status = 200 }, "again",
        "an answer that could not be read (HTTP 200)" },
      { core.error { kind = "oauth", status = 400, code = "access_denied", message = "not expired" }, nil, "unsent",
        "HTTP 401, and a refresh refused as too early (the access token is live)" },
      { nil, { status = 503, headers = { ["content-type"] = "text/html" } }, "again", "HTTP 503 (an HTML page)" },
      { nil, { status = "503" }, nil, "?" },  -- a raw status that is not a number is nobody's 5xx
    }
    for i, case in ipairs(CASES) do
      local class, got = retry.classify(case[1], case[2])
      assert.same({ case[3], case[4] }, { class, got }, "case " .. i)
    end
  end)

  it("reads Retry-After as seconds, or as an HTTP date against the answer's Date", function()
    local now = function() return 1700000000 end
    assert.equal(120, retry.retry_after({ ["retry-after"] = "120" }, now))
    assert.is_nil(retry.retry_after({ ["retry-after"] = "soon" }, now))
    assert.is_nil(retry.retry_after({}, now))
    if not core.http_date then return pending("core.http_date (the Date-header clock) is not in this build") end
    assert.equal(90, retry.retry_after({ ["retry-after"] = "Tue, 14 Nov 2023 22:15:00 GMT",
      date = "Tue, 14 Nov 2023 22:13:30 GMT" }, now))
  end)
end)

describe("retries", function()
  local sb = helpers.use_sandbox { accounts = ACCOUNTS, reset = { data = true },
    limits = { minutely = 100000, daily = 100000 } }
  local retries -- on_retry's calls in the running test

  -- a client with tokens (a fresh pair, or `tokens`), small backoff, on_retry recording into `retries`
  local function new(over, tokens)
    retries = {}
    local config = sb:client_config { division = sb.division, retry_delay = 0.01,
      on_retry = function(info) retries[#retries + 1] = info end }
    for k, v in pairs(over or {}) do config[k] = v end
    local c = assert(exactonline.new(config))
    client_mod.core(c):set_tokens(tokens or sb:tokens()) -- the pair, as a store would give it
    return c
  end

  local function all_ids()
    local ids = {}
    for _, r in ipairs(sb:entity("accounts", { view = "regular" }).rows) do ids[#ids + 1] = r.ID end
    table.sort(ids)
    return ids
  end

  -- the API calls that reached the sandbox since `start`
  local function api_log(start)
    local out = {}
    for _, r in ipairs(sb:requests(start).requests) do
      if r.scope == "api" then out[#out + 1] = r end
    end
    return out
  end

  -- a fault on page 7 and on page 13 of a 20-page listing (calls from now: pages 1-6, then page 7's tries)
  local function fault_pages(kind, k)
    local n = k.count or 1
    sb:fault(kind, n, { after = 6, seconds = k.seconds })
    sb:fault(kind, n, { after = 12 + (k.answered and 0 or n), seconds = k.seconds })
  end

  -- the log shows each faulted page fetched again right after its fault(s), 20 pages and the faults in all
  -- (k.answered: the faulted calls were answered, late, and not fetched again)
  local function assert_refetched(log, kind, k)
    if k.answered then
      assert.equal(20, #log)
      for _, at in ipairs { 7, 13 } do assert.same({ kind, 200 }, { log[at].fault, log[at].status }) end
      return
    end
    local n = k.count or 1
    assert.equal(20 + 2 * n, #log)
    for _, at in ipairs { 7, 13 + n } do
      for i = at, at + n - 1 do
        assert.equal(kind, log[i].fault, "call " .. i)
        assert.equal(log[at].uri, log[i].uri)
      end
      assert.is_nil(log[at + n].fault)
      assert.equal(200, log[at + n].status)
      assert.equal(log[at].uri, log[at + n].uri)
    end
  end

  for kind, k in pairs(KINDS) do
    it("client:pages completes 20 pages with a " .. kind .. " on page 7 and page 13, exactly the right rows",
      function()
        local c = new { timeout = k.timeout }
        local start = sb:requests().last
        fault_pages(kind, k)
        local ids, pages = {}, 0
        for rows in c:pages("crm/Accounts", { ["$select"] = "ID,Name" }) do
          pages = pages + 1
          for _, r in ipairs(rows) do ids[#ids + 1] = r.ID end
        end
        assert.equal(20, pages)
        table.sort(ids)
        assert.same(all_ids(), ids) -- every row once, none twice
        assert_refetched(api_log(start), kind, k)
        assert.equal(2 * (k.seen or 1), #retries)
        for _, info in ipairs(retries) do
          assert.equal("GET", info.method)
          assert.equal("/api/v1/" .. ("%d"):format(sb.division) .. "/crm/Accounts", info.path)
          assert.equal(1, info.attempt)
          assert.equal(4, info.tries)
          assert.is_string(info.got)
          assert.truthy(info.wait >= 0 and info.wait <= 0.01)
        end
      end)
  end

  it("three failures in a row (within retries = 4) complete; a fourth fails naming every try", function()
    local c = new()
    local start = sb:requests().last
    sb:fault("html503", 1)
    sb:fault("reset", 2, { after = 1 })   -- two: libcurl re-sends the first itself
    sb:fault("json500", 1, { after = 3 })
    local rows = assert(c:get("crm/Accounts", { ["$select"] = "ID", ["$top"] = 2 }))
    assert.equal(2, #rows)
    assert.equal(5, #api_log(start))
    assert.same({ 1, 2, 3 }, { retries[1].attempt, retries[2].attempt, retries[3].attempt })
    assert.same({ "HTTP 503 (an HTML page)", "a closed connection, no answer", "HTTP 500" },
      { retries[1].got, retries[2].got, retries[3].got })
    assert.is_nil(retries[4])

    retries = {}
    start = sb:requests().last
    sb:fault("html503", 1)
    sb:fault("408", 1, { after = 1 })
    sb:fault("json503", 2, { after = 2 })
    local res, err = c:get("crm/Accounts", { ["$select"] = "ID", ["$top"] = 2 })
    assert.is_nil(res)
    assert.equal(4, #api_log(start)) -- no fifth call
    assert.equal(3, #retries)
    assert.equal(503, err.status)
    assert.equal(4, err.tries)
    local text = tostring(err)
    assert.matches("GET /api/v1/%d+/crm/Accounts was tried 4 times: HTTP 503 %(an HTML page%), HTTP 408 %(an HTML "
      .. "page%), HTTP 503, HTTP 503; config.retries allows 4 tries", text)
    assert.matches("What to do: .*try again later %(config.retries and max_wait set how long the client keeps "
      .. "trying%)", text)
  end)

  it("retries = 1 makes one try; a bad retries or on_retry is refused at exactonline.new", function()
    local c = new { retries = 1 }
    sb:fault("html503", 1)
    local _, err = c:get("crm/Accounts", { ["$top"] = 1 })
    assert.equal(503, err.status)
    assert.is_nil(err.tries)
    assert.equal(0, #retries)
    assert.matches("config.retries must be a whole number from 0 to 100",
      select(2, pcall(exactonline.new, sb:client_config { retries = 2.5 })))
    assert.matches("config.retry_delay must be a number of seconds",
      select(2, pcall(exactonline.new, sb:client_config { retry_delay = -1 })))
    assert.matches("config.on_retry must be a function",
      select(2, pcall(exactonline.new, sb:client_config { on_retry = "print" })))
  end)

  it("never retries a 404 (nor any 4xx but 401 and 429)", function()
    local c = new()
    local start = sb:requests().last
    local res, err = c:get("crm/NoSuchThing")
    assert.is_nil(res)
    assert.equal(404, err.status)
    assert.is_nil(err.tries)
    assert.equal(1, #api_log(start))
    assert.equal(0, #retries)
  end)

  it("honours Retry-After, and stops when it asks more than max_wait leaves", function()
    local c = new()
    sb:fault("json503", 1, { retry_after = 1 })
    assert(c:get("crm/Accounts", { ["$top"] = 1 }))
    assert.equal(1, #retries)
    assert.equal(1, retries[1].retry_after)
    assert.truthy(retries[1].wait >= 1)

    c = new { max_wait = 2 }
    local start = sb:requests().last
    sb:fault("html503", 2, { retry_after = 30 })
    local res, err = c:get("crm/Accounts", { ["$top"] = 1 })
    assert.is_nil(res)
    assert.equal(503, err.status)
    assert.matches("Service Unavailable; not tried again: Exact asked to wait 30 s %(Retry%-After%), more than "
      .. "max_wait leaves %(2 s%)", tostring(err))
    assert.equal(1, #api_log(start))
    assert.equal(0, #retries)
  end)

  it("on_retry returning false stops the tries", function()
    local c = new { on_retry = function() return false end }
    local start = sb:requests().last
    sb:fault("html500", 2)
    local _, err = c:get("crm/Accounts", { ["$top"] = 1 })
    assert.equal(500, err.status)
    assert.equal(1, #api_log(start))
  end)

  describe("writes", function()
    local function named(name)
      local n = 0
      for _, r in ipairs(sb:entity("accounts", { view = "regular" }).rows) do
        if r.Name == name then n = n + 1 end
      end
      return n
    end

    local function posts(start)
      local n = 0
      for _, r in ipairs(api_log(start)) do
        if r.method == "POST" then n = n + 1 end
      end
      return n
    end

    it("a POST that timed out once sent is not sent again, and the error says how to check", function()
      local c = new { timeout = 2 }
      local start = sb:requests().last
      sb:fault("slow", 1, { seconds = 4 }) -- the sandbox creates it after the client gave up
      local res, err = c:post("crm/Accounts", { Name = "Eenmaal aangemaakt" })
      assert.is_nil(res)
      assert.equal("network", err.kind)
      assert.is_true(err.maybe_done)
      local text = tostring(err)
      assert.matches("the call reached Exact Online, so the POST may or may not have happened: it was not sent "
        .. "again", text)
      assert.matches("What to do: look for the record before sending it again", text)
      assert.equal(0, #retries)
      for _ = 1, 100 do
        if named("Eenmaal aangemaakt") > 0 then break end
        os.execute("sleep 0.1")
      end
      assert.equal(1, named("Eenmaal aangemaakt")) -- created once, by the one call
      assert.equal(1, posts(start))
    end)

    it("a POST answered 503 or dropped is not sent again either", function()
      local c = new { timeout = 2 }
      -- a reset too: a write goes on a new connection, so neither libcurl nor our retries send it again when
      -- the server closes it without an answer (on a kept-alive one libcurl would re-send it by itself)
      for _, kind in ipairs { "html503", "json500", "408", "stall", "truncate", "reset" } do
        assert(c:get("crm/Accounts", { ["$select"] = "ID", ["$top"] = 1 })) -- a connection kept alive
        local start = sb:requests().last
        sb:fault(kind, 1, { seconds = 4 })
        local res, err = c:post("crm/Accounts", { Name = "Niet twee keer " .. kind })
        assert.is_nil(res, kind)
        assert.is_true(err.maybe_done, kind)
        assert.matches("may or may not have happened", tostring(err))
        assert.equal(1, posts(start), kind)
      end
      assert.equal(0, #retries)
    end)

    it("a POST whose connection was refused is sent again, and made once", function()
      local relay = tcp_relay.new(sb.port) -- nothing listens on relay.port until the first retry starts it
      local c = new { base_url = relay.base_url, on_retry = function(info)
        retries[#retries + 1] = info
        if not relay.pid then relay:start() end
      end }
      local start = sb:requests().last
      local made = assert(c:post("crm/Accounts", { Name = "Na een weigering" }))
      assert.equal("Na een weigering", made.Name)
      assert.equal(1, #retries)
      assert.equal("a refused or unreachable connection", retries[1].got)
      assert.equal("POST", retries[1].method)
      assert.equal(1, posts(start))
      assert.equal(1, named("Na een weigering"))
    end)

    it("a call that can never connect ends after `retries` tries, each named", function()
      local port = helpers.free_port()
      local c = new { base_url = "https://127.0.0.1:" .. port }
      local res, err = c:put("crm/Accounts(guid'00000000-0000-0000-0000-000000000001')", { Name = "x" })
      assert.is_nil(res)
      assert.equal("CURLE_COULDNT_CONNECT", err.code)
      assert.equal(4, err.tries)
      assert.equal(3, #retries)
      assert.matches("PUT /api/v1/%d+/crm/Accounts%(guid'[%x%-]+'%) was tried 4 times: a refused or unreachable "
        .. "connection, a refused or unreachable connection, a refused or unreachable connection, a refused or "
        .. "unreachable connection", tostring(err))
    end)
  end)

  it("request{ raw = true } (the gateway) tries a GET again, then passes Exact's last answer through", function()
    local c = new()
    local path = "crm/Accounts?$select=ID&$top=1"
    sb:fault("html503", 1)
    local res = assert(c:request("GET", path, { raw = true }))
    assert.equal(200, res.status)
    assert.equal(1, #retries)
    local start = sb:requests().last
    sb:fault("json500", 4)
    res = assert(c:request("GET", path, { raw = true }))
    assert.equal(500, res.status)
    assert.equal("An error has occurred.", cjson.decode(res.body).error.message.value)
    assert.equal(4, #api_log(start))
    -- a raw POST answered 503 comes back at once, as Exact sent it
    start = sb:requests().last
    sb:fault("html503", 1)
    res = assert(c:request("POST", "crm/Accounts", { raw = true, body = { Name = "Raw" } }))
    assert.equal(503, res.status)
    assert.equal(1, #api_log(start))
  end)

  it("xml_download tries a failed page again and gets every page once", function()
    local c = new()
    local want = assert(c:xml_download("Accounts"))
    assert.truthy(#want >= 3)
    sb:fault("json500", 1, { after = 1 })
    sb:fault("truncate", 1, { after = 3 })
    local got = assert(c:xml_download("Accounts"))
    assert.same(want, got)
    assert.equal(2, #retries)
  end)

  it("a refresh that reached Exact is not sent again: the error says so, the refresh token is kept", function()
    local store = exactonline.memory_store()
    local core = require "exactonline.core"
    local c = new { store = store, timeout = 2, clock = function() return core.now() + 600 end } -- ours agrees: due
    assert(store.save(client_mod.core(c):tokens()))
    sb:advance(600) -- Exact's clock: the token is due
    local held = client_mod.core(c):tokens().refresh_token
    local start = sb:requests().last
    sb:fault("stall", 1, { scope = "token", seconds = 4 })
    local res, err = c:refresh()
    assert.is_nil(res)
    assert.is_true(err.maybe_done)
    local text = tostring(err)
    assert.matches("the refresh may or may not have happened", text)
    assert.matches("the stored refresh token is kept", text)
    local tokens = 0
    for _, r in ipairs(sb:requests(start).requests) do
      if r.scope == "token" then tokens = tokens + 1 end
    end
    assert.equal(1, tokens)
    assert.equal(held, store.load().refresh_token)
    -- the stalled refresh never happened at Exact: the kept refresh token still works
    assert(c:refresh())
    assert.are_not.equal(held, client_mod.core(c):tokens().refresh_token)
  end)

  it("works through transport/multi.lua: a wait yields to the other coroutines", function()
    local multi = require "exactonline.transport.multi"
    local sched = multi.scheduler()
    local done, tokens = {}, sb:tokens()
    for i = 1, 2 do
      local t = sched:transport()
      local c = t:bind(new({ transport = t, retry_delay = 0.2 }, tokens))
      sched:spawn(function()
        local n = 0
        for rows in c:pages("crm/Accounts", { ["$select"] = "ID" }) do n = n + #rows end
        done[i] = n
      end)
    end
    sb:fault("html503", 1, { after = 2 })
    local errors = sched:run()
    sched:close()
    assert.same({}, errors)
    assert.same({ ACCOUNTS, ACCOUNTS }, done)
  end)

  describe("exactonline export", function()
    local dir, env
    before_each(function()
      dir, env = cli.authorized_home(sb)
      env.EXACT_RETRY_DELAY = "0.01"
    end)

    -- the CLI's timeout is its default (30 s): a stall of 0.5 s ends in a closed connection, not a timeout
    -- (so libcurl re-sends the first itself, like a reset), and a slow answer is only slow
    local CLI_KINDS = {}
    for kind, k in pairs(KINDS) do CLI_KINDS[kind] = k end
    CLI_KINDS.stall = { seconds = 0.5, count = 2, seen = 1 }
    CLI_KINDS.slow = { seconds = 0.5, seen = 0, answered = true }

    local function export(csv, extra)
      local args = { "export", "crm/Accounts", "--no-bulk", "--select", "ID,Name", "-o", csv, "--no-progress" }
      for _, a in ipairs(extra or {}) do args[#args + 1] = a end
      return cli.run(env, args)
    end

    local function ids_of(csv)
      local ids = {}
      for line in (helpers.read(csv) or ""):gmatch("[^\r\n]+") do ids[#ids + 1] = line:match("^([^,]+)") end
      assert.equal("ID", table.remove(ids, 1))
      table.sort(ids)
      return ids
    end

    for kind, k in pairs(CLI_KINDS) do
      it("completes 20 pages with a " .. kind .. " on page 7 and 13, one stderr line per retry", function()
        local csv = dir .. "/accounts-" .. kind .. ".csv"
        local start = sb:requests().last
        fault_pages(kind, k)
        local r = export(csv)
        assert.equal(0, r.code, r.stderr)
        assert.same(all_ids(), ids_of(csv))
        assert_refetched(api_log(start), kind, k)
        local lines = {}
        for line in r.stderr:gmatch("[^\n]+") do
          if line:match("^exactonline: GET ") then lines[#lines + 1] = line end
        end
        assert.equal(2 * (k.seen or 1), #lines, r.stderr)
        for _, line in ipairs(lines) do
          assert.matches("^exactonline: GET /api/v1/%d+/crm/Accounts: try 1 of 4 got .+; trying again in 0%.0 s$",
            line)
        end
        assert.matches("exported 1200 rows to ", r.stderr)
        local doc = cli.token_doc(dir)
        for _, secret in ipairs { sb.client_secret, doc.access_token, doc.refresh_token } do
          assert.is_nil(r.stderr:find(secret, 1, true))
        end
      end)
    end

    it("stops when the retries give up, resumable, and --resume finishes with the same file", function()
      local whole = dir .. "/whole.csv"
      assert.equal(0, export(whole).code)
      local csv = dir .. "/stopped.csv"
      sb:fault("html503", 4, { after = 6 })
      local r = export(csv, { "--retries", "4" })
      assert.equal(3, r.code, r.stderr) -- stopped, resumable
      assert.matches("%-%-resume", r.stderr)
      assert.matches("was tried 4 times: HTTP 503 %(an HTML page%), HTTP 503 %(an HTML page%), HTTP 503 %(an HTML "
        .. "page%), HTTP 503 %(an HTML page%)", r.stderr)
      local _, n = r.stderr:gsub("exactonline: GET [^\n]*trying again", "")
      assert.equal(3, n)
      assert.is_false(helpers.exists(csv))
      r = export(csv, { "--resume" })
      assert.equal(0, r.code, r.stderr)
      assert.equal(helpers.read(whole), helpers.read(csv))
    end)
  end)

  describe("exactonline gateway (request{ raw = true } over the ngx transport)", function()
    it("tries a GET again and logs each retry; passes a POST's 503 through at once", function()
      local own = helpers.sandbox { accounts = 120, limits = { minutely = 100000, daily = 100000 } }
      local gw = gw_harness.start { sandbox = own, workers = 1, keys = { "adf" },
        env = { EXACT_RETRY_DELAY = "0.01" } }
      local div = ("%d"):format(own.division)
      assert.equal(200, (gw:get("/api/v1/current/Me", { key = gw.keys.adf }))) -- the chain is warm
      local start = own:requests().last
      own:fault("html503", 1)
      own:fault("json500", 1, { after = 1 })
      local status, _, body = gw:get("/api/v1/" .. div .. "/crm/Accounts?$select=ID&$top=3", { key = gw.keys.adf })
      assert.equal(200, status, body)
      assert.equal(3, #cjson.decode(body).d.results)
      local log = own:requests(start).requests
      assert.equal(3, #log)
      local _, err_log = gw:logs()
      assert.matches("exactonline gateway: GET /api/v1/" .. div .. "/crm/Accounts: try 1 of 4 got HTTP 503 %(an "
        .. "HTML page%); trying again in 0%.0 s", err_log)
      assert.matches("exactonline gateway: GET /api/v1/" .. div .. "/crm/Accounts: try 2 of 4 got HTTP 500; "
        .. "trying again in 0%.0 s", err_log)
      start = own:requests().last
      own:fault("html503", 1)
      status, _, body = gw:request("POST", "/api/v1/" .. div .. "/crm/Accounts", { key = gw.keys.adf,
        headers = { ["Content-Type"] = "application/json" }, body = cjson.encode { Name = "Via de gateway" } })
      assert.equal(503, status)
      assert.matches("Service Unavailable", body)
      assert.equal(1, #own:requests(start).requests)
    end)
  end)
end)
