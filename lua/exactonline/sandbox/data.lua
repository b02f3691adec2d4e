--- Sandbox data: generated accounts per division, kept in the eo_sandbox_data shared dict so every
-- worker sees the same rows. Each division's rows are one JSON array (sorted by ID) plus a version
-- counter; workers cache the decoded rows per version. Writers take a small shdict lock.
local ngx = ngx
local cjson = require "cjson.safe"
local string, table, math = string, table, math
local tostring, tonumber, ipairs, pairs = tostring, tonumber, ipairs, pairs

local _M = {}

local dict = ngx.shared.eo_sandbox_data

local BASES = {
  "Bäckerei Müller", "Café de Flore", "Žižek Consulting", "Ørsted Vind", "Smørrebrød & Co",
  "Crème Brûlée BV", "Łódź Trading", "Åkesson AB", "Garçon Foods", "Straßenbau GmbH",
  "Ñandú SL", "Dvořák Muziek", "Šťastný s.r.o.", "Ćevapi Huis", "İstanbul Halı",
  "Gödel Logica", "Schrödinger Labs", "Fjällräven Buiten", "Klöckner Staal", "Zoë's Bakkerij",
  "O'Brien & Zonen", "日本商事", "Αθήνα Εμπόριο", "Москва Трейд", "Ūdens Serviss",
}
local CITIES = { "Amsterdam", "Delft", "München", "Liège", "Zürich", "Malmö", "Kraków", "Köln" }
local COUNTRIES = { "NL", "NL", "DE", "BE", "CH", "SE", "PL", "DE" }

-- fields of an account as the REST API shows them (Timestamp only on sync/)
_M.account_fields = {
  "ID", "Code", "Name", "City", "Country", "Postcode", "AddressLine1", "Email", "Phone", "Website",
  "Status", "IsSupplier", "IsSales", "VATNumber", "Division", "Created", "Modified", "Blocked",
}

local function guid(seed)
  local h = ngx.md5(seed)
  return h:sub(1, 8) .. "-" .. h:sub(9, 12) .. "-4" .. h:sub(14, 16) .. "-a" .. h:sub(18, 20) .. "-" ..
    h:sub(21, 32)
end
_M.guid = guid

function _M.new_guid()
  local n = dict:incr("seq", 1, 0)
  return guid(tostring(n) .. ":" .. ngx.now() .. ":" .. ngx.worker.pid() .. ":" .. math.random())
end

function _M.next_timestamp()
  return dict:incr("timestamp", 1, 10000)
end

function _M.pad_code(code)
  code = tostring(code)
  if #code >= 18 then return code end
  return string.rep(" ", 18 - #code) .. code
end

local function generate(division, n)
  local rows = {}
  local base_ms = 1700000000000
  for i = 1, n do
    local b = BASES[(i - 1) % #BASES + 1]
    local name = i <= #BASES and b or (b .. " " .. i)
    local c = (i - 1) % #CITIES + 1
    local created = base_ms + i * 3600000
    rows[i] = {
      ID = guid("account:" .. division .. ":" .. i),
      Code = _M.pad_code(i),
      Name = name,
      City = CITIES[c],
      Country = COUNTRIES[c],
      Postcode = tostring(1000 + i) .. " AB",
      AddressLine1 = "Hoofdstraat " .. i,
      Email = "info@account" .. i .. ".example",
      Phone = "+31 20 555 " .. string.format("%04d", i),
      Website = "https://account" .. i .. ".example",
      Status = (i % 7 == 0) and "S" or "C",
      IsSupplier = (i % 5 == 0),
      IsSales = true,
      VATNumber = "NL" .. string.format("%09d", i) .. "B01",
      Division = division,
      Created = "/Date(" .. string.format("%.0f", created) .. ")/",
      Modified = "/Date(" .. string.format("%.0f", created + 86400000) .. ")/",
      Blocked = false,
      Timestamp = _M.next_timestamp(),
    }
  end
  table.sort(rows, function(a, b) return a.ID < b.ID end)
  return rows
end

--- seed(division, n): generate a division's accounts unless they already exist
function _M.seed(division, n)
  local key = "acc:" .. division
  if dict:get(key) then return end
  local rows = generate(division, n)
  local ok, err = dict:set(key, cjson.encode(rows))
  -- fail loudly: an empty company would look like a client bug
  if not ok then error("sandbox: cannot hold " .. n .. " accounts in lua_shared_dict eo_sandbox_data: " .. err) end
  dict:incr("accver:" .. division, 1, 0)
end

local cache = {}

--- rows_by_timestamp(division) --> the same rows sorted by Timestamp (cached per version)
function _M.rows_by_timestamp(division)
  local rows = _M.rows(division)
  if not rows then return nil end
  local c = cache[division]
  if not c.by_ts then
    local sorted = {}
    for i, r in ipairs(rows) do sorted[i] = r end
    table.sort(sorted, function(a, b) return a.Timestamp < b.Timestamp end)
    c.by_ts = sorted
  end
  return c.by_ts
end

--- rows(division) --> array sorted by ID (shared per worker: do not modify), or nil for unknown division
function _M.rows(division)
  local ver = dict:get("accver:" .. division)
  if not ver then return nil end
  local c = cache[division]
  if c and c.ver == ver then return c.rows, c.by_id end
  local rows = cjson.decode(dict:get("acc:" .. division) or "[]") or {}
  local by_id = {}
  for _, r in ipairs(rows) do by_id[r.ID] = r end
  cache[division] = { ver = ver, rows = rows, by_id = by_id }
  return rows, by_id
end

local function lock(key)
  for _ = 1, 2000 do
    if dict:add("lock:" .. key, true, 5) then return true end
    ngx.sleep(0.001)
  end
  return nil
end

local function unlock(key)
  dict:delete("lock:" .. key)
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

--- modify(division, fn): fn(rows) gets a fresh copy of the rows, changes it, and returns what to return
function _M.modify(division, fn)
  local key = "acc:" .. division
  if not lock(key) then return nil, "busy" end
  local raw = dict:get(key)
  local rows = cjson.decode(raw or "[]") or {}
  local a, b = fn(rows)
  if a ~= nil then
    table.sort(rows, function(x, y) return x.ID < y.ID end)
    local ok, err = dict:set(key, cjson.encode(rows))
    if not ok then
      unlock(key)
      error("sandbox: cannot store the accounts in lua_shared_dict eo_sandbox_data: " .. err)
    end
    dict:incr("accver:" .. division, 1, 0)
  end
  unlock(key)
  return a, b
end

_M.copy = copy

function _M.now_date(ms)
  return "/Date(" .. string.format("%.0f", ms) .. ")/"
end

function _M.date_ms(v)
  return tonumber((tostring(v)):match("^/Date%((%-?%d+)"))
end

return _M
