-- Secrets never leak: the main paths (exchange, refresh, 401, broken answers, wrong credentials, the CLI)
-- run with distinctive secrets, and every error text, tostring, warning and CLI output they produce is
-- searched for the client secret and every token the sandbox handed out.
local helpers = require "helpers"
local exactonline = require "exactonline"
local core = require "exactonline.core"
local cli = require "support.cli_run"
local secrets = require "support.secrets"

local SECRET = "hardening-secret-Zq81xT4w"

describe("hardening: secrets never leak", function()
  local sb = helpers.use_sandbox { client_secret = SECRET, accounts = 5 }
  local seen, offset

  local function clock() return core.now() + offset end
  local function remember(store)
    local t = store.load()
    if t then
      seen:secret(t.access_token)
      seen:secret(t.refresh_token)
    end
  end

  setup(function()
    seen = secrets.new()
    seen:secret(SECRET)
  end)
  before_each(function()
    offset = 0
  end)

  it("through exchange, refresh, 401, broken answers and wrong credentials in the library", function()
    local store = exactonline.memory_store()
    local c = assert(exactonline.new(sb:client_config { store = store, clock = clock,
      on_warning = function(msg) seen:add("on_warning", msg) end }))
    seen:add("tostring(new client)", c)
    seen:add("wrong code", select(2, c:exchange("not-a-code")))
    seen:add("foreign state", select(2, c:exchange(sb:authorize { state = "a" }, "b")))
    assert(c:exchange(sb:authorize { state = "s" }, "s"))
    remember(store)
    seen:add("tostring(authorized client)", c)
    seen:add("early refresh", select(2, c:refresh()))
    offset = offset + 580
    sb:advance(580)
    assert(c:refresh())
    remember(store)
    seen:add("tostring(refreshed client)", c)
    assert(c:get("crm/Accounts"))
    sb:fault("401", 1)
    offset = offset + 600
    sb:advance(600)
    seen:add("after 401", select(2, c:get("crm/Accounts")))
    remember(store)
    for _, kind in ipairs { "html503", "html500", "garbage", "truncate" } do
      sb:fault(kind, 1)
      seen:add(kind, select(2, c:get("crm/Accounts")))
    end
    seen:add("foreign origin", select(2, c:get("https://elsewhere.example/api/v1/1/crm/Accounts")))
    -- a dead chain: the refresh token used twice
    local old = store.load()
    offset = offset + 600
    sb:advance(600)
    assert(c:refresh())
    remember(store)
    local c2 = assert(exactonline.new(sb:client_config { store = exactonline.memory_store(old), clock = clock }))
    seen:add("dead chain", select(2, c2:refresh()))
    seen:add("tostring(dead client)", c2)
    -- wrong client secret and wrong client id
    local bad = assert(exactonline.new(sb:client_config { client_secret = SECRET .. "-wrong" }))
    seen:secret(SECRET .. "-wrong")
    seen:add("invalid_client", select(2, bad:exchange(sb:code())))
    c:close()
    seen:add("tostring(closed client)", c)
    assert.is_true(seen:count() > 15)
    assert.same({}, seen:leaks())
  end)

  it("never while SSLKEYLOGFILE would make libcurl write TLS session keys, unless allowed", function()
    local dir = helpers.tmpdir()
    local keys = dir .. "/keys.log"
    local script = dir .. "/keylog.lua"
    helpers.write(script, ([[
local exactonline = require "exactonline"
local ok, c = pcall(exactonline.new, { base_url = %q, cafile = %q, client_id = %q, client_secret = %q,
  redirect_uri = %q })
if not ok then io.write("refused: ", tostring(c), "\n") os.exit(3) end
local t, err = c:exchange(%q)
io.write(t and "exchanged\n" or ("failed: " .. tostring(err) .. "\n"))
]]):format(sb.base_url, sb.cafile, sb.client_id, SECRET, sb.redirect_uri, sb:code()))
    local function run(env)
      local p = io.popen(env .. " " .. helpers.lua_env() .. " " .. helpers.lua() .. " " .. helpers.quote(script) ..
        " 2>&1")
      local out = p:read("*a")
      p:close()
      return out
    end
    local out = run("SSLKEYLOGFILE=" .. helpers.quote(keys))
    assert.matches("refused: exactonline.new: SSLKEYLOGFILE is set", out, 1, true)
    assert.matches("EXACTONLINE_ALLOW_KEYLOG=1", out, 1, true)
    assert.equal("", helpers.read(keys) or "") -- no handshake happened: no key reached the file
    -- allowed on purpose, libcurl does write the keys: the refusal above is what kept them out
    out = run("SSLKEYLOGFILE=" .. helpers.quote(keys) .. " EXACTONLINE_ALLOW_KEYLOG=1")
    assert.matches("exchanged", out, 1, true)
    assert.matches("CLIENT_", helpers.read(keys) or "", 1, true)
  end)

  it("through the CLI: auth, token, refresh, get, and its error messages", function()
    local dir = helpers.tmpdir()
    local env = cli.env_for(sb, dir)
    local function run(args, opts)
      local res = cli.run(env, args, opts)
      seen:add("exactonline " .. table.concat(args, " ") .. " (stdout)", res.stdout)
      seen:add("exactonline " .. table.concat(args, " ") .. " (stderr)", res.stderr)
      return res
    end
    assert.equal(0, run({ "auth" }, { stdin = sb:code() .. "\n" }).code)
    local doc = cli.token_doc(dir)
    seen:secret(doc.tokens.access_token)
    seen:secret(doc.tokens.refresh_token)
    run({ "token" })
    run({ "get", "crm/Accounts" })
    sb:fault("html503", 1)
    run({ "get", "crm/Accounts" })
    run({ "get", "https://elsewhere.example/x" })
    run({ "refresh" })
    sb:advance(600)
    run({ "refresh" })
    doc = cli.token_doc(dir)
    seen:secret(doc.tokens.access_token)
    seen:secret(doc.tokens.refresh_token)
    run({ "token" })
    run({ "auth" }, { stdin = "not-a-code\n" })
    env.EXACT_CLIENT_SECRET = SECRET .. "-wrong2"
    seen:secret(env.EXACT_CLIENT_SECRET)
    run({ "auth" }, { stdin = sb:code() .. "\n" })
    assert.same({}, seen:leaks())
  end)
end)
