-- `exactonline sandbox` runs in the foreground, creates its TLS files, prints what a client needs,
-- and takes nginx down with it on SIGTERM.
local helpers = require "helpers"

local q = helpers.quote

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc, (out:gsub("rc=%d+%s*$", ""))
end

local function alive(pid)
  return (sh("kill -0 " .. pid)) == 0
end

describe("exactonline sandbox (CLI)", function()
  local cli = helpers.lua() .. " " .. q(helpers.root .. "/bin/exactonline")

  it("prints usage with --help and refuses unknown options", function()
    local rc, out = sh(cli .. " sandbox --help")
    assert.equal(0, rc)
    assert.truthy(out:find("--tls-dir", 1, true))
    rc = sh(cli .. " sandbox --bogus")
    assert.equal(2, rc)
  end)

  it("runs from a `make install` tree in a DESTDIR, nothing from the checkout", function()
    local dir = helpers.tmpdir()
    local root = dir .. "/root"
    local rc, out = sh("make -s -C " .. q(helpers.root) .. " install DESTDIR=" .. q(root) ..
      " PREFIX=/usr")
    assert.equal(0, rc, out)
    local tree = root .. "/usr"
    for _, f in ipairs{ "/bin/exactonline", "/lib/lua/5.4/exactonline/core.so", "/share/lua/5.4/exactonline/init.lua",
                        "/share/lua/5.4/exactonline/sandbox/app.lua" } do
      assert.equal(0, (sh("test -f " .. q(tree .. f))), f)
    end
    local env = "cd / && exec env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 LUA_PATH=" ..
      q(tree .. "/share/lua/5.4/?.lua;" .. tree .. "/share/lua/5.4/?/init.lua;;") ..
      " LUA_CPATH=" .. q(tree .. "/lib/lua/5.4/?.so;;") .. " "
    local port = helpers.free_port()
    local _, pid = sh("(" .. env .. "lua5.4 " .. q(tree .. "/bin/exactonline") .. " sandbox --port " ..
      port .. " --tls-dir " .. q(dir .. "/tls") .. " --accounts 3 > " .. q(dir .. "/log") ..
      " 2>&1) & echo $!")
    pid = tonumber(pid:match("%d+"))
    local status
    for _ = 1, 100 do
      status = helpers.http("GET", "https://localhost:" .. port .. "/_sandbox/stats",
        { cafile = dir .. "/tls/ca.pem", timeout = 2 })
      if status == 200 then break end
      os.execute("sleep 0.1")
    end
    local f = io.open(dir .. "/log")
    local log = f:read("*a")
    f:close()
    local prefix = log:match("error log:%s+(%S+)/logs/error%.log")
    local conf = prefix and io.open(prefix .. "/conf/nginx.conf")
    local text = conf and conf:read("*a") or ""
    if conf then conf:close() end
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
    local _, pid = sh("(cd " .. q(dir) .. " && exec " .. cli .. " sandbox --port " .. port ..
      " --tls-dir " .. q(dir .. "/tls") ..
      " --division 42 --accounts 7 --client-id my-app --client-secret s3 > " ..
      q(log) .. " 2>&1) & echo $!")
    pid = tonumber(pid:match("%d+"))
    assert.truthy(pid)
    local status
    for _ = 1, 100 do
      status = helpers.http("GET", "https://localhost:" .. port .. "/_sandbox/stats",
        { cafile = dir .. "/tls/ca.pem", timeout = 2 })
      if status == 200 then break end
      os.execute("sleep 0.1")
    end
    assert.equal(200, status)
    local f = io.open(log)
    local out = f:read("*a")
    f:close()
    assert.truthy(out:find("https://localhost:" .. port, 1, true))
    assert.truthy(out:find("my-app", 1, true))
    assert.truthy(out:find("42", 1, true))
    local prefix = out:match("error log:%s+(%S+)/logs/error%.log")
    assert.truthy(prefix)
    -- the certificate chain verifies for both names
    assert.equal(0, (sh("openssl verify -CAfile " .. q(dir .. "/tls/ca.pem") .. " " ..
      q(dir .. "/tls/server.pem"))))
    status = helpers.http("GET", "https://127.0.0.1:" .. port .. "/_sandbox/stats",
      { cafile = dir .. "/tls/ca.pem" })
    assert.equal(200, status)
    -- the app is the one on the command line, with 7 accounts in division 42
    local auth = "https://localhost:" .. port .. "/api/oauth2/auth?" .. helpers.form{ client_id = "my-app",
      redirect_uri = "https://localhost/callback", response_type = "code" }
    local s2, h = helpers.http("GET", auth, { cafile = dir .. "/tls/ca.pem" })
    assert.equal(302, s2)
    local f2 = io.open(prefix .. "/logs/nginx.pid")
    local nginx_pid = tonumber(f2:read("*a"))
    f2:close()
    assert.truthy(alive(nginx_pid))
    assert.truthy(h.location:find("code=", 1, true))

    sh("kill -TERM " .. pid)
    for _ = 1, 50 do
      if not alive(nginx_pid) then break end
      os.execute("sleep 0.1")
    end
    assert.is_false(alive(nginx_pid))
    local gone = helpers.http("GET", "https://localhost:" .. port .. "/_sandbox/stats",
      { cafile = dir .. "/tls/ca.pem", timeout = 2 })
    assert.is_nil(gone)
  end)
end)
