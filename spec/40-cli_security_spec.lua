-- The CLI as an attacker would try it (issue 17): a config file others can write, a forged or slow
-- request to `auth --listen`, terminal escapes in what Exact or a browser sends, the client secret in
-- `ps` or in a child's environment, an export's temp file, formulas in CSV cells.
local helpers = require "helpers"
local cli = require "support.cli_run"

local q = helpers.quote

local function no_controls(text)
  assert.is_nil(text:find("[%z\1-\8\11-\31\127]"), "control characters in: " .. text)
end

local function browser(sb, url)
  local status, headers = helpers.http("GET", url, { cafile = sb.cafile })
  assert.are.equal(302, status)
  return headers.location
end

describe("exactonline's config file", function()
  local sb = helpers.use_sandbox {}
  local dir, env, folder, path
  before_each(function()
    dir = helpers.tmpdir()
    env = cli.env_for(sb, dir, { EXACT_CLIENT_ID = false })
    folder = dir .. "/config/exactonline"
    path = folder .. "/config.lua"
    helpers.sh("mkdir -p " .. q(folder) .. " && chmod 700 " .. q(folder))
    helpers.write(path, ("return { client_id = %q }"):format(sb.client_id))
    helpers.sh("chmod 600 " .. q(path))
  end)

  local function auth()
    return cli.run(env, { "auth", "--redirect-url", sb:code() })
  end

  it("is used when it is the user's and only the user can write it", function()
    local res = auth()
    assert.are.equal(0, res.code, res.stderr)
  end)

  it("is refused when others can write it (mode 0666), and not run", function()
    helpers.sh("chmod 666 " .. q(path))
    local res = auth()
    assert.are.equal(2, res.code, res.stderr)
    assert.matches("can be written by other users (mode 0666)", res.stderr, 1, true)
    assert.matches("chmod go-w " .. path, res.stderr, 1, true)
    assert.are.equal(0, sb:stats().code_exchanges)
    helpers.sh("chmod 620 " .. q(path)) -- group-writable likewise
    assert.are.equal(2, auth().code)
  end)

  it("is refused when its folder can be written by others (mode 0777)", function()
    helpers.sh("chmod 777 " .. q(folder))
    local res = auth()
    assert.are.equal(2, res.code, res.stderr)
    assert.matches("its folder " .. folder .. " can be written by other users", res.stderr, 1, true)
  end)

  it("is refused when it belongs to another user", function()
    if not helpers.sh("chown nobody " .. q(path) .. " 2>/dev/null") then
      pending("giving a file to another user needs root")
      return
    end
    local res = auth()
    assert.are.equal(2, res.code, res.stderr)
    assert.matches("belongs to another user", res.stderr, 1, true)
  end)

  it("is loaded as text only: bytecode is refused (LuaJIT's loadfile would take it)", function()
    local dump = helpers.capture(helpers.cli_lua() .. " -e "
      .. q(("io.write(string.dump(function() return { client_id = %q } end))")
      :format(sb.client_id)))
    helpers.write(path, dump)
    local res = auth()
    assert.are.equal(2, res.code, res.stderr)
    assert.matches("the config file has an error", res.stderr, 1, true)
    assert.are.equal(0, sb:stats().code_exchanges)
  end)

  it("runs in an empty environment: no os, io or require", function()
    helpers.write(path, "return { client_id = os.getenv('EO_SPEC_ID') }")
    local res = cli.run(cli.env_for(sb, dir, { EXACT_CLIENT_ID = false, EO_SPEC_ID = sb.client_id }),
      { "auth", "--redirect-url", sb:code() })
    assert.are.equal(2, res.code, res.stderr)
    assert.matches("the config file " .. path .. " failed", res.stderr, 1, true)
  end)
end)

