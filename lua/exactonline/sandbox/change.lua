--- Changes to an administration, as the REST writes and the /_sandbox/change control endpoint make them:
-- create, update and delete rows of an entity, each change taking the division's next Timestamp and each
-- deletion leaving a sync/Deleted row with Exact's EntityType. Entities are addressed by their regular
-- index (an invoice for salesinvoices, a line for salesinvoicelines), rows by their store index.
local ngx = ngx
local gen = require "exactonline.sandbox.gen"
local store = require "exactonline.sandbox.store"
local math = math
local ipairs, pairs, next = ipairs, pairs, next

local _M = {}

local dict = ngx.shared.eo_sandbox_data

-- the field an update without a body changes (with Modified)
local TOUCH = { accounts = "Remarks", contacts = "Notes", addresses = "Notes", glclassifications = "Description",
                glaccounts = "Description", items = "ExtraDescription", projects = "Notes", transactionlines = "Notes",
                paymentterms = "YourRef", salesinvoices = "Remarks", salesinvoicelines = "Notes" }

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

--- how many regular rows (live or not) an entity has in a division
function _M.count(div, e)
  if e.name == "salesinvoices" then
    return store.size.salesinvoices + (dict:get("invn:" .. div) or 0)
  elseif e.name == "salesinvoicelines" then
    return gen.invoice_line_count(store.size.salesinvoices + (dict:get("invn:" .. div) or 0))
  end
  return store.count(div, e.store)
end

--- store index of regular index i
function _M.store_index(e, i)
  if e.name == "salesinvoices" then return gen.first_row(i) end
  if e.name == "salesinvoicelines" then return (gen.line_row(i)) end
  return i
end

--- row(div, e, i) --> the store row behind regular index i | nil when deleted or missing
function _M.row(div, e, i)
  if i < 1 or i > _M.count(div, e) then return nil end
  return store.get(div, e.store, _M.store_index(e, i))
end

--- index_of(div, e, key) --> regular index of a key | nil
function _M.index_of(div, e, key)
  local i = gen.index_of(e.name, div, key)
  if i and i <= _M.count(div, e) then return i end
  return nil
end

local function now_ms(app) return math.floor(app.now() * 1000) end

local function stamp(row, ms)
  row.Modified = gen.date(ms)
  row.Modifier, row.ModifierFullName = gen.users[1][1], gen.users[1][2]
end

-- rows of invoice k (store indexes)
local function invoice_rows(k)
  local first = gen.first_row(k)
  local out = {}
  for s = first, first + gen.invoice_lines(k) do out[#out + 1] = s end
  return out
end

--- create(div, e, n, fields, app) --> created store rows | nil, err
function _M.create(div, e, n, fields, app)
  if e.name == "salesinvoicelines" then
    return nil, "invoice lines come with their invoice: create salesinvoices"
  end
  local ms = now_ms(app)
  local ctx = store.ctx(div)
  local changes, made = {}, {}
  if e.name == "salesinvoices" then
    local last = dict:incr("invn:" .. div, n, 0)
    for k = store.size.salesinvoices + last - n + 1, store.size.salesinvoices + last do
      for _, s in ipairs(invoice_rows(k)) do
        local row = gen.generators.salesinvoices(ctx, s)
        for f, v in pairs(fields or {}) do row[f] = v end
        row.Created, row.InvoiceDate = gen.date(ms), gen.date(ms)
        stamp(row, ms)
        changes[#changes + 1] = { store = "salesinvoices", index = s, row = row }
        if s == gen.first_row(k) then made[#made + 1] = row end
      end
    end
  else
    local first = store.new_index(div, e.store, n)
    for i = first, first + n - 1 do
      local row = gen.generators[e.store](ctx, i)
      for f, v in pairs(fields or {}) do row[f] = v end
      row.Created = gen.date(ms)
      stamp(row, ms)
      changes[#changes + 1] = { store = e.store, index = i, row = row }
      made[#made + 1] = row
    end
  end
  local ok, err = store.apply(div, changes, ms)
  if not ok then return nil, err end
  _M.notify(div, e, made, "Create", app)
  return made
end

--- pick(div, e, n, which) --> up to n live regular indexes, taken round-robin per (division, entity, which)
function _M.pick(div, e, n, which)
  local total = _M.count(div, e)
  local out = {}
  if total < 1 then return out end
  local start = (dict:get("cursor:" .. which .. ":" .. div .. ":" .. e.name) or 0)
  local i, tried = start, 0
  while #out < n and tried < total do
    i = i % total + 1
    tried = tried + 1
    if _M.row(div, e, i) then out[#out + 1] = i end
  end
  dict:set("cursor:" .. which .. ":" .. div .. ":" .. e.name, i)
  return out
end

--- update(div, e, indexes, fields, app) --> updated rows (regular view's store rows) | nil, err
function _M.update(div, e, indexes, fields, app)
  local ms = now_ms(app)
  local changes, done = {}, {}
  local touch = TOUCH[e.name]
  local bump = dict:incr("changes:" .. div, #indexes, 0) - #indexes
  for n, i in ipairs(indexes) do
    local targets = (e.name == "salesinvoices") and invoice_rows(i) or { _M.store_index(e, i) }
    for _, s in ipairs(targets) do
      local cur = store.get(div, e.store, s)
      if not cur then return nil, "not found" end
      local row = copy(cur)
      if fields and next(fields) then
        for f, v in pairs(fields) do row[f] = v end
      elseif touch then
        row[touch] = "Bijgewerkt (" .. (bump + n) .. ")"
      end
      stamp(row, ms)
      changes[#changes + 1] = { store = e.store, index = s, row = row }
      if s == targets[1] then done[#done + 1] = row end
    end
  end
  local ok, err = store.apply(div, changes, ms)
  if not ok then return nil, err end
  _M.notify(div, e, done, "Update", app)
  return done
end

--- delete(div, e, indexes, app) --> the deleted rows | nil, err
function _M.delete(div, e, indexes, app)
  if not e.entity_type then
    return nil, "Exact has no sync/Deleted EntityType for " .. e.name .. ": delete the invoice (salesinvoices)"
  end
  local ms = now_ms(app)
  local changes, gone = {}, {}
  for _, i in ipairs(indexes) do
    local targets = (e.name == "salesinvoices") and invoice_rows(i) or { _M.store_index(e, i) }
    local head = store.get(div, e.store, targets[1])
    if not head then return nil, "not found" end
    gone[#gone + 1] = head
    for n, s in ipairs(targets) do
      changes[#changes + 1] = { store = e.store, index = s, row = false,
        deleted = n == #targets and { EntityKey = head[e.key], EntityType = e.entity_type } or nil }
    end
  end
  local ok, err = store.apply(div, changes, ms)
  if not ok then return nil, err end
  _M.notify(div, e, gone, "Delete", app)
  return gone
end

-- webhooks (set by api.lua when subscriptions exist)
function _M.notify() end

return _M
