-- exactonline.replicate against the sandbox's whole administrations (HTTPS), into real SQLite files and a
-- real PostgreSQL server: the replica equals the sandbox's data row for row and type for type, after a
-- first run and after random changes (with the fewest calls), after kill -9 at random moments, after a
-- spent daily budget; many divisions at once take hardly longer than one.
local helpers = require "helpers"
local exactonline = require "exactonline"
local postgres = require "support.postgres"
local proc = require "support.proc"
local cli = require "support.cli_run"
local catalog = require "exactonline.replicate.catalog"
local dbmod = require "exactonline.replicate.db"
local sbcat = require "exactonline.sandbox.catalog"
local core = require "exactonline.core"
local cjson = require "cjson"

-- Under valgrind (make memcheck) or ASan (make asan) this process runs many times slower: the same
-- properties are proven on smaller administrations, with fewer kills, and the timing ratio (which compares
-- waits with CPU work) is left to the plain runs.
local INSTRUMENTED = os.getenv("EXACTONLINE_MEMCHECK") or os.getenv("EXACTONLINE_ASAN_CPATH")
local KILLS = tonumber(os.getenv("EXACTONLINE_REPLICATE_KILLS") or "") or (INSTRUMENTED and 6 or 30)
local SMALL = {}
for _, name in ipairs(sbcat.sizable()) do SMALL[name] = 20 end

-- the sandbox's entity for one of ours, and which of its views our table holds
local function sandbox_entity(e)
  local hit = sbcat.by_path[(e.sync or e.bulk or e.path):lower()]
  return hit.entity, e.sync and "sync" or "regular"
end

local SQLITE_TYPE = { Guid = "TEXT", DateTime = "DATETIME", Double = "REAL", Decimal = "REAL", Int16 = "INTEGER",
  Int32 = "INTEGER", Int64 = "INTEGER", Byte = "INTEGER", Boolean = "BOOLEAN", String = "TEXT", Binary = "TEXT" }
local PG_TYPE = { Guid = "uuid", DateTime = "timestamp with time zone", Double = "double precision",
  Decimal = "double precision", Int16 = "bigint", Int32 = "bigint", Int64 = "bigint", Byte = "bigint",
  Boolean = "boolean", String = "text", Binary = "text" }

local function ms_of(v)
  return tonumber(tostring(v):match("^/Date%((%-?%d+)"))
end

-- what a column holds for Exact's value v of Edm type t, as read back below
local function expect(v, t, pg)
  if v == nil or v == cjson.null then return nil end
  if t == "Guid" then return tostring(v):lower() end
  if t == "DateTime" then
    local ms = ms_of(v)
    if not ms then return v end
    local s = math.floor(ms / 1000)
    if pg then
      local frac = ms - s * 1000
      local f = frac == 0 and "" or ("." .. ("%03d"):format(frac):gsub("0+$", ""))
      return os.date("!%Y-%m-%d %H:%M:%S", s) .. f .. "+00"
    end
    return os.date("!%Y-%m-%dT%H:%M:%S", s) .. (".%03dZ"):format(ms - s * 1000)
  end
  if t == "Boolean" then
    if pg then return v == true end
    return v == true and 1 or 0
  end
  if t == "Int16" or t == "Int32" or t == "Int64" or t == "Byte" then return math.floor(v) end
  if t == "Double" or t == "Decimal" then return v + 0.0 end
  return v
end

