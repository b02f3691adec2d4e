-- `exactonline sandbox` runs in the foreground, creates its TLS files, prints what a client needs,
-- and takes nginx down with it on SIGTERM.
local helpers = require "helpers"

local proc = require "support.proc"

local q, sh, alive = helpers.quote, helpers.sh, proc.alive

-- the sandbox on this port answers /_sandbox/stats (it may take a while to create its TLS files): the status
local function answering(port, cafile, token)
  local status
  for _ = 1, 100 do
    status = helpers.http("GET", "https://localhost:" .. port .. "/_sandbox/stats", { cafile = cafile, timeout = 2,
      headers = { ["X-Sandbox-Token"] = token } })
    if status == 200 then break end
    os.execute("sleep 0.1")
  end
  return status
end

describe("exactonline sandbox (CLI)", function()
  local cli = helpers.cli_lua() .. " " .. q(helpers.root .. "/bin/exactonline")

  it("prints usage with --help and refuses unknown options", function()
    local ok, out = sh(cli .. " sandbox --help")
    assert.is_true(ok, out)
    assert.truthy(out:find("--tls-dir", 1, true))
    local _, _, rc = sh(cli .. " sandbox --bogus")
    assert.equal(2, rc)
  end)

  -- the address and credentials are printed only once nginx listens: a script that waits for them can connect
  it("prints its address only once it listens; on a port in use it says so and prints no address", function()
    local port = helpers.free_port()
    local holder = proc.spawn(cli .. " sandbox --port " .. port .. " >/dev/null 2>&1")
    assert.equal(401, (function()
      local status
      for _ = 1, 100 do
        status = helpers.http("GET", "http://127.0.0.1:" .. port .. "/api/v1/current/Me", { timeout = 2 })
        if status == 401 then break end
        os.execute("sleep 0.1")
      end
      return status
    end)())
    local ok, out, rc = sh(cli .. " sandbox --port " .. port .. " 2>&1")
    sh("kill -TERM " .. holder)
    assert.is_false(ok)
    assert.equal(1, rc, out)
    assert.is_nil(out:find("client secret:", 1, true), out)
    assert.matches("the sandbox did not start (nginx exited with 1): is port " .. port .. " taken?", out, 1, true)
  end)

  it("runs from a `make install` tree in a DESTDIR, nothing from the checkout", function()
    local dir = helpers.tmpdir()
    local tree = assert(helpers.make_install())
    for _, f in ipairs{ "/bin/exactonline", "/lib/lua/5.4/exactonline/core.so", "/share/lua/5.4/exactonline/init.lua",
                        "/share/lua/5.4/exactonline/sandbox/app.lua" } do
      assert.is_true(helpers.exists(tree .. f), f)
    end
    local port = helpers.free_port()
    local pid = proc.spawn("cd / && exec " .. helpers.installed_env(tree) ..
      " EXACTONLINE_SANDBOX_TOKEN=spec-token-1 lua5.4 " .. q(tree .. "/bin/exactonline")
      .. " sandbox --port " .. port .. " --tls-dir " .. q(dir .. "/tls") .. " --accounts 3 > " .. q(dir .. "/log")
      .. " 2>&1")
    local status = answering(port, dir .. "/tls/ca.pem", "spec-token-1")
    local log = helpers.read(dir .. "/log")
    local prefix = log:match("error log:%s+(%S+)/logs/error%.log")
    local text = prefix and helpers.read(prefix .. "/conf/nginx.conf") or ""
    sh("kill -TERM " .. pid)
    assert.equal(200, status, log)
    -- nginx was given the installed Lua tree, not the checkout's
    assert.truthy(text:find(tree .. "/share/lua/5.4/?.lua", 1, true), text)
    assert.is_nil(text:find(helpers.root .. "/lua/", 1, true))
  end)

  it("serves HTTPS with fresh certificates and stops nginx on SIGTERM", function()
    local dir = helpers.tmpdir()
    local port = helpers.free_port()
    local log = dir .. "/out.txt"
    local pid = proc.spawn("cd " .. q(dir) .. " && exec " .. cli .. " sandbox --port " .. port ..
      " --tls-dir " .. q(dir .. "/tls") .. " --division 42 --accounts 7 --client-id my-app --client-secret s3 > " ..
      q(log) .. " 2>&1")
    assert.truthy(pid)
    -- the control token is printed before nginx starts
    local out, token = "", nil
    for _ = 1, 100 do
      out = helpers.read(log) or ""
      token = out:match("control token:%s+(%x+)")
      if token then break end
      os.execute("sleep 0.1")
    end
    assert.truthy(token, out)
    assert.equal(32, #token)
    local ctl = { ["X-Sandbox-Token"] = token }
    assert.equal(200, answering(port, dir .. "/tls/ca.pem", token))
    out = helpers.read(log)
    assert.truthy(out:find("https://localhost:" .. port, 1, true))
    assert.truthy(out:find("my-app", 1, true))
    assert.truthy(out:find("42", 1, true))
    local prefix = out:match("error log:%s+(%S+)/logs/error%.log")
    assert.truthy(prefix)
    -- the certificate chain verifies for both names
    assert.is_true((sh("openssl verify -CAfile " .. q(dir .. "/tls/ca.pem") .. " " .. q(dir .. "/tls/server.pem"))))
    local status = helpers.http("GET", "https://127.0.0.1:" .. port .. "/_sandbox/stats",
      { cafile = dir .. "/tls/ca.pem", headers = ctl })
    assert.equal(200, status)
    -- the app is the one on the command line, with 7 accounts in division 42
    local auth = "https://localhost:" .. port .. "/api/oauth2/auth?" .. helpers.form{ client_id = "my-app",
      redirect_uri = "https://localhost/callback", response_type = "code" }
    local s2, h = helpers.http("GET", auth, { cafile = dir .. "/tls/ca.pem" })
    assert.equal(302, s2)
    local nginx_pid = tonumber(helpers.read(prefix .. "/logs/nginx.pid"))
    assert.truthy(alive(nginx_pid))
    assert.truthy(h.location:find("code=", 1, true))

    sh("kill -TERM " .. pid)
    for _ = 1, 50 do
      if not alive(nginx_pid) then break end
      os.execute("sleep 0.1")
    end
    assert.is_false(alive(nginx_pid))
    local gone = helpers.http("GET", "https://localhost:" .. port .. "/_sandbox/stats",
      { cafile = dir .. "/tls/ca.pem", timeout = 2, headers = ctl })
    assert.is_nil(gone)
  end)
end)
