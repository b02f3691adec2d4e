--- exactonline.store.shdict: tokens in an nginx `lua_shared_dict`: every worker shares one chain, and the
-- shared-dict lock gives one refresh across all workers. Optionally written through to a backing store (e.g.
-- the file store), which is read when the dict is empty, so a restart or reload keeps the chain.
--   local store = require("exactonline.store.shdict").new{ dict = "exactonline",
--     backing = exactonline.file_store("/var/lib/app/tokens.json") }
--   (or exactonline.shdict_store("exactonline", backing, opts))
-- The backing store's calls are blocking (the file store uses plain file I/O and flock): fine for a tiny
-- file written once per 10 minutes, but keep slow backends (a remote database) out of request handlers.
-- store.load() / store.save(tokens) / store.lock([timeout]) / store.unlock(), plain functions (no self).
local core = require "exactonline.core"
local contract = require "exactonline.store.contract"
local exact_clock = require "exactonline.clock"
local cjson = require("cjson").new()

local ngx = ngx
local type, tostring, tonumber, pcall, error, setmetatable =
  type, tostring, tonumber, pcall, error, setmetatable
local co_running = coroutine.running
local math_min, math_random = math.min, math.random
local ngx_sleep, ngx_now, ngx_update_time, ngx_worker_pid = ngx.sleep, ngx.now, ngx.update_time, ngx.worker.pid

local _M = {}

local function store_error(code, message, hint)
  return core.error { kind = "store", code = code, message = message, hint = hint }
end

local newer, copy_tokens = contract.newer, contract.copy

local seq = 0

