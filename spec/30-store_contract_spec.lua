-- One definition of "is this pair newer", held by every store (issue 12): the chain whose refresh token was
-- issued later wins, then the later access token. The memory store used to compare obtained_at alone, and
-- so kept an older refresh token over a newer one (and dropped a refresh token saved from an error answer).
-- The same cases run on the memory, file, PostgreSQL and shared-dict stores, against real files, a real
-- server and a real nginx.
local exactonline = require "exactonline"
local contract = require "exactonline.store.contract"
local helpers = require "helpers"
local postgres = require "support.postgres"
local ngx_harness = require "support.nginx"
local cjson = require "cjson"

-- held: what the store has; offered: what save() gets; kept: true when the store must keep `held`
local CASES = {
  { what = "a newer access token on the same refresh token",
    held = { access_token = "A1", refresh_token = "R1", refresh_obtained_at = 100, obtained_at = 100 },
    offered = { access_token = "A2", refresh_token = "R1", refresh_obtained_at = 100, obtained_at = 700 },
    kept = false },
  { what = "an older access token on the same refresh token",
    held = { access_token = "A2", refresh_token = "R1", refresh_obtained_at = 100, obtained_at = 700 },
    offered = { access_token = "A1", refresh_token = "R1", refresh_obtained_at = 100, obtained_at = 100 },
    kept = true },
  { what = "a newer refresh token whose access token is older than the one held",
    held = { access_token = "A2", refresh_token = "R1", refresh_obtained_at = 100, obtained_at = 700 },
    offered = { access_token = "B1", refresh_token = "R2", refresh_obtained_at = 650, obtained_at = 650 },
    kept = false },
  { what = "an older refresh token whose access token is newer",
    held = { access_token = "B1", refresh_token = "R2", refresh_obtained_at = 650, obtained_at = 650 },
    offered = { access_token = "A2", refresh_token = "R1", refresh_obtained_at = 100, obtained_at = 700 },
    kept = true },
  { what = "a refresh token saved from an error answer (no access token)",
    held = { access_token = "B1", refresh_token = "R2", refresh_obtained_at = 650, obtained_at = 650 },
    offered = { refresh_token = "R3", refresh_obtained_at = 800 },
    kept = false },
  { what = "a pair stored without refresh_obtained_at (older files), then a newer chain",
    held = { access_token = "A1", refresh_token = "R1", obtained_at = 500 },
    offered = { access_token = "B1", refresh_token = "R2", refresh_obtained_at = 600, obtained_at = 600 },
    kept = false },
  { what = "a pair stored without refresh_obtained_at, then an older chain",
    held = { access_token = "A1", refresh_token = "R1", obtained_at = 500 },
    offered = { access_token = "Z1", refresh_token = "R0", refresh_obtained_at = 400, obtained_at = 400 },
    kept = true },
  { what = "the same age: the later save wins",
    held = { access_token = "A1", refresh_token = "R1", refresh_obtained_at = 100, obtained_at = 100 },
    offered = { access_token = "A1b", refresh_token = "R1b", refresh_obtained_at = 100, obtained_at = 100 },
    kept = false },
}

-- the pair's fields; a store may record a missing refresh_obtained_at as obtained_at (the same age)
local function norm(t)
  local c = contract.copy(t or {})
  c.refresh_obtained_at = c.refresh_obtained_at or c.obtained_at
  return c
end

local function check(case, ok, note, loaded)
  assert.is_true(ok, case.what)
  if case.kept then
    assert.are.equal("kept_newer", note, case.what)
    assert.are.same(norm(case.held), norm(loaded), case.what)
  else
    assert.is_nil(note, case.what)
    assert.are.same(norm(case.offered), norm(loaded), case.what)
  end
end

-- save(t, { replace = true }): a chain a person just authorized replaces even a "newer" one
local function check_replace(case, store)
  if not case.kept then return end
  local ok, note = store.save(case.offered, { replace = true })
  assert.is_true(ok, case.what)
  assert.is_nil(note, case.what)
  assert.are.same(norm(case.offered), norm(store.load()), case.what .. " (replace)")
end

describe("the one 'newer' rule", function()
  it("is what contract.newer says for every case", function()
    for _, case in ipairs(CASES) do
      assert.are.equal(case.kept, contract.newer(case.held, case.offered), case.what)
      if case.kept then assert.is_false(contract.newer(case.offered, case.held), case.what) end
    end
  end)

  it("holds in the memory store", function()
    for _, case in ipairs(CASES) do
      local store = exactonline.memory_store(case.held)
      local ok, note = store.save(case.offered)
      check(case, ok, note, store.load())
      check_replace(case, store)
    end
  end)

  it("holds in the file store", function()
    local dir = helpers.tmpdir()
    for i, case in ipairs(CASES) do
      local store = exactonline.file_store(dir .. "/" .. i .. "/tokens.json")
      assert.is_true(store.save(case.held))
      local ok, note = store.save(case.offered)
      check(case, ok, note, store.load())
      check_replace(case, store)
    end
  end)

  it("holds in the PostgreSQL store", function()
    local pg = postgres.start()
    for i, case in ipairs(CASES) do
      local store = exactonline.stores.postgres { conninfo = pg.conninfo, key = "case" .. i }
      assert.is_true(store.save(case.held))
      local ok, note = store.save(case.offered)
      check(case, ok, note, store.load())
      check_replace(case, store)
      store.close()
    end
    pg:stop()
  end)

  describe("in the shared-dict store (inside nginx)", function()
    local sb = helpers.use_sandbox{ accounts = 1 }
    local app = ngx_harness.use{ sandbox = sb, workers = 1 }
    it("holds", function()
      local status, _, body = app:get("/store_order?cases=" .. helpers.escape(cjson.encode(CASES)))
      assert.are.equal(200, status, body)
      local out = cjson.decode(body)
      for i, case in ipairs(CASES) do
        check(case, out[i].ok, out[i].note ~= cjson.null and out[i].note or nil, out[i].loaded)
      end
    end)
  end)

  it("keeps the stores' constructors as they were, and builds each from an options table", function()
    local dir = helpers.tmpdir()
    local a = exactonline.file_store(dir .. "/a/tokens.json", { lock_timeout = 0.1 })
    local b = require("exactonline.store.file").new { path = dir .. "/a/tokens.json", lock_timeout = 0.1 }
    assert.are.equal(a.path, b.path)
    assert.is_true(a.lock())
    local ok, err = b.lock()
    assert.is_nil(ok)
    assert.are.equal("lock_timeout", err.code)
    a.unlock()
    local pair = CASES[1].held
    assert.are.same(pair, exactonline.memory_store(pair).load())
    assert.are.same(pair, require("exactonline.store.memory").new { tokens = pair }.load())
    assert.is_nil(require("exactonline.store.memory").new().load())
    -- the modules' names before exactonline/store/ still load, once exactonline is loaded
    assert.are.equal(require("exactonline.store.file"), require("exactonline.file_store"))
    assert.are.equal(require("exactonline.store.memory"), require("exactonline.memory_store"))
    assert.are.equal(require("exactonline.store.postgres"), require("exactonline.stores.postgres"))
    assert.are.equal(require("exactonline.store.contract"), require("exactonline.tokens"))
    assert.are.equal(require("exactonline.store.postgres").new, exactonline.stores.postgres)
  end)
end)
