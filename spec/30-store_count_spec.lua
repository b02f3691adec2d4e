-- store.count(name, now, window, add): events per name in a sliding window, shared by every process that
-- uses the store, for Exact's block after 10 error answers per endpoint an hour (issue 13). The same steps
-- run on the memory, file, PostgreSQL and shared-dict stores; then real processes (and nginx workers) add
-- at once and no event is lost.
local exactonline = require "exactonline"
local helpers = require "helpers"
local postgres = require "support.postgres"
local ngx_harness = require "support.nginx"
local proc = require "support.proc"
local cjson = require "cjson"

local q = helpers.quote
local WINDOW = 3600
local NAME = "GET crm/Accounts"

-- { at, add, n, oldest }: what count(NAME, at, WINDOW, add) must answer, in order
local STEPS = {
  { 1000, 1, 1, 1000 },
  { 1010, 1, 2, 1000 },
  { 1020, 1, 3, 1000 },
  { 1030, 0, 3, 1000 },
  { 4600, 0, 2, 1010 }, -- 1000 is now - window: gone
  { 4605, -1, 1, 1010 }, -- takes back the newest (1020)
  { 4605, 0, 1, 1010 },
  { 4610, 1, 1, 4610 }, -- 1010 is gone now too
  { 8300, 0, 0, nil },
  { 8300, -1, 0, nil },
}

local function run_steps(count, label)
  for i, s in ipairs(STEPS) do
    local n, oldest = count(NAME, s[1], WINDOW, s[2])
    assert.are.equal(s[3], n, label .. " step " .. i)
    assert.are.equal(s[4], oldest, label .. " step " .. i)
  end
  -- names are counted apart
  assert.are.equal(1, (count("POST crm/Accounts", 8300, WINDOW, 1)))
  assert.are.equal(0, (count(NAME, 8300, WINDOW, 0)))
end

