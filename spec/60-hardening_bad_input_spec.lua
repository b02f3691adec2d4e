-- Bad input catalogue: every odd answer, header, URL or store failure is a clear error object
-- (kind, message, hint where there is something to do) and the stored tokens still work afterwards.
--
-- Covered elsewhere, not repeated here:
--   HTML 503/500 pages, garbage and truncated bodies, connection reset mid-body, a server that does
--   not answer within config.timeout (slow), the size cap (oversized bodies), 401 then refresh,
--   another origin given as a path                                   spec/20-core_api_spec.lua
--   a certificate from an unknown CA, a raising store lock           spec/20-core_oauth_spec.lua
--   a token file that is corrupt, empty, a directory, world-readable spec/30-store_file_spec.lua
--
-- Here a tiny HTTPS server (spec/support/raw_https.lua) answers with whatever raw bytes a case sets,
-- and logs every request it gets; {{n}} in an answer is the request's number (listings that never end).
local helpers = require "helpers"
local exactonline = require "exactonline"
local client_mod = require "exactonline.client" -- core(c): the private C half, for what only it can tell
local core = require "exactonline.core"
local curl_transport = require "exactonline.transport.curl"
local raw_https = require "support.raw_https"

local ACCESS = "bad-input-access-4c1d"
local REFRESH = "bad-input-refresh-9e27"
local SECRET = "bad-input-secret-a5f0"

local unpack = table.unpack or unpack -- luacheck: compat

-- API answers that are an error: each row one test. `send`: the server method and its arguments (a function
-- of the server where the answer names its port); `want`: the error object c:get must give (its kind, and
-- status, code, words of its message where given); `unsent`: a path that must never be requested.
local API_ERRORS = {
  { "deeply nested JSON: a decode error",
    send = { "json", 200, '{"d":' .. ("["):rep(5000) .. ("]"):rep(5000) .. "}" }, want = { kind = "decode" } },
  { "invalid JSON with a JSON content type: a decode error",
    send = { "json", 200, '{"d":{"results":[{"ID":1},' }, want = { kind = "decode" } },
  { "a 200 with an OData error inside: an api error in Exact's words",
    send = { "json", 200, '{"error":{"code":"","message":{"lang":"","value":"Field Name is mandatory"}}}' },
    want = { kind = "api", message = "Field Name is mandatory" } },
  { "an error answer with a wrong content type (HTML page as 400): an api error naming the page",
    send = { "answer", "400 Bad Request", { "Content-Type: text/html" }, "<html><title>Bad Request</title></html>" },
    want = { kind = "api", status = 400, message = "Bad Request" } },
  { "a 200 with an HTML page (a proxy or maintenance page): a decode error, not an empty success",
    send = { "answer", "200 OK", { "Content-Type: text/html" }, "<html><title>Maintenance</title></html>" },
    want = { kind = "decode", code = "not_json", message = "text/html" } },
  { "an XML error page with a JSON body shape but an XML content type is not parsed as JSON",
    send = { "answer", "500 Internal Server Error", { "Content-Type: application/xml" }, '{"error":"not json here"}' },
    want = { kind = "http", status = 500 } },
  { "a redirect to another host is not followed and the bearer goes nowhere else",
    send = function(srv)
      return { "answer", "302 Found", { "Location: https://localhost:" .. srv.port .. "/stolen" } }
    end,
    want = { status = 302 }, unsent = "/stolen" },
}

-- certificates the client must refuse: each row one test (the handshake fails, so nothing is sent)
local BAD_CERTIFICATES = {
  { "a certificate for another name is refused (kind tls), with a hint", certificate = "othername", hint = true },
  { "a self-signed certificate for the right name is refused", certificate = "selfsigned" },
}

