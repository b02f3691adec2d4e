-- The core against the sandbox over HTTPS: code exchange, refresh rules, the 401 retry, stores.
local helpers = require "helpers"
local exactonline = require "exactonline"
local client_mod = require "exactonline.client" -- core(c): the private C half, for what only it can tell
local core = require "exactonline.core"

describe("core against the sandbox: OAuth", function()
  local sb = helpers.use_sandbox{ accounts = 20 }
  local offset
  -- the client's clock moves with the sandbox's when a spec says so
  local function clock() return core.now() + offset end
  local function advance(s)
    offset = offset + s
    sb:advance(s)
  end
  local function new(over)
    over = over or {}
    over.clock = over.clock or clock
    return assert(exactonline.new(sb:client_config(over)))
  end
  local function authorized(over)
    local c = new(over)
    assert(c:exchange(sb:authorize{ state = "s" }, "s"))
    return c
  end
  local function stat(name) return sb:stats()[name] end

  before_each(function()
    offset = 0
  end)

  describe("exchange", function()
    it("takes the pasted redirect URL, saves the pair, and the API answers", function()
      local store = exactonline.memory_store()
      local c = new{ store = store }
      local t = assert(c:exchange(sb:authorize{ state = "xyz" }, "xyz"))
      assert.truthy(t.refresh_token:find("!", 1, true))
      assert.same(t, store.load())
      assert.near(t.obtained_at + 600, t.expires_at, 0.001)
      local me = assert(c:get("/api/v1/current/Me"))
      assert.equal(sb.division, me[1].CurrentDivision)
      assert.equal(sb.division, c:division())
      assert.equal(1, stat("code_exchanges"))
      assert.truthy(tostring(c):find("division " .. sb.division, 1, true))
      c:close()
    end)

    it("takes a bare code and a %21-encoded code, decoded exactly once", function()
      assert(new():exchange(sb:code()))
      assert(new():exchange((sb:code():gsub("!", "%%21"))))
      assert.equal(2, stat("code_exchanges"))
    end)

    it("decodes a pasted redirect URL exactly once: a code encoded twice (%2521) is refused by Exact", function()
      local loc = sb:authorize{ state = "s" }
      local twice = loc:gsub("%%21", "%%2521")
      assert.are_not.equal(loc, twice)
      local t, err = new():exchange(twice, "s")
      assert.is_nil(t)
      assert.same({ "oauth", 400, "invalid_grant" }, { err.kind, err.status, err.code })
      assert.same({ 0, 1 }, { stat("code_exchanges"), stat("invalid_grant") })
      -- the same code from the URL as Exact sent it works
      assert(new():exchange(loc, "s"))
      assert.equal(1, stat("code_exchanges"))
    end)

    it("replaces whatever the store holds, even a pair whose times read later (a new authorization is the newest)",
      function()
      -- chains are ordered by when their refresh token was issued, on clocks read off Exact's whole-second Date:
      -- two authorizations within a second (or a pair stamped by a clock ahead) could not be told apart, and
      -- `exactonline auth` printed "Tokens stored" while the file kept the old chain
      local path = helpers.tmpdir() .. "/tokens.json"
      local later = core.now() + 3600
      assert.is_true(exactonline.file_store(path).save { access_token = "OLD-A", refresh_token = "OLD-R",
        expires_at = later + 600, obtained_at = later, refresh_obtained_at = later })
      local t = assert(new{ store = exactonline.file_store(path) }:exchange(sb:code()))
      local stored = exactonline.file_store(path).load()
      assert.equal(t.refresh_token, stored.refresh_token)
      assert.equal(t.access_token, stored.access_token)
      -- and a client on that file works (the old pair is unknown to Exact: a refresh with it would fail)
      assert(new{ store = exactonline.file_store(path) }:get("/api/v1/current/Me"))
      assert.equal(0, stat("invalid_grant"))
    end)

    it("takes a token answer with expires_in as a number and token_type \"Bearer\"", function()
      sb:configure{ expires_in_number = true, token_type = "Bearer" }
      local c = new()
      local t = assert(c:exchange(sb:code()))
      assert.near(600, t.expires_at - t.obtained_at, 0.001)
      assert.equal(math.floor(t.expires_at), c:token_info().expires_at) -- whole seconds, for os.date
      assert(c:get("/api/v1/current/Me"))
      advance(575) -- and refreshes by itself in the last 30 s of those 600
      assert(c:get("/api/v1/current/Me"))
      assert.same({ 1, 0 }, { stat("refreshes"), stat("unauthorized") })
    end)

    it("explains a used code and an expired one", function()
      local code = sb:code()
      assert(new():exchange(code))
      local t, err = new():exchange(code)
      assert.is_nil(t)
      assert.same({ "oauth", 400, "invalid_grant" }, { err.kind, err.status, err.code })
      assert.truthy(tostring(err):find("codes live 3 minutes and work once", 1, true))
      code = sb:code()
      advance(181)
      t, err = new():exchange(code)
      assert.is_nil(t)
      assert.equal("invalid_grant", err.code)
    end)

    it("explains invalid_client without showing the secret", function()
      local t, err = new{ client_secret = "wrong-secret-value" }:exchange(sb:code())
      assert.is_nil(t)
      assert.equal("invalid_client", err.code)
      assert.truthy(tostring(err):find("client_secret", 1, true))
      assert.is_nil(tostring(err):find("wrong-secret-value", 1, true))
    end)

    it("makes no token call for a denied consent or a foreign state", function()
      local t, err = new():exchange(sb:authorize{ deny = true, state = "s" }, "s")
      assert.is_nil(t)
      assert.equal("access_denied", err.code)
      t, err = new():exchange(sb:authorize{ state = "evil" }, "s")
      assert.is_nil(t)
      assert.equal("state_mismatch", err.code)
      assert.equal(0, stat("token_calls"))
    end)

    it("prints base URL, division and token expiry in a REPL, and no secret", function()
      local t = sb:tokens()
      local now = os.time()
      -- a person at the prompt (LuaJIT's prompt takes short lines: the values come from the environment)
      local env = ""
      for k, v in pairs{ EO_BASE = sb.base_url, EO_ID = sb.client_id, EO_SECRET = sb.client_secret,
                         EO_CA = sb.cafile, EO_AT = t.access_token, EO_RT = t.refresh_token } do
        env = env .. k .. "=" .. helpers.quote(v) .. " "
      end
      local script = table.concat({
        "exactonline = require 'exactonline'",
        "e = os.getenv",
        "s = exactonline.memory_store{ access_token = e'EO_AT', refresh_token = e'EO_RT', " ..
          "obtained_at = " .. now .. " }",
        "c = exactonline.new{ base_url = e'EO_BASE', client_id = e'EO_ID', client_secret = e'EO_SECRET', " ..
          "cafile = e'EO_CA', store = s }",
        "=c",
        "=c:division()",
        "=c",
        "c:close()",
        "=c",
      }, "\n") .. "\n"
      local out_file = helpers.tmpdir() .. "/repl.out"
      local f = io.popen(env .. helpers.lua_env() .. " " .. helpers.lua() .. " -i > " .. helpers.quote(out_file) ..
        " 2>&1", "w")
      f:write(script)
      f:close()
      local out = helpers.read(out_file)
      local lines = {}
      for line in out:gmatch("exactonline%.Client[^\n]*") do lines[#lines + 1] = line end
      assert.equal(3, #lines, out)
      local expiry = os.date("!%Y-%m-%dT%H:%M:%SZ", now + 600)
      assert.equal(sb.base_url .. " division ?, access token expires " .. expiry, lines[1]:match("%) (.*)$"))
      assert.equal(sb.base_url .. " division " .. sb.division .. ", access token expires " .. expiry,
        lines[2]:match("%) (.*)$"))
      assert.truthy(lines[3]:match("%) closed$"))
      for _, secret in ipairs{ t.access_token, t.refresh_token, sb.client_secret } do
        assert.is_nil(out:find(secret, 1, true))
      end
    end)

    it("refuses an untrusted certificate (verification cannot be switched off)", function()
      local cfg = sb:client_config()
      cfg.cafile = nil
      local c = assert(exactonline.new(cfg))
      local t, err = c:exchange(sb:code())
      assert.is_nil(t)
      assert.equal("tls", err.kind)
      assert.equal("CURLE_PEER_FAILED_VERIFICATION", err.code)
      assert.equal(0, stat("token_calls"))
    end)
  end)

  describe("refresh", function()
    it("refuses earlier than 570 s without a token call, and says when", function()
      local c = authorized()
      local t, err = c:refresh()
      assert.is_nil(t)
      assert.equal("too_early", err.code)
      assert.truthy(err.allowed_at > clock() + 560)
      assert.equal(1, stat("token_calls"))
    end)

    it("refreshes when allowed and saves the new pair before using it", function()
      local saved = {}
      local mem = exactonline.memory_store()
      local store = { load = mem.load, save = function(t) saved[#saved + 1] = t.access_token; return mem.save(t) end }
      local c = authorized{ store = store }
      local before = mem.load()
      advance(575)
      local t = assert(c:refresh())
      assert.are_not.equal(before.refresh_token, t.refresh_token)
      assert.equal(t.access_token, saved[#saved])
      assert.equal(1, stat("refreshes"))
      assert(c:get("/api/v1/current/Me"))
      assert.equal(0, stat("unauthorized"))
    end)

    it("refreshes by itself only in the last 30 s of the access token", function()
      local c = authorized()
      advance(560)
      assert(c:get("/api/v1/current/Me"))
      assert.equal(0, stat("refresh_attempts"))
      advance(25)
      assert(c:get("/api/v1/current/Me"))
      assert.equal(1, stat("refreshes"))
      assert.equal(0, stat("unauthorized"))
    end)

    it("after a 401 refreshes once and retries once (the server's clock rules)", function()
      local c = authorized()
      sb:advance(600) -- only Exact's clock: ours still thinks the token is fresh
      local me = assert(c:get("/api/v1/current/Me"))
      assert.equal(sb.division, me[1].CurrentDivision)
      local s = sb:stats()
      assert.same({ 1, 1, 0 }, { s.unauthorized, s.refreshes, s.old_refresh_used })
    end)

    it("never makes a second token call for the same failure", function()
      local c = authorized()
      sb:advance(575)
      sb:fault("401", 2)
      local res, err = c:get("/api/v1/current/Me")
      assert.is_nil(res)
      assert.equal(401, err.status)
      assert.equal(1, stat("refresh_attempts"))
      -- a failing token endpoint after a 401: one try, its error
      sb:advance(600)
      sb:fault("html503", 1, { scope = "token" })
      res, err = c:get("/api/v1/current/Me")
      assert.is_nil(res)
      assert.equal("http", err.kind)
      assert.equal(503, err.status)
      assert.equal(3, stat("token_calls"))
    end)

    it("adopts a pair another client refreshed instead of refreshing again", function()
      local store = exactonline.memory_store()
      local a = authorized{ store = store }
      local b = new{ store = store }
      sb:advance(600)
      assert(a:get("/api/v1/current/Me"))
      assert(b:get("/api/v1/current/Me"))
      local s = sb:stats()
      assert.same({ 1, 1, 0 }, { s.refresh_attempts, s.refreshes, s.old_refresh_used })
      assert.same(client_mod.core(a):tokens(), client_mod.core(b):tokens())
    end)

    it("holds the store lock around refresh and releases it on every path", function()
      local mem = exactonline.memory_store()
      local locks, unlocks, broken = 0, 0, true
      local store = {
        load = mem.load,
        save = function(t)
          if broken and #t.access_token > 0 and mem.load() and mem.load().access_token ~= t.access_token and
            locks > 0 then
            error("disk on fire")
          end
          return mem.save(t)
        end,
        lock = function() locks = locks + 1; return true end,
        unlock = function() unlocks = unlocks + 1 end,
      }
      local c = authorized{ store = store }
      advance(590)
      local res, err = c:get("/api/v1/current/Me")
      assert.is_nil(res)
      assert.equal("store", err.kind)
      assert.truthy(tostring(err):find("disk on fire", 1, true))
      assert.equal(locks, unlocks)
      -- the new pair is not used until it is saved; no second token call
      res, err = c:get("/api/v1/current/Me")
      assert.is_nil(res)
      assert.equal("store", err.kind)
      assert.equal(2, stat("token_calls"))
      broken = false
      assert(c:get("/api/v1/current/Me"))
      assert.equal(client_mod.core(c):tokens().access_token, mem.load().access_token)
      assert.equal(2, stat("token_calls"))
      assert.equal(locks, unlocks)
    end)

    it("turns a raising lock into a store error without a token call", function()
      local mem = exactonline.memory_store()
      local gone = false
      local c = authorized{ store = { load = mem.load, save = mem.save, unlock = function() end,
                                      lock = function() if gone then error("lock server gone") end return true end } }
      gone = true
      advance(575)
      local t, err = c:refresh()
      assert.is_nil(t)
      assert.equal("store", err.kind)
      assert.equal(1, stat("token_calls"))
    end)

    it("keeps (and saves) the old refresh token when a refresh answer carries none", function()
      sb:configure{ refresh_keeps = true }
      local mem = exactonline.memory_store()
      local c = authorized{ store = mem }
      local first = mem.load()
      advance(575)
      local t = assert(c:refresh())
      assert.are_not.equal(first.access_token, t.access_token)
      assert.equal(first.refresh_token, t.refresh_token)
      assert.equal(first.refresh_obtained_at, t.refresh_obtained_at) -- its 30 days still count from its issue
      assert.same(t, mem.load())
      assert(c:get("/api/v1/current/Me"))
      advance(575)
      assert(c:refresh())
      assert.same({ 2, 0, 0 }, { stat("refreshes"), stat("old_refresh_used"), stat("unauthorized") })
    end)

    it("saves the refresh token an error answer carries, so the chain lives on", function()
      local mem = exactonline.memory_store()
      local c = authorized{ store = mem }
      local before = mem.load()
      advance(575)
      sb:fault("rotate_error", 1, { scope = "token" })
      local t, err = c:refresh()
      assert.is_nil(t)
      assert.same({ "http", 503, "temporarily_unavailable" }, { err.kind, err.status, err.code })
      local saved = mem.load()
      assert.are_not.equal(before.refresh_token, saved.refresh_token)
      assert.truthy(saved.refresh_token:find("!", 1, true))
      assert.equal(before.access_token, saved.access_token)
      assert.is_nil(tostring(err):find(saved.refresh_token, 1, true))
      -- a later refresh uses the saved one: no "Old refresh token used."
      advance(575)
      assert(c:refresh())
      assert.same({ 2, 0 }, { stat("refreshes"), stat("old_refresh_used") })
      -- the same on a code exchange: the refresh token in the error answer is stored, and a client
      -- on that store refreshes with it when first used
      local mem2 = exactonline.memory_store()
      sb:fault("rotate_error", 1, { scope = "token" })
      t = new{ store = mem2 }:exchange(sb:code())
      assert.is_nil(t)
      local rt = mem2.load().refresh_token
      assert.truthy(rt:find("!", 1, true))
      assert.is_nil(mem2.load().access_token)
      advance(575)
      local me = assert(new{ store = mem2 }:get("/api/v1/current/Me"))
      assert.equal(sb.division, me[1].CurrentDivision)
      assert.are_not.equal(rt, mem2.load().refresh_token)
      assert.is_string(mem2.load().access_token)
      assert.same({ 3, 0, 0 }, { stat("refreshes"), stat("old_refresh_used"), stat("unauthorized") })
    end)

    it("starts from a refresh token alone (brought from another client): refreshes on first use", function()
      local t = sb:tokens()
      advance(575)
      local mem = exactonline.memory_store{ refresh_token = t.refresh_token }
      local c = new{ store = mem }
      assert.truthy(tostring(c):find("not authorized", 1, true))
      assert(c:get("/api/v1/current/Me"))
      assert.equal(client_mod.core(c):tokens().access_token, mem.load().access_token)
      assert.same({ 1, 1 }, { stat("refresh_attempts"), stat("refreshes") })
      -- too early for Exact: its error, one token call, and no API call
      local early = exactonline.memory_store{ refresh_token = mem.load().refresh_token }
      local calls = stat("api_calls")
      local res, err = new{ store = early }:get("/api/v1/current/Me")
      assert.is_nil(res)
      assert.equal("access_denied", err.code)
      assert.same({ 2, calls }, { stat("refresh_attempts"), stat("api_calls") })
    end)

    it("explains a dead chain (Old refresh token used) and an expired refresh token", function()
      local mem = exactonline.memory_store()
      local c = authorized{ store = mem }
      advance(575)
      assert.equal(200, (sb:refresh(mem.load().refresh_token))) -- someone else spends our refresh token
      local t, err = c:refresh()
      assert.is_nil(t)
      assert.equal("unauthorized_client", err.code)
      assert.truthy(tostring(err):find("exactonline auth", 1, true))
      local d = authorized()
      advance(31 * 86400)
      t, err = d:get("/api/v1/current/Me")
      assert.is_nil(t)
      assert.equal("invalid_request", err.code)
      assert.truthy(tostring(err):find("30 days", 1, true))
    end)

    it("never sends a refused refresh token again: a dead chain costs one token call, not one per request", function()
      local mem = exactonline.memory_store()
      local c = authorized{ store = mem }
      advance(600) -- the access token has expired on both clocks
      assert.equal(200, (sb:refresh(mem.load().refresh_token))) -- someone else spends our refresh token
      local calls = stat("token_calls")
      local t, err = c:get("/api/v1/current/Me")
      assert.is_nil(t)
      assert.equal("unauthorized_client", err.code)
      assert.equal(calls + 1, stat("token_calls"))
      for _ = 1, 5 do
        t, err = c:get("/api/v1/current/Me")
        assert.is_nil(t)
        assert.equal("unauthorized_client", err.code)
      end
      t, err = c:refresh()
      assert.is_nil(t)
      assert.equal("unauthorized_client", err.code)
      assert.equal(calls + 1, stat("token_calls"))
      assert.equal(1, stat("old_refresh_used"))
      -- a person authorizes again: the new chain works on the same client
      assert(c:exchange(sb:code()))
      assert(c:get("/api/v1/current/Me"))
    end)

    it("asks once when Exact's clock says a proactive refresh is too early, then leaves it to the 401", function()
      local c = authorized()
      offset = offset + 575 -- our clock runs ahead of Exact's: we think the token is in its last 30 s
      assert(c:get("/api/v1/current/Me")) -- Exact refuses the refresh; the token still works there
      assert.equal(1, stat("too_early"))
      assert(c:get("/api/v1/current/Me"))
      assert(c:get("/api/v1/current/Me"))
      assert.equal(2, stat("token_calls")) -- the exchange and one refused refresh
      sb:advance(600) -- now expired on Exact's clock too: the 401 refreshes
      assert(c:get("/api/v1/current/Me"))
      assert.equal(1, stat("refreshes"))
    end)

    it("releases a lock that a raising lock() took", function()
      local mem = exactonline.memory_store()
      local held, armed = false, false
      local c = authorized{ store = { load = mem.load, save = mem.save,
        lock = function() held = true; if armed then error("lock server hiccup") end return true end,
        unlock = function() held = false end } }
      armed = true
      advance(575)
      local t, err = c:refresh()
      assert.is_nil(t)
      assert.equal("store", err.kind)
      assert.is_false(held)
    end)

    it("warns through on_warning when the refresh token has fewer than 7 days left", function()
      local mem = exactonline.memory_store()
      authorized{ store = mem }
      local t = mem.load()
      t.refresh_obtained_at = t.refresh_obtained_at - 24 * 86400
      local warnings = {}
      local c = new{ store = exactonline.memory_store(t), on_warning = function(m) warnings[#warnings + 1] = m end }
      assert.equal(1, #warnings)
      assert.truthy(warnings[1]:find("expires in 6.0 days", 1, true))
      assert.is_nil(warnings[1]:find(t.refresh_token, 1, true))
      assert(c:get("/api/v1/current/Me"))
      assert.equal(1, #warnings)
      local info = c:token_info()
      assert.equal(math.floor(t.refresh_obtained_at + 30 * 86400), info.refresh_expires_at)
      assert.is_string(os.date("%c", info.refresh_expires_at)) -- Lua 5.4 refuses fractions there
      assert.is_nil(info.access_token)
    end)
  end)
end)
