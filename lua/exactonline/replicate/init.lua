--- exactonline.replicate(client, opts): whole administrations into a database, every division at once.
-- Per division one coroutine with a client of its own (its own rate-limit state, the same token store
-- behind a lock the coroutines share), all over one libcurl multi handle: a division waiting for its
-- minute to reset never holds up another. Per (division, entity): the sync endpoint from the stored
-- Timestamp (rows and cursor in one transaction per page), or a full read through bulk/regular staged
-- and swapped in at once; then sync/Deleted per division. A spent daily budget pauses that division;
-- the next run continues from its cursors.
local core = require "exactonline.core"
local catalog = require "exactonline.replicate.catalog"
local dbmod = require "exactonline.replicate.db"
local multi = require "exactonline.transport.multi"
local client_mod = require "exactonline.client"

local type, pairs, ipairs, tostring, tonumber, pcall, error, setmetatable =
  type, pairs, ipairs, tostring, tonumber, pcall, error, setmetatable
local math_floor, math_max = math.floor, math.max
local table_concat = table.concat
local string_format = string.format

local _M = {}

local LOCK_POLL = 0.25 -- seconds between looks at a (division, entity) another run holds

local function config_error(msg, hint)
  return core.error { kind = "config", code = "replicate", message = msg, hint = hint }
end

