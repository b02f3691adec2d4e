-- The sandbox is reachable only by whoever started it: a control token on every /_sandbox/ call, loopback
-- Host names only (no DNS rebinding), workers that are not root, a TLS folder nobody else can plant a CA in,
-- and an XML upload parser that stays linear on hostile input.
local helpers = require "helpers"
local runner = require "exactonline.sandbox"

local q, sh = helpers.quote, helpers.sh

describe("sandbox security", function()
  local sb = helpers.use_sandbox{ accounts = 5, reset = false }

  describe("control token", function()
    it("is required on every /_sandbox/ call, and must be the right one", function()
      for _, c in ipairs{ { "GET", "/_sandbox/stats" }, { "POST", "/_sandbox/reset" },
                          { "POST", "/_sandbox/advance?seconds=600" }, { "POST", "/_sandbox/config?minutely=1" },
                          { "POST", "/_sandbox/fault?kind=html503&count=5" },
                          { "GET", "/_sandbox/entity?entity=accounts" },
                          { "POST", "/_sandbox/change?entity=accounts&delete=1" }, { "GET", "/_sandbox/nope" } } do
        local status, _, body = helpers.http(c[1], sb:url(c[2]), { cafile = sb.cafile })
        assert.equal(401, status, c[2])
        assert.truthy(body:find("X-Sandbox-Token", 1, true))
        status = helpers.http(c[1], sb:url(c[2]), { cafile = sb.cafile,
          headers = { ["X-Sandbox-Token"] = sb.control_token .. "x" } })
        assert.equal(403, status, c[2])
      end
      -- nothing happened: no fault pending, clock not moved, limits untouched, no account deleted
      local s = sb:stats()
      assert.equal(0, s.faults_pending.api)
      assert.equal(0, s.clock_offset)
      assert.equal(60, s.limits.minutely)
      assert.equal(5, sb:entity("accounts").count)
      assert.equal(200, (helpers.http("GET", sb:url("/_sandbox/stats"), { cafile = sb.cafile,
        headers = sb:control_headers() })))
    end)

    it("is random per start, or EXACTONLINE_SANDBOX_TOKEN", function()
      local a = assert(runner.prepare{ port = helpers.free_port() })
      local b = assert(runner.prepare{ port = helpers.free_port() })
      runner.stop(a)
      runner.stop(b)
      assert.truthy(a.control_token:match("^%x+$"))
      assert.equal(32, #a.control_token)
      assert.are_not.equal(a.control_token, b.control_token)
      local ok, out = sh(helpers.lua_env() .. " EXACTONLINE_SANDBOX_TOKEN=from-env " .. helpers.lua() ..
        " -e 'local r = require \"exactonline.sandbox\"; local i = assert(r.prepare{ port = 1 }); " ..
        "print(i.control_token); r.stop(i)'")
      assert.is_true(ok, out)
      assert.equal("from-env\n", out)
      -- and it never appears in the nginx config or its arguments, only in the 0600 settings file
      local c = assert(runner.prepare{ port = helpers.free_port() })
      local f = assert(io.open(c.conf))
      local conf = f:read("*a")
      f:close()
      local _, mode = sh("stat -c %a " .. q(c.prefix .. "/sandbox.lua"))
      runner.stop(c)
      assert.is_nil(conf:find(c.control_token, 1, true))
      assert.equal("600\n", mode)
    end)

    it("does not open the API: the API wants its Bearer token, not the control token", function()
      local status = helpers.http("GET", sb:url("/api/v1/current/Me"), { cafile = sb.cafile,
        headers = { Accept = "application/json", ["X-Sandbox-Token"] = sb.control_token } })
      assert.equal(401, status)
    end)
  end)

  describe("Host", function()
    it("must be a loopback name: another name (DNS rebinding) is refused, for the API and the controls", function()
      for _, host in ipairs{ "evil.example", "evil.example:" .. sb.port, "localhost.evil.example", "127.0.0.1.nip.io",
                             "10.0.0.1", "[::2]:" .. sb.port } do
        for _, path in ipairs{ "/_sandbox/stats", "/api/oauth2/auth?client_id=" .. sb.client_id,
                               "/api/v1/current/Me" } do
          local status, _, body = helpers.http("GET", sb:url(path), { cafile = sb.cafile,
            headers = sb:control_headers{ Host = host } })
          assert.equal(421, status, host .. " " .. path)
          assert.truthy(body:find("loopback", 1, true))
        end
      end
      for _, host in ipairs{ "localhost:" .. sb.port, "127.0.0.1:" .. sb.port, "LOCALHOST", "[::1]:" .. sb.port,
                             "sandbox.localhost:" .. sb.port, "127.0.0.2" } do
        assert.equal(200, (helpers.http("GET", sb:url("/_sandbox/stats"), { cafile = sb.cafile,
          headers = sb:control_headers{ Host = host } })), host)
      end
    end)
  end)

  describe("nginx workers", function()
    it("never run as root", function()
      local pid = assert(runner.pid(sb.info))
      local _, master = sh("ps -o user= -p " .. pid)
      local _, users = sh("ps -o user= --ppid " .. pid)
      assert.truthy(users:match("%S"), "no workers found")
      for user in users:gmatch("%S+") do
        assert.are_not.equal("root", user)
        if master:match("^root") then assert.equal("nobody", user) end
      end
      -- and they serve everything, HTTPS and all, as that user
      local token = sb:tokens().access_token
      assert.equal(200, (sb:api("GET", "/api/v1/" .. sb.division .. "/crm/Accounts", token)))
      assert.equal(201, (sb:api("POST", "/api/v1/" .. sb.division .. "/crm/Accounts", token,
        { body = { Name = "Gemaakt als nobody" } })))
    end)
  end)

  describe("--tls-dir", function()
    it("is created fresh with mode 0700 when missing", function()
      local dir = helpers.tmpdir() .. "/new/tls"
      assert(runner.ensure_tls(dir))
      local _, mode = sh("stat -c %a " .. q(dir))
      assert.equal("700\n", mode)
      assert.is_true((sh("openssl verify -CAfile " .. q(dir .. "/ca.pem") .. " " .. q(dir .. "/server.pem"))))
    end)

    it("is refused when others may write it, even with a complete set of files in it", function()
      local dir = helpers.tmpdir() .. "/open"
      assert(runner.ensure_tls(dir))
      sh("chmod 777 " .. q(dir))
      local ok, err = runner.ensure_tls(dir)
      assert.is_nil(ok)
      assert.truthy(err:find("writable by others", 1, true), err)
      local info, perr = runner.prepare{ port = helpers.free_port(), tls_dir = dir }
      assert.is_nil(info)
      assert.truthy(perr:find(dir, 1, true))
      sh("chmod 770 " .. q(dir))
      assert.is_nil((runner.ensure_tls(dir)))
    end)

    it("is refused when it belongs to another user", function()
      local dir = helpers.tmpdir() .. "/theirs"
      assert(runner.ensure_tls(dir))
      if not sh("chown nobody " .. q(dir)) then
        -- not root: a folder we cannot give away; /tmp itself belongs to root (and is writable by all)
        dir = "/tmp"
      end
      local ok, err = runner.ensure_tls(dir)
      assert.is_nil(ok)
      assert.truthy(err:find("another user", 1, true) or err:find("writable by others", 1, true), err)
    end)

    it("is refused when it is a symbolic link", function()
      local base = helpers.tmpdir()
      assert(runner.ensure_tls(base .. "/real"))
      sh("ln -s " .. q(base .. "/real") .. " " .. q(base .. "/link"))
      local ok, err = runner.ensure_tls(base .. "/link")
      assert.is_nil(ok)
      assert.truthy(err:find("not a folder", 1, true), err)
    end)
  end)

  describe("XML upload", function()
    it("parses a hostile body (40 000 <Account> tags never closed) in one pass", function()
      local token = sb:tokens().access_token
      -- the old parser searched to the end of the body from every tag (~2 * 10^10 steps here: minutes);
      -- now one pass (milliseconds). The timeout is a liveness bound with 1000-fold slack, not a timing.
      local body = '<?xml version="1.0"?><eExact><Accounts>' .. string.rep('<Account code="1"><Name>x', 40000)
      local status, _, answer = helpers.http("POST", sb:url("/docs/XMLUpload.aspx?Topic=Accounts&_Division_=" ..
        sb.division), { cafile = sb.cafile, timeout = 30, body = body,
        headers = { Authorization = "Bearer " .. token, ["Content-Type"] = "application/xml" } })
      assert.equal(200, status)
      assert.truthy(answer:find("<eExact><Messages></Messages></eExact>", 1, true))
    end)

    it("reads a body larger than nginx keeps in memory (it is buffered to a file)", function()
      local token = sb:tokens().access_token
      local pad = "<!-- " .. string.rep("x", 2 * 1024 * 1024) .. " -->"
      local body = '<?xml version="1.0"?><eExact>' .. pad .. '<Accounts><Account code="BIG1"><Name>Groot</Name>' ..
        "</Account></Accounts></eExact>"
      local status, _, answer = helpers.http("POST", sb:url("/docs/XMLUpload.aspx?Topic=Accounts&_Division_=" ..
        sb.division), { cafile = sb.cafile, body = body,
        headers = { Authorization = "Bearer " .. token, ["Content-Type"] = "application/xml" } })
      assert.equal(200, status)
      assert.truthy(answer:find("Created", 1, true), answer)
    end)
  end)
end)
