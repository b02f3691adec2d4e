-- The PostgreSQL token store against a real server (initdb + pg_ctl in a temp folder, unix socket only),
-- with real processes sharing one row.
local exactonline = require "exactonline"
local postgres = require "support.postgres"
local helpers = require "helpers"
local proc = require "support.proc"

local function pair(n)
  return { access_token = "A" .. n, refresh_token = "R" .. n, expires_at = 1000 + n + 600,
    obtained_at = 1000 + n, refresh_obtained_at = 1000 + n }
end

describe("postgres store", function()
  local pg, stores, dir

  setup(function()
    pg = postgres.start()
    dir = helpers.tmpdir()
  end)

  teardown(function()
    for _, s in ipairs(stores or {}) do s.close() end
    if pg then pg:stop() end
  end)

  local n = 0
  local function new_store(opts)
    n = n + 1
    opts = opts or {}
    local s = exactonline.stores.postgres {
      conninfo = pg.conninfo, table = opts.table or "exactonline_tokens", key = opts.key or ("k" .. n),
      lock_timeout = opts.lock_timeout,
    }
    stores = stores or {}
    stores[#stores + 1] = s
    return s
  end

  -- Lua for a child process: `s`, a store on the "shared" key
  local function shared_store_code()
    return ("local s = require('exactonline.store.postgres').new{ conninfo = %q, key = %q }\n")
      :format(pg.conninfo, "shared")
  end

  it("creates its table, loads nothing for a new key, saves and loads a pair", function()
    local s = new_store { table = "public.tokens_test" }
    local t, err = s.load()
    assert.is_nil(t)
    assert.is_nil(err)
    assert.is_true(s.save(pair(1)))
    assert.are.same(pair(1), s.load())
    -- one row per key: another key is separate
    local other = new_store { table = "public.tokens_test" }
    assert.is_nil(other.load())
    assert.is_true(other.save(pair(2)))
    assert.are.same(pair(1), s.load())
    assert.are.same(pair(2), other.load())
  end)

  it("quotes keys and refuses unsafe table names", function()
    local s = new_store { key = "it's; DROP TABLE exactonline_tokens; --" }
    local t = pair(3)
    t.refresh_token = "R'3\\\""
    assert.is_true(s.save(t))
    assert.are.same(t, s.load())
    assert.has_error(function()
      exactonline.stores.postgres { conninfo = pg.conninfo, table = 'x"; DROP TABLE y; --' }
    end)
  end)

  it("never saves an older chain over a newer one", function()
    local s = new_store()
    assert.is_true(s.save(pair(5)))
    local ok, why = s.save(pair(4))
    assert.is_true(ok)
    assert.are.equal("kept_newer", why)
    assert.are.same(pair(5), s.load())
    assert.is_true(s.save(pair(6)))
    assert.are.same(pair(6), s.load())
  end)

  it("a connection error is a store error without the conninfo", function()
    local s = exactonline.stores.postgres { conninfo = "host=" .. dir .. " port=1 user=secretuser password=hunter2" }
    local t, err = s.load()
    assert.is_nil(t)
    assert.are.equal("store", err.kind)
    assert.is_falsy(tostring(err):find("hunter2", 1, true))
  end)

  it("shares one row between processes: lock, save, load, never older over newer", function()
    local s = new_store { key = "shared" }
    assert.is_true(s.save(pair(10)))
    -- a child loads what we saved, saves a newer pair and tries to save an older one
    local cmd, done = proc.script(shared_store_code() .. [[
      local t = assert(s.load())
      assert(s.lock(5))
      assert(s.save({ access_token = "A20", refresh_token = "R20", expires_at = 1620, obtained_at = 1020,
                      refresh_obtained_at = 1020 }))
      s.unlock()
      local ok, why = s.save({ access_token = "A15", refresh_token = "R15", expires_at = 1615, obtained_at = 1015,
                               refresh_obtained_at = 1015 })
      io.write(t.refresh_token, " ", tostring(ok), " ", tostring(why))
    ]])
    local ok, out = helpers.sh(cmd)
    done()
    assert.is_true(ok, out)
    assert.are.equal("R10 true kept_newer", out)
    assert.are.same(pair(20), s.load())
    -- our stale copy is refused too
    local ok2, why2 = s.save(pair(11))
    assert.is_true(ok2)
    assert.are.equal("kept_newer", why2)
    assert.are.same(pair(20), s.load())
  end)

  it("lock: a second process times out with a clear error; kill -9 of the holder releases it", function()
    local s = new_store { key = "shared" }
    local holder = proc.lock_holder(shared_store_code())
    local ok, err = s.lock(0.3)
    assert.is_nil(ok)
    assert.are.equal("lock_timeout", err.code)
    assert.is_truthy(tostring(err):find("another process holds the lock", 1, true), tostring(err))
    -- saving does not need the lock and still works
    assert.is_true(s.save(pair(30)))
    holder.kill9()
    assert.is_true(s.lock(10))
    -- a second lock() from the same store is a clear error, unlock is safe twice
    local ok2, err2 = s.lock(1)
    assert.is_nil(ok2)
    assert.are.equal("lock_held", err2.code)
    s.unlock()
    s.unlock()
    assert.is_true(new_store { key = "shared" }.lock(1))
  end)

  it("four processes incrementing under the lock never lose an update", function()
    local s = new_store { key = "counter" }
    assert.is_true(s.save({ access_token = "A", refresh_token = "0", obtained_at = 0, expires_at = 600 }))
    local cmd, done = proc.script(("local s = require('exactonline.store.postgres').new{ conninfo = %q, key = %q }\n")
      :format(pg.conninfo, "counter") .. [[
      for _ = 1, 25 do
        assert(s.lock(30))
        local t = assert(s.load())
        local v = tonumber(t.refresh_token) + 1
        assert(s.save({ access_token = "A", refresh_token = tostring(v), obtained_at = v, expires_at = v + 600 }))
        s.unlock()
      end
    ]])
    local ok, out = helpers.sh(cmd .. " & " .. cmd .. " & " .. cmd .. " & " .. cmd .. " & wait")
    done()
    assert.is_true(ok, out)
    assert.are.equal("", out)
    assert.are.equal("100", s.load().refresh_token)
  end)
end)

describe("postgres store: tokens travel only as bound parameters (issue 17)", function()
  local DBI = require "DBI"
  local pg, admin, logged, stores

  local ACCESS, REFRESH = "ACCESS-tok-7f1e0c2a", "REFRESH-tok-9c2d41be"
  local function secret_pair(n)
    return { access_token = ACCESS .. n, refresh_token = REFRESH .. n, expires_at = 2000 + n + 600,
      obtained_at = 2000 + n, refresh_obtained_at = 2000 + n }
  end

  local function connect(conninfo)
    local c = assert(DBI.Connect("PostgreSQL", conninfo))
    c:autocommit(true)
    return c
  end

  -- run SQL on an admin connection: all rows (named columns)
  local function sql(c, text, ...)
    local st = assert(c:prepare(text))
    local ok, err = st:execute(...)
    assert(ok, err)
    local rows = {}
    for row in st:rows(true) do rows[#rows + 1] = row end
    st:close()
    return rows
  end

  local function no_secret(text, where)
    for _, s in ipairs { ACCESS, REFRESH } do
      assert.is_falsy(text:find(s, 1, true), "a token in " .. where .. ":\n" .. text)
    end
  end

  local function new_store(conninfo, key, tname)
    local s = exactonline.stores.postgres { conninfo = conninfo, key = key, table = tname }
    stores[#stores + 1] = s
    return s
  end

  setup(function()
    stores = {}
    pg = postgres.start()
    admin = connect(pg.conninfo)
    -- every session in this database writes every statement it runs into the server log
    sql(admin, "CREATE DATABASE logged")
    sql(admin, "ALTER DATABASE logged SET log_statement = 'all'")
    logged = pg.conninfo:gsub("dbname=postgres", "dbname=logged")
  end)

  teardown(function()
    for _, s in ipairs(stores or {}) do s.close() end
    if admin then admin:close() end
    if pg then pg:stop() end
  end)

  it("shows no token in pg_stat_activity while a save runs, nor in the log, also for a failed save", function()
    local s = new_store(logged, "watched")
    assert.is_true(s.save(secret_pair(1)))
    assert.are.same(secret_pair(1), s.load())
    -- hold the table so a child's save waits inside the server, where pg_stat_activity shows its text
    local lc = assert(DBI.Connect("PostgreSQL", logged))
    local watch = connect(pg.conninfo)
    sql(lc, "LOCK TABLE exactonline_tokens IN EXCLUSIVE MODE") -- LuaDBI starts a transaction: held until rollback
    local cmd, done = proc.script(("local s = require('exactonline.store.postgres').new{ conninfo = %q, key = %q }\n")
      :format(logged, "watched") .. ([[
      assert(s.save({ access_token = %q, refresh_token = %q, obtained_at = 2005, expires_at = 2605,
                      refresh_obtained_at = 2005 }))
    ]]):format(ACCESS .. 5, REFRESH .. 5))
    local pid = proc.spawn(cmd)
    local seen
    for _ = 1, 2000 do
      local rows = sql(watch,
        "SELECT query FROM pg_stat_activity WHERE datname = 'logged' AND wait_event_type = 'Lock'")
      if rows[1] then seen = rows[1].query break end
      helpers.sh("sleep 0.01")
    end
    lc:rollback()
    lc:close()
    assert.is_truthy(seen, "the child's save never waited on the table lock")
    assert.matches("INSERT INTO", seen, 1, true)
    assert.matches("VALUES ($1, $2, $3", seen, 1, true)
    no_secret(seen, "pg_stat_activity")
    for _ = 1, 2000 do
      if not proc.alive(pid) then break end
      helpers.sh("sleep 0.01")
    end
    done()
    assert.are.same(secret_pair(5), s.load())
    for _, row in ipairs(sql(watch, "SELECT query FROM pg_stat_activity")) do
      no_secret(tostring(row.query), "pg_stat_activity")
    end
    watch:close()

    -- a save the server refuses: the statement is written to the log with its error
    local lg = connect(logged)
    sql(lg, "CREATE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS " ..
      "$$BEGIN RAISE EXCEPTION 'tokens are read-only today'; END$$")
    sql(lg, "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON exactonline_tokens " ..
      "FOR EACH ROW EXECUTE FUNCTION refuse_writes()")
    lg:close()
    local ok, err = s.save(secret_pair(9))
    assert.is_nil(ok)
    assert.are.equal("store", err.kind)
    assert.matches("read-only today", tostring(err), 1, true)
    no_secret(tostring(err), "the store error")

    local log = assert(helpers.read(pg.dir .. "/log"))
    assert.matches("INSERT INTO", log, 1, true)              -- statements were logged ...
    assert.matches("tokens are read-only today", log, 1, true) -- ... and so was the failure
    no_secret(log, "the server log (log_statement = all)")
  end)

  it("a role allowed to SET log_parameter_max_length keeps its parameters out of the log too", function()
    sql(admin, "CREATE ROLE app LOGIN")
    sql(admin, "GRANT CREATE, USAGE ON SCHEMA public TO app")
    local lg = connect(logged)
    sql(lg, "GRANT CREATE, USAGE ON SCHEMA public TO app")
    lg:close()
    sql(admin, "GRANT SET ON PARAMETER log_parameter_max_length TO app")
    local s = new_store(logged:gsub("user=postgres", "user=app"), "as-app", "app_tokens")
    assert.is_true(s.save(secret_pair(20)))
    assert.are.same(secret_pair(20), s.load())
    assert.is_true(s.lock(5))
    s.unlock()
    local log = assert(helpers.read(pg.dir .. "/log"))
    assert.matches("app_tokens", log, 1, true)
    no_secret(log, "the server log (log_statement = all)")
  end)

  it("a row the server refuses is not quoted back in the store error", function()
    local s = new_store(pg.conninfo, "checked", "checked_tokens")
    assert.is_true(s.save(secret_pair(30)))
    -- PostgreSQL quotes a row that breaks a constraint ("Failing row contains (…)") in its DETAIL
    sql(admin, "ALTER TABLE checked_tokens ADD CONSTRAINT short CHECK (length(refresh_token) < 5) NOT VALID")
    local ok, err = s.save(secret_pair(31))
    assert.is_nil(ok)
    assert.matches("short", tostring(err), 1, true)
    no_secret(tostring(err), "the store error")
  end)
end)
