--- The administrations' rows: generated on demand (exactonline.sandbox.gen) and changed through a log in the
-- eo_sandbox_data shared dict, so every worker agrees and a division of 10^6 rows starts at once.
-- Per division and row set: generated rows 1..base have Timestamp off+i; every change (create, update,
-- delete) takes the division's next Timestamp, stores the row (or its deletion) under its index and appends
-- (index, Timestamp) to the set's log, so a sync read is the generated rows not changed since, then the log.
-- Deletions also go to the division's sync/Deleted log. Writers hold a per-division lock.
local ngx = ngx
local cjson = require "cjson.safe"
local catalog = require "exactonline.sandbox.catalog"
local gen = require "exactonline.sandbox.gen"
local math, table = math, table
local tostring, tonumber, ipairs, error, pcall = tostring, tonumber, ipairs, error, pcall

local _M = {}

local dict = ngx.shared.eo_sandbox_data
local floor = math.floor

local settings = { divisions = {}, sizes = {} }
local base, offsets, span = {}, {}, 0
local ctxs, caches, generation = {}, {}, nil

local function start_of(div)
  -- Timestamps differ per division, as each division has its own rowversion counter
  return 1000000 + (div % 1000) * 1000
end

--- configure{ divisions = {…}, sizes = { accounts = N, … } }: the layout every worker computes alike
function _M.configure(s)
  settings = s
  local size = {}
  for _, e in ipairs(catalog.entities) do
    if e.size then size[e.name] = math.max(0, floor(tonumber(s.sizes[e.name]) or e.size)) end
  end
  size.paymentterms = gen.entries(size.transactionlines)
  size.salesinvoicelines = gen.invoice_line_count(size.salesinvoices)
  _M.size = size
  base = {}
  for _, e in ipairs(catalog.entities) do
    if e.store == e.name then base[e.name] = size[e.name] end
  end
  base.salesinvoices = gen.invoice_rows(size.salesinvoices)
  offsets, span = {}, 0
  for _, e in ipairs(catalog.entities) do
    if e.store == e.name then
      offsets[e.name] = span
      span = span + base[e.name]
    end
  end
  ctxs, caches = {}, {}
end

function _M.divisions() return settings.divisions end

function _M.has_division(div)
  for _, d in ipairs(settings.divisions) do
    if d == div then return true end
  end
  return false
end

function _M.division_name(div)
  local first = settings.divisions[1]
  if div == first then return "Sandbox BV" end
  return "Sandbox Dochter " .. (div - first + 1)
end

function _M.ctx(div)
  local c = ctxs[div]
  if not c then
    c = { div = div, size = _M.size, entries = _M.size.paymentterms, division_name = _M.division_name(div) }
    ctxs[div] = c
  end
  return c
end

function _M.base(sname) return base[sname] or 0 end

function _M.offset(div, sname) return start_of(div) + offsets[sname] end

local function key(...) return table.concat({ ... }, ":") end

-- worker cache of one row set's log ----------------------------------------------------------------

local function check_generation()
  local g = dict:get("generation")
  if g ~= generation then
    generation = g
    caches = {}
  end
end

local function cache(div, sname)
  local k = div .. ":" .. sname
  local c = caches[k]
  if not c then
    c = { n = 0, li = {}, lt = {}, cur = {}, rows = {} }
    caches[k] = c
  end
  local n = dict:get(key("logn", div, sname)) or 0
  for j = c.n + 1, n do
    local i, ts = dict:get(key("log", div, sname, j)), dict:get(key("logts", div, sname, j))
    c.li[j], c.lt[j] = i, ts
    c.cur[i] = ts
    c.rows[i] = nil
  end
  c.n = n
  return c
end

function _M.count(div, sname)
  return (base[sname] or 0) + (dict:get(key("cn", div, sname)) or 0)
end

local function generated(div, sname, i)
  local row = gen.generators[sname](_M.ctx(div), i)
  row.Timestamp = start_of(div) + offsets[sname] + i
  return row
end

local function stored(div, sname, c, i)
  local r = c.rows[i]
  if r == nil then
    local raw = dict:get(key("ov", div, sname, i))
    r = (raw and raw ~= "") and cjson.decode(raw) or false
    c.rows[i] = r
  end
  return r or nil
end

--- get(div, sname, i) --> the row (with Timestamp; do not modify) | nil (deleted, or no such row)
function _M.get(div, sname, i)
  check_generation()
  local c = cache(div, sname)
  if c.cur[i] then return stored(div, sname, c, i) end
  if i >= 1 and i <= (base[sname] or 0) then return generated(div, sname, i) end
  return nil
end

--- changed(div, sname, i) --> true when row i is not the generated one (changed, created or deleted)
function _M.changed(div, sname, i)
  check_generation()
  return cache(div, sname).cur[i] ~= nil
end

--- changed_indexes(div, sname) --> { [i] = Timestamp } of every changed row (do not modify)
function _M.changed_indexes(div, sname)
  check_generation()
  return cache(div, sname).cur
end

