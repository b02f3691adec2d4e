--- exactonline.tokens: what every store agrees on about a token pair.
local pairs, tonumber = pairs, tonumber

local _M = {}

_M.FIELDS = { "access_token", "refresh_token", "expires_at", "obtained_at", "refresh_obtained_at" }

--- A copy holding only the pair's fields.
function _M.copy(t)
  local out = {}
  for _, k in pairs(_M.FIELDS) do out[k] = t[k] end
  return out
end

-- The chain's age: refresh_obtained_at (when this refresh token was issued), then obtained_at.
local function age(t)
  return tonumber(t.refresh_obtained_at) or tonumber(t.obtained_at) or -1, tonumber(t.obtained_at) or -1
end

--- Is pair a strictly newer than pair b? Stores never save an older chain over a newer one.
function _M.newer(a, b)
  local ar, ao = age(a)
  local br, bo = age(b)
  if ar ~= br then return ar > br end
  return ao > bo
end

return _M
