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
    helpers.rm_rf(dir)
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

  local function child(code)
    return proc.script(("local s = require('exactonline.stores.postgres').new{ conninfo = %q, key = %q }\n")
      :format(pg.conninfo, "shared") .. code)
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
    local cmd, done = child([[
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
    local marker = dir .. "/pg-locked"
    local cmd, done = child(([[
      assert(s.lock(5))
      io.open(%q, "w"):close()
      while true do os.execute("sleep 1") end
    ]]):format(marker))
    local pid = proc.spawn(cmd)
    assert.is_true(proc.wait_for(marker, 20), "child never took the lock")
    local ok, err = s.lock(0.3)
    assert.is_nil(ok)
    assert.are.equal("lock_timeout", err.code)
    assert.is_truthy(tostring(err):find("another process holds the lock", 1, true), tostring(err))
    -- saving does not need the lock and still works
    assert.is_true(s.save(pair(30)))
    proc.kill9(pid)
    assert.is_true(s.lock(10))
    -- a second lock() from the same store is a clear error, unlock is safe twice
    local ok2, err2 = s.lock(1)
    assert.is_nil(ok2)
    assert.are.equal("lock_held", err2.code)
    s.unlock()
    s.unlock()
    assert.is_true(new_store { key = "shared" }.lock(1))
    done()
  end)

  it("four processes incrementing under the lock never lose an update", function()
    local s = new_store { key = "counter" }
    assert.is_true(s.save({ access_token = "A", refresh_token = "0", obtained_at = 0, expires_at = 600 }))
    local cmd, done = proc.script(("local s = require('exactonline.stores.postgres').new{ conninfo = %q, key = %q }\n")
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