--- sync(div, sname, after, limit, pred) --> rows in Timestamp order with Timestamp > after, more
function _M.sync(div, sname, after, limit, pred)
  check_generation()
  local c = cache(div, sname)
  local out, more = {}, false
  local off = start_of(div) + offsets[sname]
  local function take(row)
    if pred and not pred(row) then return false end
    if #out >= limit then more = true return true end
    out[#out + 1] = row
    return false
  end
  local first = math.max(1, floor(after) - off + 1)
  for i = first, base[sname] or 0 do
    if not c.cur[i] then
      if take(generated(div, sname, i)) then return out, true end
    end
  end
  -- the log is in Timestamp order: find the first entry after `after`
  local lo, hi = 1, c.n + 1
  while lo < hi do
    local mid = floor((lo + hi) / 2)
    if c.lt[mid] > after then hi = mid else lo = mid + 1 end
  end
  for j = lo, c.n do
    local i = c.li[j]
    if c.cur[i] == c.lt[j] then
      local row = stored(div, sname, c, i)
      if row and take(row) then return out, true end
    end
  end
  return out, more
end

--- first_modified(div, sname, ms) --> the Timestamp of the first row (Timestamp order) modified at or after ms
function _M.first_modified(div, sname, ms)
  check_generation()
  local c = cache(div, sname)
  local n = base[sname] or 0
  local lo, hi = 1, n + 1
  local ctx = _M.ctx(div)
  while lo < hi do
    local mid = floor((lo + hi) / 2)
    if gen.modified_ms(sname, ctx, mid) >= ms then hi = mid else lo = mid + 1 end
  end
  for i = lo, n do
    if not c.cur[i] then return start_of(div) + offsets[sname] + i end
  end
  for j = 1, c.n do
    local i = c.li[j]
    if c.cur[i] == c.lt[j] then
      local row = stored(div, sname, c, i)
      if row and (tonumber(tostring(row.Modified):match("%-?%d+")) or 0) >= ms then return c.lt[j] end
    end
  end
  return nil
end

-- deletions -------------------------------------------------------------------------------------------

local deleted_cache = {}

function _M.deleted(div, after, limit, pred)
  check_generation()
  local dc = deleted_cache[div]
  if not dc or dc.generation ~= generation then
    dc = { n = 0, rows = {}, generation = generation }
    deleted_cache[div] = dc
  end
  local n = dict:get(key("deln", div)) or 0
  for j = dc.n + 1, n do dc.rows[j] = cjson.decode(dict:get(key("del", div, j)) or "null") end
  dc.n = n
  local lo, hi = 1, n + 1
  while lo < hi do
    local mid = floor((lo + hi) / 2)
    if dc.rows[mid].Timestamp > after then hi = mid else lo = mid + 1 end
  end
  local out = {}
  for j = lo, n do
    local r = dc.rows[j]
    if not pred or pred(r) then
      if #out >= limit then return out, true end
      out[#out + 1] = r
    end
  end
  return out, false
end

-- changes ---------------------------------------------------------------------------------------------

local function lock(div)
  for _ = 1, 5000 do
    if dict:add("lock:" .. div, true, 10) then return true end
    ngx.sleep(0.001)
  end
  return nil
end

local function unlock(div) dict:delete("lock:" .. div) end

--- new_index(div, sname, n) --> the first of n fresh row indexes (created rows)
function _M.new_index(div, sname, n)
  local total = dict:incr(key("cn", div, sname), n, 0)
  return (base[sname] or 0) + total - n + 1
end

--- apply(div, changes) --> timestamps. changes: array of { store = sname, index = i, row = table | false,
-- deleted = { EntityKey = …, EntityType = … } (for a sync/Deleted row) }. Each gets the next Timestamp.
function _M.apply(div, changes, now_ms, user)
  if not lock(div) then return nil, "the division is busy" end
  local stamps = {}
  local ok, err = pcall(function()
    local last = span + start_of(div)
    for n, ch in ipairs(changes) do
      local ts = dict:incr(key("ts", div), 1, last)
      stamps[n] = ts
      local text = ""
      if ch.row then
        ch.row.Timestamp = ts
        text = cjson.encode(ch.row)
      end
      local okset, serr = dict:set(key("ov", div, ch.store, ch.index), text)
      if not okset then error("sandbox: lua_shared_dict eo_sandbox_data is full (" .. tostring(serr) .. ")") end
      local j = (dict:get(key("logn", div, ch.store)) or 0) + 1
      dict:set(key("log", div, ch.store, j), ch.index)
      dict:set(key("logts", div, ch.store, j), ts)
      dict:set(key("logn", div, ch.store), j)
      if ch.deleted then
        local d = (dict:get(key("deln", div)) or 0) + 1
        dict:set(key("del", div, d), cjson.encode{
          Timestamp = ts, DeletedBy = user or gen.users[1][1], DeletedDate = gen.date(now_ms), Division = div,
          EntityKey = ch.deleted.EntityKey, EntityType = ch.deleted.EntityType,
          ID = gen.guid("deleted", div, d) })
        dict:set(key("deln", div), d)
      end
    end
  end)
  unlock(div)
  if not ok then return nil, err end
  return stamps
end

--- last_timestamp(div) --> the division's latest Timestamp
function _M.last_timestamp(div)
  return dict:get(key("ts", div)) or (start_of(div) + span)
end

--- reset_data(): every division back to its generated rows (the counters that only grow, seq and era, stay)
function _M.reset_data()
  local seq, era = dict:get("seq"), dict:get("era")
  dict:flush_all()
  dict:set("generation", tostring(ngx.now()) .. ":" .. math.random())
  if seq then dict:set("seq", seq) end
  if era then dict:set("era", era) end
  check_generation()
end

function _M.init_generation()
  if not dict:get("generation") then dict:set("generation", "start") end
end

return _M