describe("the client secret", function()
  local sb = helpers.use_sandbox {}
  local dir
  before_each(function() dir = helpers.tmpdir() end)

  it("given as --client-secret works but warns that ps shows it", function()
    local res = cli.run(cli.env_for(sb, dir, { EXACT_CLIENT_SECRET = false }),
      { "auth", "--client-secret", sb.client_secret, "--redirect-url", sb:code() })
    assert.are.equal(0, res.code, res.stderr)
    assert.matches("exactonline: warning: --client-secret on the command line is visible to other users",
      res.stderr, 1, true)
    assert.matches("--client-secret-file", res.stderr, 1, true)
  end)

  it("is read from --client-secret-file FILE or - (stdin), without a warning", function()
    local file = dir .. "/secret"
    helpers.write(file, sb.client_secret .. "\n")
    local env = cli.env_for(sb, dir, { EXACT_CLIENT_SECRET = false })
    local res = cli.run(env, { "auth", "--client-secret-file", file, "--redirect-url", sb:code() })
    assert.are.equal(0, res.code, res.stderr)
    assert.are.equal("", res.stderr)
    res = cli.run(env, { "auth", "--client-secret-file", "-", "--redirect-url", sb:code() },
      { stdin = sb.client_secret .. "\n" })
    assert.are.equal(0, res.code, res.stderr)
    assert.are.equal(2, sb:stats().code_exchanges)
    res = cli.run(cli.env_for(sb, dir), { "auth", "--client-secret", "x", "--client-secret-file", file,
      "--redirect-url", sb:code() })
    assert.are.equal(2, res.code)
    assert.matches("not both", res.stderr, 1, true)
  end)

  it("is not in the environment of xdg-open (the browser)", function()
    local bin = dir .. "/bin"
    helpers.sh("mkdir -p " .. q(bin))
    helpers.write(bin .. "/xdg-open",
      "#!/bin/sh\nenv > \"$XDG_OPEN_LOG.tmp\"; mv \"$XDG_OPEN_LOG.tmp\" \"$XDG_OPEN_LOG\"\n")
    helpers.sh("chmod 755 " .. q(bin .. "/xdg-open"))
    local log = dir .. "/xdg-env"
    local env = cli.env_for(sb, dir, { DISPLAY = ":0", XDG_OPEN_LOG = log, PATH = bin .. ":" .. os.getenv("PATH") })
    local res = cli.run(env, { "auth" }, { stdin = sb:code() .. "\n" })
    assert.are.equal(0, res.code, res.stderr)
    for _ = 1, 100 do
      if helpers.exists(log) then break end
      helpers.sh("sleep 0.05")
    end
    local seen = helpers.read(log)
    assert.is_string(seen, "xdg-open did not run")
    assert.matches("XDG_OPEN_LOG=", seen, 1, true) -- the rest of the environment is there
    assert.is_nil(seen:find("EXACT_CLIENT_SECRET", 1, true))
    assert.is_nil(seen:find(sb.client_secret, 1, true))
  end)
end)

describe("exactonline auth", function()
  local sb = helpers.use_sandbox {}
  local dir
  before_each(function() dir = helpers.tmpdir() end)

  it("prints what came from outside without terminal escape sequences", function()
    local res = cli.run(cli.env_for(sb, dir), { "auth", "--redirect-url",
      "https://localhost/callback?error=access_denied&error_description=%1B%5D0%3Bpwned%07%1B%5B2Jgone%C2%9B31m" })
    assert.are.equal(1, res.code, res.stderr)
    assert.matches("denied", res.stderr:lower())
    no_controls(res.stderr)
    assert.is_nil(res.stderr:find("\194\155", 1, true), "a C1 control (CSI) was printed")
  end)
end)

