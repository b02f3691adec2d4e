--- exactonline.store.postgres: tokens in a PostgreSQL table, one row per key, shared by any number of
-- processes and machines.
--   local store = require("exactonline.store.postgres").new{ conninfo = "…", table = "exactonline_tokens",
--     key = "my-app" }   (or exactonline.stores.postgres{…})
--   store.load()        --> tokens | nil (no row yet) | nil, err
--   store.save(tokens)  --> true | true, "kept_newer" | nil, err   (commits at once: durable before use)
--   store.lock(timeout) --> true | nil, err      store.unlock()      store.close()
-- Through LuaDBI (Debian: lua-dbi-postgresql). Every value travels as a bound parameter, never inside the
-- SQL text: no token shows in pg_stat_activity or in a logged statement, and the session asks the server
-- not to log bind parameters (log_parameter_max_length = 0) where the role may set it.
-- The lock is a session-level advisory lock on (table, key), waited for up to lock_timeout: it is released
-- by unlock(), or by the server when the connection drops (a killed process never leaves it behind). save() is one
-- INSERT … ON CONFLICT DO UPDATE … WHERE that never replaces a newer chain, locked or not.
local core = require "exactonline.core"
local contract = require "exactonline.store.contract"

local type, tostring, tonumber, error, pcall, require, select = type, tostring, tonumber, error, pcall, require, select
local string_format, math_min, math_huge = string.format, math.min, math.huge

local _M = {}

local function store_error(code, message, hint)
  return core.error { kind = "store", code = code, message = message, hint = hint }
end

-- "exactonline_tokens" or "schema.table" -> a safely quoted identifier (names cannot be bound)
local function quote_ident(name)
  if type(name) ~= "string" or not (name:match("^[%a_][%w_]*$") or name:match("^[%a_][%w_]*%.[%a_][%w_]*$")) then
    error("exactonline.stores.postgres: table must be a plain name or schema.name (letters, digits, _)", 3)
  end
  return '"' .. name:gsub("%.", '"."') .. '"'
end

-- a time as exact text (LuaDBI would send a Lua number with 14 digits), or NULL
local function num(v)
  local n = tonumber(v)
  if not n or n ~= n or n == math_huge or n == -math_huge then return nil end
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

