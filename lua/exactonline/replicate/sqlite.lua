--- exactonline.replicate.sqlite: a replica in an SQLite file, through LuaDBI (Debian: lua-dbi-sqlite3).
-- WAL journal (readers never wait for the writer, a crash at any instant rolls back to the last
-- commit), BEGIN IMMEDIATE per page, and a busy timeout so two runs take turns instead of failing.
-- Two runs serialise per (division, entity) on a flock'd file in PATH-locks/ (the kernel drops it
-- when a process dies).
local core = require "exactonline.core"
local sql = require "exactonline.replicate.sql"

local type, tostring, tonumber, pcall, require, pairs, ipairs = type, tostring, tonumber, pcall, require, pairs, ipairs
local math_floor = math.floor
local math_tointeger = math.tointeger or function(n) return n end
local string_format = string.format
local io_open = io.open

local _M = {}

local TYPES = { guid = "TEXT", datetime = "DATETIME", double = "REAL", int = "INTEGER", bool = "BOOLEAN",
  string = "TEXT", binary = "TEXT" }
local BACK = { TEXT = "string", DATETIME = "datetime", REAL = "double", INTEGER = "int", BOOLEAN = "bool" }

local dialect = { name = "SQLite", types = TYPES }

function dialect.catalog_type(decl)
  return BACK[tostring(decl):upper()] or "string"
end

function dialect.type_ok(t, decl)
  local want = TYPES[t]
  decl = tostring(decl):upper()
  return decl == want or (want == "TEXT" and decl == "") -- a column declared without a type holds text fine
end

function dialect.int(v)
  if v == nil then return nil end
  return math_tointeger(math_floor(v))
end

function dialect.shape(t, v)
  if t == "bool" then
    if v == nil then return nil end
    return v and 1 or 0
  end
  if t == "int" and type(v) == "number" then return math_tointeger(v) end
  return v
end

-- the Lua type a column binds as it comes from the JSON, with no conversion
dialect.passthrough = { string = "string", guid = "string", binary = "string", double = "number" }

--- one function per column: Exact's value --> what the driver binds
function dialect.converter(t, conv)
  if t == "bool" then return function(v)
    local b = conv(v)
    if b == nil then return nil end
    return b and 1 or 0
  end end
  if t == "int" then return function(v)
    local n = conv(v)
    return n and math_tointeger(n)
  end end
  return conv
end

local function do_sql(self, s)
  local st, err = self.conn:prepare(s)
  if not st then return nil, err end
  local ok, eerr = st:execute()
  st:close()
  if not ok then return nil, eerr end
  return true
end

function dialect.begin(self) return do_sql(self, "BEGIN IMMEDIATE") end
function dialect.commit(self) return do_sql(self, "COMMIT") end
function dialect.rollback(self) return do_sql(self, "ROLLBACK") end