describe("exactonline auth --listen on https://localhost", function()
  local port = helpers.free_port()
  local redirect = "https://localhost:" .. port .. "/callback"
  local sb = helpers.use_sandbox { redirect_uri = redirect, reset = false }
  local dir
  before_each(function() dir = helpers.tmpdir() end)

  local function get(url, extra)
    return helpers.http("GET", url, { extra = "-k -g " .. (extra or ""), timeout = 20 })
  end

  it("ignores requests without this login's state, bounds each request, and takes the real one on ::1", function()
    -- a stand-in openssl first on PATH records its environment, then runs the real one
    local bin = dir .. "/bin"
    helpers.sh("mkdir -p " .. q(bin))
    local real = helpers.capture("command -v openssl"):gsub("%s+$", "")
    helpers.write(bin .. "/openssl", "#!/bin/sh\nenv > \"$OPENSSL_ENV_LOG\"\nexec " .. q(real) .. " \"$@\"\n")
    helpers.sh("chmod 755 " .. q(bin .. "/openssl"))
    local env = cli.env_for(sb, dir, { PATH = bin .. ":" .. os.getenv("PATH"), OPENSSL_ENV_LOG = dir .. "/ssl-env" })
    local h = cli.spawn(env, { "auth", "--listen", "--timeout", "60" })
    local url, out
    for _ = 1, 300 do
      out = helpers.read(h.dir .. "/out") or ""
      url = out:match("(https://%S+/api/oauth2/auth%?%S+)")
      if url and out:find("paste it here", 1, true) then break end
      helpers.sh("sleep 0.05")
    end
    assert.is_string(url, out)
    assert.matches("Waiting for the redirect on " .. redirect, out, 1, true)
    assert.matches("not private", out, 1, true) -- what the browser will show, and what to do
    local location = browser(sb, url)
    local query = location:match("%?(.*)$")

    -- a client that connects and sends nothing holds nobody up
    local socket = require "socket"
    local idle = assert(socket.connect("127.0.0.1", port))
    -- a half-sent request line on a TLS connection: still nobody held up
    local ssl = require "ssl"
    local slow = ssl.wrap(assert(socket.connect("127.0.0.1", port)), { mode = "client", protocol = "any",
      verify = "none" })
    slow:settimeout(5)
    assert(slow:dohandshake())
    slow:send("GET /callback?state=")

    -- another page (or local program) guessing: a code or an error without the state is refused, not taken
    local status, _, body = get(redirect .. "?code=forged%21code&state=wrong")
    assert.are.equal(400, status)
    assert.matches("keeps waiting", body, 1, true)
    status = get(redirect .. "?error=access_denied&error_description=go+away")
    assert.are.equal(400, status)
    -- a header line past the bound is refused
    status = get("https://127.0.0.1:" .. port .. "/callback?" .. query, "-H " .. q("X-Big: " .. ("x"):rep(9000)))
    assert.are.equal(431, status)

    -- the browser, on the IPv6 loopback
    status, _, body = get("https://[::1]:" .. port .. "/callback?" .. query)
    assert.are.equal(200, status)
    assert.matches("close this window", body, 1, true)
    idle:close()
    slow:close()
    assert.are.equal(0, h.wait(), h.stderr .. h.stdout)
    assert.matches("Connected as", h.stdout, 1, true)
    assert.matches("ignored a request to /callback without this login's state", h.stderr, 1, true)
    assert.are.equal(1, sb:stats().code_exchanges)
    local ssl_env = helpers.read(dir .. "/ssl-env")
    assert.is_string(ssl_env, "openssl did not run")
    assert.is_nil(ssl_env:find("EXACT_CLIENT_SECRET", 1, true))
    assert.is_nil(ssl_env:find(sb.client_secret, 1, true))
  end)

  it("listens on both loopback families, and takes the address pasted on stdin too", function()
    local fifo = dir .. "/paste"
    helpers.sh("mkfifo " .. q(fifo))
    local cmd = cli.command(cli.env_for(sb, dir), { "auth", "--listen", "--timeout", "60" })
    helpers.sh("sh -c " .. q(cmd .. " <" .. q(fifo) .. " >" .. q(dir .. "/out") .. " 2>&1; echo $? >"
      .. q(dir .. "/rc"))
      .. " </dev/null >/dev/null 2>&1 &")
    local paste = assert(io.open(fifo, "w"))
    local url
    for _ = 1, 300 do
      local out = helpers.read(dir .. "/out") or ""
      url = out:match("(https://%S+/api/oauth2/auth%?%S+)")
      if url and out:find("paste it here", 1, true) then break end
      helpers.sh("sleep 0.05")
    end
    assert.is_string(url)
    -- both families answer (with the "not this login" page) while it waits
    assert.are.equal(400, (get("https://127.0.0.1:" .. port .. "/callback?code=x")))
    assert.are.equal(400, (get("https://[::1]:" .. port .. "/callback?code=x")))
    paste:write(browser(sb, url), "\n")
    paste:close()
    local rc
    for _ = 1, 400 do
      rc = helpers.read(dir .. "/rc")
      if rc and rc:match("%d") then break end
      helpers.sh("sleep 0.05")
    end
    assert.are.equal("0", (rc or ""):match("%d+"), helpers.read(dir .. "/out"))
    assert.matches("Connected as", helpers.read(dir .. "/out"), 1, true)
  end)
end)

