-- Inside nginx the token chain outlives the workers: a reload keeps the shared dict, and with the file store
-- behind it a full restart (empty dict) picks the chain up from the file.
local helpers = require "helpers"
local ngx_harness = require "support.nginx"
local cjson = require "cjson"

local function file_tokens(path)
  local text = helpers.read(path)
  return text and cjson.decode(text).tokens
end

describe("inside nginx with the shared dict written through to the file store", function()
  local sb = helpers.use_sandbox{ accounts = 4, reset = false }
  local app = ngx_harness.use{ sandbox = sb, workers = 2, settings = { write_through = true } }

  local function accounts()
    local status, _, body = app:get("/accounts")
    assert.equal(200, status, body)
    assert.equal(4, cjson.decode(body).count)
  end

  it("keeps the chain across a reload and a restart, and writes a refresh through to the file", function()
    local status, _, body = app:get("/exchange?code=" .. helpers.escape(sb:code()))
    assert.equal(200, status, body)
    local saved = file_tokens(app.settings.token_file)
    assert.is_table(saved)
    assert.is_string(saved.refresh_token)
    accounts()
    local before = sb:stats()

    app:reload() -- new workers, same shared dict
    accounts()
    app:restart() -- new master: the dict starts empty and is filled from the file
    accounts()
    local after = sb:stats()
    assert.equal(before.code_exchanges, after.code_exchanges)
    assert.equal(before.refreshes, after.refreshes)
    assert.equal(before.unauthorized, after.unauthorized)

    -- a refresh after the restart reaches the file before it is used
    sb:advance(600)
    accounts()
    assert.equal(before.refreshes + 1, sb:stats().refreshes)
    local now = file_tokens(app.settings.token_file)
    assert.is_true(now.obtained_at > saved.obtained_at)
    assert.are_not.equal(saved.refresh_token, now.refresh_token)

    -- and the next restart starts from that newer chain: no further token call
    app:restart()
    accounts()
    assert.equal(before.refreshes + 1, sb:stats().refreshes)
    assert.equal(before.code_exchanges, sb:stats().code_exchanges)
  end)
end)