function dialect.columns(self, name)
  local st, err = self:exec("SELECT name, type, pk FROM pragma_table_info(?)", name)
  if not st then return nil, err end
  local out = {}
  for row in st:rows(true) do
    out[#out + 1] = { name = row.name, type = row.type, pk = (row.pk or 0) > 0 }
  end
  return out
end

function dialect.table_exists(self, name)
  local row = self:one("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", name)
  return row and true or false
end

function dialect.primary_key_ok(_, _, t)
  local n = 0
  for _, c in pairs(t.cols) do
    if c.pk then n = n + 1 end
  end
  return n == 2 and t.cols.division.pk and t.cols[t.key].pk
end

function dialect.classify(msg)
  local m = msg:lower()
  if m:find("locked", 1, true) or m:find("busy", 1, true) then
    return "locked", "another program holds a write lock on the database (an open transaction in a sqlite3 shell "
      .. "or a hung process?): end it, then run replicate again; nothing committed is lost"
  elseif m:find("disk is full", 1, true) or m:find("disk full", 1, true) then
    return "disk_full", "free disk space where the database lives, then run replicate again: it continues from "
      .. "the last committed page"
  elseif m:find("readonly", 1, true) or m:find("read-only", 1, true) then
    return "read_only", "the database file or its folder is not writable by this user: fix the permissions "
      .. "or pick another file (--to)"
  elseif m:find("not a database", 1, true) or m:find("malformed", 1, true) then
    return "not_a_database", "the file is not an SQLite database (or is damaged): pick another file (--to)"
  elseif m:find("unable to open", 1, true) or m:find("cannot open", 1, true) then
    return "cannot_open", "check that the folder exists and is writable (--to sqlite:PATH)"
  elseif m:find("no such table", 1, true) or m:find("no such column", 1, true) or m:find("has no column", 1, true) then
    return "schema_changed", "the replica's tables were changed by hand: undo the change, or drop the table to "
      .. "replicate it again"
  end
  return "sqlite", "see SQLite's message above"
end

function dialect.try_lock(self, division, entity)
  local name = string_format("%s/%d-%s.lock", self.lock_dir, division, (entity:gsub("[^%w]", "_")))
  local ok, err = core.mkdir_p(self.lock_dir, 448) -- 0700
  if not ok then return nil, sql.error("cannot_open", tostring(err and err.message or err),
    "check that the folder of the database is writable") end
  local lk, lerr = core.flock(name, 0)
  if not lk then
    if lerr and lerr.code == "lock_timeout" then return false end
    return nil, sql.error("cannot_open", tostring(lerr and lerr.message or lerr),
      "check that the folder of the database is writable")
  end
  self.locks[lk] = true
  return function()
    if self.locks[lk] then
      self.locks[lk] = nil
      lk:unlock()
    end
  end
end

function dialect.closed(self)
  for lk in pairs(self.locks) do
    pcall(lk.unlock, lk)
    self.locks[lk] = nil
  end
end

--- open(path, opts) --> replica | nil, err.  opts.busy_timeout: seconds to wait for another writer (60).
function _M.open(path, opts)
  opts = opts or {}
  local okd, DBI = pcall(require, "DBI")
  if not okd then
    return nil, sql.error("driver_missing", "LuaDBI is not installed",
      "install it: apt install lua-dbi-sqlite3")
  end
  -- a folder that is not there is named as such (and LuaDBI would keep the handle of the failed open)
  local dir = path:match("^(.*)/[^/]*$")
  local seen = dir and dir ~= "" and io_open(dir, "r")
  if seen then seen:close() end
  if dir and dir ~= "" and not seen then
    return nil, sql.error("cannot_open", string_format("cannot open the SQLite database %s: the folder %s does "
      .. "not exist", path, dir), "create the folder first, or pick another path (--to sqlite:PATH)")
  end
  local conn, err = DBI.Connect("SQLite3", path)
  if not conn then
    local code, hint = dialect.classify(tostring(err))
    return nil, sql.error(code, string_format("cannot open the SQLite database %s: %s", path, tostring(err)), hint)
  end
  conn:autocommit(true) -- transactions are explicit: BEGIN IMMEDIATE … COMMIT per page
  local self = sql.new(dialect, conn, "the SQLite database " .. path)
  self.path, self.lock_dir, self.locks = path, path .. "-locks", {}
  local busy = math_floor((tonumber(opts.busy_timeout) or 60) * 1000)
  -- 16 KiB pages hold several of Exact's wide rows each (a new database only: set before WAL);
  -- WAL with synchronous=NORMAL: a crash or power cut may lose the last commits, never half of one
  for _, p in ipairs { "PRAGMA busy_timeout = " .. busy, "PRAGMA page_size = 16384", "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL", "PRAGMA cache_size = -16384", "PRAGMA wal_autocheckpoint = 2048" } do
    local ok, perr = do_sql(self, p)
    if not ok then
      local code, hint = dialect.classify(tostring(perr))
      conn:close()
      return nil, sql.error(code, string_format("cannot use the SQLite database %s: %s", path, tostring(perr)), hint)
    end
  end
  return self
end

return _M
