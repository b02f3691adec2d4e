--- exactonline.replicate.sql: the replica database, whichever backend holds it.
-- One table per entity (catalog.table, primary key (division, key)), the cursors in
-- exactonline_sync_state, and one transaction per page: a page's upserts (or deletions) and the
-- cursor that says they are in commit together. Values are always bound, never spliced into SQL;
-- identifiers come from the catalog or are checked (letters, digits, _) and quoted.
-- A backend (sqlite.lua, postgres.lua) supplies the connection, the column types, locks and the
-- words for its errors; see the `dialect` fields used below.
local core = require "exactonline.core"
local cjson = require "cjson"

local type, pairs, ipairs, tostring, tonumber, setmetatable, error, pcall =
  type, pairs, ipairs, tostring, tonumber, setmetatable, error, pcall
local table_concat, table_sort = table.concat, table.sort
local unpack = table.unpack or unpack -- luacheck: ignore
local string_format, os_date, os_time = string.format, os.date, os.time
local math_floor = math.floor
local json_null = cjson.null

local _M = {}

local STATE = "exactonline_sync_state"
local MAX_IDENT = 63 -- PostgreSQL's limit; SQLite has none

local function db_error(code, message, hint)
  return core.error { kind = "database", code = code, message = message, hint = hint }
end
_M.error = db_error

function _M.quote(name)
  return '"' .. name .. '"'
end
local quote = _M.quote

