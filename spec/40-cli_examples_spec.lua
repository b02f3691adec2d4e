-- Every command's --help examples, run as written against a sandbox (issue 18). The substitutions are the
-- ones the help itself asks of a reader (their own app's values for "…", their own paths and ports) and are
-- all in substitute() below. An example the sandbox cannot serve yet (an entity it answers 404 for, a division
-- it lacks) is pending with that reason, as are the few in SKIP: by name, visibly, never silently.
local helpers = require "helpers"
local cli = require "support.cli_run"

local q = helpers.quote

-- Examples that cannot run here, with the reason (shown as pending, never silently dropped).
local SKIP = {
  ["make demo"] = "runs in spec/40-cli_demo_spec.lua (make demo in a fresh clone)",
  ["exactonline auth --redirect-uri https://localhost:8765/callback --listen"] =
    "needs a browser to follow Exact's redirect (spec/40-cli_security_spec.lua runs --listen)",
  ["0 6 * * *  exactonline refresh"] =
    "a crontab line, not a shell command (the command in it runs as `exactonline refresh`)",
  ["exactonline export financialtransaction/TransactionLines -o lines.jsonl --resume   # after exit 3"] =
    "continues an export that stopped part-way (spec/40-cli_resume_spec.lua stops and resumes them)",
  ["exactonline replicate --division all --to postgresql://etl@db/exact"] =
    "needs a PostgreSQL server named db (spec/30-store_postgres_spec.lua and the replicate specs start their own)",
}

-- Examples that use what an earlier one made (pattern of the example --> pattern of the one it needs).
local AFTER = {
  ["^sqlite3 .*exact%.db"] = "^exactonline replicate%s+#", -- reads the database the bare replicate makes
}

--- The help's own placeholders, replaced by the sandbox's values: the reader's app, paths and ports.
local function substitute(example, sb, dir, port)
  local s = example
  s = s:gsub("EXACT_CLIENT_ID=…", "EXACT_CLIENT_ID=" .. q(sb.client_id))
  s = s:gsub("EXACT_CLIENT_SECRET=…", "EXACT_CLIENT_SECRET=" .. q(sb.client_secret))
  s = s:gsub("EXACT_REDIRECT_URI=https://example%.com/callback", "EXACT_REDIRECT_URI=" .. q(sb.redirect_uri))
  s = s:gsub("EXACT_REDIRECT_URI=…", "EXACT_REDIRECT_URI=" .. q(sb.redirect_uri))
  -- the region names Exact's host; the sandbox is a base URL and its CA
  s = s:gsub("EXACT_REGION=nl", "EXACT_BASE_URL=" .. q(sb.base_url) .. " EXACT_CAFILE=" .. q(sb.cafile))
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
  local sb = helpers.use_sandbox { accounts = 1200, limits = { minutely = 100000, daily = 100000 }, reset = false }
  local dir, env, bin, client

  setup(function()
    dir = helpers.tmpdir()
    env = cli.env_for(sb, dir, { HOME = dir .. "/home" })
    -- the control token the sandboxes these examples start take (and the curl examples send)
    env.EXACTONLINE_SANDBOX_TOKEN = "examples-control-token"
    helpers.sh("mkdir -p " .. q(dir .. "/home"))
    -- `exactonline` as an installed command would be: a wrapper on PATH running this checkout's CLI
    bin = dir .. "/bin"
    helpers.sh("mkdir -p " .. q(bin) .. " " .. q(dir .. "/work"))
    helpers.write(bin .. "/exactonline", "#!/bin/sh\nexec " .. helpers.cli_lua() .. " "
      .. q(helpers.root .. "/bin/exactonline") .. " \"$@\"\n")
    helpers.sh("chmod 755 " .. q(bin .. "/exactonline"))
    env.PATH = bin .. ":" .. os.getenv("PATH")
  end)
  teardown(function()
    if client then client:close() end
  end)

  -- sh -c EXAMPLE in a work folder, with the user's environment --> code, stdout, stderr
  local function run(example, stdin)
    local script = dir .. "/example.sh"
    helpers.write(script, example .. "\n")
    local input = dir .. "/stdin"
    helpers.write(input, stdin or "")
    local parts = {}
    for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. q(v) end
    local cmd = "cd " .. q(dir .. "/work") .. " && env -u EXACT_DIVISION -u EXACT_TOKEN_FILE -u EXACT_REGION "
      .. "-u EXACT_CONFIG -u DISPLAY -u WAYLAND_DISPLAY -u XDG_DATA_HOME " .. table.concat(parts, " ")
      .. " sh " .. q(script)
      .. " <" .. q(input) .. " >" .. q(dir .. "/out") .. " 2>" .. q(dir .. "/err") .. "; echo $? >" .. q(dir .. "/rc")
    helpers.sh(cmd)
    local rc = tonumber(helpers.read(dir .. "/rc"):match("%d+"))
    return rc, helpers.read(dir .. "/out") or "", helpers.read(dir .. "/err") or ""
  end

  local function connect()
    if not client then
      client = assert(require("exactonline").new {
        client_id = sb.client_id, client_secret = sb.client_secret, redirect_uri = sb.redirect_uri,
        base_url = sb.base_url, cafile = sb.cafile,
        store = require("exactonline").file_store(dir .. "/config/exactonline/tokens.json"),
      })
    end
    return client
  end

  -- The entities an example reads: its service/Entity words; a bare `exactonline replicate`, the standard set.
  local function entities_of(example)
    local list = {}
    for word in example:gsub("#.*$", ""):gmatch("%S+") do
      if word:match("^%a+/%a+$") and not word:match("^sync/") then list[#list + 1] = word end
    end
    if #list == 0 and example:match("^exactonline replicate%f[%s%z]") then
      -- the endpoint replicate reads each from: sync, else bulk, else the regular one
      for _, e in ipairs(require("exactonline.replicate.catalog").standard()) do
        list[#list + 1] = e.sync or e.bulk or e.path
      end
    end
    return list
  end

  -- what an example needs that the sandbox lacks (an entity, a division), or nil
  local function missing(example)
    for _, path in ipairs(entities_of(example)) do
      local _, err = connect():get(path, { ["$top"] = "1" })
      if err and err.status == 404 then return path end
    end
    local list = example:match("%-%-division ([%d,]+)")
    if list then
      local have = {}
      for _, d in ipairs(assert(connect():divisions())) do have[tonumber(d.Code)] = true end
      for n in list:gmatch("%d+") do
        if not have[tonumber(n)] then return "division " .. n end
      end
    end
    return nil
  end

  local skipped = {}
  local function skip(name, example, why)
    skipped[#skipped + 1] = example
    pending(name .. ": `" .. example .. "` " .. why)
  end

  local function check(name, example, opts)
    opts = opts or {}
    if SKIP[example] then return skip(name, example, SKIP[example]) end
    for pattern, before in pairs(AFTER) do
      if example:match(pattern) then
        for _, e in ipairs(skipped) do
          if e:match(before) then return skip(name, example, "needs what `" .. e .. "` makes, and that is pending") end
        end
      end
    end
    local lacking = missing(example)
    if lacking then return skip(name, example, ": the sandbox does not serve " .. lacking .. " yet") end
    local code, out, err = run(substitute(example, sb, dir, opts.port or 8443), opts.stdin)
    assert.are.equal(0, code, example .. "\n" .. out .. err)
    assert.is_nil((out .. err):find("stack traceback", 1, true))
    return out, err
  end

  -- one test per example, in the help's order, auth first (the others need its tokens)
  local names = { "auth" }
  for _, c in ipairs(require("exactonline.cli").commands) do
    if c[1] ~= "auth" and c[1] ~= "sandbox" and c[1] ~= "gateway" then names[#names + 1] = c[1] end
  end
  for _, name in ipairs(names) do
    local list = examples_of(name)
    it(name .. " has examples", function() assert.is_true(#list > 0) end)
    for _, e in ipairs(list) do
      it(name .. ": " .. e, function()
        check(name, e, { stdin = name == "auth" and (sb:code() .. "\n") or nil })
      end)
    end
  end

  -- the gateway's key examples in order (the revocation last), its servers in the background, the examples
  -- that call a gateway against the first server
  it("gateway", function()
    local list = examples_of("gateway")
    local keys, servers, clients, last = {}, {}, {}, {}
    for _, e in ipairs(list) do
      if e:match("^exactonline gateway %-%-revoke%-key") then last[#last + 1] = e
      elseif e:match("^exactonline gateway %-%-new%-key") or e:match("^exactonline gateway %-%-list%-keys") then
        keys[#keys + 1] = e
      elseif e:match("^exactonline gateway") then servers[#servers + 1] = e
      else clients[#clients + 1] = e end
    end
    assert.is_true(#keys > 0 and #servers > 0 and #clients > 0 and #last > 0)
    -- nginx verifies the sandbox's certificate by name; started as root, its workers (nobody) need the state
    local saved = env.EXACT_BASE_URL
    env.EXACT_BASE_URL = "https://localhost:" .. sb.port
    for _, e in ipairs(keys) do check("gateway", e) end
    if helpers.capture("id -u"):match("^0%s") then
      helpers.sh("chown -R nobody:nogroup " .. q(dir .. "/config") .. " && chmod 711 " .. q(dir))
    end
    local ok, err = pcall(function()
      for i, e in ipairs(servers) do
        local port = helpers.free_port()
        local line = e:gsub("%s+#.*$", ""):gsub("0%.0%.0%.0:8443", "127.0.0.1:" .. port)
          :gsub("/etc/ssl/gw%.pem", helpers.tls_dir .. "/server.pem"):gsub("/etc/ssl/gw%.key", helpers.tls_dir ..
          "/server.key")
        if not line:find("--listen", 1, true) then line = line .. " --listen 127.0.0.1:" .. port end
        local url = (line:find("--tls-cert", 1, true) and "https://localhost:" or "http://127.0.0.1:") .. port
        local parts = {}
        for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. q(v) end
        local log = dir .. "/gateway-" .. i .. ".log"
        local pid = tonumber(helpers.capture("cd " .. q(dir .. "/work") .. " && env " .. table.concat(parts, " ")
          .. " sh -c " .. q("exec " .. line) .. " >" .. q(log) .. " 2>&1 </dev/null & echo $!"):match("%d+"))
        local status
        for _ = 1, 200 do
          status = helpers.http("GET", url .. "/healthz", { cafile = sb.cafile, timeout = 2 })
          if status == 200 then break end
          helpers.sh("sleep 0.05")
        end
        local sok, serr = pcall(function()
          assert.are.equal(200, status, e .. "\n" .. (helpers.read(log) or ""))
          if i == 1 then
            for _, c in ipairs(clients) do
              local out = check("gateway", (c:gsub("127%.0%.0%.1:8080", "127.0.0.1:" .. port)))
              assert.matches('"CurrentDivision"', out)
            end
          end
        end)
        helpers.sh("kill -TERM " .. pid)
        for _ = 1, 100 do
          if not helpers.http("GET", url .. "/healthz", { cafile = sb.cafile, timeout = 1 }) then break end
          helpers.sh("sleep 0.05")
        end
        assert(sok, serr)
      end
      for _, e in ipairs(last) do check("gateway", e) end
    end)
    env.EXACT_BASE_URL = saved
    assert(ok, err)
  end)

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
      -- its default port (8443) may be taken here: the reader picks a free one
      if not line:find("--port", 1, true) then line = line .. " --port " .. port end
      local scheme = line:find("--tls-dir", 1, true) and "https" or "http"
      local log = dir .. "/sandbox-" .. i .. ".log"
      local parts = {}
      for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. q(v) end
      local pid = tonumber(helpers.capture("cd " .. q(dir .. "/work") .. " && env " .. table.concat(parts, " ")
        .. " sh -c " .. q("exec " .. line) .. " >" .. q(log) .. " 2>&1 </dev/null & echo $!"):match("%d+"))
      local cafile = dir .. "/eo-sandbox/ca.pem"
      local status
      for _ = 1, 200 do
        status = helpers.http("GET", scheme .. "://localhost:" .. port .. "/_sandbox/stats",
          { cafile = cafile, timeout = 2, headers = { ["X-Sandbox-Token"] = env.EXACTONLINE_SANDBOX_TOKEN } })
        if status == 200 then break end
        helpers.sh("sleep 0.05")
      end
      local ok, err = pcall(function()
        assert.are.equal(200, status, e .. "\n" .. (helpers.read(log) or ""))
        if i == 1 then -- the examples that talk to a running sandbox
          for _, o in ipairs(others) do check("sandbox", o, { port = port }) end
        end
      end)
      helpers.sh("kill -TERM " .. pid)
      for _ = 1, 100 do
        if not helpers.http("GET", scheme .. "://localhost:" .. port .. "/_sandbox/stats",
          { cafile = cafile, timeout = 1, headers = { ["X-Sandbox-Token"] = env.EXACTONLINE_SANDBOX_TOKEN } }) then
          break
        end
        helpers.sh("sleep 0.05")
      end
      assert(ok, err)
    end
  end)
end)