describe("hardening: bad input", function()
  local srv, stored

  local function client(over, tokens)
    local now = os.time()
    stored = exactonline.memory_store(tokens or { access_token = ACCESS, refresh_token = REFRESH,
      obtained_at = now, expires_at = now + 600, refresh_obtained_at = now })
    local cfg = { base_url = srv.base_url, client_id = "bad-input-client", client_secret = SECRET,
      redirect_uri = "https://app.example/cb", cafile = srv.cafile, division = 7, store = stored, timeout = 5 }
    for k, v in pairs(over or {}) do cfg[k] = v end
    return assert(exactonline.new(cfg))
  end

  -- a clear error: an error object with kind and message, printable, no secret in it
  local function clear_error(err, kind)
    assert.is_true(exactonline.core.is_error(err), "not an error object: " .. tostring(err))
    if kind then assert.equal(kind, err.kind, tostring(err)) end
    assert.is_string(err.message)
    local text = tostring(err)
    for _, s in ipairs { ACCESS, REFRESH, SECRET } do assert.is_nil(text:find(s, 1, true), text) end
    return err
  end

  -- afterwards the stored pair still works: a normal answer is read with the same bearer
  local function tokens_still_work(c, bearer)
    srv:clear()
    srv:json(200, '{"d":{"results":[{"ID":1}]}}')
    local rows = assert(c:get("crm/Accounts"))
    assert.equal(1, rows[1].ID)
    assert.matches("Authorization: Bearer " .. (bearer or ACCESS), srv:requests(), 1, true)
    assert.equal(bearer or ACCESS, stored.load().access_token)
  end

  setup(function()
    srv = raw_https.start()
  end)

  teardown(function()
    srv:stop()
  end)

  before_each(function()
    srv:clear()
    srv:certificate("good")
  end)

  describe("API answers", function()
    for _, case in ipairs(API_ERRORS) do
      it(case[1], function()
        local c = client()
        local send = type(case.send) == "function" and case.send(srv) or case.send
        srv[send[1]](srv, unpack(send, 2))
        local rows, err = c:get("crm/Accounts")
        assert.is_nil(rows)
        clear_error(err, case.want.kind)
        for _, field in ipairs { "status", "code" } do
          if case.want[field] then assert.equal(case.want[field], err[field], field) end
        end
        if case.want.message then assert.matches(case.want.message, err.message, 1, true) end
        if case.unsent then assert.is_nil(srv:requests():find(case.unsent, 1, true)) end
        tokens_still_work(c)
      end)
    end

    it("missing fields: no d, no results, d a string: answers without inventing rows", function()
      local c = client()
      srv:json(200, '{}')
      assert.same({}, assert(c:get("crm/Accounts")))
      srv:json(200, '{"d":{}}')
      assert.same({}, assert(c:get("crm/Accounts")))
      srv:json(200, '{"d":"text"}')
      assert.same({ d = "text" }, assert(c:get("crm/Accounts")))
      tokens_still_work(c)
    end)

    it("non-UTF-8 bytes in a JSON string and in a Reason header: read as bytes, nothing breaks", function()
      local c = client()
      srv:json(200, '{"d":{"results":[{"Name":"caf\233 \255\254"}]}}')
      local rows = assert(c:get("crm/Accounts"))
      assert.equal("caf\233 \255\254", rows[1].Name)
      srv:json(403, '{"error":{"message":{"value":"Verboden \255"}}}', { "Reason: Geen toegang \233\255" })
      local _, err = c:get("crm/Accounts")
      clear_error(err, "api")
      assert.equal(403, err.status)
      tokens_still_work(c)
    end)

    it("odd rate-limit and other header values are ignored, not trusted", function()
      local c = client()
      srv:json(200, '{"d":{"results":[]}}', {
        "X-RateLimit-Minutely-Remaining: lots", "X-RateLimit-Minutely-Reset: 1e999",
        "X-RateLimit-Remaining: -5x", "X-RateLimit-Reset: nan", "X-RateLimit-Limit: ",
        "X-Long: " .. ("v"):rep(8000), "X-Empty:", "X-Tab:\t\tvalue\t" })
      assert.same({}, assert(c:get("crm/Accounts")))
      local rl = c:rate_limits()
      assert.is_nil(rl.minutely_remaining)
      -- "1e999" reads as a number (inf); it must not turn into a wait or a crash
      local wait = client_mod.core(c):rate_wait(os.time(), false)
      assert.equal(0, wait)
      tokens_still_work(c)
    end)

    it("a __next link to another origin is refused before any request to it", function()
      local c = client()
      srv:json(200, '{"d":{"results":[{"ID":1}],"__next":"https://localhost:' .. srv.port .. '/stolen?$skiptoken=1"}}')
      local seen = 0
      local ok, err = pcall(function()
        for rows in c:pages("crm/Accounts") do seen = seen + #rows end
      end)
      assert.is_false(ok)
      assert.equal(1, seen)
      clear_error(err, "config")
      assert.equal("foreign_origin", err.code)
      assert.is_nil(srv:requests():find("/stolen", 1, true))
      tokens_still_work(c)
    end)
  end)

  describe("listings that never end", function()
    local function count() return select(2, srv:requests():gsub("\n%-%-%-%-\n", "")) end

    it("a __next link the listing followed already: a page_loop error, not a loop forever", function()
      local c = client()
      srv:json(200, '{"d":{"results":[{"ID":{{n}}}],"__next":"' .. srv.base_url
        .. '/api/v1/7/crm/Accounts?$skiptoken={{n%2}}"}}')
      local seen = {}
      local ok, err = pcall(function()
        for rows in c:pages("crm/Accounts") do seen[#seen + 1] = rows[1].ID end
      end)
      assert.is_false(ok)
      clear_error(err, "api")
      assert.equal("page_loop", err.code)
      assert.same({ 1, 2, 3 }, seen) -- skiptoken 1, 0, then 1 again: stopped before asking for it twice
      assert.equal(3, count())
      tokens_still_work(c)
    end)

    it("new __next links forever: stops at config.max_pages with a clear error", function()
      local c = client { max_pages = 5 }
      srv:json(200, '{"d":{"results":[{"ID":{{n}}}],"__next":"' .. srv.base_url
        .. '/api/v1/7/crm/Accounts?$skiptoken={{n}}"}}')
      local pages = 0
      local ok, err = pcall(function()
        for _ in c:pages("crm/Accounts") do pages = pages + 1 end
      end)
      assert.is_false(ok)
      clear_error(err, "api")
      assert.equal("max_pages", err.code)
      assert.matches("max_pages (5 pages)", err.message, 1, true)
      assert.equal(5, pages)
      assert.equal(5, count())
      tokens_still_work(c)
    end)

    it("XML TSPaging that comes back to a value it gave before, or never ends: an error", function()
      local c = client()
      local xml = '<?xml version="1.0"?><eExact><Accounts/><Topic code="Accounts" ts_d="0x{{n%2}}" count="10" '
        .. 'pagesize="10"/></eExact>'
      srv:answer("200 OK", { "Content-Type: application/xml" }, xml)
      local pages, err = c:xml_download("Accounts")
      assert.is_nil(pages)
      clear_error(err, "api")
      assert.equal("page_loop", err.code)
      assert.equal(3, count())
      srv:clear()
      c = client { max_pages = 4 }
      srv:answer("200 OK", { "Content-Type: application/xml" }, (xml:gsub("{{n%%2}}", "{{n}}")))
      pages, err = c:xml_download("Accounts")
      assert.is_nil(pages)
      clear_error(err, "api")
      assert.equal("max_pages", err.code)
      assert.equal(4, count())
      tokens_still_work(c)
    end)
  end)

  describe("numbers crossing into C", function()
    it("NaN, infinities, negative, fractional or huge settings raise a clear config error", function()
      local nan, inf = 0 / 0, 1 / 0
      local cases = {
        { "timeout", nan }, { "timeout", inf }, { "timeout", -1 }, { "timeout", 0 }, { "timeout", 1e300 },
        { "max_wait", nan }, { "max_wait", -1 }, { "max_wait", 1e9 }, { "max_wait", -inf },
        { "max_response_size", nan }, { "max_response_size", 1e30 }, { "max_response_size", 100 },
        { "max_response_size", 2 ^ 20 + 0.5 },
        { "division", nan }, { "division", 1.5 }, { "division", -7 }, { "division", 2 ^ 63 }, { "division", inf },
        { "max_pages", 0 }, { "max_pages", nan }, { "max_pages", 2.5 }, { "max_pages", 1e12 },
      }
      for _, case in ipairs(cases) do
        local name, value = case[1], case[2]
        local ok, err = pcall(exactonline.new, { base_url = srv.base_url, client_id = "x", client_secret = SECRET,
          [name] = value })
        assert.is_false(ok, name .. " = " .. tostring(value) .. " was accepted")
        assert.matches("exactonline.new: config." .. name .. " must be a", tostring(err), 1, true)
      end
    end)

    it("a clock that reads NaN, negative or far away raises instead of waiting on garbage", function()
      for _, bad in ipairs { 0 / 0, -5, 1 / 0, 1e300 } do
        srv:clear()
        -- at exactonline.new already, as the stored tokens' times are read against it
        local ok, err = pcall(function()
          local c = client { clock = function() return bad end }
          return c:get("crm/Accounts")
        end)
        assert.is_false(ok)
        assert.matches("config.clock", tostring(err), 1, true)
        assert.equal("", srv:requests())
      end
    end)

    it("token times from a store that are not epoch seconds: a store error, nothing adopted", function()
      for _, bad in ipairs { 0 / 0, 1 / 0, -1, 1e300 } do
        local now = os.time()
        local c, err = exactonline.new { base_url = srv.base_url, client_id = "x", client_secret = SECRET,
          store = exactonline.memory_store { access_token = ACCESS, refresh_token = REFRESH, obtained_at = now,
            expires_at = bad } }
        assert.is_nil(c)
        clear_error(err, "store")
        assert.matches("tokens.expires_at must be epoch seconds", err.message, 1, true)
      end
    end)

    it("a transport answer whose status is not a whole HTTP status: a decode error", function()
      for _, status in ipairs { 0 / 0, 1e300, 200.5, -200, 42, 1 / 0, "two hundred" } do
        local c = client { transport = { request = function()
          return { status = status, headers = { ["content-type"] = "application/json" }, body = "{}" }
        end } }
        local rows, err = c:get("crm/Accounts")
        assert.is_nil(rows)
        clear_error(err, "decode")
        assert.equal("bad_status", err.code)
      end
    end)

    it("sleeps, lock waits and file modes out of range raise instead of hanging or wrapping", function()
      for _, s in ipairs { 0 / 0, 1 / 0, 1e300 } do
        assert.has_error(function() core.sleep(s) end)
      end
      local lock = helpers.tmpdir() .. "/numbers.lock"
      local held = assert(core.flock(lock, 1))
      for _, t in ipairs { 0 / 0, -1, 1 / 0 } do
        local ok, err = pcall(core.flock, lock, t) -- NaN used to poll forever
        assert.is_false(ok)
        assert.matches("seconds from 0 to", tostring(err), 1, true)
      end
      held:unlock()
      assert.has_error(function() core.mkdir_p(helpers.tmpdir() .. "/m", -1) end)
      assert.has_error(function() core.mkdir_p(helpers.tmpdir() .. "/m", 0 / 0) end)
      assert.has_error(function() core.atomic_write(helpers.tmpdir() .. "/f", "x", 1e300) end)
    end)
  end)

  describe("CR, LF and NUL in what the caller gives", function()
    it("in an HTTP method given to the transport: refused before anything is sent", function()
      local c = client()
      local transport = curl_transport.new(c)
      for _, method in ipairs { "GET /stolen HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET", "GE T", "G\0ET", "GET\n", "",
                                ("A"):rep(100), "G(ET)" } do
        srv:clear()
        local res, err = transport:request { method = method, url = srv.base_url .. "/api/v1/7/crm/Accounts",
          headers = { Authorization = "Bearer " .. ACCESS } }
        assert.is_nil(res)
        clear_error(err, "config")
        assert.equal("bad_method", err.code)
        assert.equal("", srv:requests())
      end
      srv:json(200, "{}")
      local res = assert(transport:request { method = "M-SEARCH", url = srv.base_url .. "/x", headers = {} })
      assert.equal(200, res.status)
      assert.matches("^M%-SEARCH /x HTTP/1.1", srv:requests())
    end)

    it("in a path: refused before any request", function()
      local c = client()
      for _, path in ipairs { "crm/Accounts\r\nX-Injected: 1", "crm/Accounts\nHost: evil", "crm/Acc\0ounts" } do
        srv:clear()
        local rows, err = c:get(path)
        assert.is_nil(rows)
        clear_error(err, "config")
        assert.equal("bad_url", err.code)
        assert.equal("", srv:requests()) -- refused before any request
        -- and no injected line reaches the server
        assert.is_nil(srv:requests():find("X-Injected", 1, true))
        assert.is_nil(srv:requests():find("Host: evil", 1, true))
      end
      tokens_still_work(c)
    end)

    it("in a query value: percent-encoded, never a raw line break on the wire", function()
      local c = client()
      srv:json(200, '{"d":{"results":[]}}')
      assert(c:get("crm/Accounts", { ["$filter"] = "Name eq 'a\r\nX-Injected: 1\0b'" }))
      local log = srv:requests()
      assert.truthy(log:find("%0D%0AX-Injected%3A%201%00b", 1, true), log)
      assert.is_nil(log:find("\nX-Injected", 1, true))
      tokens_still_work(c)
    end)

    it("in a header value or name: refused", function()
      local c = client()
      for _, h in ipairs { { ["X-A"] = "v\r\nX-Injected: 1" }, { ["X-A\nX-Injected"] = "1" }, { ["X-A"] = "v\0w" } } do
        srv:clear()
        local res, err = c:post("crm/Accounts", { Name = "x" }, h)
        assert.is_nil(res)
        clear_error(err, "config")
        assert.equal("", srv:requests())
      end
      tokens_still_work(c)
    end)
  end)

  describe("token endpoint answers", function()
    local function refresher(extra)
      local now = os.time()
      return client(extra, { access_token = ACCESS, refresh_token = REFRESH, obtained_at = now - 590,
        expires_at = now + 10, refresh_obtained_at = now - 590 })
    end

    it("expires_in of every odd shape: 600 s unless it is a sane number of seconds", function()
      local cases = {
        { '"600"', 600 }, { "600", 600 }, { "300", 300 }, { "0", 600 }, { "-1", 600 }, { '"abc"', 600 },
        { "1e308", 600 }, { '"1e999"', 600 }, { "null", 600 }, { "{}", 600 }, { "[600]", 600 }, { "true", 600 },
        { "599.5", 599.5 },
      }
      for _, case in ipairs(cases) do
        local c = refresher()
        srv:json(200, '{"access_token":"NEW-A","refresh_token":"NEW-R","token_type":"bearer","expires_in":'
          .. case[1] .. '}')
        local t = assert(c:refresh())
        assert.equal("NEW-A", t.access_token)
        assert.equal(case[2], t.expires_at - t.obtained_at, "expires_in = " .. case[1])
        assert.equal("NEW-A", stored.load().access_token)
        assert.matches("exactonline.Client", tostring(c), 1, true)
        tokens_still_work(c, "NEW-A")
      end
    end)

    it("a 200 without access_token, HTML, invalid JSON, deep JSON: an error and the old pair kept", function()
      for _, body in ipairs { '{"token_type":"bearer"}', "<html><title>Oops</title></html>", '{"access_token":',
                              ("["):rep(3000) .. ("]"):rep(3000), '{"access_token":""}', '{"access_token":5}' } do
        local c = refresher()
        srv:json(200, body)
        local t, err = c:refresh()
        assert.is_nil(t)
        clear_error(err)
        assert.equal(REFRESH, stored.load().refresh_token)
        assert.equal(ACCESS, stored.load().access_token)
        assert.is_true(client_mod.core(c):holds(ACCESS))
        assert.equal(REFRESH, client_mod.core(c):tokens().refresh_token)
      end
    end)

    it("a token answer that never comes: a network timeout, the old pair kept", function()
      local c = refresher { timeout = 1 }
      srv:never_answer()
      local t, err = c:refresh()
      assert.is_nil(t)
      clear_error(err, "network")
      assert.equal("CURLE_OPERATION_TIMEDOUT", err.code)
      assert.equal(REFRESH, stored.load().refresh_token)
    end)
  end)

  describe("TLS", function()
    for _, case in ipairs(BAD_CERTIFICATES) do
      it(case[1], function()
        local c = client()
        srv:certificate(case.certificate)
        local rows, err = c:get("crm/Accounts")
        assert.is_nil(rows)
        clear_error(err, "tls")
        if case.hint then assert.is_string(err.hint) end
        assert.is_nil(srv:requests():find("Authorization", 1, true)) -- the handshake failed: nothing was sent
        srv:certificate("good")
        tokens_still_work(c)
      end)
    end
  end)

  describe("store callbacks that raise", function()
    it("load raising: exactonline.new answers nil and a store error", function()
      local c, err = exactonline.new { base_url = srv.base_url, client_id = "x", client_secret = SECRET,
        cafile = srv.cafile,
        store = { load = function() error("disk on fire") end, save = function() return true end } }
      assert.is_nil(c)
      clear_error(err, "store")
      assert.matches("disk on fire", err.message, 1, true)
    end)

    it("save raising after a refresh: a store error; the new pair is not lost in memory", function()
      local now = os.time()
      local mem = exactonline.memory_store { access_token = ACCESS, refresh_token = REFRESH,
        obtained_at = now - 590, expires_at = now + 10 }
      local c = assert(exactonline.new { base_url = srv.base_url, client_id = "x", client_secret = SECRET,
        cafile = srv.cafile, division = 7,
        store = { load = mem.load, save = function() error("read-only store") end } })
      srv:json(200, '{"access_token":"NEW-A2","refresh_token":"NEW-R2","expires_in":600}')
      local t, err = c:refresh()
      assert.is_nil(t)
      clear_error(err, "store")
      assert.matches("read-only store", err.message, 1, true)
      assert.is_true(client_mod.core(c):holds("NEW-A2"))
      assert.equal(REFRESH, mem.load().refresh_token)
    end)
  end)
end)
