-- Set up as the README says, as most people will: tokens authorized with `exactonline auth` run by root,
-- nginx started by root with no `user` line, so its workers run as nobody. The file store behind the shared
-- dict must say so at the first request (not at the first refresh, ten minutes later) and name exactly what
-- to chown; once that is done, the gateway keeps working across a refresh (issue 18).
local helpers = require "helpers"
local ngx_harness = require "support.nginx"
local cli = require "support.cli_run"
local cjson = require "cjson"

local q = helpers.quote

describe("nginx workers running as nobody, tokens authorized by root", function()
  local sb = helpers.use_sandbox{ accounts = 4, reset = false }
  local app, dir, tokens_dir, path

  local function owner_of(p)
    local _, out = helpers.sh("stat -c %U " .. q(p))
    return out:match("%S+")
  end

  it("the first request names the chown to run; after it the chain survives a refresh", function()
    if not helpers.is_root() then
      pending("needs root: nginx's workers run as nobody only under a root master")
      return
    end
    dir = helpers.tmpdir()
    helpers.sh("chmod 711 " .. q(dir)) -- like /var/lib: anyone may pass through
    tokens_dir = dir .. "/app"
    path = tokens_dir .. "/tokens.json"
    local res = cli.run(cli.env_for(sb, dir), { "auth", "--token-file", path, "--redirect-url", sb:code() })
    assert.are.equal(0, res.code, res.stderr)
    assert.are.equal("root", owner_of(path))
    local exchanges = sb:stats().code_exchanges

    app = ngx_harness.start{ sandbox = sb, workers = 2, user = false,
      settings = { write_through = true, token_file = path } }
    local status, _, body = app:get("/accounts")
    assert.are.equal(502, status, body)
    local err = cjson.decode(body).error
    assert.matches("nobody (the user this process runs as) cannot keep its tokens here", err, 1, true)
    assert.matches("nobody when there is no `user` line", err, 1, true)
    local chown = err:match("(chown [^\n(]-) %(or run this as root%)")
    assert.are.equal("chown -R nobody " .. tokens_dir, chown, err)
    assert.are.equal(exchanges, sb:stats().code_exchanges)

    assert(helpers.sh(chown))
    status, _, body = app:get("/accounts")
    assert.are.equal(200, status, body)
    assert.are.equal(4, cjson.decode(body).count)

    -- the first refresh: the workers (nobody) lock, write and replace the file themselves
    local before, saved = sb:stats(), cjson.decode(helpers.read(path)).tokens
    sb:advance(600)
    for _ = 1, 4 do
      status, _, body = app:get("/accounts")
      assert.are.equal(200, status, body)
    end
    local after = sb:stats()
    assert.are.equal(before.refreshes + 1, after.refreshes)
    assert.are.equal(before.code_exchanges, after.code_exchanges)
    local now = cjson.decode(helpers.read(path)).tokens
    assert.is_true(now.obtained_at > saved.obtained_at)
    assert.are_not.equal(saved.refresh_token, now.refresh_token)
    assert.are.equal("nobody", owner_of(path))
    assert.are.equal("nobody", owner_of(path .. ".lock"))
  end)
end)
