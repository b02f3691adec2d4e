--- Tokens in a PostgreSQL table, one row per key, shared by any number of processes and machines.
-- store = require("exactonline.stores.postgres").new{ conninfo = "…", table = "exactonline_tokens", key = "my-app" }
--   store.load()        --> tokens | nil (no row yet) | nil, err
--   store.save(tokens)  --> true | true, "kept_newer" | nil, err   (commits at once: durable before use)
--   store.lock(timeout) --> true | nil, err      store.unlock()
-- The lock is a session-level advisory lock on (table, key): it is released by unlock(), or by the
-- server when the connection drops (a killed process never leaves it behind). save() is one
-- INSERT … ON CONFLICT DO UPDATE … WHERE that never replaces a newer chain, locked or not.
local core = require "exactonline.core"

local type, tostring, tonumber, error, pcall, require = type, tostring, tonumber, error, pcall, require
local string_format, math_floor = string.format, math.floor

local _M = {}

local function store_error(code, message, hint)
  return core.error { kind = "store", code = code, message = message, hint = hint }
end

-- "exactonline_tokens" or "schema.table" -> a safely quoted identifier
local function quote_ident(name)
  if type(name) ~= "string" or not (name:match("^[%a_][%w_]*$") or name:match("^[%a_][%w_]*%.[%a_][%w_]*$")) then
    error("exactonline.stores.postgres: table must be a plain name or schema.name (letters, digits, _)", 3)
  end
  return '"' .. name:gsub("%.", '"."') .. '"'
end

local function num(v)
  if v == nil then return "NULL" end
  local n = tonumber(v)
  if not n or n ~= n or n == math.huge or n == -math.huge then return "NULL" end
  return string_format("%.17g", n)
end

local function from_row(row)
  if not row or row.refresh_token == nil and row.access_token == nil then return nil end
  return {
    access_token = row.access_token,
    refresh_token = row.refresh_token,
    expires_at = tonumber(row.expires_at),
    obtained_at = tonumber(row.obtained_at),
    refresh_obtained_at = tonumber(row.refresh_obtained_at),
  }
end

