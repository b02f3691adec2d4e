-- Where the gateway keeps the token chain: PostgreSQL behind the shared dict (--token-db), and the token file
-- shared with the other commands (a cron `exactonline refresh` rotates the chain while the gateway runs: the
-- gateway takes the newer chain up instead of spending the old refresh token).
local helpers = require "helpers"
local gw_harness = require "support.gateway"
local postgres = require "support.postgres"
local exactonline = require "exactonline"
local cli = require "support.cli_run"
local cjson = require "cjson"


describe("the gateway with its chain in PostgreSQL (--token-db)", function()
  local sb, gw, pg, path

  setup(function()
    sb = helpers.sandbox { accounts = 5 }
    sb:limits { minutely = 100000, daily = 100000 }
    pg = postgres.start()
    gw = gw_harness.prepare { sandbox = sb, keys = { "pg" }, tokens = false }
    path = ("/api/v1/%d/crm/Accounts?$select=ID"):format(sb.division)
  end)

  teardown(function()
    if gw then gw:stop() end
    if sb then sb:stop() end
    if pg then pg:stop() end
  end)

  it("says how to put the first pair there, then serves and writes each refresh through to it", function()
    local r = gw:cli { "--token-db", pg.conninfo, "--listen", "127.0.0.1:" .. gw.port }
    assert.equal(2, r.code)
    assert.matches("no tokens in the PostgreSQL store yet", r.stderr)
    local store = exactonline.stores.postgres { conninfo = pg.conninfo }
    local client = assert(exactonline.new(sb:client_config { store = store }))
    assert(client:exchange(sb:code()))
    client:close()
    local first = store.load()
    gw:launch { workers = 2, args = { "--token-db", pg.conninfo } }
    assert.equal(200, (gw:get(path, { key = gw.keys.pg })))
    local before = sb:stats().refreshes
    sb:advance(600)
    assert.equal(200, (gw:get(path, { key = gw.keys.pg })))
    assert.equal(before + 1, sb:stats().refreshes)
    local now = store.load()
    assert.is_true(now.obtained_at > first.obtained_at)
    assert.are_not.equal(first.refresh_token, now.refresh_token)
    store.close()
    assert.is_false(helpers.exists(gw.token_file)) -- nothing went to a file
  end)
end)

describe("the gateway sharing its token file with `exactonline refresh`", function()
  local sb, gw, path

  setup(function()
    sb = helpers.sandbox { accounts = 5 }
    sb:limits { minutely = 100000, daily = 100000 }
    gw = gw_harness.start { sandbox = sb, workers = 2, keys = { "cron" } }
    path = ("/api/v1/%d/crm/Accounts?$select=ID"):format(sb.division)
  end)

  teardown(function()
    if gw then gw:stop() end
    if sb then sb:stop() end
  end)

  it("takes up the chain the CLI rotated, and never sends the refresh token it replaced", function()
    assert.equal(200, (gw:get(path, { key = gw.keys.cron })))
    -- ten minutes pass for Exact and for the file (the CLI keeps the 570 s rule by the pair's own times)
    sb:advance(600)
    local doc = cjson.decode(helpers.read(gw.token_file))
    for _, k in ipairs { "expires_at", "obtained_at", "refresh_obtained_at" } do doc.tokens[k] = doc.tokens[k] - 600 end
    helpers.write(gw.token_file, cjson.encode(doc))
    local refreshes = sb:stats().refreshes
    local r = gw:as_owner(function() return cli.run(gw:env(), { "refresh" }) end)
    assert.equal(0, r.code, r.stderr)
    assert.equal(refreshes + 1, sb:stats().refreshes) -- the CLI rotated the chain
    local before = sb:stats()
    -- the gateway still holds the access token it had; Exact's clock says it expired: a 401, then the newer
    -- chain from the file (no refresh of its own with the old refresh token)
    assert.equal(200, (gw:get(path, { key = gw.keys.cron })))
    sb:advance(600)
    assert.equal(200, (gw:get(path, { key = gw.keys.cron })))
    local after = sb:stats()
    assert.equal(before.old_refresh_used, after.old_refresh_used)
    assert.equal(0, after.old_refresh_used)
    assert.equal(before.refreshes + 1, after.refreshes) -- the gateway's own, for the second expiry
    local status = gw:get("/healthz")
    assert.equal(200, status)
  end)
end)
