-- Webhooks as Exact sends them: a subscription is validated with an empty POST to the callback, then every
-- change of the topic is POSTed as {"Content":{…},"HashCode":"<HEX>"} signed with the app's webhook secret,
-- retried when the callback fails. The callback is a real HTTP server on a loopback port.
local helpers = require "helpers"

-- a callback: answers 200 (500 to the first `fails` deliveries with a body), logs each request as a JSON line
local SINK = [[
local socket, cjson = require "socket", require "cjson"
local port, log, fails = tonumber(arg[1]), arg[2], tonumber(arg[3]) or 0
local server = assert(socket.bind("127.0.0.1", port))
server:settimeout(60)
while true do
  local c = server:accept()
  if not c then break end
  c:settimeout(5)
  local line = c:receive("*l")
  local headers, len = {}, 0
  while true do
    local h = c:receive("*l")
    if not h or h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
  end
  len = tonumber(headers["content-length"]) or 0
  local body = len > 0 and c:receive(len) or ""
  local status = 200
  if #body > 0 and fails > 0 then fails = fails - 1; status = 500 end
  if line then -- (not the spec's probe that it listens)
    local f = io.open(log, "a")
    f:write(cjson.encode{ line = line, headers = headers, body = body or "", status = status }, "\n")
    f:close()
  end
  c:send("HTTP/1.1 " .. status .. " X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
  c:close()
end
]]

describe("sandbox webhooks", function()
  local sb, token, div, dir
  local sinks = {}
  setup(function()
    sb = helpers.sandbox{ accounts = 20 }
    div = sb.division
    dir = helpers.tmpdir()
    local f = assert(io.open(dir .. "/sink.lua", "w"))
    f:write(SINK)
    f:close()
  end)
  teardown(function()
    for _, pid in ipairs(sinks) do os.execute("kill " .. pid .. " 2>/dev/null") end
    sb:stop()
  end)
  before_each(function()
    sb:reset{ data = true }
    sb:configure{ webhook_delay = 0.1 }
    token = sb:tokens().access_token
  end)

  local function sink(fails)
    local port = helpers.free_port()
    local log = dir .. "/sink-" .. port .. ".log"
    local p = io.popen(helpers.lua_env("lua5.4") .. " lua5.4 " .. helpers.quote(dir .. "/sink.lua") .. " " .. port ..
      " " .. helpers.quote(log) .. " " .. (fails or 0) .. " >/dev/null 2>&1 & echo $!")
    local pid = p:read("*l")
    p:close()
    sinks[#sinks + 1] = pid
    -- wait until it listens
    for _ = 1, 100 do
      local s = require("socket").connect("127.0.0.1", port)
      if s then s:close() break end
      os.execute("sleep 0.05")
    end
    return "http://127.0.0.1:" .. port .. "/exact/hook", log
  end

  local function lines(log, n)
    local out = {}
    for _ = 1, 200 do
      out = {}
      local f = io.open(log)
      if f then
        for l in f:lines() do out[#out + 1] = helpers.json.decode(l) end
        f:close()
      end
      if #out >= n then break end
      os.execute("sleep 0.05")
    end
    return out
  end

  local function subscribe(url, topic)
    return sb:api("POST", "/api/v1/" .. div .. "/webhooks/WebhookSubscriptions", token,
      { body = { CallbackURL = url, Topic = topic or "Accounts" } })
  end

  local function hmac(secret, data)
    local path = dir .. "/content"
    local f = assert(io.open(path, "wb"))
    f:write(data)
    f:close()
    local p = io.popen("openssl dgst -sha256 -hmac " .. helpers.quote(secret) .. " -hex < " .. helpers.quote(path))
    local out = p:read("*a")
    p:close()
    return out:match("(%x+)%s*$"):upper()
  end

  it("validates the callback with an empty POST, then delivers signed changes of the topic", function()
    local url, log = sink()
    local status, body, _, raw = subscribe(url)
    assert.equal(201, status, raw)
    assert.equal(url, body.d.CallbackURL)
    assert.equal("Accounts", body.d.Topic)
    assert.equal(div, body.d.Division)
    local validation = lines(log, 1)[1]
    assert.equal("POST /exact/hook HTTP/1.1", validation.line)
    assert.equal("", validation.body)
    -- listed, for this app
    local _, list = sb:api("GET", "/api/v1/" .. div .. "/webhooks/WebhookSubscriptions", token)
    assert.equal(1, #list.d.results)

    local changed = sb:change("accounts", { update = 1 })
    local got = lines(log, 2)
    assert.equal(2, #got)
    local raw_body = got[2].body
    local content, hash = raw_body:match('^{"Content":(.*),"HashCode":"(%x+)"}$')
    assert.truthy(content, raw_body)
    assert.equal(hmac(sb.info.webhook_secret, content), hash)
    assert.equal(hash:upper(), hash)
    local c = helpers.json.decode(content)
    assert.equal("Accounts", c.Topic)
    assert.equal("Update", c.Action)
    assert.equal(changed.updated[1], c.Key)
    assert.equal(div, c.Division)
    assert.equal(sb.client_id, c.ClientId)
    assert.truthy(c.ExactOnlineEndpoint:find("/api/v1/" .. div .. "/crm/Accounts(guid'" .. c.Key .. "')", 1, true))
    assert.truthy(c.EventCreatedOn:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d"))
    -- and a client verifies it as it would a delivery from Exact
    local ok, verified = require("exactonline").verify_webhook(raw_body, sb.info.webhook_secret)
    assert.is_true(ok, verified)
    assert.equal(c.Key, verified.Key)
    assert.is_false((require("exactonline").verify_webhook(raw_body, "another secret")))
    -- a REST delete is a Delete; other topics and divisions are not delivered
    sb:change("items", { update = 1 })
    sb:change("accounts", { division = div + 1, update = 1 })
    assert.equal(204, (sb:api("DELETE", "/api/v1/" .. div .. "/crm/Accounts(guid'" .. changed.updated[1] .. "')",
      token)))
    got = lines(log, 3)
    assert.equal(3, #got)
    assert.equal("Delete", helpers.json.decode(got[3].body:match('^{"Content":(.*),"HashCode"')).Action)
    assert.equal(2, sb:stats().webhook_deliveries)
  end)

  it("retries a delivery the callback refused, with growing delays", function()
    local url, log = sink(2)
    assert.equal(201, (subscribe(url)))
    sb:change("accounts", { create = 1 })
    local got = lines(log, 4)
    assert.equal(4, #got)
    assert.same({ 200, 500, 500, 200 }, { got[1].status, got[2].status, got[3].status, got[4].status })
    assert.equal(got[2].body, got[4].body)
    assert.equal("Create", helpers.json.decode(got[4].body:match('^{"Content":(.*),"HashCode"')).Action)
    local s = sb:stats()
    assert.equal(1, s.webhook_deliveries)
    assert.equal(2, s.webhook_failures)
  end)

  it("refuses a callback that does not validate, one off this machine, and an unknown topic", function()
    local status, body = subscribe("http://127.0.0.1:" .. helpers.free_port() .. "/nobody")
    assert.equal(400, status)
    assert.truthy(body.error.message.value:find("could not be validated", 1, true))
    status, body = subscribe("https://example.com/hook")
    assert.equal(400, status)
    assert.truthy(body.error.message.value:find("this machine", 1, true))
    local url = sink()
    status, body = subscribe(url, "Nonsense")
    assert.equal(400, status)
    assert.truthy(body.error.message.value:find("Topic", 1, true))
  end)

  it("unsubscribes with DELETE", function()
    local url, log = sink()
    local _, body = subscribe(url)
    assert.equal(204, (sb:api("DELETE", "/api/v1/" .. div .. "/webhooks/WebhookSubscriptions(guid'" .. body.d.ID ..
      "')", token)))
    sb:change("accounts", { update = 1 })
    -- the next subscription's validation arrives after any delivery would have
    local url2, log2 = sink()
    assert.equal(201, (subscribe(url2)))
    assert.equal(1, #lines(log2, 1))
    assert.equal(1, #lines(log, 1))
    assert.equal(0, sb:stats().webhook_deliveries)
    assert.truthy(url)
  end)
end)