--- Is name usable as a column or table name? (Exact's field names always are.)
function _M.valid_ident(name)
  return type(name) == "string" and #name <= MAX_IDENT and name:match("^[%a_][%w_]*$") ~= nil
end
local valid_ident = _M.valid_ident

-- ---- values: Exact's JSON -> what the column holds ----

--- "/Date(1700000000000)/" --> "2023-11-14T22:13:20.000Z" (UTC); other strings are kept.
local day_text = {} -- days since 1970 --> "YYYY-MM-DD" (a few thousand at most)
function _M.iso_date(v)
  if type(v) ~= "string" then return v end
  local ms = v:match("^/Date%((%-?%d+)[^)]*%)/$")
  if not ms then return v end
  ms = tonumber(ms)
  local s = math_floor(ms / 1000)
  local days = math_floor(s / 86400)
  local day = day_text[days]
  if not day then
    day = os_date("!%Y-%m-%d", days * 86400)
    day_text[days] = day
  end
  local sod = s - days * 86400
  return string_format("%sT%02d:%02d:%02d.%03dZ", day, math_floor(sod / 3600), math_floor(sod / 60) % 60, sod % 60,
    ms - s * 1000)
end
local iso_date = _M.iso_date

local function as_text(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then
    if v == math_floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then return string_format("%d", v) end
    return string_format("%.17g", v)
  end
  if t == "boolean" then return v and "true" or "false" end
  if t == "table" then return cjson.encode(v) end
  return tostring(v)
end

local function as_number(v)
  if type(v) == "number" then return v end
  if type(v) == "boolean" then return v and 1 or 0 end
  return tonumber(v)
end

-- Lua value for a column of catalog type t (nil: NULL); the dialect then shapes it for its driver
local CONVERT = {
  string = as_text, binary = as_text, guid = as_text,
  datetime = function(v) return iso_date(as_text(v)) end,
  double = as_number,
  int = function(v)
    local n = as_number(v)
    return n and math_floor(n)
  end,
  bool = function(v)
    if type(v) == "boolean" then return v end
    if type(v) == "number" then return v ~= 0 end
    if type(v) == "string" then return v == "true" or v == "1" or v == "True" end
    return nil
  end,
}

-- Type of a column for a field the catalog does not know, from one of its values
local function infer_type(v)
  local t = type(v)
  if t == "boolean" then return "bool" end
  if t == "number" then return "double" end
  if t == "string" and v:match("^/Date%(%-?%d+[^)]*%)/$") then return "datetime" end
  return "string"
end
_M.infer_type = infer_type

local function deferred(v)
  return type(v) == "table" and v.__deferred ~= nil
end

-- ---- the replica object ----

local Replica = {}
Replica.__index = Replica

--- new(dialect, conn, where) --> replica; where names the database in messages (never a password).
function _M.new(dialect, conn, where)
  return setmetatable({ d = dialect, conn = conn, where = where, tables = {}, stmts = {} }, Replica)
end

function Replica:fail(what, msg)
  local code, hint = self.d.classify(tostring(msg or "unknown error"))
  return db_error(code, string_format("%s: %s in %s", what, tostring(msg), self.where), hint)
end

function Replica:prepare(sql)
  local st = self.stmts[sql]
  if st then return st end
  -- LuaDBI raises (rather than returns) on a connection that is gone: both become an error object
  local ok, s, err = pcall(self.conn.prepare, self.conn, sql)
  if not ok then s, err = nil, s end
  if not s then return nil, self:fail("preparing a statement", err) end
  self.stmts[sql] = s
  return s
end

-- run sql with bound values; returns the statement (for affected()/rows()) | nil, err
function Replica:exec(sql, ...)
  local st, err = self:prepare(sql)
  if not st then return nil, err end
  local pok, ok, eerr = pcall(st.execute, st, ...)
  if not pok then ok, eerr = nil, ok end
  if not ok then return nil, self:fail("writing", eerr) end
  return st
end

-- first row of a query as a table keyed by column name | false | nil, err
function Replica:one(sql, ...)
  local st, err = self:exec(sql, ...)
  if not st then return nil, err end
  local row = st:fetch(true)
  return row or false
end

function Replica:begin()
  local pok, ok, err = pcall(self.d.begin, self)
  if not pok then ok, err = nil, ok end
  if not ok then return nil, self:fail("starting a transaction", err) end
  self.in_tx = true
  return true
end

function Replica:commit()
  local pok, ok, err = pcall(self.d.commit, self)
  if not pok then ok, err = nil, ok end
  self.in_tx = false
  if not ok then
    pcall(self.d.rollback, self)
    self.tables = {} -- an ALTER in the failed transaction is gone: read the schema again
    return nil, self:fail("committing", err)
  end
  return true
end

function Replica:rollback()
  if self.in_tx then pcall(self.d.rollback, self) end
  self.in_tx = false
  self.tables = {}
end

-- fn() inside BEGIN … COMMIT; any failure (returned or raised) rolls back, and nothing of it stays
function Replica:transaction(fn, ...)
  local ok, err = self:begin()
  if not ok then return nil, err end
  local pok, a, b = pcall(fn, ...)
  if not pok then
    self:rollback()
    if core.is_error(a) then return nil, a end
    return nil, self:fail("writing", a)
  end
  if a == nil then
    self:rollback()
    return nil, b
  end
  local cok, cerr = self:commit()
  if not cok then return nil, cerr end
  return a
end

-- ---- schema ----

function Replica:ensure_state()
  if self.state_ok then return true end
  local d = self.d
  local ok, err = self:transaction(function()
    local st, e = self:exec("CREATE TABLE IF NOT EXISTS " .. STATE .. " (division " .. d.types.int ..
      " NOT NULL, entity " .. d.types.string .. " NOT NULL, last_timestamp " .. d.types.int ..
      " NOT NULL DEFAULT 0, next_link " .. d.types.string .. ", rows_loaded " .. d.types.int ..
      ", updated_at " .. d.types.datetime .. ", PRIMARY KEY (division, entity))")
    if not st then return nil, e end
    return true
  end)
  if not ok then return nil, err end
  local cols, cerr = d.columns(self, STATE)
  if not cols then return nil, cerr end
  local have = {}
  for _, c in ipairs(cols) do have[c.name] = true end
  for _, need in ipairs { "division", "entity", "last_timestamp", "next_link" } do
    if not have[need] then
      return nil, db_error("schema_changed", string_format("the table %s in %s has no column %s: its "
        .. "schema was changed by hand", STATE, self.where, need),
        "restore the column, or drop the table " .. STATE .. " to replicate everything again")
    end
  end
  self.state_ok = true
  return true
end

local function table_def(self, name, entity, extra)
  local d = self.d
  local key = entity.key:lower()
  local cols = { quote("division") .. " " .. d.types.int .. " NOT NULL" }
  local seen = { division = true }
  for _, f in ipairs(entity.fields) do
    if not seen[f.column] then
      seen[f.column] = true
      cols[#cols + 1] = quote(f.column) .. " " .. d.types[f.type] .. (f.column == key and " NOT NULL" or "")
    end
  end
  for _, c in ipairs(extra or {}) do
    if not seen[c.name] then
      seen[c.name] = true
      cols[#cols + 1] = quote(c.name) .. " " .. c.decl
    end
  end
  return "CREATE TABLE IF NOT EXISTS " .. quote(name) .. " (" .. table_concat(cols, ", ") ..
    ", PRIMARY KEY (division, " .. quote(key) .. "))"
end

-- Read a table's columns into a description: { name, entity, key, cols = { [column] = {name, type} },
-- by_field = { [ExactName] = col } }; checks the catalog's columns against what is there.
function Replica:describe(name, entity)
  local d = self.d
  local cols, err = d.columns(self, name)
  if not cols then return nil, err end
  local t = { name = name, entity = entity, key = entity.key:lower(), cols = {}, by_field = {}, extra = {} }
  for _, c in ipairs(cols) do
    t.cols[c.name] = { name = c.name, type = d.catalog_type(c.type), decl = c.type, pk = c.pk }
  end
  local hint = "undo the change, or drop the table " .. name .. " (and its rows in " .. STATE ..
    ") to replicate it again"
  for _, k in ipairs { "division", t.key } do
    local c = t.cols[k]
    if not c then
      return nil, db_error("schema_changed", string_format("the table %s in %s has no column %s: its schema was "
        .. "changed by hand", name, self.where, k), hint)
    end
  end
  if not d.primary_key_ok(self, name, t) then
    return nil, db_error("schema_changed", string_format("the table %s in %s has no primary key (division, %s): "
      .. "its schema was changed by hand", name, self.where, t.key), hint)
  end
  for _, f in ipairs(entity.fields) do
    local c = t.cols[f.column]
    if c then
      if not d.type_ok(f.type, c.decl) then
        return nil, db_error("schema_changed", string_format("the column %s.%s in %s is %s, not %s: its schema was "
          .. "changed by hand", name, f.column, self.where, c.decl, d.types[f.type]), hint)
      end
      c.type = f.type
      t.by_field[f.name] = c
    end
  end
  for cname, c in pairs(t.cols) do
    if not t.by_field[c.name] and cname ~= "division" then
      t.extra[#t.extra + 1] = { name = cname, decl = c.decl }
    end
  end
  table_sort(t.extra, function(a, b) return a.name < b.name end)
  return t
end

-- The description of an entity's table (created when missing); `load` for its staging table.
function Replica:table_for(entity, load)
  local name = load and ("exactonline_load_" .. entity.table) or entity.table
  local t = self.tables[name]
  if t then return t end
  local base
  if load then
    local err
    base, err = self:table_for(entity)
    if not base then return nil, err end
  end
  local st, err = self:exec(table_def(self, name, entity, base and base.extra))
  if not st then return nil, err end
  t, err = self:describe(name, entity)
  if not t then return nil, err end
  if base then
    -- the staging table gets every column the real one has
    for _, c in ipairs(base.extra) do
      if not t.cols[c.name] then
        local ok, aerr = self:exec("ALTER TABLE " .. quote(name) .. " ADD COLUMN " .. quote(c.name) .. " " .. c.decl)
        if not ok then return nil, aerr end
        t.cols[c.name] = { name = c.name, type = self.d.catalog_type(c.decl), decl = c.decl }
      end
    end
  end
  self.tables[name] = t
  return t
end

-- A field no column holds yet: a new column typed from its value (inside the page's transaction).
function Replica:add_column(t, field, value)
  local cname = field:lower()
  if not valid_ident(cname) then return nil end -- not a name we can hold; the field is skipped
  local c = t.cols[cname]
  if not c then
    local ty = value == nil and "string" or infer_type(value)
    local decl = self.d.types[ty]
    local ok, err = self:exec("ALTER TABLE " .. quote(t.name) .. " ADD COLUMN " .. quote(cname) .. " " .. decl)
    if not ok then error(err, 0) end
    c = { name = cname, type = ty, decl = decl }
    t.cols[cname] = c
    t.extra[#t.extra + 1] = { name = cname, decl = decl }
  end
  t.by_field[field] = c
  return c
end

-- ---- cursors ----

--- state(division, entity_path) --> { last_timestamp, next_link, rows_loaded } | false | nil, err
function Replica:state(division, entity)
  local ok, err = self:ensure_state()
  if not ok then return nil, err end
  local row, rerr = self:one("SELECT CAST(last_timestamp AS TEXT) AS ts, next_link, CAST(rows_loaded AS TEXT) AS n "
    .. "FROM " .. STATE .. " WHERE division = ? AND entity = ?", self.d.int(division), entity)
  if row == nil then return nil, rerr end
  if not row then return false end
  return { last_timestamp = tonumber(row.ts) or 0, next_link = row.next_link, rows_loaded = tonumber(row.n) }
end

local function now_iso()
  return os_date("!%Y-%m-%dT%H:%M:%S.000Z", os_time())
end

-- inside a transaction: move the cursor of (division, entity)
function Replica:set_state(division, entity, ts, next_link, rows_loaded)
  local d = self.d
  local st, err = self:exec("UPDATE " .. STATE .. " SET last_timestamp = ?, next_link = ?, rows_loaded = ?, "
    .. "updated_at = ? WHERE division = ? AND entity = ?", d.int(ts), next_link, d.int(rows_loaded),
    now_iso(), d.int(division), entity)
  if not st then error(err, 0) end
  if st:affected() == 0 then
    st, err = self:exec("INSERT INTO " .. STATE .. " (division, entity, last_timestamp, next_link, rows_loaded, "
      .. "updated_at) VALUES (?, ?, ?, ?, ?, ?)", d.int(division), entity, d.int(ts), next_link,
      d.int(rows_loaded), now_iso())
    if not st then error(err, 0) end
  end
end

-- ---- rows ----

-- The columns a page writes: the union of its rows' fields (new ones become columns), in a fixed order.
local function page_columns(self, t, rows)
  local seen, order, sample = { __metadata = true, Division = true }, {}, {}
  for i = 1, #rows do
    for k, v in pairs(rows[i]) do
      if not seen[k] then
        seen[k] = true
        order[#order + 1] = k
      end
      -- a value to type a new column by: the first that is neither null nor deferred
      if sample[k] == nil and v ~= json_null and not deferred(v) then sample[k] = v end
    end
  end
  table_sort(order)
  local cols = {}
  for _, k in ipairs(order) do
    local v = sample[k]
    local c = t.by_field[k]
    if not c and (v ~= nil or not deferred(rows[1][k])) then
      -- a new field, even one whose every value is null: the table shows every field Exact sends
      c = self:add_column(t, k, v)
    end
    if c and (v ~= nil or not deferred(rows[1][k])) then
      cols[#cols + 1] = { field = k, col = c, conv = CONVERT[c.type] or as_text }
    end
  end
  return cols
end

-- INSERT takes (c1 … cn, division), UPDATE (c1 … cn, division, key[, timestamp]): one array serves both
local function upsert_sql(t, cols, guarded)
  local sets, names, marks = {}, {}, {}
  for i, c in ipairs(cols) do
    sets[i] = quote(c.col.name) .. " = ?"
    names[i] = quote(c.col.name)
    marks[i] = "?"
  end
  names[#names + 1], marks[#marks + 1] = "division", "?"
  local where = " WHERE division = ? AND " .. quote(t.key) .. " = ?"
  if guarded then where = where .. ' AND ("timestamp" IS NULL OR "timestamp" <= ?)' end
  local update = #sets > 0 and ("UPDATE " .. quote(t.name) .. " SET " .. table_concat(sets, ", ") .. where) or nil
  local insert = "INSERT INTO " .. quote(t.name) .. " (" .. table_concat(names, ", ") .. ") VALUES (" ..
    table_concat(marks, ", ") .. ") ON CONFLICT (division, " .. quote(t.key) .. ") DO NOTHING"
  return update, insert
end

-- inside a transaction: upsert rows of one page; a stored row newer than the page's (by Timestamp) is kept.
-- Whichever of INSERT and UPDATE the previous page needed most is tried first: one statement per row in
-- a first load and in a later run alike.
function Replica:write_rows(t, division, rows)
  local d = self.d
  local cols = page_columns(self, t, rows)
  local keyj
  for j, c in ipairs(cols) do
    if c.col.name == t.key then keyj = j end
  end
  if not keyj then error(db_error("no_key", string_format("rows of %s carry no %s field", t.entity.path,
    t.entity.key), "replicate needs each row's key; report this"), 0) end
  local guarded = (t.cols.timestamp and t.by_field.Timestamp) and true or false
  local usql, isql = upsert_sql(t, cols, guarded)
  local ust, ist, err
  if usql then
    ust, err = self:prepare(usql)
    if not ust then error(err, 0) end
  end
  ist, err = self:prepare(isql)
  if not ist then error(err, 0) end
  local n = #cols
  local fields, puts, same = {}, {}, {}
  for j = 1, n do
    fields[j] = cols[j].field
    puts[j] = d.converter(cols[j].col.type, cols[j].conv)
    same[j] = d.passthrough[cols[j].col.type] or false
  end
  local dint, int = d.int(division), d.int
  local vals = {}
  local inserted, updated = 0, 0
  local insert_first = t.insert_first ~= false
  local top = guarded and n + 3 or n + 2
  for i = 1, #rows do
    local row = rows[i]
    for j = 1, n do
      local v = row[fields[j]]
      if v == nil or v == json_null then
        vals[j] = nil
      elseif type(v) == same[j] then
        vals[j] = v -- already what the column binds (text to text, a number to REAL)
      else
        vals[j] = puts[j](v)
      end
    end
    local key = vals[keyj]
    if key == nil then
      error(db_error("no_key", string_format("a row of %s has no %s", t.entity.path, t.entity.key),
        "replicate needs each row's key; report this"), 0)
    end
    vals[n + 1], vals[n + 2] = dint, key
    if guarded then
      local ts = row.Timestamp
      vals[n + 3] = int(ts ~= json_null and tonumber(ts) or 0)
    end
    local done = false
    if insert_first then
      local ok, e = ist:execute(unpack(vals, 1, n + 1))
      if not ok then error(self:fail("writing " .. t.name, e), 0) end
      if ist:affected() > 0 then
        inserted = inserted + 1
        done = true
      end
    end
    if not done and ust then
      local ok, e = ust:execute(unpack(vals, 1, top))
      if not ok then error(self:fail("writing " .. t.name, e), 0) end
      if ust:affected() > 0 then
        updated = updated + 1
        done = true
      end
    end
    if not done and not insert_first then
      local ok, e = ist:execute(unpack(vals, 1, n + 1))
      if not ok then error(self:fail("writing " .. t.name, e), 0) end
      if ist:affected() > 0 then inserted = inserted + 1 end
    end
  end
  t.insert_first = inserted >= updated
  return inserted, updated
end

--- apply_page(division, entity, rows, last_timestamp) --> { inserted, updated } | nil, err
-- The rows and the cursor commit together (one transaction).
function Replica:apply_page(division, entity, rows, last_ts)
  local ok, err = self:ensure_state()
  if not ok then return nil, err end
  return self:transaction(function()
    local t, terr = self:table_for(entity)
    if not t then error(terr, 0) end
    local ins, upd = 0, 0
    if #rows > 0 then ins, upd = self:write_rows(t, division, rows) end
    self:set_state(division, entity.path, last_ts, nil, nil)
    return { inserted = ins, updated = upd }
  end)
end

--- apply_deleted(division, rows, last_timestamp, lookup) --> { deleted = n, by_table = {…} } | nil, err
-- lookup(EntityType) --> entity | nil. A row goes only when its stored Timestamp is not newer than the
-- deletion's (Exact's own rule); only tables that exist are touched.
function Replica:apply_deleted(division, rows, last_ts, lookup, deleted_path)
  local ok, err = self:ensure_state()
  if not ok then return nil, err end
  local d = self.d
  return self:transaction(function()
    local n, by_table = 0, {}
    local dint = d.int(division)
    for i = 1, #rows do
      local r = rows[i]
      local e = lookup(tonumber(r.EntityType))
      local key = r.EntityKey
      if e and type(key) == "string" then
        local exists = self.tables[e.table] or d.table_exists(self, e.table)
        if exists then
          local t, terr = self:table_for(e)
          if not t then error(terr, 0) end
          local ts = r.Timestamp ~= json_null and r.Timestamp or 0
          local sql = "DELETE FROM " .. quote(t.name) .. " WHERE division = ? AND (" .. quote(t.key) .. " = ?"
          local also = e.delete_by and t.by_field[e.delete_by]
          if also then sql = sql .. " OR " .. quote(also.name) .. " = ?" end
          sql = sql .. ")"
          if t.cols.timestamp then sql = sql .. ' AND ("timestamp" IS NULL OR "timestamp" <= ?)' end
          local gkey = d.shape("guid", key)
          local st, serr
          if also and t.cols.timestamp then
            st, serr = self:exec(sql, dint, gkey, gkey, d.int(ts))
          elseif also then
            st, serr = self:exec(sql, dint, gkey, gkey)
          elseif t.cols.timestamp then
            st, serr = self:exec(sql, dint, gkey, d.int(ts))
          else
            st, serr = self:exec(sql, dint, gkey)
          end
          if not st then error(serr, 0) end
          local a = st:affected()
          n = n + a
          by_table[e.path] = (by_table[e.path] or 0) + a
        end
      end
    end
    self:set_state(division, deleted_path or "sync/Deleted", last_ts, nil, nil)
    return { deleted = n, by_table = by_table }
  end)
end

-- ---- full reads (entities without a sync endpoint): staged per page, swapped in at the end ----

--- begin_full(division, entity, resume) --> next_link to continue from | false (start afresh) | nil, err
function Replica:begin_full(division, entity, resume)
  local st, err = self:state(division, entity.path)
  if st == nil then return nil, err end
  if resume and st and st.next_link then return st.next_link end
  local ok, terr = self:transaction(function()
    local t, e = self:table_for(entity, true)
    if not t then error(e, 0) end
    local x, xerr = self:exec("DELETE FROM " .. quote(t.name) .. " WHERE division = ?", self.d.int(division))
    if not x then error(xerr, 0) end
    self:set_state(division, entity.path, st and st.last_timestamp or 0, nil, st and st.rows_loaded or nil)
    return true
  end)
  if not ok then return nil, terr end
  return false
end

--- stage_page(division, entity, rows, next_link) --> true | nil, err (rows and the link commit together)
function Replica:stage_page(division, entity, rows, next_link)
  return self:transaction(function()
    local t, e = self:table_for(entity, true)
    if not t then error(e, 0) end
    local base, berr = self:table_for(entity)
    if not base then error(berr, 0) end
    if #rows > 0 then
      self:write_rows(t, division, rows)
      -- a new field seen while staging gets its column in the real table too
      for cname, c in pairs(t.cols) do
        if not base.cols[cname] then
          local ok, aerr = self:exec("ALTER TABLE " .. quote(base.name) .. " ADD COLUMN " .. quote(cname) .. " " ..
            c.decl)
          if not ok then error(aerr, 0) end
          base.cols[cname] = { name = cname, type = c.type, decl = c.decl }
          base.extra[#base.extra + 1] = { name = cname, decl = c.decl }
        end
      end
    end
    local st = self:state(division, entity.path)
    self:set_state(division, entity.path, st and st.last_timestamp or 0, next_link or "", st and st.rows_loaded)
    return true
  end)
end

--- finish_full(division, entity) --> { inserted, updated, deleted } | nil, err
-- One transaction: the division's rows are replaced by the staged ones; readers see old or new, never half.
function Replica:finish_full(division, entity)
  local d = self.d
  return self:transaction(function()
    local t, e = self:table_for(entity)
    if not t then error(e, 0) end
    local l, le = self:table_for(entity, true)
    if not l then error(le, 0) end
    local dint = d.int(division)
    local key = quote(t.key)
    local T, L = quote(t.name), quote(l.name)
    local function count(sql)
      local row, err = self:one(sql, dint, dint)
      if not row then error(err or self:fail("counting", "no answer"), 0) end
      return tonumber(row.n) or 0
    end
    local ins = count("SELECT CAST(count(*) AS TEXT) AS n FROM " .. L .. " l WHERE l.division = ? AND NOT EXISTS "
      .. "(SELECT 1 FROM " .. T .. " t WHERE t.division = ? AND t." .. key .. " = l." .. key .. ")")
    local del = count("SELECT CAST(count(*) AS TEXT) AS n FROM " .. T .. " t WHERE t.division = ? AND NOT EXISTS "
      .. "(SELECT 1 FROM " .. L .. " l WHERE l.division = ? AND l." .. key .. " = t." .. key .. ")")
    local total = count("SELECT CAST(count(*) AS TEXT) AS n FROM " .. L .. " WHERE division = ? OR division = ?")
    local names = {}
    for cname in pairs(l.cols) do
      if t.cols[cname] then names[#names + 1] = quote(cname) end
    end
    table_sort(names)
    local list = table_concat(names, ", ")
    local ok, err = self:exec("DELETE FROM " .. T .. " WHERE division = ?", dint)
    if not ok then error(err, 0) end
    ok, err = self:exec("INSERT INTO " .. T .. " (" .. list .. ") SELECT " .. list .. " FROM " .. L ..
      " WHERE division = ?", dint)
    if not ok then error(err, 0) end
    ok, err = self:exec("DELETE FROM " .. L .. " WHERE division = ?", dint)
    if not ok then error(err, 0) end
    self:set_state(division, entity.path, 0, nil, total)
    return { inserted = ins, updated = total - ins, deleted = del }
  end)
end

--- count(entity, division) --> rows in the entity's table for the division (for progress and specs)
function Replica:count(entity, division)
  if not self.d.table_exists(self, entity.table) then return 0 end
  local row, err = self:one("SELECT CAST(count(*) AS TEXT) AS n FROM " .. quote(entity.table) ..
    " WHERE division = ?", self.d.int(division))
  if not row then return nil, err end
  return tonumber(row.n) or 0
end

--- lock(division, entity_path) --> unlock function | false (another run holds it) | nil, err
function Replica:lock(division, entity)
  return self.d.try_lock(self, division, entity)
end

function Replica:close()
  for sql, st in pairs(self.stmts) do
    pcall(st.close, st)
    self.stmts[sql] = nil
  end
  if self.conn then
    if self.in_tx then pcall(self.d.rollback, self) end
    pcall(self.conn.close, self.conn)
    self.conn = nil
  end
  self.d.closed(self)
end

_M.Replica = Replica
_M.STATE = STATE

return _M