--- new{ conninfo = "host=… dbname=…", table = "exactonline_tokens", key = "default", lock_timeout = 30 }
function _M.new(opts)
  if type(opts) ~= "table" then error("exactonline.stores.postgres{…}: options table required", 2) end
  if type(opts.conninfo) ~= "string" then
    error("exactonline.stores.postgres: conninfo (a libpq connection string) is required", 2)
  end
  local key = opts.key or "default"
  if type(key) ~= "string" or key == "" then error("exactonline.stores.postgres: key must be a string", 2) end
  local tname = opts.table or "exactonline_tokens"
  local tbl = quote_ident(tname)
  local default_timeout = tonumber(opts.lock_timeout) or 30

  local ok, driver = pcall(require, "luasql.postgres")
  if not ok then
    error("exactonline.stores.postgres needs LuaSQL for PostgreSQL (Debian: apt install lua-sql-postgres)", 2)
  end

  local env, conn, ready, held
  local store = { key = key, table = tname }

  local function db_error(what, msg)
    -- LuaSQL messages carry the server's words; conninfo (which may hold a password) is never added
    return store_error("postgres", what .. ": " .. tostring(msg or "unknown error"),
      "check that PostgreSQL is reachable with the conninfo given and that the user may use " .. tname)
  end

  local function drop()
    if conn then pcall(conn.close, conn) end
    conn, ready, held = nil, false, false
  end

  local function exec(sql)
    local res, err = conn:execute(sql)
    if res == nil then return nil, err end
    return res
  end

  local function connect()
    if conn then return true end
    if not env then env = driver.postgres() end
    local c, err = env:connect(opts.conninfo)
    if not c then return nil, db_error("cannot connect to PostgreSQL", err) end
    conn = c
    if not ready then
      local r, e = exec("CREATE TABLE IF NOT EXISTS " .. tbl .. " (" ..
        "key text PRIMARY KEY, access_token text, refresh_token text, expires_at double precision, " ..
        "obtained_at double precision, refresh_obtained_at double precision, " ..
        "updated_at timestamptz NOT NULL DEFAULT now())")
      if not r then
        -- two processes creating it at once: one of them loses the race, the table is there all the same
        local cur = exec("SELECT to_regclass(" .. "'" .. conn:escape(tbl) .. "')::text")
        local exists = type(cur) == "userdata" and cur:fetch()
        if type(cur) == "userdata" then cur:close() end
        if not exists then
          drop()
          return nil, db_error("cannot create the table " .. tname, e)
        end
      end
      ready = true
    end
    return true
  end

  -- run fn once more on a fresh connection when the old one died (server restart, idle timeout)
  local function with_conn(fn)
    local ok1, err1 = connect()
    if not ok1 then return nil, err1 end
    local a, b = fn()
    if a == nil and b ~= nil and not held then
      local alive = conn and conn:execute("SELECT 1")
      if not alive then
        drop()
        local ok2, err2 = connect()
        if not ok2 then return nil, err2 end
        a, b = fn()
      end
    end
    return a, b
  end

  local function lit(s)
    if s == nil then return "NULL" end
    return "'" .. conn:escape(tostring(s)) .. "'"
  end

  function store.load()
    return with_conn(function()
      local cur, err = exec("SELECT access_token, refresh_token, expires_at, obtained_at, refresh_obtained_at FROM " ..
        tbl .. " WHERE key = " .. lit(key))
      if not cur then return nil, db_error("cannot read tokens", err) end
      local row = cur:fetch({}, "a")
      cur:close()
      local t = from_row(row)
      if t then return t end
      return nil
    end)
  end

  function store.save(tokens)
    if type(tokens) ~= "table" then error("exactonline.stores.postgres: save(tokens) needs a table", 2) end
    return with_conn(function()
      local r = num(tokens.refresh_obtained_at or tokens.obtained_at)
      local o = num(tokens.obtained_at)
      -- never an older chain over a newer one: the row is replaced only when ours is at least as new
      local n, err = exec("INSERT INTO " .. tbl ..
        " AS t (key, access_token, refresh_token, expires_at, obtained_at, refresh_obtained_at, updated_at)" ..
        " VALUES (" .. lit(key) .. ", " .. lit(tokens.access_token) .. ", " .. lit(tokens.refresh_token) .. ", " ..
        num(tokens.expires_at) .. ", " .. o .. ", " .. r .. ", now())" ..
        " ON CONFLICT (key) DO UPDATE SET access_token = EXCLUDED.access_token," ..
        " refresh_token = EXCLUDED.refresh_token, expires_at = EXCLUDED.expires_at," ..
        " obtained_at = EXCLUDED.obtained_at, refresh_obtained_at = EXCLUDED.refresh_obtained_at, updated_at = now()" ..
        " WHERE t.refresh_token IS NULL OR" ..
        " (COALESCE(t.refresh_obtained_at, t.obtained_at, -1), COALESCE(t.obtained_at, -1))" ..
        " <= (COALESCE(EXCLUDED.refresh_obtained_at, -1), COALESCE(EXCLUDED.obtained_at, -1))")
      if not n then return nil, db_error("cannot save tokens", err) end
      if tonumber(n) == 0 then return true, "kept_newer" end
      return true
    end)
  end

  function store.lock(timeout)
    if held then
      return nil, store_error("lock_held", "this store already holds the lock on " .. tname .. " key " .. key,
        "call unlock() before lock() again")
    end
    timeout = tonumber(timeout) or default_timeout
    return with_conn(function()
      local ms = math_floor(timeout * 1000 + 0.5)
      if ms < 1 then ms = 1 end
      -- lock_timeout bounds the wait; the lock outlives the statement (session level)
      local r, err = exec("SET lock_timeout = " .. ms)
      if not r then return nil, db_error("cannot lock", err) end
      r, err = exec("SELECT pg_advisory_lock(hashtext(" .. lit(tname) .. "), hashtext(" .. lit(key) .. "))")
      local reset = exec("SET lock_timeout = 0")
      if not reset then drop() end
      if not r then
        if tostring(err):find("lock timeout", 1, true) then
          return nil, store_error("lock_timeout", string_format(
            "another process holds the lock on %s key %s (waited %g s)", tname, key, timeout),
            "another process is refreshing the tokens; retry, or look for it in pg_locks (locktype advisory)")
        end
        return nil, db_error("cannot lock", err)
      end
      if type(r) == "userdata" then r:close() end
      held = true
      return true
    end)
  end

  function store.unlock()
    if not held then return true end
    held = false
    if conn then
      local cur = exec("SELECT pg_advisory_unlock(hashtext(" .. lit(tname) .. "), hashtext(" .. lit(key) .. "))")
      if type(cur) == "userdata" then cur:close() else drop() end
    end
    return true
  end

  --- Close the connection (releases the lock too).
  function store.close()
    drop()
    if env then pcall(env.close, env); env = nil end
  end

  return store
end

return _M
