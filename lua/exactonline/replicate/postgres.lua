--- exactonline.replicate.postgres: a replica in PostgreSQL, through LuaDBI (Debian: lua-dbi-postgresql).
-- Real column types (uuid, timestamptz, double precision, bigint, boolean, text), one transaction per
-- page, and a session advisory lock per (division, entity) so two runs take turns; the server drops
-- it when a run's connection goes (kill -9, a lost network).
-- LuaDBI sends integers through a C int and doubles with 14 digits: numbers go as exact text.
local sql = require "exactonline.replicate.sql"

local tostring, pcall, require, ipairs = tostring, pcall, require, ipairs
local math_floor = math.floor
local string_format = string.format

local _M = {}

local TYPES = { guid = "uuid", datetime = "timestamptz", double = "double precision", int = "bigint",
  bool = "boolean", string = "text", binary = "text" }
-- information_schema's data_type for each
local SHOWN = { guid = "uuid", datetime = "timestamp with time zone", double = "double precision", int = "bigint",
  bool = "boolean", string = "text", binary = "text" }
local BACK = { uuid = "guid", ["timestamp with time zone"] = "datetime", ["double precision"] = "double",
  bigint = "int", boolean = "bool" }

local dialect = { name = "PostgreSQL", types = TYPES }

function dialect.catalog_type(decl)
  return BACK[tostring(decl)] or "string"
end

function dialect.type_ok(t, decl)
  local want = SHOWN[t]
  return decl == want or (want == "text" and decl == "character varying")
end

local function int_text(v)
  if v == nil then return nil end
  return string_format("%d", math_floor(v))
end
dialect.int = int_text

function dialect.shape(t, v)
  if v == nil then return nil end
  if t == "int" then return int_text(v) end
  if t == "double" then return string_format("%.17g", v) end
  return v
end

-- the Lua type a column binds as it comes from the JSON, with no conversion
dialect.passthrough = { string = "string", guid = "string", binary = "string" }

--- one function per column: Exact's value --> what the driver binds
function dialect.converter(t, conv)
  if t == "int" then return function(v) return int_text(conv(v)) end end
  if t == "double" then return function(v)
    local n = conv(v)
    return n and string_format("%.17g", n)
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

function dialect.begin(self) return do_sql(self, "BEGIN") end
function dialect.commit(self) return do_sql(self, "COMMIT") end
function dialect.rollback(self) return do_sql(self, "ROLLBACK") end

function dialect.columns(self, name)
  local st, err = self:exec("SELECT column_name AS name, data_type AS type FROM information_schema.columns "
    .. "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position", name)
  if not st then return nil, err end
  local out = {}
  for row in st:rows(true) do out[#out + 1] = { name = row.name, type = row.type } end
  return out
end

function dialect.table_exists(self, name)
  local row = self:one("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
    .. "AND table_name = ?", name)
  return row and true or false
end

function dialect.primary_key_ok(self, name, t)
  local st = self:exec("SELECT a.attname AS name FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
    .. "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = CAST(? AS regclass) AND i.indisprimary", sql.quote(name))
  if not st then return false end
  local seen, n = {}, 0
  for row in st:rows(true) do
    seen[row.name] = true
    n = n + 1
  end
  return n == 2 and seen.division and seen[t.key] or false
end

function dialect.classify(msg)
  local m = msg:lower()
  if m:find("no space left", 1, true) or m:find("could not extend", 1, true) or m:find("disk full", 1, true) then
    return "disk_full", "free disk space on the database server, then run replicate again: it continues from the "
      .. "last committed page"
  elseif m:find("server closed the connection", 1, true) or m:find("no connection to the server", 1, true)
      or m:find("terminating connection", 1, true) or m:find("connection to server", 1, true)
      or m:find("database closed", 1, true) then
    return "connection_lost", "the connection to PostgreSQL was lost; run replicate again: every committed page is "
      .. "kept and the next run continues from there"
  elseif m:find("permission denied", 1, true) or m:find("read%-only") then
    return "read_only", "the database user may not write here: GRANT it CREATE and write rights on the schema, or "
      .. "use another database (--to)"
  elseif m:find("password authentication", 1, true) or m:find("does not exist", 1, true) and m:find("database", 1, true)
      or m:find("could not connect", 1, true) or m:find("failed to connect", 1, true) then
    return "cannot_open", "check the connection string (host, port, user, dbname) and that the server runs"
  elseif m:find("lock", 1, true) and m:find("timeout", 1, true) then
    return "locked", "another session holds a lock on the replica's tables: end it, then run replicate again"
  elseif m:find("does not exist", 1, true) or m:find("invalid input syntax", 1, true) then
    return "schema_changed", "the replica's tables were changed by hand: undo the change, or drop the table to "
      .. "replicate it again"
  end
  return "postgresql", "see PostgreSQL's message above"
end

function dialect.try_lock(self, division, entity)
  local key = "exactonline replicate " .. entity
  local row, err = self:one("SELECT pg_try_advisory_lock(hashtext(?), CAST(? AS integer)) AS ok", key,
    int_text(division))
  if row == nil then return nil, err end
  if not row.ok then return false end
  return function()
    if self.conn then
      self:one("SELECT pg_advisory_unlock(hashtext(?), CAST(? AS integer)) AS ok", key, int_text(division))
    end
  end
end

function dialect.closed() end -- the server drops the session's advisory locks with the connection

-- "postgresql://user:secret@host/db" --> the same with the password hidden, for messages
local function shown(target)
  local s = target:gsub("(://[^:/@]*):[^@]*@", "%1:***@")
  s = s:gsub("(password%s*=%s*)%S+", "%1***")
  return s
end
_M.shown = shown

--- open(conninfo_or_uri) --> replica | nil, err
function _M.open(target)
  local okd, DBI = pcall(require, "DBI")
  if not okd then
    return nil, sql.error("driver_missing", "LuaDBI is not installed", "install it: apt install lua-dbi-postgresql")
  end
  local okc, conn, err = pcall(DBI.Connect, "PostgreSQL", target)
  if not okc then conn, err = nil, conn end
  if not conn then
    local _, hint = dialect.classify("could not connect")
    local msg = tostring(err):gsub("%s+$", "")
    return nil, sql.error("cannot_open", string_format("cannot connect to PostgreSQL at %s: %s", shown(target),
      msg), hint)
  end
  conn:autocommit(true) -- transactions are explicit: BEGIN … COMMIT per page
  local self = sql.new(dialect, conn, "the PostgreSQL database " .. shown(target))
  for _, s in ipairs { "SET client_min_messages = warning", "SET lock_timeout = '60s'" } do
    local ok, serr = do_sql(self, s)
    if not ok then
      conn:close()
      local code, hint = dialect.classify(tostring(serr))
      return nil, sql.error(code, string_format("cannot use PostgreSQL at %s: %s", shown(target), tostring(serr)), hint)
    end
  end
  return self
end

return _M