describe("exactonline export's files", function()
  local sb = helpers.use_sandbox { accounts = 300, reset = false }
  local dir, env

  setup(function()
    dir, env = cli.authorized_home(sb)
  end)

  local function mode(path)
    return helpers.capture("stat -c %a " .. q(path)):gsub("%s+$", "")
  end

  it("are created 0600, or keep the mode of the file they replace", function()
    local csv = dir .. "/new.csv"
    local res = cli.run(env, { "export", "crm/Accounts", "--select", "ID", "-o", csv })
    assert.are.equal(0, res.code, res.stderr)
    assert.are.equal("600", mode(csv))
    helpers.sh("chmod 640 " .. q(csv))
    res = cli.run(env, { "export", "crm/Accounts", "--select", "ID,Name", "-o", csv })
    assert.are.equal(0, res.code, res.stderr)
    assert.are.equal("640", mode(csv))
    assert.matches("^ID,Name\r\n", helpers.read(csv))
  end)

  it("are written through a temp file with an unpredictable name", function()
    local csv = dir .. "/slow.csv"
    sb:fault("hold", 1000, { after = 1 }) -- the export waits at its second page until the name is seen
    local h = cli.spawn(env, { "export", "crm/Accounts", "--select", "ID,Name", "--no-bulk", "-o", csv })
    local name
    for _ = 1, 600 do
      for n in helpers.capture("ls -a " .. q(dir)):gmatch("[^\n]+") do
        if n:find("^slow%.csv%.partial%-") then name = n end
      end
      if name or not helpers.sh("kill -0 " .. h.pid) then break end
      helpers.sh("sleep 0.05")
    end
    sb:fault("hold", 0)
    assert.is_string(name, "no temp file seen")
    assert.matches("^slow%.csv%.partial%-" .. h.pid .. "%.%x%x%x%x%x%x%x%x%x%x%x%x$", name)
    assert.are.equal(0, h.wait(), h.stderr)
  end)

  it("refuse links and existing files at the temp path itself (O_EXCL|O_NOFOLLOW)", function()
    local core = require "exactonline.core"
    local victim, link = dir .. "/victim2", dir .. "/link"
    helpers.write(victim, "precious")
    helpers.sh("ln -s " .. q(victim) .. " " .. q(link))
    local f, err = core.create_file(link, 384)
    assert.is_nil(f)
    assert.matches("File exists", err, 1, true)
    assert.is_nil(core.create_file(victim, 384))
    assert.are.equal("precious", helpers.read(victim))
    -- a dangling link (to a file an attacker wants us to create) is refused too
    helpers.sh("ln -s " .. q(dir .. "/created-by-us") .. " " .. q(dir .. "/dangling"))
    assert.is_nil(core.create_file(dir .. "/dangling", 384))
    assert.is_false(helpers.exists(dir .. "/created-by-us"))
  end)

  it("--csv-safe prefixes text cells starting with = + - @ with ' (formulas stay text)", function()
    local client = assert(require("exactonline").new {
      client_id = sb.client_id, client_secret = sb.client_secret, redirect_uri = sb.redirect_uri,
      base_url = sb.base_url, cafile = sb.cafile, division = sb.division,
      store = require("exactonline").file_store(dir .. "/config/exactonline/tokens.json"),
    })
    local rows = assert(client:get("crm/Accounts", { ["$select"] = "ID", ["$top"] = "4" }))
    local names = { '=HYPERLINK("http://evil.example","x")', "+31 20 123", "-2+3", "@SUM(A1)" }
    for i, n in ipairs(names) do
      assert(client:put("crm/Accounts(guid'" .. rows[i].ID .. "')", { Name = n }))
    end
    client:close()
    local plain = cli.run(env, { "export", "crm/Accounts", "--select", "ID,Name,Code" })
    local safe = cli.run(env, { "export", "crm/Accounts", "--select", "ID,Name,Code", "--csv-safe" })
    assert.are.equal(0, safe.code, safe.stderr)
    assert.matches(',"=HYPERLINK(""http://evil.example"",""x"")",', plain.stdout, 1, true)
    assert.matches(',"\'=HYPERLINK(""http://evil.example"",""x"")",', safe.stdout, 1, true)
    assert.matches(",'+31 20 123,", safe.stdout, 1, true)
    assert.matches(",'-2+3,", safe.stdout, 1, true)
    assert.matches(",'@SUM(A1),", safe.stdout, 1, true)
    -- nothing else changes
    local _, n_plain = plain.stdout:gsub("\r\n", "")
    local _, n_safe = safe.stdout:gsub("\r\n", "")
    assert.are.equal(n_plain, n_safe)
    assert.are.equal(#plain.stdout + 4, #safe.stdout)
  end)
end)
