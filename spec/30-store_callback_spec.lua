-- Callback stores: any table with load/save (lock/unlock optional) carries a chain, and a store that fails or
-- raises is a store error that never leaves the file lock held, against the sandbox over HTTPS.
local exactonline = require "exactonline"
local client_mod = require "exactonline.client" -- core(c): the private C half, for what only it can tell
local helpers = require "helpers"
local proc = require "support.proc"

local FIELDS = { "access_token", "refresh_token", "expires_at", "obtained_at", "refresh_obtained_at" }

local function copy(t)
  if not t then return nil end
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

describe("callback stores", function()
  local sb = helpers.use_sandbox {}
  local dir
  setup(function() dir = helpers.tmpdir() end)

  it("a plain table with only load and save carries the chain across clients and a refresh", function()
    local saved, saves = nil, {}
    local store = {
      load = function() return copy(saved) end,
      save = function(t)
        saves[#saves + 1] = copy(t)
        saved = copy(t)
        return true
      end,
    }
    local a = assert(exactonline.new(sb:client_config { store = store }))
    assert(a:exchange(sb:code()))
    assert.are.equal(1, #saves)
    for _, f in ipairs(FIELDS) do
      if f:find("_at$") then assert.is_number(saves[1][f], f) else assert.is_string(saves[1][f], f) end
    end
    assert(a:get("/api/v1/current/Me"))
    sb:advance(600) -- Exact's clock: the access token has expired; the client learns it from the 401
    assert(a:get("/api/v1/current/Me"))
    assert.are.equal(2, #saves)
    assert.are_not.equal(saves[1].refresh_token, saves[2].refresh_token)
    a:close()
    -- a new client (a new run of the program) picks the chain up from the store: no token call
    local calls = sb:stats().token_calls
    local b = assert(exactonline.new(sb:client_config { store = store }))
    assert(b:get("/api/v1/current/Me"))
    assert.are.equal(calls, sb:stats().token_calls)
    assert.are.equal(0, sb:stats().old_refresh_used)
    b:close()
  end)

  it("a save that raises under the file lock: a store error, the lock free for others, the pair kept", function()
    local path = dir .. "/raise/tokens.json"
    local fs = exactonline.file_store(path)
    local broken = false
    local store = {
      load = fs.load, lock = fs.lock, unlock = fs.unlock,
      save = function(t)
        if broken then error("database on fire") end
        return fs.save(t)
      end,
    }
    local c = assert(exactonline.new(sb:client_config { store = store }))
    assert(c:exchange(sb:code()))
    local first = fs.load()
    broken = true
    sb:advance(600)
    local res, err = c:get("/api/v1/current/Me")
    assert.is_nil(res)
    assert.are.equal("store", err.kind)
    assert.is_truthy(tostring(err):find("database on fire", 1, true), tostring(err))
    assert.are.equal(1, sb:stats().refreshes)
    -- another process takes the file lock at once: the client did not keep it
    local cmd, done = proc.script(([[
      local s = require("exactonline.store.file").new(%q)
      local ok, e = s.lock(0.2)
      io.write(tostring(ok), " ", tostring(e and e.code))
      s.unlock()
    ]]):format(path))
    local ok, out = helpers.sh(cmd)
    done()
    assert.is_true(ok, out)
    assert.are.equal("true nil", out)
    assert.are.same(first, fs.load())
    -- once the store works again, the pair in memory is saved before anything else, without a new refresh
    broken = false
    assert(c:get("/api/v1/current/Me"))
    assert.are.equal(1, sb:stats().refreshes)
    assert.are.equal(client_mod.core(c):tokens().refresh_token, fs.load().refresh_token)
    assert.are_not.equal(first.refresh_token, fs.load().refresh_token)
    c:close()
  end)

  it("a lock another process holds: a clear lock_timeout error and no token call", function()
    local path = dir .. "/held/tokens.json"
    local c = assert(exactonline.new(sb:client_config { store = exactonline.file_store(path, { lock_timeout = 0.3 }) }))
    assert(c:exchange(sb:code()))
    local holder = proc.lock_holder(("local s = require('exactonline.store.file').new(%q)"):format(path))
    local calls = sb:stats().token_calls
    sb:advance(600)
    local res, err = c:get("/api/v1/current/Me")
    holder.kill9()
    assert.is_nil(res)
    assert.are.equal("store", err.kind)
    assert.are.equal("lock_timeout", err.code)
    assert.is_truthy(tostring(err):find("another process holds the lock", 1, true), tostring(err))
    assert.are.equal(calls, sb:stats().token_calls)
    -- the holder is gone: the same client refreshes now
    assert(c:get("/api/v1/current/Me"))
    assert.are.equal(1, sb:stats().refreshes)
    c:close()
  end)

  it("a load that raises or fails at new(): nil and a store error, not a raise", function()
    local c, err = exactonline.new(sb:client_config { store = {
      load = function() error("cannot reach the vault") end, save = function() return true end } })
    assert.is_nil(c)
    assert.are.equal("store", err.kind)
    assert.is_truthy(tostring(err):find("cannot reach the vault", 1, true))
    c, err = exactonline.new(sb:client_config { store = {
      load = function() return nil, "vault sealed" end, save = function() return true end } })
    assert.is_nil(c)
    assert.are.equal("store", err.kind)
    assert.is_truthy(tostring(err):find("vault sealed", 1, true))
  end)
end)
