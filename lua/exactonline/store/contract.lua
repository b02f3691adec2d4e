--- exactonline.store.contract: what every token store and the client agree on about a token pair.
-- A store is a table of plain functions (no self):
--   store.load()        --> tokens | nil (nothing stored yet) | nil, err
--   store.save(tokens[, opts]) --> true | true, "kept_newer" (it holds a newer chain: load it) | nil, err
--                       opts.replace: a chain a person just authorized (exchange) replaces whatever is stored,
--                       whatever its times say (two authorizations within a second, on clocks estimated
--                       from Exact's whole-second Date, cannot be ordered by time)
--   store.lock([timeout]) --> true | nil, err   store.unlock()       (optional; exclusive across processes)
--   store.count(name, now, window, add) --> n, oldest | nil, err
--                       (optional; shared by every process using the store: see "count" below)
-- tokens = { access_token, refresh_token, expires_at, obtained_at, refresh_obtained_at } (epoch seconds).
-- Every store is built the same way: require("exactonline.store.<name>").new(opts). See README "Token storage".
local pairs, ipairs, tonumber, type, error = pairs, ipairs, tonumber, type, error
local math, table = math, table

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

-- ---- count: events per name in a sliding window, shared across processes ----
-- store.count(name, now, window, add): forget the events under `name` at or before now - window; then
-- add = 1 records one at `now`, add = -1 takes back the newest (a reservation that was not needed), add = 0
-- only counts. Returns how many are left and the oldest one's time (nil when none): the next one leaves the
-- window at oldest + window. What it is for: Exact blocks an app for an hour after 10 error answers per
-- endpoint, so every process using one store must see the same count (issue 13).

_M.MAX_EVENTS = 1000 -- per name; more than any budget needs

--- Check count()'s arguments (a wrong one is the caller's mistake: raises at `level`).
function _M.count_args(who, name, now, window, add, level)
  level = (level or 2) + 1
  if type(name) ~= "string" or name == "" then error(who .. ".count: name must be a non-empty string", level) end
  if type(now) ~= "number" or now ~= now or now == math.huge or now == -math.huge then
    error(who .. ".count: now must be a finite number (epoch seconds)", level)
  end
  if type(window) ~= "number" or window ~= window or window <= 0 or window == math.huge then
    error(who .. ".count: window must be a positive number of seconds", level)
  end
  add = add or 0
  if add ~= 0 and add ~= 1 and add ~= -1 then error(who .. ".count: add must be 1, 0 or -1", level) end
  return add
end

--- The events (ascending times) after one count(): new list, n, oldest.
function _M.tally(events, now, window, add)
  local cut, out = now - window, {}
  for _, t in ipairs(type(events) == "table" and events or {}) do
    t = tonumber(t)
    if t and t > cut then out[#out + 1] = t end
  end
  table.sort(out)
  if add == 1 then
    out[#out + 1] = now
    table.sort(out)
    while #out > _M.MAX_EVENTS do table.remove(out, 1) end
  elseif add == -1 and #out > 0 then
    out[#out] = nil
  end
  return out, #out, out[1]
end

return _M
