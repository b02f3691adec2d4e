-- The C core's pure decisions: config checks, the authorization URL, the code from whatever a
-- person pastes, token answers, path rules, answers and rate-limit headers, webhooks, the userdata's life.
local helpers = require "helpers"
local core = require "exactonline.core"
local exactonline = require "exactonline"

local function config(over)
  local c = { base_url = "https://start.example.test", client_id = "cid-1", client_secret = "SECRET-s3cr3t",
              redirect_uri = "https://app.example/cb" }
  for k, v in pairs(over or {}) do
    if v == false then c[k] = nil else c[k] = v end -- false: leave it out
  end
  return c
end

local function client(over)
  return core.client_new(config(over))
end

describe("core: configuration", function()
  it("raises on missing or wrongly typed config", function()
    assert.has_error(function() core.client_new(config{ client_id = false }) end,
      "exactonline.new: config.client_id is required")
    assert.has_error(function() core.client_new(config{ client_secret = 12 }) end)
    assert.has_error(function() core.client_new{ client_id = "a", client_secret = "b" } end,
      "exactonline.new: config.region or config.base_url is required")
    assert.has_error(function() core.client_new(config{ base_url = "http://plain.example" }) end,
      "exactonline.new: base_url must be an https:// URL")
    assert.has_error(function() core.client_new(config{ timeout = "soon" }) end,
      "exactonline.new: config.timeout must be a number")
    assert.has_error(function() core.client_new(config{ on_rate_limit = "panic" }) end)
    assert.has_error(function() exactonline.new(config{ store = { load = true } }) end)
    assert.has_error(function() exactonline.new("nope") end)
  end)

  it("maps regions to Exact's hosts", function()
    local c = client{ base_url = false, region = "uk" }
    assert.equal("https://start.exactonline.co.uk", c:base_url())
    assert.has_error(function() client{ base_url = false, region = "xx" } end)
  end)

  it("shows base URL, division and expiry in tostring, never a secret, and closes once", function()
    local c = client{ division = 42 }
    c:set_tokens{ access_token = "AT-very-secret", refresh_token = "RT!secret", obtained_at = 1700000000 }
    local s = tostring(c)
    assert.truthy(s:find("^exactonline%.Client %(0x%x+%) https://start%.example%.test division 42"))
    assert.truthy(s:find("2023-11-14T22:23:20Z", 1, true))
    assert.is_nil(s:find("secret", 1, true))
    assert.is_nil(s:find("SECRET", 1, true))
    c:close()
    c:close()
    assert.truthy(tostring(c):find("closed", 1, true))
    assert.has_error(function() c:tokens() end, "attempt to use a closed exactonline client")
    assert.has_error(function() c:authorization_url() end, "attempt to use a closed exactonline client")
  end)

  it("survives a half-built client and many collected ones", function()
    local collected = setmetatable({}, { __mode = "k" })
    for _ = 1, 200 do
      -- the config mistake is found after the userdata exists: a clear error, and __gc copes with the rest
      local ok, err = pcall(core.client_new, config{ redirect_uri = 5 })
      assert.is_false(ok)
      assert.matches("redirect_uri", tostring(err), 1, true)
      local c = client()
      c:set_tokens{ access_token = "a", refresh_token = "b", obtained_at = 1 }
      collected[c] = true
    end
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(collected))
    assert.equal("https://start.example.test", client():base_url()) -- and the module still works
  end)
end)