--- entities(list) --> catalog entries | nil, err (an unknown one is named, with what is known)
function _M.entities(list)
  if list == nil or #list == 0 then return catalog.standard() end
  local out, seen = {}, {}
  for _, p in ipairs(list) do
    local e = catalog.lookup(p)
    if not e then
      local known = {}
      for _, k in ipairs(catalog.entities) do known[#known + 1] = k.path end
      return nil, config_error("replicate knows no entity '" .. tostring(p) .. "'",
        "use one of: " .. table_concat(known, ", "))
    end
    if not seen[e] then
      seen[e] = true
      out[#out + 1] = e
    end
  end
  return out
end

-- The store the per-division clients share: the user's store, with a lock our coroutines take in turn
-- (around the store's own lock, which keeps other processes out).
local function shared_store(store, sched)
  local m = sched:mutex()
  return {
    load = store.load, save = store.save, count = store.count, -- count: the error budget, shared as before
    lock = function(...)
      m.lock()
      if store.lock then
        local ok, a, b = pcall(store.lock, ...)
        if not ok or not a then
          m.unlock()
          if not ok then error(a, 0) end
          return a, b
        end
      end
      return true
    end,
    unlock = function()
      if store.unlock then pcall(store.unlock) end
      m.unlock()
    end,
  }
end

local function int(v)
  return v and math_floor(tonumber(v) or 0) or nil
end

-- ---- one division ----

local Run = {}
Run.__index = Run

function Run:event(ev)
  if self.on_progress then pcall(self.on_progress, ev) end
end

-- GET through the division's client; counts the call and what is left
local function get(dv, path, query)
  dv.calls = dv.calls + 1
  local res, err = dv.client:request("GET", path, { query = query })
  local rl = dv.client:rate_limits()
  if rl.daily_remaining then dv.calls_left = int(rl.daily_remaining) end
  if rl.daily_reset then dv.daily_reset = rl.daily_reset end
  if not res then return nil, err end
  local d = type(res.data) == "table" and res.data.d
  if type(d) ~= "table" then
    return nil, core.error { kind = "decode", status = res.status, message = "the answer to " .. path ..
      " carries no d", hint = "check that the endpoint is a list endpoint" }
  end
  local rows = d.results
  if rows == nil then rows = { d } end
  local nxt = type(d.__next) == "string" and d.__next ~= "" and d.__next or nil
  return rows, nxt
end

-- wait for the (division, entity) lock another run may hold; the wait yields to the other divisions
function Run:lock(dv, name)
  local told = false
  while true do
    local unlock, err = self.db:lock(dv.division, name)
    if unlock then return unlock end
    if unlock == nil then return nil, err end
    if not told then
      told = true
      self:event { division = dv.division, entity = name, phase = "waiting",
        message = "another replicate run holds " .. name .. " of this division; waiting" }
    end
    self.sched:sleep(LOCK_POLL)
  end
end

local function max_ts(rows, from)
  local m = from
  for i = 1, #rows do
    local t = tonumber(rows[i].Timestamp)
    if t and t > m then m = t end
  end
  return m
end

function Run:sync_entity(dv, e, st)
  local db = self.db
  local state, serr = db:state(dv.division, e.path)
  if state == nil then return nil, serr end
  local cursor = (not self.full and state) and state.last_timestamp or 0
  local nxt = e.sync
  local q = { ["$filter"] = string_format("Timestamp gt %d", math_max(cursor, 1)) }
  while nxt do
    local rows, link = get(dv, nxt, q)
    if not rows then return nil, link end
    q = nil
    cursor = max_ts(rows, cursor)
    local res, err = db:apply_page(dv.division, e, rows, cursor)
    if not res then return nil, err end
    st.inserted, st.updated = st.inserted + res.inserted, st.updated + res.updated
    st.rows, st.pages = st.rows + #rows, st.pages + 1
    self:event { division = dv.division, entity = e.path, phase = "page", rows = st.rows, pages = st.pages,
      inserted = st.inserted, updated = st.updated, calls = dv.calls, calls_left = dv.calls_left }
    nxt = link
  end
  return true
end

function Run:full_entity(dv, e, st)
  local db = self.db
  local link, err = db:begin_full(dv.division, e, not self.full)
  if link == nil then return nil, err end
  local nxt, q = link, nil
  if not link then
    local fields = {}
    for _, f in ipairs(e.fields) do fields[#fields + 1] = f.name end
    nxt = e.bulk or e.path
    q = { ["$select"] = table_concat(fields, ",") }
  end
  while nxt do
    local rows, after = get(dv, nxt, q)
    if not rows then return nil, after end
    q = nil
    local ok, serr = db:stage_page(dv.division, e, rows, after)
    if not ok then return nil, serr end
    st.rows, st.pages = st.rows + #rows, st.pages + 1
    self:event { division = dv.division, entity = e.path, phase = "page", rows = st.rows, pages = st.pages,
      calls = dv.calls, calls_left = dv.calls_left }
    nxt = after
  end
  local res, ferr = db:finish_full(dv.division, e)
  if not res then return nil, ferr end
  st.inserted, st.updated, st.deleted = res.inserted, res.updated, res.deleted
  return true
end

function Run:deleted(dv, st)
  local db = self.db
  local D = catalog.deleted
  local state, serr = db:state(dv.division, D.path)
  if state == nil then return nil, serr end
  local cursor = (not self.full and state) and state.last_timestamp or 0
  local nxt = D.sync
  local q = { ["$filter"] = string_format("Timestamp gt %d", math_max(cursor, 1)) }
  while nxt do
    local rows, link = get(dv, nxt, q)
    if not rows then return nil, link end
    q = nil
    cursor = max_ts(rows, cursor)
    local res, err = db:apply_deleted(dv.division, rows, cursor, catalog.by_entity_type, D.path)
    if not res then return nil, err end
    st.rows, st.pages = st.rows + #rows, st.pages + 1
    for path, n in pairs(res.by_table) do
      local es = dv.entities[path]
      if es then es.deleted = es.deleted + n end
    end
    st.deleted = st.deleted + res.deleted
    nxt = link
  end
  return true
end

local function paused_by(err)
  return type(err) == "table" and err.kind == "rate_limit" and err.code == "daily_limit"
end

-- stops the division (true) for errors that concern all of it: budget, access, tokens
local function division_wide(err)
  if type(err) ~= "table" then return false end
  if paused_by(err) then return true end
  if err.kind == "oauth" or err.kind == "store" or err.kind == "database" then return true end
  return err.status == 401 or err.status == 403
end

function Run:division(dv)
  local steps = {}
  for _, e in ipairs(self.entities) do steps[#steps + 1] = e end
  steps[#steps + 1] = catalog.deleted
  for _, e in ipairs(steps) do
    local st = dv.entities[e.path]
    local unlock, lerr = self:lock(dv, e.path)
    local ok, err
    if not unlock then
      ok, err = nil, lerr
    else
      local pok
      pok, ok, err = pcall(function()
        if e == catalog.deleted then return self:deleted(dv, st) end
        if e.sync then return self:sync_entity(dv, e, st) end
        return self:full_entity(dv, e, st)
      end)
      unlock()
      if not pok then ok, err = nil, ok end
    end
    if ok then
      st.status = "done"
      self:event { division = dv.division, entity = e.path, phase = "done", rows = st.rows, inserted = st.inserted,
        updated = st.updated, deleted = st.deleted, calls = dv.calls, calls_left = dv.calls_left }
    else
      st.status = paused_by(err) and "paused" or "failed"
      st.error = err
      self:event { division = dv.division, entity = e.path, phase = st.status, error = err, calls = dv.calls,
        calls_left = dv.calls_left }
      if division_wide(err) then
        dv.status, dv.error = st.status, err
        for _, rest in ipairs(steps) do
          local rs = dv.entities[rest.path]
          if rs.status == "pending" then rs.status = st.status end
        end
        return
      end
      dv.status = "failed"
      dv.error = dv.error or err
    end
  end
  if dv.status == "running" then dv.status = "done" end
end

--- run(client, opts) --> summary | nil, err
-- opts: to (a --to target, or a replica from exactonline.replicate.db.open), entities (paths; default the
-- standard set), divisions (a list of numbers, or "all"; default the client's division), full (read all
-- again), on_progress(event).
function _M.run(client, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("exactonline.replicate: opts must be a table", 2) end
  local entities, eerr = _M.entities(opts.entities)
  if not entities then return nil, eerr end
  local db, owned = opts.db, false
  if not db then
    local derr
    db, derr = dbmod.open(opts.to or error("exactonline.replicate: opts.to (the database) is required", 2))
    if not db then return nil, derr end
    owned = true
  end
  local ok, serr = db:ensure_state()
  if not ok then
    if owned then db:close() end
    return nil, serr
  end

  local divisions = opts.divisions
  if divisions == "all" then
    local list, err = client:divisions()
    if not list then
      if owned then db:close() end
      return nil, err
    end
    divisions = {}
    for _, d in ipairs(list) do
      local code = int(d.Code)
      if code then divisions[#divisions + 1] = code end
    end
  elseif divisions == nil then
    local d, err = client:division()
    if not d then
      if owned then db:close() end
      return nil, err
    end
    divisions = { d }
  elseif type(divisions) == "number" then
    divisions = { divisions }
  end

  local sched = multi.scheduler()
  local store = shared_store(client_mod.store_of(client), sched)
  local run = setmetatable({ db = db, sched = sched, entities = entities, full = opts.full,
    on_progress = opts.on_progress }, Run)
  local summary = { divisions = {}, order = {} }
  for _, d in ipairs(divisions) do
    d = int(d)
    local t = sched:transport()
    local sib = t:bind(client_mod.sibling(client, { division = d, transport = t, store = store }))
    local dv = { division = d, client = sib, calls = 0, status = "running", entities = {} }
    for _, e in ipairs(entities) do
      dv.entities[e.path] = { rows = 0, pages = 0, inserted = 0, updated = 0, deleted = 0, status = "pending" }
    end
    dv.entities[catalog.deleted.path] = { rows = 0, pages = 0, inserted = 0, updated = 0, deleted = 0,
      status = "pending" }
    summary.divisions[d] = dv
    summary.order[#summary.order + 1] = d
    sched:spawn(function() run:division(dv) end)
  end
  local errors = sched:run()
  sched:close()
  summary.status = "done"
  for _, d in ipairs(summary.order) do
    local dv = summary.divisions[d]
    dv.client:close()
    dv.client = nil
    if dv.status == "running" then
      dv.status = "failed"
      dv.error = dv.error or config_error("the division's run ended early: " .. tostring(errors[1]), "report this")
    end
    if dv.status == "failed" then summary.status = "failed"
    elseif dv.status == "paused" and summary.status ~= "failed" then summary.status = "paused" end
  end
  if #errors > 0 then
    summary.status = "failed"
    summary.errors = errors
  end
  summary.entities = {}
  for i, e in ipairs(entities) do summary.entities[i] = e.path end
  summary.entities[#summary.entities + 1] = catalog.deleted.path
  if owned then db:close() end
  return summary
end

--- the entities' catalog and the database opener, for scripts
_M.catalog = catalog
_M.open = dbmod.open

return setmetatable(_M, { __call = function(_, client, opts) return _M.run(client, opts) end })
