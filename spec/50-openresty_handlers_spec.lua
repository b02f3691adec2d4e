-- Inside nginx: the module in request handlers over cosockets, against the sandbox.
-- nginx always runs LuaJIT (build/luajit/); busted runs these under both VMs as a driver only.
local helpers = require "helpers"
local ngx_harness = require "support.nginx"
local cjson = require "cjson"

describe("inside nginx (2 workers)", function()
  local sb = helpers.use_sandbox{ accounts = 12, reset = false }
  local app = ngx_harness.use{ sandbox = sb, workers = 2, settings = { retry_delay = 0.01 } }

  local function call(path)
    local status, _, body = app:get(path)
    local ok, data = pcall(cjson.decode, body or "")
    return status, ok and data or body
  end

  it("says there are no tokens before an authorization", function()
    local status, data = call("/accounts")
    assert.equal(502, status)
    assert.equal("oauth", data.kind)
    assert.matches("no tokens yet", data.error)
  end)

  it("exchanges a code and calls the API from handlers, through the ngx transport", function()
    local before = sb:stats()
    local status, data = call("/exchange?code=" .. helpers.escape(sb:code()))
    assert.equal(200, status, tostring(data and data.error))
    assert.is_true(data.ok)
    assert.equal(before.code_exchanges + 1, sb:stats().code_exchanges)

    -- both workers use the one chain from the shared dict
    local workers, seen = {}, 0
    for _ = 1, 80 do
      status, data = call("/accounts")
      assert.equal(200, status, tostring(data and data.error))
      assert.equal(5, data.count)
      assert.is_string(data.first)
      if not workers[data.worker] then seen = seen + 1 end
      workers[data.worker] = true
      if seen == 2 then break end
    end
    assert.equal(2, seen)
    status, data = call("/me")
    assert.equal(200, status)
    assert.equal(sb.division, data.division)
    assert.equal(before.refreshes, sb:stats().refreshes)

    status, data = call("/transports")
    assert.equal(200, status)
    assert.is_true(data.ngx)
    assert.equal("content", data.phase)
  end)

  it("tries a GET again after a 503 (the wait is ngx.sleep); a failure past the retries is the error object", function()
    sb:fault("html503", 1)
    local status, data = call("/accounts")
    assert.equal(200, status, tostring(data and data.error))
    assert.equal(5, data.count)
    sb:fault("html503", 4)
    status, data = call("/accounts")
    assert.equal(502, status)
    assert.equal(503, data.status)
    assert.matches("was tried 4 times", data.error)
    status = call("/accounts")
    assert.equal(200, status)
  end)
end)

describe("the shared-dict store inside nginx", function()
  local sb = helpers.use_sandbox{ accounts = 1, reset = false }
  local app = ngx_harness.use{ sandbox = sb, workers = 1 }

  it("never saves an older chain over a newer one, and its lock times out clearly and is unlocked only by its holder",
    function()
      local status, _, body = app:get("/store_rules")
      assert.equal(200, status, body)
      local r = cjson.decode(body)
      assert.is_true(r.empty)
      assert.is_true(r.older_save.ok)
      assert.equal("kept_newer", r.older_save.note)
      assert.equal("new", r.after_older)
      assert.is_false(r.second.ok)
      assert.equal("store", r.second.kind)
      assert.equal("lock_timeout", r.second.code)
      assert.matches("lock", r.second.message)
      assert.is_true(r.second.waited >= 0.15)
      assert.is_true(r.still_held)
      assert.is_true(r.released)
      assert.is_true(r.again)
      -- a lock whose holder never unlocks expires after its lock_ttl (0.3 s) and is taken then
      assert.is_true(r.expired.ok, r.expired.error)
      assert.is_true(r.expired.waited >= 0.25, "taken after " .. r.expired.waited .. " s, before it expired")
    end)
end)

describe("inside nginx, TLS", function()
  local sb = helpers.use_sandbox{ accounts = 1, reset = false }
  -- the system's CAs, which do not include the sandbox's own CA
  local app = ngx_harness.use{ sandbox = sb, workers = 1, trusted = "/etc/ssl/certs/ca-certificates.crt" }

  it("refuses a server that lua_ssl_trusted_certificate does not vouch for, with a tls error and no token call",
    function()
      local before = sb:stats()
      local status, _, body = app:get("/exchange?code=" .. helpers.escape(sb:code()))
      assert.equal(502, status, app:error_log():sub(-1500))
      local data = cjson.decode(body)
      assert.equal("tls", data.kind)
      assert.matches("lua_ssl_trusted_certificate", data.error)
      assert.equal(before.token_calls, sb:stats().token_calls)
    end)
end)