describe("core: the client's life", function()
  it("is collected when forgotten, Lua state and all (LuaJIT's weak tables are not ephemerons)", function()
    local weak = setmetatable({}, { __mode = "k" })
    for _ = 1, 3 do weak[exactonline.new(config())] = true end
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak))
  end)

  it("closes through __close on Lua 5.4", function()
    if _VERSION ~= "Lua 5.4" then pending("<close> is Lua 5.4 syntax; this is " .. _VERSION) end
    local c = exactonline.new(config())
    assert(load("local c <close> = ...; return true"))(c)
    assert.has_error(function() c:division() end, "attempt to use a closed exactonline client")
  end)

  it("exposes exactly the documented methods; the C half is private and raises on bad arguments", function()
    local c = exactonline.new(config())
    local documented = { "authorization_url", "exchange", "refresh", "request", "get", "post", "put", "delete",
      "pages", "each", "division", "divisions", "token_info", "rate_limits", "xml_download", "xml_upload", "close" }
    local seen = {}
    for name in pairs(getmetatable(c).__index) do seen[#seen + 1] = name end
    table.sort(seen)
    table.sort(documented)
    assert.same(documented, seen)
    for _, internal in ipairs { "perform", "absorb", "absorb_token", "prepare", "token_request", "code_from",
                                "holds", "rate_wait", "refresh_due", "refresh_allowed", "set_tokens", "tokens" } do
      assert.is_nil(c[internal], internal)
    end
    assert.is_nil(client().get) -- the userdata has no request methods of its own
    assert.has_error(function() c.request({}, "GET", "crm/Accounts") end,
      "exactonline: this client was not made by exactonline.new")
    assert.has_error(function() c:request(1, "x") end)
    assert.has_error(function() c:exchange(nil) end)
    assert.has_error(function() c:xml_download(5) end)
    local none, err = c:get("/api/v1/current/Me")
    assert.is_nil(none)
    assert.equal("not_authorized", err.code)
  end)
end)

describe("core: authorization URL", function()
  it("encodes client_id, redirect_uri, state and force_login once", function()
    local url = client():authorization_url{ state = "a b&c", force_login = true }
    assert.equal("https://start.example.test/api/oauth2/auth?client_id=cid-1&redirect_uri=" ..
      "https%3A%2F%2Fapp.example%2Fcb&response_type=code&state=a%20b%26c&force_login=1", url)
    assert.equal("https://start.example.test/api/oauth2/auth?client_id=cid-1&redirect_uri=" ..
      "https%3A%2F%2Fapp.example%2Fcb&response_type=code", client():authorization_url())
    assert.has_error(function() client():authorization_url{ force_login = "yes" } end)
  end)
end)

describe("core: the code from what a person pastes", function()
  local c = client()
  it("takes a bare code, a %21 code, a query string or the whole redirect URL, decoded once", function()
    assert.equal("ab!cd", c:code_from("ab!cd"))
    assert.equal("ab!cd", c:code_from("ab%21cd"))
    assert.equal("ab%21cd", c:code_from("ab%2521cd")) -- decoded exactly once
    assert.equal("ab!cd", c:code_from("  https://app.example/cb?code=ab%21cd&state=s1\n", "s1"))
    assert.equal("ab!cd", c:code_from("?code=ab%21cd&state=s1", "s1"))
    assert.equal("ab!+cd", c:code_from("https://app.example/cb?code=ab%21+cd"))
  end)

  it("explains a denied consent and a state mismatch", function()
    local code, err = c:code_from("https://app.example/cb?error=access_denied&error_description=The+user+said+no" ..
      "&state=s1", "s1")
    assert.is_nil(code)
    assert.equal("oauth", err.kind)
    assert.equal("access_denied", err.code)
    assert.equal("The user said no", err.message)
    assert.truthy(tostring(err):find("consent was denied", 1, true))
    code, err = c:code_from("https://app.example/cb?code=x&state=other", "s1")
    assert.is_nil(code)
    assert.equal("state_mismatch", err.code)
    assert.equal("state_mismatch", select(2, c:code_from("https://app.example/cb?code=x", "s1")).code)
    assert.equal("no_code", select(2, c:code_from("https://app.example/cb?state=s1", "s1")).code)
    assert.equal("no_code", select(2, c:code_from("   ")).code)
  end)
end)