describe("store.count", function()
  it("memory store: the steps (one process)", function()
    local s = exactonline.memory_store()
    run_steps(s.count, "memory")
    assert.has_error(function() s.count("", 1, 1, 1) end)
    assert.has_error(function() s.count(NAME, 0 / 0, 1, 1) end)
    assert.has_error(function() s.count(NAME, 1, 0, 1) end)
    assert.has_error(function() s.count(NAME, 1, 1, 2) end)
  end)

  describe("file store", function()
    local dir, path

    before_each(function()
      dir = helpers.tmpdir()
      path = dir .. "/app/tokens.json"
    end)

    it("the steps, beside the tokens, without touching the token file", function()
      local store = exactonline.file_store(path)
      assert.is_true(store.save { access_token = "A", refresh_token = "R", obtained_at = 1, expires_at = 601 })
      local before = helpers.read(path)
      run_steps(store.count, "file")
      assert.are.equal(before, helpers.read(path))
      assert.are.equal("600", select(2, helpers.sh("stat -c %a " .. q(path .. ".counts"))):match("%d+"))
      -- another store on the same file sees the same counts; another file does not
      assert.are.equal(1, (exactonline.file_store(path).count("POST crm/Accounts", 8300, WINDOW, 0)))
      assert.are.equal(0, (exactonline.file_store(dir .. "/other/tokens.json").count("POST crm/Accounts", 8300,
        WINDOW, 0)))
    end)

    it("does not wait for the token lock (a refresh in another process)", function()
      local holder = exactonline.file_store(path)
      assert.is_true(holder.lock(1))
      local n = exactonline.file_store(path, { lock_timeout = 0.1 }).count(NAME, 1000, WINDOW, 1)
      assert.are.equal(1, n)
      holder.unlock()
    end)

    it("a damaged counts file counts nothing and is rewritten; the tokens are never touched", function()
      local store = exactonline.file_store(path)
      assert.is_true(store.save { access_token = "A", refresh_token = "R", obtained_at = 1, expires_at = 601 })
      helpers.write(path .. ".counts", "{half")
      helpers.sh("chmod 600 " .. q(path .. ".counts"))
      assert.are.equal(0, (store.count(NAME, 1000, WINDOW, 0)))
      assert.are.equal(1, (store.count(NAME, 1000, WINDOW, 1)))
      assert.are.equal("R", store.load().refresh_token)
    end)

    it("four processes adding at once lose no event", function()
      local store = exactonline.file_store(path)
      assert.are.equal(0, (store.count(NAME, 5000, WINDOW, 0)))
      local cmd, done = proc.script(([[
        local s = require("exactonline").file_store(%q)
        for i = 1, 25 do assert(s.count(%q, 5000 + i, %d, 1)) end
      ]]):format(path, NAME, WINDOW))
      local ok, out = helpers.sh(cmd .. " & " .. cmd .. " & " .. cmd .. " & " .. cmd .. " & wait")
      done()
      assert.is_true(ok, out)
      assert.are.equal("", out)
      local n, oldest = store.count(NAME, 5100, WINDOW, 0)
      assert.are.equal(100, n)
      assert.are.equal(5001, oldest)
    end)
  end)

  describe("PostgreSQL store", function()
    local pg
    setup(function() pg = postgres.start() end)
    teardown(function() if pg then pg:stop() end end)

    it("the steps, one row per key and name", function()
      local s = exactonline.stores.postgres { conninfo = pg.conninfo, key = "steps" }
      run_steps(s.count, "postgres")
      local other = exactonline.stores.postgres { conninfo = pg.conninfo, key = "other" }
      assert.are.equal(0, (other.count("POST crm/Accounts", 8300, WINDOW, 0)))
      s.close()
      other.close()
    end)

    it("four processes adding at once lose no event", function()
      local cmd, done = proc.script(([[
        local s = require("exactonline").stores.postgres { conninfo = %q, key = "race" }
        for i = 1, 25 do assert(s.count(%q, 5000 + i, %d, 1)) end
      ]]):format(pg.conninfo, NAME, WINDOW))
      local ok, out = helpers.sh(cmd .. " & " .. cmd .. " & " .. cmd .. " & " .. cmd .. " & wait")
      done()
      assert.is_true(ok, out)
      assert.are.equal("", out)
      local s = exactonline.stores.postgres { conninfo = pg.conninfo, key = "race" }
      local n, oldest = s.count(NAME, 5100, WINDOW, 0)
      assert.are.equal(100, n)
      assert.are.equal(5001, oldest)
      s.close()
    end)
  end)

  describe("shared-dict store (inside nginx, 2 workers)", function()
    local sb = helpers.use_sandbox{ accounts = 1 }
    local app = ngx_harness.use{ sandbox = sb, workers = 2 }

    local function call(args)
      local status, _, body = app:get("/count?name=" .. helpers.escape(NAME) .. "&window=" .. WINDOW .. args)
      assert.are.equal(200, status, body)
      return cjson.decode(body)
    end

    it("the steps", function()
      run_steps(function(name, now, window, add)
        local status, _, body = app:get("/count?key=steps&name=" .. helpers.escape(name) .. "&window=" .. window ..
          "&at=" .. now .. "&add=" .. add)
        assert.are.equal(200, status, body)
        local r = cjson.decode(body)
        return r.n, r.oldest ~= cjson.null and r.oldest or nil
      end, "shdict")
    end)

    it("requests on both workers adding at once lose no event", function()
      local workers, total, batches = {}, 0, 0
      local script = helpers.tmpdir() .. "/batch"
      repeat
        batches = batches + 1
        local urls = {}
        for i = 1, 8 do
          urls[i] = q(app.url .. "/count?name=" .. helpers.escape(NAME) .. "&window=" .. WINDOW ..
            "&n=25&now=5000&at=5000&add=0")
        end
        helpers.write(script, "for u in " .. table.concat(urls, " ") .. "; do curl -s \"$u\" & done; wait\n")
        local ok, out = helpers.sh("sh " .. q(script))
        assert.is_true(ok, out)
        for w in out:gmatch('"worker":(%d+)') do workers[w] = true end
        total = total + 200
        local seen = 0
        for _ in pairs(workers) do seen = seen + 1 end
      until seen >= 2 or batches >= 10
      local r = call("&at=5001&add=0")
      assert.are.equal(total, r.n)
    end)
  end)
end)