-- Ask the server not to write bind parameters into its log; each setting on its own, since a role may
-- set one (log_parameter_max_length_on_error) and not the other (superuser, or GRANT SET ON PARAMETER).
local QUIET = "DO $$BEGIN" ..
  " BEGIN PERFORM set_config('log_parameter_max_length_on_error', '0', false);" ..
  " EXCEPTION WHEN OTHERS THEN NULL; END;" ..
  " BEGIN PERFORM set_config('log_parameter_max_length', '0', false);" ..
  " EXCEPTION WHEN OTHERS THEN NULL; END; END$$"

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

  local ok, DBI = pcall(require, "DBI")
  if not ok or not pcall(require, "dbd.postgresql") then
    error("exactonline.stores.postgres needs LuaDBI for PostgreSQL (Debian: apt install lua-dbi-postgresql)", 2)
  end

  local conn, ready, held
  local store = { key = key, table = tname }

  -- the server's words, without the DETAIL lines (a refused row is quoted there) and without any value
  -- this store sent; the conninfo (which may hold a password) is never added
  local function db_error(what, msg, ...)
    local text = tostring(msg or "unknown error"):gsub("\n%s*DETAIL:.*$", ""):gsub("%s+$", "")
    for i = 1, select("#", ...) do
      local v = select(i, ...)
      if type(v) == "string" and #v > 0 then
        local from, to = text:find(v, 1, true)
        while from do
          text = text:sub(1, from - 1) .. "***" .. text:sub(to + 1)
          from, to = text:find(v, from + 3, true)
        end
      end
    end
    return store_error("postgres", what .. ": " .. text,
      "check that PostgreSQL is reachable with the conninfo given and that the user may use " .. tname)
  end

  local function drop()
    if conn then pcall(conn.close, conn) end
    conn, ready, held = nil, false, false
  end

  -- prepare, bind, execute: the statement (caller closes it) | nil, err. LuaDBI raises on a dead connection.
  local function run(sql, ...)
    local st, perr = conn:prepare(sql)
    if not st then return nil, perr end
    local pok, done, err = pcall(st.execute, st, ...)
    if pok and done then return st end
    pcall(st.close, st)
    return nil, pok and err or done
  end

  local function first_row(sql, ...) --> row | false | nil, err
    local st, err = run(sql, ...)
    if not st then return nil, err end
    local row = st:fetch(true)
    st:close()
    return row or false
  end

  local function exec(sql, ...) --> affected rows | nil, err
    local st, err = run(sql, ...)
    if not st then return nil, err end
    local n = st:affected()
    st:close()
    return n
  end

  local function connect()
    if conn then return true end
    local cok, c, err = pcall(DBI.Connect, "PostgreSQL", opts.conninfo)
    if not cok then c, err = nil, c end
    if not c then return nil, db_error("cannot connect to PostgreSQL", err) end
    conn = c
    conn:autocommit(true) -- each statement commits at once: a saved pair is durable before it is used
    exec("SELECT set_config('client_min_messages', 'warning', false)") -- no NOTICEs on stderr
    exec(QUIET)
    if not ready then
      local r, e = exec("CREATE TABLE IF NOT EXISTS " .. tbl .. " (" ..
        "key text PRIMARY KEY, access_token text, refresh_token text, expires_at double precision, " ..
        "obtained_at double precision, refresh_obtained_at double precision, " ..
        "updated_at timestamptz NOT NULL DEFAULT now())")
      if not r then
        -- two processes creating it at once: one of them loses the race, the table is there all the same
        local row = first_row("SELECT to_regclass(?)::text AS t", tbl)
        if not (row and row.t) then
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
    if a == nil and b ~= nil and not held and not first_row("SELECT 1 AS one") then
      drop()
      local ok2, err2 = connect()
      if not ok2 then return nil, err2 end
      a, b = fn()
    end
    return a, b
  end

  function store.load()
    return with_conn(function()
      local row, err = first_row("SELECT access_token, refresh_token, expires_at, obtained_at, refresh_obtained_at" ..
        " FROM " .. tbl .. " WHERE key = ?", key)
      if row == nil then return nil, db_error("cannot read tokens", err) end
      local t = from_row(row or nil)
      if t then return t end
      return nil
    end)
  end

  function store.save(tokens, opts)
    if type(tokens) ~= "table" then error("exactonline.stores.postgres: save(tokens) needs a table", 2) end
    local replace = type(opts) == "table" and opts.replace and true or false
    local access, refresh = tokens.access_token, tokens.refresh_token
    if access ~= nil then access = tostring(access) end
    if refresh ~= nil then refresh = tostring(refresh) end
    return with_conn(function()
      -- never an older chain over a newer one: the row is replaced only when ours is at least as new, or
      -- a person just authorized ours (opts.replace)
      local n, err = exec("INSERT INTO " .. tbl ..
        " AS t (key, access_token, refresh_token, expires_at, obtained_at, refresh_obtained_at, updated_at)" ..
        " VALUES (?, ?, ?, ?, ?, ?, now())" ..
        " ON CONFLICT (key) DO UPDATE SET access_token = EXCLUDED.access_token," ..
        " refresh_token = EXCLUDED.refresh_token, expires_at = EXCLUDED.expires_at," ..
        " obtained_at = EXCLUDED.obtained_at, refresh_obtained_at = EXCLUDED.refresh_obtained_at, updated_at = now()" ..
        " WHERE ? OR t.refresh_token IS NULL OR" ..
        " (COALESCE(t.refresh_obtained_at, t.obtained_at, -1), COALESCE(t.obtained_at, -1))" ..
        " <= (COALESCE(EXCLUDED.refresh_obtained_at, -1), COALESCE(EXCLUDED.obtained_at, -1))",
        key, access, refresh, num(tokens.expires_at), num(tokens.obtained_at),
        num(tokens.refresh_obtained_at or tokens.obtained_at), replace)
      if not n then return nil, db_error("cannot save tokens", err, access, refresh) end
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
    if timeout ~= timeout then timeout = default_timeout end
    return with_conn(function()
      -- asked again with short naps until the deadline: a refused pg_advisory_lock under lock_timeout would be a
      -- failed statement, and LuaDBI 0.7.2 leaks the result of every failed statement
      local deadline, nap = core.now() + timeout, 0.005
      while true do
        local row, err = first_row("SELECT pg_try_advisory_lock(hashtext(?), hashtext(?)) AS got", tname, key)
        if row == nil then return nil, db_error("cannot lock", err) end
        if row and row.got == true then
          held = true
          return true
        end
        local left = deadline - core.now()
        if left <= 0 then
          return nil, store_error("lock_timeout", string_format(
            "another process holds the lock on %s key %s (waited %g s)", tname, key, timeout),
            "another process is refreshing the tokens; retry, or look for it in pg_locks (locktype advisory)")
        end
        core.sleep(math_min(nap, left))
        nap = math_min(nap * 2, 0.05)
      end
    end)
  end

  function store.unlock()
    if not held then return true end
    held = false
    if conn and not exec("SELECT pg_advisory_unlock(hashtext(?), hashtext(?))", tname, key) then drop() end
    return true
  end

  -- count(): one row per (key, name) in <table>_counts, the times in an array; each change is one statement,
  -- so the row lock orders concurrent processes and nothing needs the advisory lock
  local ctname = tname .. "_counts"
  local ctbl = quote_ident(ctname)
  local counts_ready
  local KEEP = "ARRAY(SELECT x FROM unnest(c.ats) AS x WHERE x > ?::double precision ORDER BY x)"
  local RETURNS = " RETURNING cardinality(ats) AS n, (SELECT min(x) FROM unnest(ats) AS x) AS oldest"

  --- count(name, now, window, add) --> n, oldest | nil, err: shared by every process and machine
  function store.count(name, now, window, add)
    add = contract.count_args("exactonline.stores.postgres", name, now, window, add)
    local cut = num(now - window)
    return with_conn(function()
      if not counts_ready then
        local r, e = exec("CREATE TABLE IF NOT EXISTS " .. ctbl .. " (key text NOT NULL, name text NOT NULL, " ..
          "ats double precision[] NOT NULL DEFAULT '{}', PRIMARY KEY (key, name))")
        if not r then
          local row = first_row("SELECT to_regclass(?)::text AS t", ctbl)
          if not (row and row.t) then return nil, db_error("cannot create the table " .. ctname, e) end
        end
        counts_ready = true
      end
      local row, err
      if add == 0 then
        row, err = first_row("SELECT count(x) AS n, min(x) AS oldest FROM " .. ctbl ..
          " AS c, unnest(c.ats) AS x WHERE c.key = ? AND c.name = ? AND x > ?::double precision", key, name, cut)
      elseif add == 1 then
        row, err = first_row("INSERT INTO " .. ctbl .. " AS c (key, name, ats)" ..
          " VALUES (?, ?, ARRAY[?::double precision]) ON CONFLICT (key, name) DO UPDATE" ..
          " SET ats = (" .. KEEP .. " || EXCLUDED.ats)[greatest(1," ..
          " cardinality(" .. KEEP .. ") + 2 - " .. contract.MAX_EVENTS .. "):]" .. RETURNS,
          key, name, num(now), cut, cut)
      else
        row, err = first_row("UPDATE " .. ctbl .. " AS c SET ats = COALESCE((SELECT array_agg(x ORDER BY x) FROM" ..
          " (SELECT x FROM unnest(c.ats) AS x WHERE x > ?::double precision ORDER BY x DESC OFFSET 1) AS k), '{}')" ..
          " WHERE c.key = ? AND c.name = ?" .. RETURNS, cut, key, name)
      end
      if row == nil then return nil, db_error("cannot count " .. name, err) end
      if row == false then return 0, nil end -- take back from a name never counted
      local n = tonumber(row.n) or 0
      return n, n > 0 and tonumber(row.oldest) or nil
    end)
  end

  --- Close the connection (releases the lock too).
  function store.close()
    drop()
  end

  return store
end

return _M