describe("core: token answers", function()
  local function answer(status, body, headers)
    return { status = status, body = body, headers = headers or {} }
  end

  it("builds form requests with credentials in the body", function()
    local c = client()
    local req = c:token_request("authorization_code", "ab!cd")
    assert.equal("POST", req.method)
    assert.equal("https://start.example.test/api/oauth2/token", req.url)
    assert.equal("application/x-www-form-urlencoded", req.headers["Content-Type"])
    assert.equal("grant_type=authorization_code&code=ab%21cd&redirect_uri=https%3A%2F%2Fapp.example%2Fcb" ..
      "&client_id=cid-1&client_secret=SECRET-s3cr3t", req.body)
    local none, err = c:token_request("refresh")
    assert.is_nil(none)
    assert.equal("no_refresh_token", err.code)
  end)

  it("accepts expires_in as a string or a number, keeps the old refresh token when none comes", function()
    local c = client()
    local t = c:absorb_token(answer(200, '{"access_token":"A1","token_type":"bearer","expires_in":"600",' ..
      '"refresh_token":"R1!"}'), 1000)
    assert.same({ access_token = "A1", refresh_token = "R1!", expires_at = 1600, obtained_at = 1000,
                  refresh_obtained_at = 1000 }, t)
    t = c:absorb_token(answer(200, '{"access_token":"A2","token_type":"Bearer","expires_in":300}'), 2000)
    assert.same({ access_token = "A2", refresh_token = "R1!", expires_at = 2300, obtained_at = 2000,
                  refresh_obtained_at = 1000 }, t)
    assert.equal(1000 + 30 * 86400, c:token_info().refresh_expires_at)
  end)

  it("surfaces a refresh token carried by an error answer so it gets saved", function()
    local c = client()
    c:set_tokens{ access_token = "A0", refresh_token = "R0", obtained_at = 10 }
    local t, err, save = c:absorb_token(answer(400, '{"error":"invalid_request","refresh_token":"R9!"}'), 50)
    assert.is_nil(t)
    assert.equal("oauth", err.kind)
    assert.equal("R9!", save.refresh_token)
    assert.equal("R9!", c:tokens().refresh_token)
  end)

  it("explains the classic token-endpoint failures without leaking secrets", function()
    local c = client()
    c:token_request("authorization_code", "x")
    local _, err = c:absorb_token(answer(400, '{"error":"invalid_grant","error_description":"expired"}'), 1)
    assert.truthy(tostring(err):find("codes live 3 minutes and work once", 1, true))
    _, err = c:absorb_token(answer(400, '{"error":"invalid_client"}'), 1)
    assert.truthy(tostring(err):find("recreated app", 1, true))
    _, err = c:absorb_token(answer(401, '{"error":"unauthorized_client","error_description":"Old refresh token ' ..
      'used."}'), 1)
    assert.truthy(tostring(err):find("exactonline auth", 1, true))
    _, err = c:absorb_token(answer(400, '{"error":"access_denied","error_description":"Rate limit exceeded: ' ..
      'access_token not expired"}', { reason = "TooEarlyToRefreshTokens: Rate limit exceeded: access_token " ..
      "not expired" }), 1)
    assert.equal("TooEarlyToRefreshTokens: Rate limit exceeded: access_token not expired", err.reason)
    assert.truthy(tostring(err):find("570 s", 1, true))
    _, err = c:absorb_token(answer(503, "<html><title>down</title></html>"), 1)
    assert.equal("http", err.kind)
    for _, e in ipairs{ err } do assert.is_nil(tostring(e):find("SECRET", 1, true)) end
  end)
end)

