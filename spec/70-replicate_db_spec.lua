-- The replica database on its own (no sandbox): real SQLite files and a real PostgreSQL server, real
-- writer processes killed with -9, a real full disk (a tmpfs in a private mount namespace).
local postgres = require "support.postgres"
local proc = require "support.proc"
local helpers = require "helpers"
local cjson = require "cjson"
local db = require "exactonline.replicate.db"
local catalog = require "exactonline.replicate.catalog"

local q = helpers.quote
local ACC = catalog.lookup("crm/Accounts")
local SI = catalog.lookup("salesinvoice/SalesInvoices")
local SIL = catalog.lookup("salesinvoice/SalesInvoiceLines")

local function guid(n)
  return ("00000000-0000-4000-a000-%012d"):format(n)
end

local function account(n, ts, extra)
  local r = { __metadata = { uri = "https://x/api/v1/7/sync/CRM/Accounts(" .. ts .. "L)",
      type = "Exact.Web.Api.Models.Account" },
    ID = guid(n), Code = ("%18d"):format(n), Name = "O'Brien; DROP TABLE crm_accounts; -- " .. n,
    Timestamp = ts, Created = "/Date(1700000000123)/", Blocked = n % 2 == 0, CreditLineSales = n + 0.25,
    Division = 7, AccountManagerHID = n * 1000003, City = cjson.null,
    BankAccounts = { __deferred = { uri = "https://x/BankAccounts" } } }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

-- a child process that runs `code` with `R` = the opened replica
local function child_cmd(target, code)
  -- an error object is printed through tostring: Lua 5.1's assert and lua5.1 print no table
  return proc.script(("local R, oerr = require('exactonline.replicate.db').open(%q)\n"):format(target) ..
    "if not R then io.stderr:write(tostring(oerr), '\\n') os.exit(1) end\n" ..
    "local catalog = require 'exactonline.replicate.catalog'\n" .. code)
end

