--- The token chain as the gateway keeps it: the shared dict every worker reads (exactonline.shdict_store),
-- written through to the backing store (the token file, or PostgreSQL) before a new token is used.
-- Two things the plain shared-dict store does not do, because a gateway runs for months:
--   * load() prefers the backing store's chain when it is newer: a person ran `exactonline auth` again, or a
--     cron `exactonline refresh` rotated the chain; the gateway takes it up without a restart;
--   * lock() also takes the backing store's own lock (tried without blocking the nginx worker), so that a
--     refresh here and one by another process on the same store never race.
-- status(now) says how the chain stands, for /healthz; mark_dead(err) records that Exact refused it.
local cjson = require("cjson").new()
local exactonline = require "exactonline"
local core = require "exactonline.core"

local ngx = ngx
local type, tonumber, pcall, tostring = type, tonumber, pcall, tostring
local ngx_sleep, ngx_now, ngx_update_time = ngx.sleep, ngx.now, ngx.update_time
local math_floor = math.floor

local _M = {}

local LOCK_TIMEOUT = 30

local function now()
  ngx_update_time()
  return ngx_now()
end

local function obtained(t)
  return type(t) == "table" and tonumber(t.obtained_at) or 0
end

--- new(dict_name, backing_store) --> store (load, save, lock, unlock) with status() and mark_dead()
function _M.new(dict_name, backing)
  local shared = exactonline.shdict_store(dict_name, backing, { key = "gateway", lock_timeout = LOCK_TIMEOUT })
  local dict = ngx.shared[dict_name]
  local store = {}
  local holding_backing = false

  local function backing_chain()
    local ok, t = pcall(backing.load)
    if ok and type(t) == "table" and (t.access_token or t.refresh_token) then return t end
    return nil
  end

  function store.load()
    local t, err = shared.load()
    if err then return nil, err end
    local b = backing_chain()
    if b and obtained(b) > obtained(t) then
      shared.save(b) -- into the dict (and the same chain back through to the backing store)
      return b
    end
    return t
  end

  store.save = shared.save
  store.count = shared.count -- events shared by every worker (the client's error budget counts there)

  function store.lock()
    local ok, err = shared.lock()
    if not ok then return nil, err end
    if not backing.lock then return true end
    local deadline = now() + LOCK_TIMEOUT
    while true do
      local bok, lok, lerr = pcall(backing.lock, 0)
      if bok and lok then
        holding_backing = true
        return true
      end
      if not bok or (type(lerr) == "table" and lerr.code ~= "lock_timeout") or now() > deadline then
        shared.unlock()
        return nil, bok and lerr or lok
      end
      ngx_sleep(0.05) -- another process refreshes: let this worker serve others meanwhile
    end
  end

  function store.unlock()
    if holding_backing then
      holding_backing = false
      pcall(backing.unlock)
    end
    return shared.unlock()
  end

  --- Exact refused the chain (reused, expired or wrong app): remembered until a newer chain arrives
  function store.mark_dead(err)
    local t = shared.load()
    dict:set("gateway:dead", cjson.encode { obtained_at = obtained(t), code = err and err.code,
      message = err and tostring(err.message), at = now() })
  end

  --- status(now) --> { state = "ok"|"expiring"|"needs_authorization"|"no_tokens", … } (no secret in it)
  function store.status(t_now)
    t_now = t_now or now()
    local t = store.load()
    if type(t) ~= "table" or not (t.refresh_token or t.access_token) then
      return { state = "no_tokens", message = "there are no tokens yet: run `exactonline auth`" }
    end
    local rules = core.token_rules
    local got = tonumber(t.refresh_obtained_at) or tonumber(t.obtained_at)
    local s = { state = "ok", access_token_expires_at = tonumber(t.expires_at) and math_floor(t.expires_at),
      refresh_token_obtained_at = got and math_floor(got) }
    if got then
      s.refresh_token_expires_at = math_floor(got + rules.refresh_lifetime)
      s.days_left = math_floor((got + rules.refresh_lifetime - t_now) / 86400 * 10) / 10
    end
    local raw = dict:get("gateway:dead")
    local dead = raw and cjson.decode(raw)
    if dead and dead.obtained_at >= obtained(t) then
      s.state = "needs_authorization"
      s.message = "Exact Online refused the gateway's refresh token (" .. tostring(dead.message or dead.code) ..
        "): a person must run `exactonline auth` again"
    elseif s.days_left and s.days_left <= 0 then
      s.state = "needs_authorization"
      s.message = "the refresh token expired (30 days): a person must run `exactonline auth` again"
    elseif s.days_left and s.days_left < 7 then
      s.state = "expiring"
      s.message = "the refresh token expires in fewer than 7 days: the gateway renews it with every refresh "
        .. "(any call after the access token's 10 minutes)"
    end
    return s
  end

  return store
end

return _M