describe("core: API requests", function()
  local c = client{ division = 3167822 }
  c:set_tokens{ access_token = "AT1", refresh_token = "RT1", obtained_at = 1 }
  -- one attempt as the Lua client makes it: prepare (the request and the wait), at a time the token is fresh
  local function api_request(method, path, opts) return c:prepare(method, path, opts, 2) end

  it("resolves paths against the division, the base URL, or the base URL's own origin only", function()
    assert.equal("https://start.example.test/api/v1/3167822/crm/Accounts",
      api_request("GET", "crm/Accounts").url)
    assert.equal("https://start.example.test/api/v1/current/Me", api_request("GET", "/api/v1/current/Me").url)
    assert.equal("https://start.example.test/x?a=1&b=2",
      api_request("GET", "https://start.example.test:443/x?a=1", { query = { b = 2 } }).url)
    -- found by the request_url fuzzer: the origin spelled another way goes out as the base URL spells it
    assert.equal("https://start.example.test/x", api_request("GET", "HTTPS://START.EXAMPLE.TEST:/x").url)
    local req, err = api_request("GET", "HTTPS://START.EXAMPLE.TEST:\0\0003/x\0%00")
    assert.is_nil(req)
    assert.equal("bad_url", err.code)
    for _, url in ipairs{ "https://evil.example/api", "https://start.example.test.evil.example/x",
                          "https://start.example.test:8443/x", "http://start.example.test/x" } do
      local foreign, ferr = api_request("GET", url)
      assert.is_nil(foreign)
      assert.equal("foreign_origin", ferr.code)
    end
  end)

  it("percent-encodes query names and values once, sends Bearer, JSON bodies, refuses CR/LF", function()
    local req = api_request("POST", "crm/Accounts", { query = { ["$select"] = "ID,Name",
      ["$filter"] = "Name eq 'O''Brien & Co'" }, body = { Name = "x" },
      headers = { Prefer = "return=representation" } })
    assert.equal("https://start.example.test/api/v1/3167822/crm/Accounts?%24filter=Name%20eq%20%27O%27%27Brien%20" ..
      "%26%20Co%27&%24select=ID%2CName", req.url)
    assert.equal("Bearer AT1", req.headers.Authorization)
    assert.equal("application/json", req.headers.Accept)
    assert.equal("application/json", req.headers["Content-Type"])
    assert.equal("return=representation", req.headers.Prefer)
    assert.equal('{"Name":"x"}', req.body)
    local none, err = api_request("GET", "crm/Accounts", { headers = { X = "a\r\nInjected: 1" } })
    assert.is_nil(none)
    assert.equal("bad_header", err.code)
    assert.has_error(function() api_request("GET", "crm/Accounts", { headers = { Authorization = "x" } }) end)
  end)

  it("says what it needs first: tokens, a due refresh, the division; and the wait with the request", function()
    local d = client()
    assert.same({ false, "tokens" }, { d:prepare("GET", "crm/Accounts", nil, 2) })
    d:set_tokens{ access_token = "A", refresh_token = "R", obtained_at = 1000 }
    assert.same({ false, "refresh" }, { d:prepare("GET", "/api/v1/current/Me", nil, 1580) })
    assert.same({ false, "division" }, { d:prepare("GET", "crm/Accounts", nil, 1580, true) })
    local req, wait = d:prepare("GET", "/api/v1/current/Me", nil, 1580, true)
    assert.equal("Bearer A", req.headers.Authorization)
    assert.equal(0, wait)
    d:absorb{ status = 200, body = "", headers = { ["x-ratelimit-minutely-remaining"] = "0",
      ["x-ratelimit-minutely-reset"] = "1600" } }
    req, wait = d:prepare("GET", "/api/v1/current/Me", nil, 1590, true)
    assert.equal("Bearer A", req.headers.Authorization)
    assert.near(10.1, wait, 0.001)
    -- Exact refused a refresh as too early: not due again for this access token
    d:token_request("refresh")
    d:absorb_token({ status = 400, headers = {}, body = '{"error":"access_denied"}' }, 1590)
    assert.is_table((d:prepare("GET", "/api/v1/current/Me", nil, 1590)))
  end)

  it("reads OData answers, error envelopes, HTML pages and broken JSON", function()
    local res = c:absorb{ status = 200, headers = { ["content-type"] = "application/json" },
      body = '{"d":{"results":[{"ID":1}],"__next":"x"}}' }
    assert.equal(1, res.data.d.results[1].ID)
    local none, err, _ = c:absorb{ status = 403, headers = { reason = "WrongDivision" },
      body = '{"error":{"code":"","message":{"lang":"","value":"Forbidden - WrongDivision"}}}' }
    assert.is_nil(none)
    assert.same({ "api", 403, "Forbidden - WrongDivision", "WrongDivision" }, { err.kind, err.status, err.message,
      err.reason })
    _, err = c:absorb{ status = 200, headers = {}, body = '{"error":{"message":{"value":"Oops"}}}' }
    assert.equal("Oops", err.message)
    _, err = c:absorb{ status = 502, headers = { ["content-type"] = "text/html" },
      body = "<html><head><title>Bad Gateway</title></head></html>" }
    assert.same({ "http", "an HTML page: Bad Gateway" }, { err.kind, err.message })
    _, err = c:absorb{ status = 200, headers = { ["content-type"] = "application/json" }, body = '{"d":{' }
    assert.equal("decode", err.kind)
    assert.equal(true, c:absorb{ status = 204, headers = {}, body = "" }.data == nil)
  end)

  it("parses both rate-limit families in ms or s and decides waits", function()
    local r = client{ division = 1, max_wait = 30 }
    r:absorb{ status = 200, body = "", headers = { ["x-ratelimit-limit"] = "5000", ["x-ratelimit-remaining"] = "4990",
      ["x-ratelimit-reset"] = "1700006400000", ["x-ratelimit-minutely-limit"] = "60",
      ["x-ratelimit-minutely-remaining"] = "0", ["x-ratelimit-minutely-reset"] = "1700000040" } }
    assert.same({ daily_limit = 5000, daily_remaining = 4990, daily_reset = 1700006400, minutely_limit = 60,
                  minutely_remaining = 0, minutely_reset = 1700000040 }, r:rate_limits())
    assert.near(20.1, r:rate_wait(1700000020), 0.001)
    assert.equal(0, r:rate_wait(1700000041))
    local none, err = r:rate_wait(1700000000) -- 40 s > max_wait
    assert.is_nil(none)
    assert.equal("rate_limit", err.kind)
    -- a 429 without headers: the next minute boundary
    r:absorb{ status = 429, headers = {}, body = "" }
    assert.near(15.1, r:rate_wait(1700000085, true), 0.001)
    -- daily spent: an immediate error, not a wait until midnight
    r:absorb{ status = 429, body = "", headers = { ["x-ratelimit-limit"] = "5000", ["x-ratelimit-remaining"] = "0",
      ["x-ratelimit-reset"] = "1700006400000" } }
    none, err = r:rate_wait(1700000100, true)
    assert.is_nil(none)
    assert.equal("daily_limit", err.code)
    local e = client{ on_rate_limit = "error" }
    e:absorb{ status = 200, body = "", headers = { ["x-ratelimit-minutely-remaining"] = "0",
      ["x-ratelimit-minutely-reset"] = "1700000040000" } }
    none, err = e:rate_wait(1700000039)
    assert.is_nil(none)
    assert.equal("minutely_limit", err.code)
  end)
end)