local function backends()
  local list = { { name = "SQLite" } }
  list[#list + 1] = { name = "PostgreSQL", pg = true }
  return list
end

for _, backend in ipairs(backends()) do
  describe("replica database (" .. backend.name .. ")", function()
    local pg, dir, target, R
    local n = 0

    local function fresh()
      n = n + 1
      if backend.pg then
        local admin = assert(require("DBI").Connect("PostgreSQL", pg.conninfo))
        admin:autocommit(true)
        assert(require("DBI").Do(admin, "CREATE DATABASE r" .. n))
        admin:close()
        target = pg.conninfo:gsub("dbname=%S+", "dbname=r" .. n)
      else
        target = "sqlite:" .. dir .. "/r" .. n .. ".db"
      end
      if R then R:close() end
      R = assert(db.open(target))
      return R
    end

    -- first row of a query, through a separate connection (what a reader sees)
    local function query(sql, ...)
      local r = assert(db.open(target))
      local st = assert(r:exec(sql, ...))
      local rows = {}
      for row in st:rows(true) do rows[#rows + 1] = row end
      r:close()
      return rows
    end

    setup(function()
      dir = helpers.tmpdir()
      if backend.pg then pg = postgres.start() end
    end)

    teardown(function()
      if R then R:close() end
      if pg then pg:stop() end
    end)

    it("makes one table per entity with Exact's fields in lower case, typed per Edm type", function()
      fresh()
      local res = assert(R:apply_page(7, ACC, { account(1, 101) }, 101))
      assert.are.same({ inserted = 1, updated = 0 }, res)
      local types = {}
      if backend.pg then
        for _, r in ipairs(query("SELECT column_name AS c, data_type AS t FROM information_schema.columns WHERE "
            .. "table_name = 'crm_accounts'")) do types[r.c] = r.t end
        assert.are.same({ division = "bigint", id = "uuid", timestamp = "bigint", created = "timestamp with time zone",
          blocked = "boolean", creditlinesales = "double precision", code = "text", name = "text",
          accountmanagerhid = "bigint" }, { division = types.division, id = types.id, timestamp = types.timestamp,
          created = types.created, blocked = types.blocked, creditlinesales = types.creditlinesales, code = types.code,
          name = types.name, accountmanagerhid = types.accountmanagerhid })
        local row = query("SELECT CAST(created AS text) AS created, blocked, CAST(creditlinesales AS text) AS c, code, "
          .. "name, CAST(\"timestamp\" AS text) AS ts FROM crm_accounts")[1]
        assert.are.equal("2023-11-14 22:13:20.123+00", row.created)
        assert.are.equal(false, row.blocked)
        assert.are.equal("1.25", row.c)
        assert.are.equal("101", row.ts)
        assert.are.equal(("%18d"):format(1), row.code)
      else
        for _, r in ipairs(query("SELECT name AS c, type AS t FROM pragma_table_info('crm_accounts')")) do
          types[r.c] = r.t
        end
        assert.are.same({ "INTEGER", "TEXT", "INTEGER", "DATETIME", "BOOLEAN", "REAL", "TEXT" }, { types.division,
          types.id, types.timestamp, types.created, types.blocked, types.creditlinesales, types.code })
        local row = query("SELECT created, typeof(created) AS tc, blocked, typeof(blocked) AS tb, "
          .. "creditlinesales AS c, "
          .. "typeof(creditlinesales) AS tcl, code, name, CAST(accountmanagerhid AS TEXT) AS hid FROM crm_accounts")[1]
        assert.are.equal("2023-11-14T22:13:20.123Z", row.created)
        assert.are.same({ "text", "integer", "real" }, { row.tc, row.tb, row.tcl })
        assert.are.equal(0, row.blocked)
        assert.are.equal(1.25, row.c)
        assert.are.equal("1000003", row.hid)
      end
      assert.are.equal("O'Brien; DROP TABLE crm_accounts; -- 1", query("SELECT name FROM crm_accounts")[1].name)
      assert.is_nil(types.__metadata)
      assert.is_nil(types.bankaccounts) -- a deferred navigation property is no value
      assert.is_not_nil(types.city)     -- a catalog field that came as null still has its column
    end)

    it("keeps the cursor with the rows: one transaction per page, nothing of a failed page stays", function()
      fresh()
      assert(R:apply_page(7, ACC, { account(1, 101), account(2, 102) }, 102))
      assert.are.equal(102, R:state(7, "crm/Accounts").last_timestamp)
      -- a page whose second row has no key fails as a whole: row 3 is not written, the cursor stays
      local bad = account(4, 104)
      bad.ID = nil
      local ok, err = R:apply_page(7, ACC, { account(3, 103), bad }, 104)
      assert.is_nil(ok)
      assert.are.equal("database", err.kind)
      assert.matches("has no ID", err.message)
      assert.are.equal(102, R:state(7, "crm/Accounts").last_timestamp)
      assert.are.equal(2, R:count(ACC, 7))
      -- and the replica goes on working after the rollback
      assert.are.same({ inserted = 1, updated = 0 }, R:apply_page(7, ACC, { account(3, 103) }, 103))
    end)

    it("updates by key, keeps the last version of a key repeated in a page, never an older one over a newer", function()
      fresh()
      assert(R:apply_page(7, ACC, { account(1, 101), account(2, 102) }, 102))
      local res = assert(R:apply_page(7, ACC,
        { account(1, 103, { Name = "first" }), account(1, 104, { Name = "last" }) }, 104))
      assert.are.same({ inserted = 0, updated = 2 }, res)
      -- an older version (a rerun overlapping a newer one) does not replace it
      res = assert(R:apply_page(7, ACC, { account(1, 103, { Name = "first" }) }, 104))
      assert.are.same({ inserted = 0, updated = 0 }, res)
      local rows = query("SELECT name, CAST(\"timestamp\" AS TEXT) AS ts FROM crm_accounts "
        .. "WHERE name IN ('first', 'last')")
      assert.are.same({ { name = "last", ts = "104" } }, rows)
      -- the same key in another division is another row
      assert.are.same({ inserted = 1, updated = 0 }, R:apply_page(8, ACC, { account(1, 5) }, 5))
      assert.are.equal(2, R:count(ACC, 7))
      assert.are.equal(1, R:count(ACC, 8))
      assert.are.equal(104, R:state(7, "crm/Accounts").last_timestamp)
      assert.are.equal(5, R:state(8, "crm/Accounts").last_timestamp)
    end)

    it("adds a column for a field the catalog does not know, typed from its value, without failing", function()
      fresh()
      assert(R:apply_page(7, ACC, { account(1, 101, { BrandNewText = "hello", BrandNewFlag = true, BrandNewAmount = 2.5,
        BrandNewDate = "/Date(1700000000000)/", BrandNewNull = cjson.null, ["bad name!"] = "skipped" }) }, 101))
      assert(R:apply_page(7, ACC, { account(2, 102, { BrandNewText = "again" }) }, 102))
      local types = {}
      if backend.pg then
        for _, r in ipairs(query("SELECT column_name AS c, data_type AS t FROM information_schema.columns WHERE "
            .. "table_name = 'crm_accounts' AND column_name LIKE 'brandnew%'")) do types[r.c] = r.t end
        assert.are.same({ brandnewtext = "text", brandnewflag = "boolean", brandnewamount = "double precision",
          brandnewdate = "timestamp with time zone", brandnewnull = "text" }, types)
      else
        for _, r in ipairs(query("SELECT name AS c, type AS t FROM pragma_table_info('crm_accounts') WHERE name LIKE "
            .. "'brandnew%'")) do types[r.c] = r.t end
        assert.are.same({ brandnewtext = "TEXT", brandnewflag = "BOOLEAN", brandnewamount = "REAL",
          brandnewdate = "DATETIME", brandnewnull = "TEXT" }, types)
      end
      local rows = query("SELECT brandnewtext FROM crm_accounts ORDER BY brandnewtext")
      assert.are.same({ { brandnewtext = "again" }, { brandnewtext = "hello" } }, rows)
      -- a new replica object (a later run) reads the added columns back and writes them
      R:close()
      R = assert(db.open(target))
      assert.are.same({ inserted = 0, updated = 1 }, R:apply_page(7, ACC, { account(2, 103, { BrandNewFlag = false }) },
        103))
    end)

    it("deletes a row only when its stored Timestamp is not newer than the deletion's, cursor in the same commit",
      function()
      fresh()
      assert(R:apply_page(7, ACC, { account(1, 101), account(2, 150), account(3, 103) }, 150))
      local res = assert(R:apply_deleted(7, {
        { EntityType = 2, EntityKey = guid(1), Timestamp = 120, ID = guid(91) },     -- older row: deleted
        { EntityType = 2, EntityKey = guid(2), Timestamp = 121, ID = guid(92) },     -- stored is newer: kept
        { EntityType = 2, EntityKey = guid(9), Timestamp = 122, ID = guid(93) },     -- never replicated: nothing
        { EntityType = 1, EntityKey = guid(3), Timestamp = 123, ID = guid(94) },     -- a table not replicated
        { EntityType = 4242, EntityKey = guid(3), Timestamp = 124, ID = guid(95) },  -- unknown type: ignored
      }, 124, catalog.by_entity_type))
      assert.are.equal(1, res.deleted)
      assert.are.same({ ["crm/Accounts"] = 1 }, res.by_table)
      assert.are.equal(2, R:count(ACC, 7))
      assert.are.equal(124, R:state(7, "sync/Deleted").last_timestamp)
      -- a deleted invoice takes all its lines (the sync rows of sales invoices are lines)
      local inv = guid(500)
      assert(R:apply_page(7, SI, {
        { ID = guid(501), InvoiceID = inv, LineNumber = 0, Timestamp = 200 },
        { ID = guid(502), InvoiceID = inv, LineNumber = 1, Timestamp = 200 },
        { ID = guid(503), InvoiceID = guid(600), LineNumber = 1, Timestamp = 201 },
      }, 201))
      res = assert(R:apply_deleted(7, { { EntityType = 13, EntityKey = inv, Timestamp = 300 } }, 300,
        catalog.by_entity_type))
      assert.are.equal(2, res.deleted)
      assert.are.equal(1, R:count(SI, 7))
    end)

    it("swaps a full read in at once: readers see the old rows until the last page commits", function()
      fresh()
      local function line(i, q2)
        return { ID = guid(i), InvoiceID = guid(1), Quantity = q2, Description = "line " .. i }
      end
      assert.is_false(R:begin_full(7, SIL, true))
      assert(R:stage_page(7, SIL, { line(1, 1), line(2, 1) }, "https://x/next1"))
      assert.are.same({ inserted = 2, updated = 0, deleted = 0 }, R:finish_full(7, SIL))
      assert.are.equal(2, R:count(SIL, 7))
      -- second full read: line 1 changed, line 2 gone, line 3 new; staged over two pages
      assert.is_false(R:begin_full(7, SIL, true))
      assert(R:stage_page(7, SIL, { line(1, 5) }, "https://x/next1"))
      -- a reader still sees the previous full read: two lines, line 1 unchanged
      local seen = query("SELECT CAST(count(*) AS TEXT) AS n, CAST(max(quantity) AS TEXT) AS q FROM "
        .. "salesinvoice_salesinvoicelines WHERE division = 7")
      assert.are.equal("2", seen[1].n)
      assert.are.equal("1", (seen[1].q:gsub("%.0$", "")))
      -- a run that stops here resumes from the saved link
      R:close()
      R = assert(db.open(target))
      assert.are.equal("https://x/next1", R:begin_full(7, SIL, true))
      assert(R:stage_page(7, SIL, { line(3, 1) }, nil))
      assert.are.same({ inserted = 1, updated = 1, deleted = 1 }, R:finish_full(7, SIL))
      local rows = query("SELECT description, CAST(quantity AS TEXT) AS q FROM salesinvoice_salesinvoicelines "
        .. "ORDER BY description")
      assert.are.same({ "line 1", "line 3" }, { rows[1].description, rows[2].description })
      assert.are.equal("5", (rows[1].q:gsub("%.0$", "")))
      assert.is_nil(R:state(7, "salesinvoice/SalesInvoiceLines").next_link)
    end)

    it("names a schema changed by hand", function()
      fresh()
      assert(R:apply_page(7, ACC, { account(1, 101) }, 101))
      R:close()
      local admin = assert(db.open(target))
      if backend.pg then
        assert(admin:exec("ALTER TABLE crm_accounts ALTER COLUMN creditlinesales TYPE text"))
      else
        -- SQLite cannot change a column's type: a user recreates the table
        assert(admin:exec("ALTER TABLE crm_accounts RENAME COLUMN creditlinesales TO old_credit"))
        assert(admin:exec("ALTER TABLE crm_accounts ADD COLUMN creditlinesales TEXT"))
      end
      admin:close()
      R = assert(db.open(target))
      local ok, err = R:apply_page(7, ACC, { account(2, 102) }, 102)
      assert.is_nil(ok)
      assert.are.equal("schema_changed", err.code)
      assert.matches("crm_accounts.creditlinesales", err.message, 1, true)
      assert.matches("changed by hand", tostring(err))
      assert.are.equal(101, R:state(7, "crm/Accounts").last_timestamp)
      -- a table without the primary key
      R:close()
      admin = assert(db.open(target))
      assert(admin:exec("DROP TABLE crm_accounts"))
      assert(admin:exec("CREATE TABLE crm_accounts (division bigint, id text)"))
      admin:close()
      R = assert(db.open(target))
      ok, err = R:apply_page(7, ACC, { account(2, 102) }, 102)
      assert.is_nil(ok)
      assert.are.equal("schema_changed", err.code)
      assert.matches("primary key", err.message)
    end)

    it("serialises two runs per (division, entity); a killed holder's lock goes with it", function()
      fresh()
      assert(R:ensure_state())
      local unlock = assert(R:lock(7, "crm/Accounts"))
      local other = assert(db.open(target))
      assert.is_false(other:lock(7, "crm/Accounts"))
      local u2 = assert(other:lock(8, "crm/Accounts")) -- another division is another lock
      local u3 = assert(other:lock(7, "crm/Contacts")) -- and another entity
      u2()
      u3()
      unlock()
      local u4 = assert(other:lock(7, "crm/Accounts"))
      u4()
      other:close()
      -- a process that holds the lock and is killed -9 leaves nothing held
      local flag = dir .. "/held" .. n
      local cmd, done = child_cmd(target, ("assert(R:lock(7, 'crm/Accounts'))\nio.open(%q, 'w'):close()\n"
        .. "while true do os.execute('sleep 1') end"):format(flag))
      local pid = proc.spawn(helpers.lua_env() .. " " .. cmd)
      assert.is_true(proc.wait_for(flag, 30))
      assert.is_false(R:lock(7, "crm/Accounts"))
      proc.kill9(pid)
      local got
      for _ = 1, 200 do
        got = R:lock(7, "crm/Accounts")
        if got then break end
        os.execute("sleep 0.05")
      end
      done()
      assert.is_function(got)
      got()
    end)

    it("survives kill -9 of a writer at random moments: the rerun ends equal, no duplicate, cursor = data", function()
      fresh()
      assert(R:apply_page(7, ACC, {}, 0)) -- the table and the cursor exist from the start
      -- a deterministic source: 40 pages of 250 rows, Timestamps 1..10000, keys 1..4000 updated again
      local writer = [[
local ACC = catalog.lookup("crm/Accounts")
local total = tonumber(arg and arg[1]) or 10000
local st = assert(R:state(7, "crm/Accounts"))
local from = st and st.last_timestamp or 0
while from < total do
  local rows = {}
  for ts = from + 1, math.min(from + 250, total) do
    local k = (ts - 1) % 4000 + 1
    rows[#rows + 1] = { ID = ("00000000-0000-4000-a000-%012d"):format(k), Timestamp = ts, Name = "v" .. ts,
      Code = tostring(k), Created = "/Date(" .. (1700000000000 + ts) .. ")/", CreditLineSales = ts / 4 }
  end
  from = rows[#rows].Timestamp
  assert(R:apply_page(7, ACC, rows, from))
end
R:close()
]]
      local cmd, done = child_cmd(target, writer)
      math.randomseed(os.time())
      local kills = tonumber(os.getenv("EXACTONLINE_REPLICATE_KILLS") or "") or 8
      for _ = 1, kills do
        local pid = proc.spawn(helpers.lua_env() .. " " .. cmd)
        os.execute(("sleep %.3f"):format(0.05 + math.random() * 0.4))
        proc.kill9(pid)
        os.execute("sleep 0.05")
        -- whatever moment it died at, the rows and the cursor agree
        local r = query("SELECT CAST(max(\"timestamp\") AS TEXT) AS m, CAST(count(*) AS TEXT) AS n FROM crm_accounts")
        local cur = query("SELECT CAST(last_timestamp AS TEXT) AS ts FROM exactonline_sync_state WHERE entity = "
          .. "'crm/Accounts'")
        assert.are.equal(tonumber(cur[1].ts), tonumber(r[1].m) or 0)
      end
      local ok, out = helpers.sh(helpers.lua_env() .. " " .. cmd)
      done()
      assert.is_true(ok, out)
      local r = query("SELECT CAST(count(*) AS TEXT) AS n, CAST(count(DISTINCT id) AS TEXT) AS d, "
        .. "CAST(min(\"timestamp\") AS TEXT) AS lo, CAST(max(\"timestamp\") AS TEXT) AS hi FROM crm_accounts")[1]
      assert.are.same({ n = "4000", d = "4000", lo = "6001", hi = "10000" }, r)
      local wrong = query("SELECT count(*) AS n FROM crm_accounts WHERE name <> 'v' || CAST(\"timestamp\" AS TEXT)")
      assert.are.equal(0, tonumber(wrong[1].n))
      assert.are.equal(10000, R:state(7, "crm/Accounts").last_timestamp)
    end)

    it("says clearly when the database cannot be opened", function()
      local bad, err
      if backend.pg then
        bad, err = db.open("postgresql://nobody:s3cret@/nosuchdb?host=" .. pg.dir)
        assert.is_nil(bad)
        assert.are.equal("cannot_open", err.code)
        assert.not_matches("s3cret", tostring(err))
        assert.matches("nosuchdb", tostring(err))
      else
        bad, err = db.open("sqlite:" .. dir .. "/no/such/folder/x.db")
        assert.is_nil(bad)
        assert.are.equal("cannot_open", err.code)
        assert.matches("no/such/folder/x.db", tostring(err), 1, true)
        helpers.write(dir .. "/junk.db", ("this is not an sqlite file\n"):rep(200))
        bad, err = db.open("sqlite:" .. dir .. "/junk.db")
        if bad then
          local ok
          ok, err = bad:apply_page(7, ACC, { account(1, 1) }, 1)
          assert.is_nil(ok)
          bad:close()
        end
        assert.are.equal("not_a_database", err.code)
      end
      local ok, kerr = db.kind("exact.txt")
      assert.is_nil(ok)
      assert.matches("cannot tell which database", kerr.message)
    end)
  end)
end

describe("replica database (SQLite) failures", function()
  local dir
  setup(function() dir = helpers.tmpdir() end)

  it("reports a locked database (another program's open write transaction) by name, after its busy timeout",
    function()
    local path = dir .. "/locked.db"
    local R = assert(db.open("sqlite:" .. path, { busy_timeout = 0.2 }))
    assert(R:apply_page(7, ACC, { account(1, 1) }, 1))
    local holder = assert(db.open("sqlite:" .. path))
    assert(holder:begin())
    assert(holder:exec("DELETE FROM crm_accounts"))
    local ok, err = R:apply_page(7, ACC, { account(2, 2) }, 2)
    assert.is_nil(ok)
    assert.are.equal("locked", err.code)
    assert.matches(path, tostring(err), 1, true)
    holder:rollback()
    holder:close()
    assert(R:apply_page(7, ACC, { account(2, 2) }, 2))
    assert.are.equal(2, R:count(ACC, 7))
    R:close()
  end)

  it("reports a read-only database file", function()
    local path = dir .. "/ro.db"
    local R = assert(db.open("sqlite:" .. path))
    assert(R:apply_page(7, ACC, { account(1, 1) }, 1))
    R:close()
    helpers.sh("chmod 0444 " .. q(path) .. " && chmod 0555 " .. q(dir))
    local cmd, done = child_cmd("sqlite:" .. path, [[
local ok, err = R:apply_page(7, catalog.lookup("crm/Accounts"), { { ID = "00000000-0000-4000-a000-000000000002",
  Timestamp = 2 } }, 2)
print(ok, err and err.code, err)
]])
    local _, out = helpers.sh(helpers.lua_env() .. " " .. proc.without_root_powers() .. cmd)
    done()
    helpers.sh("chmod 0755 " .. q(dir) .. " && chmod 0644 " .. q(path))
    assert.matches("read_only", out)
    assert.matches("not writable", out)
  end)

  it("reports a full disk and keeps every page committed before it (a real ENOSPC on a small tmpfs)", function()
    if not helpers.sh("unshare -rm true") then
      pending("no user and mount namespaces here (unshare -rm)")
      return
    end
    local mnt = dir .. "/small"
    helpers.sh("mkdir -p " .. q(mnt))
    local cmd, done = proc.script(([[
local R = assert(require('exactonline.replicate.db').open(%q))
local ACC = require('exactonline.replicate.catalog').lookup("crm/Accounts")
local ts, err = 0, nil
for page = 1, 100000 do
  local rows = {}
  for i = 1, 200 do
    ts = ts + 1
    rows[i] = { ID = ("00000000-0000-4000-a000-%%012d"):format(ts), Timestamp = ts, Name = ("x"):rep(300) }
  end
  local ok
  ok, err = R:apply_page(7, ACC, rows, ts)
  if not ok then break end
end
print("code=" .. tostring(err and err.code))
print(tostring(err))
R:close()
local C = assert(require('exactonline.replicate.db').open(%q))
local st = C:state(7, "crm/Accounts")
print("cursor=" .. tostring(st and st.last_timestamp), "rows=" .. tostring(C:count(ACC, 7)))
]]):format("sqlite:" .. mnt .. "/full.db", "sqlite:" .. mnt .. "/full.db"))
    local ok, out = helpers.sh("unshare -rm sh -c " .. q("mount -t tmpfs -o size=2m tmpfs " .. q(mnt) .. " && " ..
      helpers.lua_env() .. " " .. cmd))
    done()
    assert.is_true(ok, out)
    assert.matches("code=disk_full", out)
    assert.matches("free disk space", out)
    local cursor, rows = out:match("cursor=(%d+)%s+rows=(%d+)")
    assert.is_truthy(cursor, out)
    assert.is_true(tonumber(cursor) > 0)
    assert.are.equal(cursor, rows) -- every committed page is there, with its cursor
  end)
end)