--- new{ dict = name, backing = store, key = "tokens", lock_timeout = 30, lock_ttl = 60 } --> store
-- (as before, new(dict_name, backing_store, opts) works too)
-- opts.dict: the lua_shared_dict's name; opts.backing: a store every save is written through to
-- opts.key: the dict key (default "tokens"; one key per Exact app/user chain)
-- opts.lock_timeout: seconds lock() waits (default 30); opts.lock_ttl: seconds a lock lives if its holder
-- dies (default 60)
function _M.new(...)
  local opts = contract.options({ "dict", "backing" }, ...)
  local dict_name, backing = opts.dict, opts.backing
  if type(dict_name) ~= "string" then error("exactonline.shdict_store: dict_name must be a string", 2) end
  if not ngx or not ngx.shared then error("exactonline.shdict_store: works only inside nginx (ngx_lua)", 2) end
  local dict = ngx.shared[dict_name]
  if not dict then
    error("exactonline.shdict_store: no lua_shared_dict named " .. dict_name .. " (add `lua_shared_dict " ..
      dict_name .. " 1m;` to the http block of nginx.conf)", 2)
  end
  if backing ~= nil and (type(backing) ~= "table" or type(backing.load) ~= "function"
    or type(backing.save) ~= "function") then
    error("exactonline.shdict_store: backing_store must be a store (a table with load and save)", 2)
  end
  local key = "exactonline:" .. tostring(opts.key or "tokens")
  local lock_key = key .. ":lock"
  local lock_timeout = tonumber(opts.lock_timeout) or 30
  local lock_ttl = tonumber(opts.lock_ttl) or 60
  -- which light thread holds the lock, and with what id (unlock deletes only its own lock)
  local holders = setmetatable({}, { __mode = "k" })

  local store = { dict_name = dict_name, key = key, backing = backing }

  local function read_dict()
    local raw = dict:get(key)
    if raw == nil then return nil end
    local ok, t = pcall(cjson.decode, raw)
    if not ok or type(t) ~= "table" then return nil end
    return t
  end

  -- set the dict to t unless it holds a newer chain; true | nil, err
  local function write_dict(t, replace)
    local current = read_dict()
    if current and not replace and newer(current, t) then return true, "kept_newer" end
    local ok, err, forcible = dict:set(key, cjson.encode(copy_tokens(t)))
    if not ok then
      return nil, store_error("shdict_full", "could not write the tokens to lua_shared_dict " .. dict_name ..
        ": " .. tostring(err), "make the lua_shared_dict larger")
    end
    if forcible then
      ngx.log(ngx.WARN, "exactonline: lua_shared_dict ", dict_name, " is full; other entries were evicted")
    end
    return true
  end

  function store.load()
    local t = read_dict()
    if t then return t end
    if not backing then return nil end
    -- empty dict (fresh start or reload): take the backing store's chain
    local ok, bt, berr = pcall(backing.load)
    if not ok then return nil, store_error("backing_load", "the backing store's load() failed: " .. tostring(bt)) end
    if bt == nil then
      if berr ~= nil then return nil, berr end
      return nil
    end
    if type(bt) ~= "table" then return nil end
    local wok, werr = write_dict(bt)
    if not wok then return nil, werr end
    return read_dict() or copy_tokens(bt)
  end

  function store.save(tokens, opts)
    if type(tokens) ~= "table" then error("exactonline.shdict_store: save(tokens) needs a table", 2) end
    local replace = type(opts) == "table" and opts.replace or nil
    local ok, err = write_dict(tokens, replace)
    if not ok then return nil, err end
    if err == "kept_newer" then return true, err end
    if backing then
      -- written through before the new access token is used, so a restart keeps the chain
      local bok, r, berr = pcall(backing.save, tokens, replace and opts or nil)
      if not bok then return nil, store_error("backing_save", "the backing store's save() failed: " .. tostring(r)) end
      if not r then return nil, berr or store_error("backing_save", "the backing store's save() failed") end
    end
    return true
  end

  --- lock([timeout]): the shared-dict lock, waiting with ngx.sleep; it expires after lock_ttl seconds if its
  -- holder dies. One holder per light thread at a time.
  function store.lock(timeout)
    local me = co_running() or store
    if holders[me] then
      return nil, store_error("lock_held", "this request already holds the token lock", "call unlock() first")
    end
    timeout = tonumber(timeout) or lock_timeout
    seq = seq + 1
    local id = tostring(ngx_worker_pid()) .. ":" .. seq .. ":" .. math_random(1, 1e9)
    ngx_update_time()
    local deadline = ngx_now() + timeout
    local wait = 0.001
    while true do
      local ok, err = dict:add(lock_key, id, lock_ttl)
      if ok then
        holders[me] = id
        return true
      end
      if err ~= "exists" then
        return nil, store_error("lock", "could not take the token lock in lua_shared_dict " .. dict_name .. ": "
          .. tostring(err), "make the lua_shared_dict larger")
      end
      ngx_update_time()
      local left = deadline - ngx_now()
      if left <= 0 then
        return nil, store_error("lock_timeout", "the token lock in lua_shared_dict " .. dict_name ..
          " stayed taken for " .. timeout .. " s (another request is refreshing, or hung)",
          "try again; a lock whose holder died expires after " .. lock_ttl .. " s")
      end
      ngx_sleep(math_min(wait, left))
      wait = math_min(wait * 2, 0.05)
    end
  end

  function store.unlock()
    local me = co_running() or store
    local id = holders[me]
    holders[me] = nil
    if id and dict:get(lock_key) == id then dict:delete(lock_key) end
    return true
  end

  --- count(name, now, window, add) --> n, oldest | nil, err: shared by every worker. A change reads and
  -- rewrites the name's list under a short dict lock (no yield inside it); a look reads it as it is.
  local count_lock = key .. ":count_lock"
  function store.count(name, now, window, add)
    add = contract.count_args("exactonline.shdict_store", name, now, window, add)
    local ckey = key .. ":count:" .. name
    local function current()
      local raw = dict:get(ckey)
      local ok, list = pcall(cjson.decode, raw or "[]")
      return ok and list or {}
    end
    if add == 0 then
      local _, n, oldest = contract.tally(current(), now, window, 0)
      return n, oldest
    end
    seq = seq + 1
    local id = tostring(ngx_worker_pid()) .. ":" .. seq .. ":" .. math_random(1, 1e9)
    local wait, waited = 0.001, 0
    while true do
      local ok, err = dict:add(count_lock, id, 2) -- a holder that died loses it after 2 s
      if ok then break end
      if err ~= "exists" then
        return nil, store_error("lock", "could not take the count lock in lua_shared_dict " .. dict_name .. ": "
          .. tostring(err), "make the lua_shared_dict larger")
      end
      if waited > 5 then
        return nil, store_error("lock_timeout", "the count lock in lua_shared_dict " .. dict_name ..
          " stayed taken for 5 s", "try again")
      end
      ngx_sleep(wait)
      waited = waited + wait
      wait = math_min(wait * 2, 0.01)
    end
    local list, n, oldest = contract.tally(current(), now, window, add)
    local ok, err
    if n > 0 then
      ok, err = dict:set(ckey, cjson.encode(list), window + 60)
    else
      ok = dict:delete(ckey) or true
    end
    if dict:get(count_lock) == id then dict:delete(count_lock) end
    if not ok then
      return nil, store_error("shdict_full", "could not write the count to lua_shared_dict " .. dict_name ..
        ": " .. tostring(err), "make the lua_shared_dict larger")
    end
    return n, oldest
  end

  -- Shared minutely rate-limit state: what the last answer to any worker said, less what workers have sent
  -- since. The ngx transport asks before() each API call (seconds to wait for the reset, 0: go; a go
  -- reserves one call) and tells after() each answer's headers.
  local rl_reset, rl_left = key .. ":rl_reset", key .. ":rl_left"
  store.shared_rate_limits = {
    clock = exact_clock.new(dict, key .. ":exact_clock"), -- before() is given now on Exact's clock, by it
    before = function(now)
      local reset = dict:get(rl_reset)
      if not reset or reset <= now then return 0 end -- no known window, or it is over
      local left = dict:incr(rl_left, -1, 0)
      if left and left >= 0 then return 0 end
      dict:incr(rl_left, 1, 0) -- not reserved after all
      return reset - now
    end,
    after = function(headers)
      local remaining = tonumber(headers["x-ratelimit-minutely-remaining"])
      local reset = tonumber(headers["x-ratelimit-minutely-reset"])
      if not remaining or not reset then return end
      if reset > 1e12 then reset = reset / 1000 end -- milliseconds, as Exact sends them
      local known = dict:get(rl_reset)
      if not known or reset > known then -- a new window: the server's word
        dict:set(rl_reset, reset, 120)
        dict:set(rl_left, remaining, 120)
      elseif reset == known then -- the same window: the lower estimate is the safe one
        local left = dict:get(rl_left)
        if not left or remaining < left then dict:set(rl_left, remaining, 120) end
      end
    end,
  }

  return store
end

return _M