-- every row of a table for a division, as { [key] = { column = value } } (integers read as text: LuaDBI
-- reads integer columns through a 32-bit int), and the columns' declared types
local function snapshot(R, e, division, pg)
  local d = R.d
  local cols = assert(d.columns(R, e.table))
  local list, types = {}, {}
  for _, c in ipairs(cols) do
    types[c.name] = c.type
    local q = '"' .. c.name .. '"'
    local ty = tostring(c.type):upper()
    if ty == "INTEGER" or ty == "BIGINT" then q = "CAST(" .. q .. " AS TEXT) AS " .. q
    elseif pg and (ty == "UUID" or ty:match("^TIMESTAMP")) then q = "CAST(" .. q .. " AS TEXT) AS " .. q end
    list[#list + 1] = q
  end
  local st = assert(R:exec("SELECT " .. table.concat(list, ", ") .. ' FROM "' .. e.table .. '" WHERE division = ?',
    d.int(division)))
  local rows, n = {}, 0
  local key = e.key:lower()
  for row in st:rows(true) do
    for _, c in ipairs(cols) do
      local ty = tostring(c.type):upper()
      if (ty == "INTEGER" or ty == "BIGINT") and row[c.name] ~= nil then row[c.name] = tonumber(row[c.name]) end
    end
    assert.is_nil(rows[row[key]], "a duplicate key in " .. e.table)
    rows[row[key]] = row
    n = n + 1
  end
  return rows, n, types
end

-- the replica equals the sandbox, for every entity of the standard set and each division
local function assert_equal(sb, R, divisions, pg)
  if pg then assert(R:exec("SET TIME ZONE 'UTC'")) end
  local checked = 0
  for _, d in ipairs(divisions) do
    for _, e in ipairs(catalog.entities) do
      local se, view = sandbox_entity(e)
      local want = sb:entity(se.name, { division = d, view = view })
      local got, n, types = snapshot(R, e, d, pg)
      assert.are.equal(want.count, n, ("%s in division %d: %d rows in the sandbox, %d in the replica"):format(
        e.path, d, want.count, n))
      local edm = view == "sync" and se.sync_types or se.types
      for field, t in pairs(edm) do
        local col = field:lower()
        local decl = types[col]
        assert.is_not_nil(decl, e.table .. " has no column " .. col)
        if pg then assert.are.equal(PG_TYPE[t], decl, e.table .. "." .. col)
        else assert.are.equal(SQLITE_TYPE[t], decl, e.table .. "." .. col) end
      end
      for _, row in ipairs(want.rows) do
        local k = tostring(row[e.key]):lower()
        local mine = got[k]
        assert.is_not_nil(mine, ("%s in division %d: key %s is missing"):format(e.path, d, k))
        for field, v in pairs(row) do
          local t = edm[field]
          if t and type(v) ~= "table" or v == cjson.null then
            local x, y = expect(v, t, pg), mine[field:lower()]
            if type(y) == "string" and t == "Guid" then y = y:lower() end
            if x ~= y then
              error(("%s %s in division %d: %s is %s in the sandbox, %s in the replica"):format(e.path, k, d, field,
                tostring(x), tostring(y)), 2)
            end
          end
        end
        checked = checked + 1
      end
    end
  end
  return checked
end

local function authorized(sb, over)
  local c = assert(exactonline.new(sb:client_config(over or {})))
  assert(c:exchange(sb:code()))
  return c
end

local function codes(sb)
  local out = {}
  for i = 0, (sb.divisions or 1) - 1 do out[#out + 1] = sb.division + i end
  return out
end

-- a few creates, updates and deletes in every entity the sandbox can change, in each division
local function random_changes(sb, divisions)
  local n = 0
  for _, d in ipairs(divisions) do
    for _, name in ipairs { "accounts", "contacts", "transactionlines", "salesinvoices", "items", "glaccounts" } do
      local r = sb:change(name, { division = d, create = math.random(1, 3), update = math.random(1, 4),
        delete = math.random(1, 2) })
      n = n + #r.created + #r.updated + #r.deleted
    end
  end
  return n
end

-- valgrind and ASan are about this process's memory: one backend shows it (the plain runs prove both)
for _, backend in ipairs(INSTRUMENTED and { "SQLite" } or { "SQLite", "PostgreSQL" }) do
  describe("replicate (" .. backend .. ")", function()
    local sb = helpers.use_sandbox { divisions = 3, sizes = INSTRUMENTED and SMALL or nil, reset = false,
      limits = { minutely = 100000, daily = 100000 } }
    local client, pg, dir, target
    local pgdb = 0

    local function fresh_target()
      if backend == "PostgreSQL" then
        pgdb = pgdb + 1
        local admin = assert(require("DBI").Connect("PostgreSQL", pg.conninfo))
        admin:autocommit(true)
        assert(require("DBI").Do(admin, "CREATE DATABASE e" .. pgdb))
        admin:close()
        target = pg.conninfo:gsub("dbname=%S+", "dbname=e" .. pgdb)
      else
        pgdb = pgdb + 1
        target = "sqlite:" .. dir .. "/e" .. pgdb .. ".db"
      end
      return target
    end

    setup(function()
      math.randomseed(os.time())
      dir = helpers.tmpdir()
      if backend == "PostgreSQL" then pg = postgres.start() end
      client = authorized(sb)
    end)

    teardown(function()
      if client then client:close() end
      if pg then pg:stop() end
    end)

    it("copies the standard set of 3 divisions row for row and type for type, then only what changed", function()
      fresh_target()
      local divs = codes(sb)
      local s = assert(exactonline.replicate(client, { to = target, divisions = "all" }))
      assert.are.equal("done", s.status)
      assert.are.same(divs, s.order)
      local R = assert(dbmod.open(target))
      assert.is_true(assert_equal(sb, R, divs, backend == "PostgreSQL") > (INSTRUMENTED and 300 or 3000))
      -- every row inserted once, and the summary says so
      local dv = s.divisions[divs[1]]
      assert.are.equal(sb:entity("accounts", { division = divs[1] }).count, dv.entities["crm/Accounts"].inserted)
      -- random creates, updates and deletes; the second run equals the sandbox again
      local changed = random_changes(sb, divs)
      assert.is_true(changed > 0)
      s = assert(exactonline.replicate(client, { to = target, divisions = "all" }))
      assert.are.equal("done", s.status)
      assert_equal(sb, R, divs, backend == "PostgreSQL")
      -- with the fewest calls: one page per sync entity (all changes fit in one), the whole of the one
      -- entity without sync (SalesInvoiceLines, in pages of 1000), one page of sync/Deleted
      for _, d in ipairs(divs) do
        local lines = sb:entity("salesinvoicelines", { division = d, view = "regular" }).count
        local want = 10 + math.max(1, math.ceil(lines / 1000)) + 1
        assert.are.equal(want, s.divisions[d].calls, "calls in division " .. d)
        local e = s.divisions[d].entities
        assert.is_true(e["crm/Accounts"].deleted > 0 or e["crm/Accounts"].updated > 0)
      end
      -- a third run with nothing changed: nothing written
      s = assert(exactonline.replicate(client, { to = target, divisions = divs }))
      for _, d in ipairs(divs) do
        for path, st in pairs(s.divisions[d].entities) do
          if path ~= "salesinvoice/SalesInvoiceLines" then
            assert.are.same({ 0, 0, 0 }, { st.inserted, st.updated, st.deleted }, path)
          end
        end
      end
      R:close()
    end)

    if backend == "PostgreSQL" then
      it("loses its database connection mid-run: a clear error, nothing half-written, the rerun ends equal",
        function()
        fresh_target()
        local dbname = target:match("dbname=(%S+)")
        local admin = assert(require("DBI").Connect("PostgreSQL", pg.conninfo))
        admin:autocommit(true)
        local pages, cut = 0, false
        local s = assert(exactonline.replicate(client, { to = target, divisions = "all",
          on_progress = function(ev)
            if ev.phase ~= "page" then return end
            pages = pages + 1
            if pages == 4 and not cut then
              cut = true -- the server drops replicate's session, as a failover or a network cut would
              local st = assert(admin:prepare("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                .. "datname = ? AND pid <> pg_backend_pid()"))
              assert(st:execute(dbname))
              st:close()
            end
          end }))
        admin:close()
        assert.is_true(cut)
        assert.are.equal("failed", s.status)
        local err
        for _, d in ipairs(s.order) do err = err or s.divisions[d].error end
        assert.are.equal("database", err.kind, tostring(err))
        assert.are.equal("connection_lost", err.code)
        assert.matches("run replicate again", tostring(err))
        -- every page committed before the cut is whole, with its cursor; the next run finishes the job
        s = assert(exactonline.replicate(client, { to = target, divisions = "all" }))
        assert.are.equal("done", s.status)
        local R = assert(dbmod.open(target))
        assert_equal(sb, R, codes(sb), true)
        R:close()
      end)
    end

    it("pauses a division whose daily budget is spent (the others finish) and resumes it the next day", function()
      fresh_target()
      local divs = codes(sb)
      -- budgets are counted per division against one daily limit: spend 30 calls more in the first
      -- division, then set the limit so that it has 5 calls left today and the others plenty
      local before = sb:stats()
      local used = {}
      for i, d in ipairs(divs) do
        local probe = require("exactonline.client").sibling(client, { division = d })
        for _ = 1, i == 1 and 30 or 1 do assert(probe:get("crm/Accounts", { ["$top"] = 1 })) end
        used[i] = 100000 - probe:rate_limits().daily_remaining
        probe:close()
      end
      sb:limits { daily = used[1] + 5 }
      assert.is_true(used[2] + 20 < used[1] and used[3] + 20 < used[1])
      local s = assert(exactonline.replicate(client, { to = target, divisions = divs }))
      assert.are.equal("paused", s.status)
      assert.are.equal("paused", s.divisions[divs[1]].status)
      assert.are.equal("done", s.divisions[divs[2]].status)
      assert.are.equal("done", s.divisions[divs[3]].status)
      assert.are.equal(5, s.divisions[divs[1]].calls - 1) -- five answered, the sixth refused before it was sent
      assert.are.equal(before.rate_limited, sb:stats().rate_limited)
      -- what it got before the pause is committed with its cursors; the next day it continues from there
      local R = assert(dbmod.open(target))
      local st = R:state(divs[1], "crm/Accounts")
      assert.is_truthy(st and st.last_timestamp > 0)
      sb:limits { daily = 100000 }
      sb:advance(86400)
      s = assert(exactonline.replicate(client, { to = target, divisions = divs }))
      assert.are.equal("done", s.status)
      assert.are.equal(0, s.divisions[divs[1]].entities["crm/Accounts"].inserted) -- not read again
      assert_equal(sb, R, divs, backend == "PostgreSQL")
      R:close()
    end)
  end)
end

describe("replicate (kill -9 and many divisions)", function()
  local dir
  setup(function() dir = helpers.tmpdir() end)

  it("survives kill -9 of `exactonline replicate` at 30 random moments of a large first run: the rows always "
    .. "agree with their cursors, and the rerun ends equal with no duplicate", function()
    local sb = helpers.sandbox { divisions = 2, sizes = INSTRUMENTED and { transactionlines = 3000 } or
      { transactionlines = 9000, accounts = 2500 } }
    -- 3 calls a second per division: a run lasts long enough to be killed anywhere in it
    sb:limits { minutely = 3, window = 1, daily = 100000 }
    local _, env = cli.authorized_home(sb)
    local db = dir .. "/killed.db"
    local args = { "replicate", "--division", "all", "--to", "sqlite:" .. db, "--no-progress" }
    math.randomseed(os.time())
    local killed = 0
    for _ = 1, KILLS do
      local h = cli.spawn(env, args)
      os.execute(("sleep %.3f"):format(0.3 + math.random() * 1.5))
      proc.kill9(h.pid)
      if h.wait() == 137 then killed = killed + 1 end
      -- whatever it was doing, every committed row is covered by its table's cursor
      local R = dbmod.open("sqlite:" .. db)
      if R and R.d.table_exists(R, "exactonline_sync_state") then
        for _, e in ipairs(catalog.entities) do
          if e.sync and R.d.table_exists(R, e.table) then
            for _, d in ipairs(codes(sb)) do
              local st = R:state(d, e.path)
              local top = assert(R:one('SELECT CAST(max("timestamp") AS TEXT) AS m FROM "' .. e.table ..
                '" WHERE division = ?', d))
              assert.is_true((tonumber(top.m) or 0) <= (st and st.last_timestamp or 0), e.path)
            end
          end
        end
      end
      if R then R:close() end
    end
    assert.is_true(killed >= KILLS - 2, ("%d of %d runs were killed before they finished"):format(killed, KILLS))
    sb:limits { minutely = 100000, window = 60 }
    local res = cli.run(env, args)
    assert.are.equal(0, res.code, res.stderr)
    assert.matches("division", res.stdout)
    local R = assert(dbmod.open("sqlite:" .. db))
    assert_equal(sb, R, codes(sb), false)
    R:close()
    sb:stop()
  end)

  it("replicates 8 divisions in at most 1.3 × the time of one, each paced to its own limit, with 0 × 429",
    function()
    if INSTRUMENTED then pending("a timing ratio under valgrind or ASan measures the tool: the plain runs check it") end
    if not require("exactonline.transport.multi").concurrent then
      pending("Lua 5.1 cannot yield across pcall or a for-in iterator: there divisions replicate one after another")
    end
    local small = {}
    for _, name in ipairs(sbcat.sizable()) do small[name] = 8 end
    local sb = helpers.sandbox { divisions = 8, sizes = small }
    local client = authorized(sb)
    -- 4 calls a 1-second window per division; a run is 12 calls: three windows of each division's own
    sb:limits { minutely = 4, window = 1, daily = 100000 }
    local before = sb:stats().rate_limited
    local function timed(divs)
      local now = core.now()
      core.sleep(1 - now % 1 + 0.02) -- start just after a window boundary, as both runs do
      local t0 = core.now()
      local s = assert(exactonline.replicate(client, { to = "sqlite:" .. dir .. "/" .. #divs .. ".db",
        divisions = divs }))
      assert.are.equal("done", s.status)
      for _, d in ipairs(divs) do assert.are.equal(12, s.divisions[d].calls) end
      return core.now() - t0
    end
    local divs = codes(sb)
    local one = timed { divs[1] }
    local all = timed(divs)
    assert.is_true(one > 1.5, "one division had to wait for its limit: " .. one)
    assert.is_true(all <= 1.3 * one, ("8 divisions took %.2f s, one %.2f s"):format(all, one))
    assert.are.equal(before, sb:stats().rate_limited)
    client:close()
    sb:stop()
  end)
end)

describe("exactonline replicate (the command)", function()
  local small = {}
  for _, name in ipairs(sbcat.sizable()) do small[name] = 30 end
  local sb = helpers.use_sandbox { divisions = 2, sizes = small, limits = { minutely = 100000, daily = 100000 },
    reset = false }
  local home, env, dir

  setup(function()
    dir = helpers.tmpdir()
    home, env = cli.authorized_home(sb)
  end)

  it("prints progress per division and entity, then rows and calls per division; exit 0", function()
    local db = dir .. "/cli.db"
    local res = cli.run(env, { "replicate", "--division", "all", "--to", db, "--progress" })
    assert.are.equal(0, res.code, res.stderr)
    for _, d in ipairs(codes(sb)) do
      assert.matches("division " .. d .. ": crm/Accounts", res.stderr, 1, true)
      assert.matches("\n" .. d .. "%s+crm/Accounts%s+30%s+0%s+0%s+done", res.stdout)
      assert.matches("\n" .. d .. "%s+12%s+%d+%s+done", res.stdout) -- calls used, calls left today
    end
    assert.matches("calls used%s+calls left today", res.stdout)
  end)

  it("--full reads every entity again from the start and ends equal; no secret reaches the database", function()
    local db = dir .. "/full.db"
    local args = { "replicate", "--division", "all", "--to", db, "--no-progress" }
    assert.are.equal(0, cli.run(env, args).code)
    sb:change("accounts", { create = 2, update = 2, delete = 1 })
    local res = cli.run(env, { "replicate", "--division", "all", "--to", db, "--no-progress", "--full" })
    assert.are.equal(0, res.code, res.stderr)
    -- every row read again: each division's accounts are all updated (or new), not only the changed ones
    local n = sb:entity("accounts").count
    local ins, upd = res.stdout:match("\n" .. sb.division .. "%s+crm/Accounts%s+(%d+)%s+(%d+)")
    assert.are.equal(n, tonumber(ins) + tonumber(upd))
    local R = assert(dbmod.open("sqlite:" .. db))
    assert_equal(sb, R, codes(sb), false)
    R:close()
    local doc = cjson.decode(helpers.read(home .. "/config/exactonline/tokens.json"))
    local bytes = helpers.read(db) .. (helpers.read(db .. "-wal") or "") .. res.stdout .. res.stderr
    for _, secret in ipairs { sb.client_secret, doc.access_token, doc.refresh_token } do
      assert.is_nil(bytes:find(secret, 1, true))
    end
  end)

  it("serialises two runs at once against one database: both succeed, nothing twice", function()
    local db = dir .. "/two.db"
    local args = { "replicate", "--division", "all", "--to", "sqlite:" .. db, "--no-progress" }
    local a, b = cli.spawn(env, args), cli.spawn(env, args)
    assert.are.equal(0, a.wait(), a.stderr)
    assert.are.equal(0, b.wait(), b.stderr)
    local R = assert(dbmod.open("sqlite:" .. db))
    assert_equal(sb, R, codes(sb), false)
    R:close()
  end)

  it("names a division the user cannot reach and an unknown entity; the reachable division is kept", function()
    local db = dir .. "/lost.db"
    local res = cli.run(env, { "replicate", "crm/Accounts", "--division", sb.division .. ",9999999", "--to", db })
    assert.are.equal(1, res.code)
    assert.matches("division 9999999", res.stderr, 1, true)
    assert.matches("WrongDivision", res.stderr, 1, true)
    assert.matches("everything committed before the failure is kept", res.stderr, 1, true)
    local R = assert(dbmod.open("sqlite:" .. db))
    assert.are.equal(sb:entity("accounts").count, R:count(catalog.lookup("crm/Accounts"), sb.division))
    R:close()
    res = cli.run(env, { "replicate", "crm/Nope", "--to", db })
    assert.are.equal(2, res.code)
    assert.matches("no entity 'crm/Nope'", res.stderr, 1, true)
    assert.matches("crm/Accounts", res.stderr, 1, true)
    res = cli.run(env, { "replicate", "--division", "one", "--to", db })
    assert.are.equal(2, res.code)
    res = cli.run(env, { "replicate", "--to", dir .. "/exact.txt" })
    assert.are.equal(1, res.code)
    assert.matches("cannot tell which database", res.stderr, 1, true)
  end)

  it("exits 3 when a division's daily budget is spent, saying when to run again", function()
    local db = dir .. "/paused.db"
    local probe = assert(exactonline.new(sb:client_config { store = exactonline.file_store(
      home .. "/config/exactonline/tokens.json"), division = sb.division }))
    assert(probe:get("crm/Accounts", { ["$top"] = 1 }))
    local used = 100000 - probe:rate_limits().daily_remaining
    probe:close()
    sb:limits { daily = used + 3 }
    local res = cli.run(env, { "replicate", "--division", tostring(sb.division), "--to", db })
    assert.are.equal(3, res.code, res.stderr)
    assert.matches("paused", res.stdout)
    assert.matches("daily API budget of division " .. sb.division, res.stderr, 1, true)
    assert.matches("resets %d%d%d%d%-%d%d%-%d%d 00:00 UTC", res.stderr)
    sb:limits { daily = 100000 }
    res = cli.run(env, { "replicate", "--division", tostring(sb.division), "--to", db })
    assert.are.equal(0, res.code, res.stderr)
  end)
end)
