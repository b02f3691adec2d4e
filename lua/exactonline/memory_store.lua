--- The default token store: tokens in memory, lost when the process ends.
-- A store is a table of plain functions (no self): load() --> tokens | nil,
-- save(tokens) --> true | nil, err; lock()/unlock() are optional (not needed in one process).
local pairs, type = pairs, type

local _M = {}

local function copy(t)
  if type(t) ~= "table" then return nil end
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

--- A new memory store, optionally holding `tokens` from the start.
function _M.new(tokens)
  local current = copy(tokens)
  return {
    load = function()
      return copy(current)
    end,
    save = function(t)
      -- never an older chain over a newer one
      if current and (current.obtained_at or 0) > (t.obtained_at or 0) then return true, "kept_newer" end
      current = copy(t)
      return true
    end,
  }
end

return _M
