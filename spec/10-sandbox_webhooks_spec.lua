-- Webhooks as Exact sends them: a subscription is validated with an empty POST to the callback, then every
-- change of the topic is POSTed as {"Content":{…},"HashCode":"<HEX>"} signed with the app's webhook secret,
-- retried when the callback fails. The callback is a real HTTP server on a loopback port.
local helpers = require "helpers"

local webhook_sink = require "support.webhook_sink"

describe("sandbox webhooks", function()
  local sb = helpers.use_sandbox{ accounts = 20, reset = { data = true } }
  local token, div, dir
  setup(function()
    dir = helpers.tmpdir()
  end)
  before_each(function()
    sb:configure{ webhook_delay = 0.1 }
    div, token = sb.division, sb:tokens().access_token
  end)

  -- a callback for this test: its URL, and the sink (hook:lines(n) --> the requests it got)
  local function sink(fails)
    local hook = webhook_sink.start(fails)
    return hook.url, hook
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
    local url, hook = sink()
    local status, body, _, raw = subscribe(url)
    assert.equal(201, status, raw)
    assert.equal(url, body.d.CallbackURL)
    assert.equal("Accounts", body.d.Topic)
    assert.equal(div, body.d.Division)
    local validation = hook:lines(1)[1]
    assert.equal("POST /exact/hook HTTP/1.1", validation.line)
    assert.equal("", validation.body)
    -- listed, for this app
    local _, list = sb:api("GET", "/api/v1/" .. div .. "/webhooks/WebhookSubscriptions", token)
    assert.equal(1, #list.d.results)

    local changed = sb:change("accounts", { update = 1 })
    local got = hook:lines(2)
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
    got = hook:lines(3)
    assert.equal(3, #got)
    assert.equal("Delete", helpers.json.decode(got[3].body:match('^{"Content":(.*),"HashCode"')).Action)
    assert.equal(2, sb:stats().webhook_deliveries)
  end)

  it("retries a delivery the callback refused, with growing delays", function()
    local url, hook = sink(2)
    assert.equal(201, (subscribe(url)))
    sb:change("accounts", { create = 1 })
    local got = hook:lines(4)
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
    local url, hook = sink()
    local _, body = subscribe(url)
    assert.equal(204, (sb:api("DELETE", "/api/v1/" .. div .. "/webhooks/WebhookSubscriptions(guid'" .. body.d.ID ..
      "')", token)))
    sb:change("accounts", { update = 1 })
    -- the next subscription's validation arrives after any delivery would have
    local url2, hook2 = sink()
    assert.equal(201, (subscribe(url2)))
    assert.equal(1, #hook2:lines(1))
    assert.equal(1, #hook:lines(1))
    assert.equal(0, sb:stats().webhook_deliveries)
    assert.truthy(url)
  end)
end)
