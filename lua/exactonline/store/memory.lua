--- exactonline.store.memory: the default token store, tokens in this process's memory, lost when it ends.
--   local store = require("exactonline.store.memory").new{ tokens = t }  -- or exactonline.memory_store(t)
-- No lock(): one process has nothing to share the chain with; count() counts this process's events.
-- See exactonline.store.contract.
local contract = require "exactonline.store.contract"

local pairs, type, error = pairs, type, error
local newer = contract.newer

local _M = {}

local function copy(t)
  if type(t) ~= "table" then return nil end
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

--- new{ tokens = pair } --> store, optionally holding `pair` from the start. As before, new(pair) works too.
function _M.new(opts)
  if opts ~= nil and type(opts) ~= "table" then error("exactonline.store.memory.new: options must be a table", 2) end
  opts = opts or {}
  if opts.tokens == nil and (opts.access_token ~= nil or opts.refresh_token ~= nil) then opts = { tokens = opts } end
  local current = copy(opts.tokens)
  local events = {} -- name -> times, for count()
  return {
    load = function()
      return copy(current)
    end,
    save = function(t, opts)
      if type(t) ~= "table" then error("exactonline.store.memory: save(tokens) needs a table", 2) end
      -- never an older chain over a newer one, unless a person just authorized this one (opts.replace)
      if current and not (type(opts) == "table" and opts.replace) and newer(current, t) then
        return true, "kept_newer"
      end
      current = copy(t)
      return true
    end,
    -- count(name, now, window, add) --> n, oldest: this process's events only
    count = function(name, now, window, add)
      add = contract.count_args("exactonline.store.memory", name, now, window, add)
      local list, n, oldest = contract.tally(events[name], now, window, add)
      events[name] = n > 0 and list or nil
      return n, oldest
    end,
  }
end

return _M
