-- exactonline auth / token / refresh against the sandbox, run as child processes (same VM as busted).
local helpers = require "helpers"
local cli = require "support.cli_run"

local q = helpers.quote

local function no_traceback(res)
  local all = (res.stderr or "") .. (res.stdout or "") .. (res.output or "")
  assert.is_nil(all:find("stack traceback", 1, true), all)
  assert.is_nil(all:find("%.lua:%d+:"), all)
end

local function browser(sb, url)
  local status, headers = helpers.http("GET", url, { cafile = sb.cafile })
  assert.are.equal(302, status)
  return headers.location or headers.Location
end

describe("exactonline auth", function()
  local sb = helpers.use_sandbox {}
  local dir, env
  before_each(function()
    dir = helpers.tmpdir()
    env = cli.env_for(sb, dir)
  end)

  it("takes the redirect URL pasted on a terminal, stores the tokens and says who is connected", function()
    local res = cli.auth_pty(env, function(url)
      assert.are.equal(sb.client_id, helpers.query(url).client_id)
      return browser(sb, url)
    end)
    assert.are.equal(0, res.code, res.output)
    assert.matches("Connected as", res.output)
    assert.matches("Division: " .. sb.division, res.output, 1, true)
    assert.is_nil(res.output:find(sb.client_secret, 1, true))
    local doc = cli.token_doc(dir)
    assert.is_string(doc.tokens.refresh_token)
    assert.is_nil(res.output:find(doc.tokens.refresh_token, 1, true))
    assert.is_nil(res.output:find(doc.tokens.access_token, 1, true))
    assert.are.equal(1, sb:stats().code_exchanges)
    -- the stored tokens work for the next command
    local me = cli.run(env, { "get", "/api/v1/current/Me" })
    assert.are.equal(0, me.code, me.stderr)
    assert.matches('"CurrentDivision": ' .. sb.division, me.stdout, 1, true)
  end)

  it("opens the URL with xdg-open only when there is a display, and not with --no-browser", function()
    -- a stand-in xdg-open first on PATH records what it was asked to open
    local bin = dir .. "/bin"
    helpers.sh("mkdir -p " .. q(bin))
    helpers.write(bin .. "/xdg-open", "#!/bin/sh\nprintf '%s\\n' \"$1\" >> \"$XDG_OPEN_LOG\"\n")
    helpers.sh("chmod 755 " .. q(bin .. "/xdg-open"))
    local log = dir .. "/opened"
    local function auth(extra, args)
      local e = cli.env_for(sb, dir, extra)
      e.PATH = bin .. ":" .. os.getenv("PATH")
      e.XDG_OPEN_LOG = log
      local argv = { "auth" }
      for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
      local res = cli.run(e, argv, { stdin = sb:code() .. "\n" })
      assert.are.equal(0, res.code, res.stderr)
      return res
    end
    local function opened()
      for _ = 1, 40 do -- xdg-open runs in the background
        if helpers.exists(log) then break end
        helpers.sh("sleep 0.05")
      end
      local text = helpers.read(log)
      os.remove(log)
      return text
    end
    local res = auth({ DISPLAY = ":0" })
    local url = res.stdout:match("(https://%S+/api/oauth2/auth%?%S+)")
    assert.are.equal(url .. "\n", opened())
    auth({ WAYLAND_DISPLAY = "wayland-0" })
    assert.are.equal(url:match("^[^?]+"), (opened() or ""):match("^[^?]+"))
    auth({})
    assert.is_nil(opened(), "xdg-open ran without a display")
    auth({ DISPLAY = ":0" }, { "--no-browser" })
    assert.is_nil(opened(), "xdg-open ran with --no-browser")
  end)

  it("takes a bare code on stdin and --redirect-url", function()
    local res = cli.run(env, { "auth" }, { stdin = sb:code() .. "\n" })
    assert.are.equal(0, res.code, res.stderr)
    local res2 = cli.run(env, { "auth", "--redirect-url", (sb:authorize { state = "elsewhere" }) })
    assert.are.equal(0, res2.code, res2.stderr)
    assert.are.equal(2, sb:stats().code_exchanges)
  end)

  it("says consent was denied", function()
    local res = cli.auth_pty(env, function(url)
      return "https://localhost/callback?error=access_denied&error_description=The+user+denied+access&state="
        .. helpers.query(url).state
    end)
    assert.are.equal(1, res.code, res.output)
    assert.matches("denied", res.output:lower())
    no_traceback(res)
    assert.are.equal(0, sb:stats().token_calls)
  end)

  it("says a reused code works only once", function()
    local code = sb:code()
    assert.are.equal(0, cli.run(env, { "auth", "--redirect-url", code }).code)
    local res = cli.run(env, { "auth", "--redirect-url", code })
    assert.are.equal(1, res.code)
    assert.matches("code", res.stderr)
    assert.matches("exactonline auth: ", res.stderr, 1, true)
    assert.matches("^exactonline auth: [^\n]+\n[^\n]*\n?$", res.stderr) -- what failed, and what to do
    no_traceback(res)
  end)

  it("says a late code expired (codes live 3 minutes)", function()
    local res = cli.auth_pty(env, function(url)
      local location = browser(sb, url)
      sb:advance(181)
      return location
    end)
    assert.are.equal(1, res.code, res.output)
    assert.matches("code", res.output)
    no_traceback(res)
  end)

  it("fails clearly with a redirect URI that is not the registered one", function()
    local code = sb:code()
    local res = cli.run(cli.env_for(sb, dir, { EXACT_REDIRECT_URI = "https://localhost/other" }),
      { "auth", "--redirect-url", code })
    assert.are.equal(1, res.code)
    assert.matches("redirect", res.stderr:lower())
    no_traceback(res)
    -- and the sandbox's authorization page does not redirect to it
    local status = helpers.http("GET", sb.base_url .. "/api/oauth2/auth?client_id=" .. sb.client_id
      .. "&redirect_uri=https%3A%2F%2Flocalhost%2Fother&response_type=code", { cafile = sb.cafile })
    assert.are_not.equal(302, status)
  end)

  it("fails clearly with a wrong client secret (invalid_client), never printing it", function()
    local res = cli.run(cli.env_for(sb, dir, { EXACT_CLIENT_SECRET = "wrong-secret-xyz" }),
      { "auth", "--redirect-url", sb:code() })
    assert.are.equal(1, res.code)
    assert.matches("invalid_client", res.stderr)
    assert.is_nil(res.stderr:find("wrong-secret-xyz", 1, true))
    no_traceback(res)
  end)

  it("fails clearly on the wrong region's host (the app is unknown there), pointing at the region", function()
    -- on another region's host the client id is unknown: Exact answers invalid_client
    local res = cli.run(cli.env_for(sb, dir, { EXACT_CLIENT_ID = "00000000-0000-0000-0000-0000000000aa" }),
      { "auth", "--redirect-url", sb:code() })
    assert.are.equal(1, res.code)
    assert.matches("invalid_client", res.stderr, 1, true)
    assert.matches("region", res.stderr, 1, true)
    no_traceback(res)
  end)

  it("names the flag and the variable of a missing setting", function()
    local res = cli.run(cli.env_for(sb, dir, { EXACT_CLIENT_ID = false }), { "auth" })
    assert.are.equal(2, res.code)
    assert.matches("--client-id", res.stderr, 1, true)
    assert.matches("EXACT_CLIENT_ID", res.stderr, 1, true)
  end)

  it("lets flags win over the environment", function()
    local res = cli.run(cli.env_for(sb, dir, { EXACT_CLIENT_SECRET = "wrong-secret-xyz" }),
      { "auth", "--client-secret", sb.client_secret, "--redirect-url", sb:code() })
    assert.are.equal(0, res.code, res.stderr)
  end)

  it("reads settings from the config file, below the environment", function()
    helpers.sh("mkdir -p " .. q(dir .. "/config/exactonline"))
    helpers.write(dir .. "/config/exactonline/config.lua", ("return { client_id = %q, client_secret = 'from-file' }")
      :format(sb.client_id))
    local res = cli.run(cli.env_for(sb, dir, { EXACT_CLIENT_ID = false }), { "auth", "--redirect-url", sb:code() })
    assert.are.equal(0, res.code, res.stderr)
  end)
end)