describe("core: webhooks", function()
  local secret = "whsec-123"
  local function sign(content)
    local key = io.popen("printf %s " .. helpers.quote(content) .. " | openssl dgst -sha256 -hmac " ..
      helpers.quote(secret) .. " -r")
    local hex = key:read("*a"):match("^(%x+)")
    key:close()
    return hex:upper()
  end
  -- key order and escapes as Exact sends them: re-encoding would change the bytes
  local content = '{"Topic":"Accounts","ClientId":"c","Division":3167822,"Action":"Update",' ..
    '"Key":"a1b2","ExactOnlineEndpoint":"https:\\/\\/start.exactonline.nl\\/api\\/v1\\/x","Note":"}{\\"",' ..
    '"EventCreatedOn":"\\/Date(1700000000000)\\/"}'

  it("accepts Exact's HashCode over the raw Content bytes", function()
    local body = '{ "Content" : ' .. content .. ',"HashCode":"' .. sign(content) .. '"}'
    assert.is_true(exactonline.verify_webhook(body, secret))
    body = '{"HashCode":"' .. sign(content):lower() .. '","Content":' .. content .. '}'
    assert.is_true(exactonline.verify_webhook(body, secret))
  end)

  it("refuses a wrong secret, a changed body, and explains the empty validation POST", function()
    local body = '{"Content":' .. content .. ',"HashCode":"' .. sign(content) .. '"}'
    local ok, why = exactonline.verify_webhook(body, "other")
    assert.is_false(ok)
    assert.truthy(why:find("does not match", 1, true))
    ok = exactonline.verify_webhook(body:gsub("Update", "Delete"), secret)
    assert.is_false(ok)
    ok, why = exactonline.verify_webhook("", secret)
    assert.is_false(ok)
    assert.truthy(why:find("validation", 1, true))
    ok, why = exactonline.verify_webhook('{"HashCode":"AB"}', secret)
    assert.is_false(ok)
    assert.truthy(why:find("Content", 1, true))
    ok = exactonline.verify_webhook("{not json", secret)
    assert.is_false(ok)
  end)
end)
