-- Every command's --help examples, run as written against a sandbox (issue 18). The substitutions are the
-- ones the help itself asks of a reader (their own app's values for "…", their own paths and ports) and are
-- all in SUBSTITUTE below; an example the sandbox cannot serve yet is skipped by name, visibly (pending).
local helpers = require "helpers"
local cli = require "support.cli_run"

local q = cli.q

-- Entities an example needs that the sandbox may not imitate yet: probed, and the example is pending
-- (named) while the sandbox answers 404 for it.
local NEEDS = {
  ["salesinvoice/SalesInvoices"] = "salesinvoice/SalesInvoices",
  ["financialtransaction/TransactionLines"] = "financialtransaction/TransactionLines",
}

-- Examples that cannot run here, with the reason (shown as pending, never silently dropped).
local SKIP = {
  ["make demo"] = "runs in spec/40-cli_demo_spec.lua (make demo in a fresh clone)",
  ["exactonline auth --redirect-uri https://localhost:8765/callback --listen"] =
    "needs a browser to follow Exact's redirect (spec/40-cli_security_spec.lua runs --listen)",
  ["0 6 * * *  EXACT_CLIENT_ID=… EXACT_CLIENT_SECRET=… EXACT_REDIRECT_URI=… exactonline refresh"] =
    "a crontab line, not a shell command (the command in it runs as `exactonline refresh`)",
}

--- The help's own placeholders, replaced by the sandbox's values: the reader's app, paths and ports.
local function substitute(example, sb, dir, port)
  local s = example
  s = s:gsub("EXACT_CLIENT_ID=…", "EXACT_CLIENT_ID=" .. q(sb.client_id))
  s = s:gsub("EXACT_CLIENT_SECRET=…", "EXACT_CLIENT_SECRET=" .. q(sb.client_secret))
  s = s:gsub("EXACT_REDIRECT_URI=https://example%.com/callback", "EXACT_REDIRECT_URI=" .. q(sb.redirect_uri))
  s = s:gsub("'https://example%.com/callback%?code=[^']*'", function() return q(sb:authorize { state = "x" }) end)
  s = s:gsub("/srv/app/tokens%.json", dir .. "/config/exactonline/tokens.json")
  s = s:gsub("/tmp/accounts%.csv", dir .. "/demo-accounts.csv")
  s = s:gsub("~/%.cache/eo%-sandbox", dir .. "/eo-sandbox")
  s = s:gsub("8443", tostring(port))
  return s
end

-- The commands' examples, straight from their --help.
local function examples_of(name)
  local res = cli.run({}, { name, "--help" })
  assert.are.equal(0, res.code, res.stderr)
  local list = {}
  for line in (res.stdout:match("\nexamples:\n(.*)$") or ""):gmatch("[^\n]+") do
    local e = line:match("^  (.-)%s*$")
    if e and e ~= "" and not e:match("^#") then list[#list + 1] = e end
  end
  return list
end

describe("every command's --help examples, against a sandbox", function()
  local sb, dir, env, bin, client

  setup(function()
    sb = helpers.sandbox { accounts = 1200 }
    sb:limits { minutely = 100000, daily = 100000 }
    dir = cli.mktemp()
    env = cli.env_for(sb, dir)
    -- `exactonline` as an installed command would be: a wrapper on PATH running this checkout's CLI
    bin = dir .. "/bin"
    cli.sh("mkdir -p " .. q(bin) .. " " .. q(dir .. "/work"))
    cli.write(bin .. "/exactonline", "#!/bin/sh\nexec " .. cli.vm() .. " " .. q(cli.root() .. "/bin/exactonline")
      .. " \"$@\"\n")
    cli.sh("chmod 755 " .. q(bin .. "/exactonline"))
    env.PATH = bin .. ":" .. os.getenv("PATH")
  end)
  teardown(function()
    if client then client:close() end
    if sb then sb:stop() end
    cli.sh("rm -rf " .. q(dir))
  end)

  -- sh -c EXAMPLE in a work folder, with the user's environment --> code, stdout, stderr
  local function run(example, stdin)
    local script = dir .. "/example.sh"
    cli.write(script, example .. "\n")
    local input = dir .. "/stdin"
    cli.write(input, stdin or "")
    local parts = {}
    for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. q(v) end
    local cmd = "cd " .. q(dir .. "/work") .. " && env -u EXACT_DIVISION -u EXACT_TOKEN_FILE -u EXACT_REGION "
      .. "-u EXACT_CONFIG -u DISPLAY -u WAYLAND_DISPLAY " .. table.concat(parts, " ") .. " sh " .. q(script)
      .. " <" .. q(input) .. " >" .. q(dir .. "/out") .. " 2>" .. q(dir .. "/err") .. "; echo $? >" .. q(dir .. "/rc")
    cli.sh(cmd)
    return tonumber(cli.read(dir .. "/rc"):match("%d+")), cli.read(dir .. "/out") or "", cli.read(dir .. "/err") or ""
  end

  local function missing_entity(example)
    for needle, path in pairs(NEEDS) do
      if example:find(needle, 1, true) then
        if not client then
          client = assert(require("exactonline").new {
            client_id = sb.client_id, client_secret = sb.client_secret, redirect_uri = sb.redirect_uri,
            base_url = sb.base_url, cafile = sb.cafile,
            store = require("exactonline").file_store(dir .. "/config/exactonline/tokens.json"),
          })
        end
        local _, err = client:get(path, { ["$top"] = "1" })
        if err and err.status == 404 then return path end
      end
    end
    return nil
  end

  local function check(name, example, opts)
    opts = opts or {}
    if SKIP[example] then
      pending(name .. ": `" .. example .. "` " .. SKIP[example])
      return
    end
    local missing = missing_entity(example)
    if missing then
      pending(name .. ": `" .. example .. "`: the sandbox does not serve " .. missing .. " yet")
      return
    end
    local code, out, err = run(substitute(example, sb, dir, opts.port or 8443), opts.stdin)
    assert.are.equal(0, code, example .. "\n" .. out .. err)
    assert.is_nil((out .. err):find("stack traceback", 1, true))
    return out, err
  end

  -- one test per example, in the help's order, auth first (the others need its tokens)
  for _, name in ipairs { "auth", "token", "refresh", "get", "export", "sync", "demo" } do
    local list = examples_of(name)
    it(name .. " has examples", function() assert.is_true(#list > 0) end)
    for _, e in ipairs(list) do
      it(name .. ": " .. e, function()
        check(name, e, { stdin = name == "auth" and (sb:code() .. "\n") or nil })
      end)
    end
  end

  it("sandbox", function()
    local list = examples_of("sandbox")
    local servers, others = {}, {}
    for _, e in ipairs(list) do
      if e:match("^exactonline sandbox") then servers[#servers + 1] = e else others[#others + 1] = e end
    end
    assert.is_true(#servers > 0)
    for i, e in ipairs(servers) do
      local port = helpers.free_port()
      local line = substitute(e, sb, dir, port)
      local log = dir .. "/sandbox-" .. i .. ".log"
      local parts = {}
      for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. q(v) end
      local pid = tonumber(cli.capture("cd " .. q(dir .. "/work") .. " && env " .. table.concat(parts, " ")
        .. " sh -c " .. q("exec " .. line) .. " >" .. q(log) .. " 2>&1 </dev/null & echo $!"):match("%d+"))
      local cafile = dir .. "/eo-sandbox/ca.pem"
      local status
      for _ = 1, 200 do
        status = helpers.http("GET", "https://localhost:" .. port .. "/_sandbox/stats",
          { cafile = cafile, timeout = 2 })
        if status == 200 then break end
        cli.sh("sleep 0.05")
      end
      local ok, err = pcall(function()
        assert.are.equal(200, status, e .. "\n" .. (cli.read(log) or ""))
        if i == 1 then -- the examples that talk to a running sandbox
          for _, o in ipairs(others) do check("sandbox", o, { port = port }) end
        end
      end)
      cli.sh("kill -TERM " .. pid)
      for _ = 1, 100 do
        if not helpers.http("GET", "https://localhost:" .. port .. "/_sandbox/stats",
          { cafile = cafile, timeout = 1 }) then break end
        cli.sh("sleep 0.05")
      end
      assert(ok, err)
    end
  end)
end)