describe("exactonline token and refresh", function()
  local sb = helpers.use_sandbox {}
  local dir, env
  before_each(function()
    dir, env = cli.authorized_home(sb)
  end)

  local function shift(fields, seconds)
    local doc = cli.token_doc(dir)
    for _, f in ipairs(fields) do
      if doc.tokens[f] then doc.tokens[f] = doc.tokens[f] - seconds end
    end
    cli.write_token_doc(dir, doc)
  end

  it("exits 0 with fresh tokens, 1 with fewer than 7 days left, 2 expired or missing", function()
    local res = cli.run(env, { "token" })
    assert.are.equal(0, res.code, res.stderr)
    local left = tonumber(res.stdout:match("(%d+) days left"))
    assert.is_true(left == 29 or left == 30, res.stdout)
    assert.matches(tostring(sb.division), res.stdout, 1, true)
    assert.is_nil(res.stdout:find(cli.token_doc(dir).tokens.refresh_token, 1, true))

    shift({ "obtained_at", "refresh_obtained_at", "expires_at" }, 25 * 86400)
    res = cli.run(env, { "token" })
    assert.are.equal(1, res.code, res.stdout)
    left = tonumber(res.stdout:match("(%d+) days left"))
    assert.is_true(left == 4 or left == 5, res.stdout)

    shift({ "obtained_at", "refresh_obtained_at", "expires_at" }, 6 * 86400)
    res = cli.run(env, { "token" })
    assert.are.equal(2, res.code, res.stdout)
    assert.matches("exactonline auth", res.stdout, 1, true)

    res = cli.run(cli.env_for(sb, dir, { EXACT_TOKEN_FILE = dir .. "/none.json" }), { "token" })
    assert.are.equal(2, res.code)
    assert.matches("exactonline auth", res.stderr, 1, true)
  end)

  it("refresh says when it will be allowed, then refreshes once allowed", function()
    local res = cli.run(env, { "refresh" })
    assert.are.equal(0, res.code, res.stderr)
    assert.matches("not refreshed", res.stdout, 1, true)
    -- the 570 s rule, counted from the stored token time: never "in 571 s"
    local secs = tonumber(res.stdout:match("%(in (%d+) s%)"))
    assert.is_number(secs, res.stdout)
    assert.is_true(secs <= 570 and secs > 500, res.stdout)
    assert.are.equal(0, sb:stats().refreshes)

    shift({ "obtained_at", "expires_at" }, 600)
    sb:advance(600)
    local before = cli.token_doc(dir).tokens.refresh_token
    res = cli.run(env, { "refresh" })
    assert.are.equal(0, res.code, res.stderr)
    assert.matches("refreshed", res.stdout, 1, true)
    assert.are.equal(1, sb:stats().refreshes)
    assert.are_not.equal(before, cli.token_doc(dir).tokens.refresh_token)
  end)

  it("warns once on stderr when the refresh token has fewer than 7 days left (default on_warning)", function()
    shift({ "refresh_obtained_at" }, 25 * 86400)
    local res = cli.run(env, { "get", "/api/v1/current/Me" })
    assert.are.equal(0, res.code, res.stderr)
    local lines = {}
    for l in res.stderr:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(1, #lines, res.stderr)
    assert.matches("^exactonline: warning: the refresh token expires in [45]%.%d days %(", lines[1])
    assert.matches("exactonline auth", lines[1], 1, true)
    assert.is_nil(lines[1]:find(cli.token_doc(dir).tokens.refresh_token, 1, true))
    -- once per process: a second client on the same tokens in the same process stays quiet
    local script = dir .. "/two.lua"
    helpers.write(script, ([[
      local exactonline = require "exactonline"
      for _ = 1, 2 do
        local c = assert(exactonline.new { client_id = %q, client_secret = %q, redirect_uri = %q,
          base_url = %q, cafile = %q, store = exactonline.file_store(%q) })
        assert(c:get("/api/v1/current/Me"))
        c:close()
      end
    ]]):format(sb.client_id, sb.client_secret, sb.redirect_uri, sb.base_url, sb.cafile,
      dir .. "/config/exactonline/tokens.json"))
    local out = helpers.capture(helpers.lua() .. " " .. q(script) .. " 2>&1 >/dev/null")
    local n = 0
    for _ in out:gmatch("exactonline: warning: ") do n = n + 1 end
    assert.are.equal(1, n, out)
  end)

  it("refresh renews an old chain: 25 days old is exit 0 again with 30 days left", function()
    shift({ "obtained_at", "refresh_obtained_at", "expires_at" }, 25 * 86400)
    assert.are.equal(1, cli.run(env, { "token" }).code)
    sb:advance(600) -- and on Exact's clock the access token is past the 570 s a refresh must wait
    local res = cli.run(env, { "refresh" })
    assert.are.equal(0, res.code, res.stdout .. res.stderr)
    assert.matches("refreshed", res.stdout, 1, true)
    local left = tonumber(res.stdout:match("(%d+) days left"))
    assert.is_true(left == 29 or left == 30, res.stdout)
    assert.are.equal(1, sb:stats().refreshes)
    assert.are.equal(0, cli.run(env, { "token" }).code)
  end)

  -- Exact's refresh and API calls take no redirect URI: a cron job needs only the app's id and secret
  it("refresh and get need no redirect URI; auth names it when it is missing", function()
    local bare = {}
    for k, v in pairs(env) do bare[k] = v end
    bare.EXACT_REDIRECT_URI = nil
    sb:advance(600)
    local res = cli.run(bare, { "refresh" })
    assert.are.equal(0, res.code, res.stdout .. res.stderr)
    assert.matches("refreshed", res.stdout, 1, true)
    res = cli.run(bare, { "get", "/api/v1/current/Me" })
    assert.are.equal(0, res.code, res.stdout .. res.stderr)
    assert.matches("CurrentDivision", res.stdout, 1, true)
    res = cli.run(bare, { "auth", "--redirect-url", "code" })
    assert.are.equal(2, res.code, res.stdout .. res.stderr)
    assert.matches("--redirect-uri", res.stderr, 1, true)
    assert.matches("EXACT_REDIRECT_URI", res.stderr, 1, true)
  end)

  it("refresh exits 2 when the chain is dead", function()
    local doc = cli.token_doc(dir)
    doc.tokens.refresh_token = "dead" .. doc.tokens.refresh_token
    doc.tokens.obtained_at = doc.tokens.obtained_at - 600
    doc.tokens.expires_at = doc.tokens.expires_at - 600
    cli.write_token_doc(dir, doc)
    sb:advance(600)
    local res = cli.run(env, { "refresh" })
    assert.are.equal(2, res.code, res.stdout .. res.stderr)
    assert.matches("exactonline refresh: ", res.stderr, 1, true)
    no_traceback(res)
  end)
end)

describe("exactonline auth --listen", function()
  it("catches the browser's redirect on a localhost redirect URI", function()
    local socket = require "socket"
    local probe = assert(socket.bind("127.0.0.1", 0))
    local _, port = probe:getsockname()
    probe:close()
    local redirect_uri = "http://127.0.0.1:" .. port .. "/callback"
    local sb = helpers.sandbox { redirect_uri = redirect_uri } -- stopped when the file ends, whatever happens
    local h = cli.spawn(cli.env_for(sb, helpers.tmpdir()), { "auth", "--listen", "--timeout", "30" })
    local url
    for _ = 1, 200 do
      url = (helpers.read(h.dir .. "/out") or ""):match("(https://%S+/api/oauth2/auth%?%S+)")
      if url and (helpers.read(h.dir .. "/out") or ""):find("Waiting", 1, true) then break end
      helpers.sh("sleep 0.05")
    end
    assert.is_string(url)
    local location = browser(sb, url)
    assert.are.equal(redirect_uri, location:match("^[^?]+"))
    -- the browser follows the redirect to the CLI's listener
    local status, _, body = helpers.http("GET", location, {})
    assert.are.equal(200, status)
    assert.matches("close this window", body, 1, true)
    assert.are.equal(0, h.wait(), h.stderr)
    assert.matches("Connected as", h.stdout, 1, true)
    assert.are.equal(1, sb:stats().code_exchanges)
  end)
end)
