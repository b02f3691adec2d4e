-- `exactonline gateway` in front of the sandbox, used by real HTTP clients (curl, Python's urllib the way Data
-- Factory's REST connector pages): every method and the XML API forwarded with the bearer added, links
-- rewritten to the gateway, keys refused before any call to Exact, and no token anywhere a client or the
-- logs can see.
local helpers = require "helpers"
local gw_harness = require "support.gateway"
local cjson = require "cjson"

local q = helpers.quote

local function count(s, what)
  local n, from = 0, 1
  while true do
    local i = s:find(what, from, true)
    if not i then return n end
    n, from = n + 1, i + #what
  end
end

describe("exactonline gateway in front of the sandbox", function()
  local sb, gw, div
  local _

  setup(function()
    sb = helpers.sandbox { accounts = 5000 }
    sb:limits { minutely = 100000, daily = 100000 }
    div = ("%d"):format(sb.division)
    gw = gw_harness.start { sandbox = sb, workers = 2, keys = { "adf", "cron", "gone" } }
  end)

  teardown(function()
    if gw then gw:stop() end
    if sb then sb:stop() end
  end)

  it("forwards a GET with the key as Bearer or X-Api-Key, and asks Exact for JSON", function()
    local status, headers, body = gw:get("/api/v1/current/Me", { key = gw.keys.adf })
    assert.equal(200, status, body)
    assert.matches("application/json", headers["content-type"])
    assert.equal(sb.division, cjson.decode(body).d.results[1].CurrentDivision)
    assert.is_string(headers["x-ratelimit-minutely-remaining"]) -- Exact's limits reach the client
    status, _, body = gw:get("/api/v1/" .. div .. "/crm/Accounts?$select=ID,Name&$top=3",
      { api_key = gw.keys.cron, headers = { Accept = "*/*" } })
    assert.equal(200, status, body)
    assert.equal(3, #cjson.decode(body).d.results)
  end)

  it("passes POST, PUT, DELETE and Exact's own errors through as Exact answered them", function()
    local status, body
    status, _, body = gw:request("POST", "/api/v1/" .. div .. "/crm/Accounts", { key = gw.keys.adf,
      headers = { ["Content-Type"] = "application/json" }, body = cjson.encode { Name = "Via de gateway" } })
    assert.equal(201, status, body)
    local made = cjson.decode(body).d
    assert.equal("Via de gateway", made.Name)
    -- the entity's own link is the gateway's
    assert.equal(gw.url .. "/api/v1/" .. div .. "/crm/Accounts(guid'" .. made.ID .. "')", made.__metadata.uri)
    local one = "/api/v1/" .. div .. "/crm/Accounts(guid'" .. made.ID .. "')"
    status, _, body = gw:request("PUT", one, { key = gw.keys.adf,
      headers = { ["Content-Type"] = "application/json" }, body = cjson.encode { Name = "Andere naam" } })
    assert.equal(204, status, body)
    assert.equal("", body)
    status, _, body = gw:get(one .. "?$select=Name", { key = gw.keys.adf })
    assert.equal(200, status, body)
    assert.equal("Andere naam", cjson.decode(body).d.Name)
    status = gw:request("DELETE", one, { key = gw.keys.adf })
    assert.equal(204, status)
    status, _, body = gw:get(one, { key = gw.keys.adf })
    assert.equal(404, status, body)
    assert.matches("[Nn]ot found", cjson.decode(body).error.message.value)
    status, _, body = gw:get("/api/v1/999/crm/Accounts", { key = gw.keys.adf })
    assert.equal(403, status)
    assert.equal("Forbidden - WrongDivision", cjson.decode(body).error.message.value)
  end)

  it("forwards the XML API: XMLDownload and XMLUpload", function()
    local status, headers, body = gw:get("/docs/XMLDownload.aspx?Topic=Accounts&_Division_=" .. div,
      { key = gw.keys.cron })
    assert.equal(200, status, body)
    assert.matches("xml", headers["content-type"])
    assert.equal(100, count(body, "<Account "))
    status, _, body = gw:request("POST", "/docs/XMLUpload.aspx?Topic=Accounts&_Division_=" .. div, {
      key = gw.keys.cron, headers = { ["Content-Type"] = "application/xml" },
      body = '<eExact><Accounts><Account code="990077"><Name>Via XML</Name></Account></Accounts></eExact>' })
    assert.equal(200, status, body)
    assert.matches("Created", body)
  end)

  it("refuses no key, a wrong key and a revoked key with 401, and Exact sees none of them", function()
    local before = sb:stats().api_calls
    local status, headers, body = gw:get("/api/v1/current/Me")
    assert.equal(401, status)
    assert.matches("Bearer", headers["www-authenticate"])
    assert.matches("send a gateway key", cjson.decode(body).error.message.value)
    status = gw:get("/api/v1/current/Me", { key = gw.keys.adf .. "x" })
    assert.equal(401, status)
    status = gw:get("/api/v1/current/Me", { api_key = "eogw_" .. string.rep("0", 64) })
    assert.equal(401, status)
    status = gw:get("/api/v1/current/Me", { headers = { Authorization = "Basic " .. gw.keys.adf } })
    assert.equal(401, status)
    -- a key that works, revoked while the gateway runs: refused from the next request on
    assert.equal(200, (gw:get("/api/v1/current/Me", { key = gw.keys.gone })))
    local mid = sb:stats().api_calls
    local r = gw:cli { "--revoke-key", "gone" }
    assert.equal(0, r.code, r.stderr)
    gw.outputs[#gw.outputs + 1] = r.stdout .. r.stderr
    status, _, body = gw:get("/api/v1/current/Me", { key = gw.keys.gone })
    assert.equal(401, status, body)
    assert.matches("unknown or revoked", body)
    assert.equal(before + 1, mid)
    assert.equal(mid, sb:stats().api_calls)
    local log = gw:logs()
    assert.matches("revoked:gone %[", log)
    assert.matches(" %-missing %[", log)
  end)

  it("lets a Data Factory-like client page through all 5000 accounts by following __next", function()
    local dump = helpers.tmpdir() .. "/answers"
    local p = io.popen("python3 spec/support/adf_client.py " .. q(gw.url .. "/api/v1/" .. div ..
      "/crm/Accounts?$select=ID,Name") .. " " .. q(gw.keys.adf) .. " " .. q(dump) .. " 2>&1")
    local out = p:read("*a")
    p:close()
    local f = assert(io.open(dump, "rb"))
    gw.answers[#gw.answers + 1] = f:read("*a")
    f:close()
    local ok, res = pcall(cjson.decode, out)
    assert.is_true(ok, out)
    gw.outputs[#gw.outputs + 1] = out
    assert.equal(5000 + 1, res.rows) -- the 5000 and the one XMLUpload made
    assert.equal(res.rows, res.ids)
    assert.equal(math.ceil(res.rows / 60), res.pages)
    assert.same({ gw.url }, res.origins) -- every link pointed at the gateway, none at Exact
    assert.same({ 200 }, res.statuses)
  end)

  it("serves /healthz and /metrics without a key and without a secret", function()
    local status, _, body = gw:get("/healthz")
    assert.equal(200, status, body)
    local h = cjson.decode(body)
    assert.equal("ok", h.state)
    assert.is_true(h.days_left > 29 and h.days_left <= 30)
    status, _, body = gw:get("/metrics")
    assert.equal(200, status)
    assert.matches('exactonline_gateway_requests_total{status="200"} %d+', body)
    assert.matches('exactonline_gateway_refused_total{reason="missing"} [1-9]', body)
    assert.matches('exactonline_gateway_refused_total{reason="revoked"} [1-9]', body)
    assert.matches('exactonline_gateway_calls_left{division="' .. div .. '",window="minute"} %d+', body)
    assert.matches("exactonline_gateway_upstream_429_total 0", body)
    assert.matches("exactonline_gateway_chain_ok 1", body)
    status = gw:get("/api/oauth2/token", { key = gw.keys.adf })
    assert.equal(404, status) -- the token endpoint is not the gateway's to forward
  end)

  it("shows no Exact token and no gateway key in any answer, header, CLI output or log", function()
    -- one refresh too, so the chain has had two pairs
    sb:advance(600)
    assert.equal(200, (gw:get("/api/v1/current/Me", { key = gw.keys.adf })))
    gw:remember_tokens()
    gw:stop()
    local seen = gw:everything_seen()
    assert.is_true(#seen > 500000, #seen) -- 5000 accounts' pages among them
    local n = 0
    for token in pairs(gw.tokens) do
      n = n + 1
      assert.is_nil(seen:find(token, 1, true), "an Exact token reached a client or a log")
    end
    assert.equal(4, n)
    for name, key in pairs(gw.keys) do
      assert.is_nil(seen:find(key, 1, true), "the key " .. name .. " is in an answer or a log")
      assert.is_nil(seen:find(key:sub(6, 30), 1, true))
    end
    -- and the key file holds none of them
    local f = assert(io.open(gw.key_file))
    local text = f:read("*a")
    f:close()
    for _, key in pairs(gw.keys) do assert.is_nil(text:find(key:sub(6), 1, true)) end
  end)
end)
