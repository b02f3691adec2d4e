--- exactonline.store.contract: what every token store and the client agree on about a token pair.
-- A store is a table of plain functions (no self):
--   store.load()        --> tokens | nil (nothing stored yet) | nil, err
--   store.save(tokens)  --> true | true, "kept_newer" (it holds a newer chain: load it) | nil, err
--   store.lock([timeout]) --> true | nil, err   store.unlock()       (optional; exclusive across processes)
-- tokens = { access_token, refresh_token, expires_at, obtained_at, refresh_obtained_at } (epoch seconds).
-- Every store is built the same way: require("exactonline.store.<name>").new(opts). See README "Token storage".
local pairs, ipairs, tonumber, type = pairs, ipairs, tonumber, type

local _M = {}

_M.FIELDS = { "access_token", "refresh_token", "expires_at", "obtained_at", "refresh_obtained_at" }

--- A copy holding only the pair's fields.
function _M.copy(t)
  local out = {}
  for _, k in ipairs(_M.FIELDS) do out[k] = t[k] end
  return out
end

-- The chain's age: when its refresh token was issued (refresh_obtained_at; obtained_at where that was not
-- recorded), then when its access token was. The refresh token comes first because it is what must never
-- be lost: an answer without a new refresh token gives a newer access token on the older refresh token, and
-- a refresh token saved from an error answer comes without an access token at all.
local function age(t)
  local o = tonumber(t.obtained_at)
  return tonumber(t.refresh_obtained_at) or o or -1, o or -1
end

--- Is pair a strictly newer than pair b? The one definition: stores never save an older chain over a
-- newer one, and the client adopts a stored pair unless its own is newer.
function _M.newer(a, b)
  local ar, ao = age(a)
  local br, bo = age(b)
  if ar ~= br then return ar > br end
  return ao > bo
end

--- Options for new(): a table, or (as the stores' constructors took them before) positional arguments
-- named by `names`, e.g. options({ "path" }, path, opts) --> { path = path, <opts…> }. The old first
-- arguments (a path, a dict name) are never tables.
function _M.options(names, first, ...)
  if type(first) == "table" then return first end
  local args = { first, ... }
  local opts = {}
  for k, v in pairs(args[#names + 1] or {}) do opts[k] = v end
  for i, name in ipairs(names) do
    if args[i] ~= nil then opts[name] = args[i] end
  end
  return opts
end

return _M
