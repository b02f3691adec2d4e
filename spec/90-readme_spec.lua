--[[ Every code block of README.md, run as written against a sandbox this file starts (issue 18).

HOW TO CLASSIFY A README BLOCK. Every block is fenced with a language (```lua, ```sh, ```nginx, ```sql,
```json), and the line right before its opening fence is one of these markers (HTML comments: GitHub shows nothing):

  <!-- spec: run -->              run as written, after SUBSTITUTIONS below, in README order: sh blocks with
                                  `sh -e` in a checkout, Lua blocks as one script (see below)
  <!-- spec: run NAME -->         the same, and RUNNERS[NAME] / CHECKS[NAME] / GIVEN[NAME] below apply (what
                                  the README says around it: a server to stop, output to assert, a value given)
  <!-- spec: file PATH -->        the text of the file PATH that other blocks use (substituted, written at setup)
  <!-- spec: fragment: WHY -->    a shape or signature, not a program: only its syntax is checked (lua: load,
                                  sh: sh -n, nginx: nginx -t, json: decoded, as an object's members if need be)
  <!-- spec: needs WHAT -->       cannot run here, e.g. `needs a real Exact account`: pending by name, with WHAT

A block without a marker, an indented code block, a fence without a language or a marker without a block
makes this spec fail: a new example is classified when it is written, and the README cannot drift.

Lua blocks run in a child process (the reader's HOME and environment), one chunk each, in README order; a
top-level `local` of one block is visible to the blocks after it, as if the README were one file (the client
of "Creating a client" is the `client` of the examples after it). A Lua line `print(…) --> TEXT` states
output: that line's first print must write TEXT, where `…` stands for anything and a run of spaces for any
whitespace. A `-->` on a line that prints nothing fails: stated output is checked, always.

What the reader has done before the API examples: authorized with `exactonline auth` (the Quick start), so
the token file in their HOME holds a pair for this sandbox. The sandbox's limits are raised (the examples
together make more than 60 calls a minute; no block states a limit). `exactonline` is an installed command
(a wrapper on PATH running this checkout's bin/exactonline, as `make install` would put it).
]]
local helpers = require "helpers"
local cjson = require "cjson"
local runner = require "exactonline.sandbox"

local q, sh, read, write = helpers.quote, helpers.sh, helpers.read, helpers.write

local README = helpers.root .. "/README.md"

-- parsing ---------------------------------------------------------------------------------------------

local LANGS = { lua = true, sh = true, nginx = true, sql = true, json = true }
local KINDS = { run = true, file = true, fragment = true, needs = true }

--- README.md --> blocks { line, lang, section, text, kind, arg, title }, problems { "line N: …" }
local function parse(path)
  local lines = {}
  for l in ((read(path) or "") .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  local blocks, problems, section = {}, {}, "the top"
  local used_marker = {}
  local i = 1
  while i <= #lines do
    local line = lines[i]
    local heading = line:match("^#+%s+(.-)%s*$")
    if heading then section = heading end
    local fence, lang = line:match("^(```+)%s*(%S*)%s*$")
    if fence then
      local j = i + 1
      while j <= #lines and not lines[j]:match("^" .. fence .. "%s*$") do j = j + 1 end
      if j > #lines then problems[#problems + 1] = ("line %d: a fence that is never closed"):format(i) end
      local b = { line = i, lang = lang, section = section, text = table.concat(lines, "\n", i + 1, j - 1) .. "\n" }
      b.title = ("README line %d (%s), %s"):format(i, section, lang ~= "" and lang or "no language")
      local marker = (lines[i - 1] or ""):match("^<!%-%-%s*spec:%s*(.-)%s*%-%->%s*$")
      if marker then
        used_marker[i - 1] = true
        b.kind, b.arg = marker:match("^(%a+)[:,]?%s*(.-)$")
        b.arg = b.arg ~= "" and b.arg or nil
      end
      if not LANGS[lang] then
        problems[#problems + 1] = ("line %d: a fence without a known language (%q): write ```lua, ```sh, " ..
          "```nginx, ```sql or ```json"):format(i, lang)
      end
      if not marker then
        problems[#problems + 1] = ("line %d (%s): an unclassified %s block: put <!-- spec: run|file PATH|" ..
          "fragment: WHY|needs WHAT --> on the line before its fence (see spec/90-readme_spec.lua)"):format(
          i, section, lang)
      elseif not KINDS[b.kind or ""] then
        problems[#problems + 1] = ("line %d: unknown spec marker %q"):format(i - 1, marker)
      elseif b.kind == "file" and not b.arg then
        problems[#problems + 1] = ("line %d: `spec: file` needs the file's path"):format(i - 1)
      elseif b.kind == "needs" and not b.arg then
        problems[#problems + 1] = ("line %d: `spec: needs` must say what (e.g. a real Exact account)"):format(i - 1)
      elseif b.kind == "run" and not (lang == "lua" or lang == "sh") then
        problems[#problems + 1] = ("line %d: only lua and sh blocks run; a %s block is a file or a fragment")
          :format(i, lang)
      elseif b.kind == "fragment" and lang == "sql" then
        problems[#problems + 1] = ("line %d: no syntax check for sql fragments: make it a file a block runs")
          :format(i)
      end
      if b.kind then b.title = b.title .. ", " .. b.kind .. (b.arg and (" " .. b.arg) or "") end
      blocks[#blocks + 1] = b
      i = j + 1
    else
      if line:match("^    %S") and (lines[i - 1] or "") == "" then
        problems[#problems + 1] = ("line %d (%s): an indented code block: fence it (```sh …) and classify it")
          :format(i, section)
      end
      i = i + 1
    end
  end
  for n, l in ipairs(lines) do
    if l:match("^<!%-%-%s*spec:") and not used_marker[n] then
      problems[#problems + 1] = ("line %d: a spec marker with no code block right after it"):format(n)
    end
  end
  return blocks, problems, lines
end

local blocks, problems, readme_lines = parse(README)

-- the reader's world --------------------------------------------------------------------------------------
-- ROOT stands for the reader's machine: their HOME, their folders (/srv, /var/lib, /tmp), a checkout.

local ctx = {}

--- SUBSTITUTIONS: the only changes made to a block before it runs, each one the README asks of its reader.
-- { what the README writes, what it becomes here (a function of ctx and of this block's own values), why }
-- Plain text, not patterns; applied in this order to run and file blocks.
local SUBSTITUTIONS = {
  { 'region = "nl"', function(c) return 'base_url = "' .. c.base_url .. '", cafile = "' .. c.cafile .. '"' end,
    "API: replace region = \"nl\" with base_url = …, cafile = … (what exactonline sandbox prints)" },
  { 'redirect_uri = "https://example.com/callback"', function(c) return 'redirect_uri = "' .. c.redirect_uri .. '"' end,
    "API: … and the redirect URI with the sandbox's" },
  { 'redirect_uri = "https://app.example.com/callback"',
    function(c) return 'redirect_uri = "' .. c.redirect_uri .. '"' end, "the same, in the OpenResty example" },
  { 'client_id = "…", client_secret = "…", redirect_uri = "…"', function(c)
      return ('client_id = "%s", client_secret = "%s", redirect_uri = "%s"'):format(c.client_id, c.client_secret,
        c.redirect_uri)
    end, "…: the reader's own app" },
  { '"https://example.com/callback?code=XTzM%21IAAI…&state=k3y"',
    function(c) return '"' .. c.fresh_redirect("k3y") .. '"' end,
    "the address the browser was sent to after authorization_url{ state = \"k3y\" } (codes work once)" },
  { "division = 123456", function(c) return "division = " .. c.division end, "the reader's own division" },
  { "EXACT_CLIENT_ID=…  EXACT_CLIENT_SECRET=…", function(c)
      return "EXACT_CLIENT_ID=" .. q(c.client_id) .. " EXACT_CLIENT_SECRET=" .. q(c.client_secret)
    end, "from the App Centre: the reader's own app" },
  { "EXACT_REDIRECT_URI=https://example.com/callback",
    function(c) return "EXACT_REDIRECT_URI=" .. q(c.redirect_uri) end,
    "exactly as registered: the sandbox's" },
  { "export EXACT_REGION=nl", function(c)
      return "export EXACT_BASE_URL=" .. q(c.base_url) .. " EXACT_CAFILE=" .. q(c.cafile)
    end, "Quick start: EXACT_REGION=nl instead of EXACT_BASE_URL/EXACT_CAFILE, the other way round" },
  { "/etc/ssl/certs/ca-certificates.crt", function(c) return c.cafile end,
    "OpenResty: against the sandbox, lua_ssl_trusted_certificate is its ca.pem" },
  { "postgresql://etl@db/exact", function(c) return q(c.pg_conninfo) end, "the reader's own PostgreSQL database" },
  { "host=db.internal dbname=app user=app", function(c) return c.pg_conninfo end, "the same, as a conninfo" },
  { "/srv/", function(c) return c.root .. "/srv/" end, "the reader's own folders (FOLDERS: those that exist)" },
  { "/var/lib/app", function(c) return c.root .. "/var/lib/app" end, "the reader's own folders" },
  { "/tmp/eo-sandbox", function(c) return c.root .. "/tmp/eo-sandbox" end, "the reader's own folders" },
  { "8443", function(_, own) return tostring(own.port("8443")) end, "any free port (the Quick start says so)" },
  { "8080", function(c) return tostring(c.nginx_port) end, "any free port" },
}

-- The reader's folders the README says exist before a block runs (made at setup, under ROOT).
local FOLDERS = {
  "/srv/exact", -- replicate: "the folder of an SQLite file must exist"
}

-- In stated output (`--> …`): what a value the substitutions replaced shows as.
local OUTPUT_SUBSTITUTIONS = {
  { "https://start.exactonline.nl", function(c) return c.base_url end, "region nl's host is the base URL here" },
}

local function plain_replace(s, from, to)
  local out, pos = {}, 1
  while true do
    local a, b = s:find(from, pos, true)
    if not a then break end
    out[#out + 1] = s:sub(pos, a - 1)
    out[#out + 1] = to
    pos = b + 1
  end
  out[#out + 1] = s:sub(pos)
  return table.concat(out)
end

--- a block's text as it runs here: SUBSTITUTIONS applied, values computed once per block (one port per
-- block for each port it names)
local function substitute(text, list)
  local ports = {}
  local own = { port = function(name)
    ports[name] = ports[name] or helpers.free_port()
    return ports[name]
  end }
  for _, s in ipairs(list or SUBSTITUTIONS) do
    if text:find(s[1], 1, true) then text = plain_replace(text, s[1], s[2](ctx, own)) end
  end
  return text
end

-- the reader's shell: HOME, PATH with an installed `exactonline`, and (except for the Quick start, which
-- sets its own) the connection settings of the Command-line tool section
local function shell_env(with_connection)
  local env = {
    HOME = ctx.root .. "/home", PATH = ctx.root .. "/bin:" .. (os.getenv("PATH") or "/usr/bin:/bin"),
  }
  if with_connection ~= false then
    env.EXACT_CLIENT_ID, env.EXACT_CLIENT_SECRET = ctx.client_id, ctx.client_secret
    env.EXACT_REDIRECT_URI, env.EXACT_BASE_URL, env.EXACT_CAFILE = ctx.redirect_uri, ctx.base_url, ctx.cafile
    env.EXACT_WEBHOOK_SECRET = ctx.webhook_secret
  end
  return env
end

local UNSET = { "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "EXACT_CLIENT_ID", "EXACT_CLIENT_SECRET",
  "EXACT_CLIENT_SECRET_FILE", "EXACT_REDIRECT_URI", "EXACT_REGION", "EXACT_BASE_URL", "EXACT_CAFILE",
  "EXACT_DIVISION", "EXACT_TOKEN_FILE", "EXACT_CONFIG", "EXACT_WEBHOOK_SECRET", "DISPLAY", "WAYLAND_DISPLAY",
  "LUA_PATH", "LUA_CPATH", "LUA_PATH_5_4", "LUA_CPATH_5_4", "EXACTONLINE_DEBUG", "EXACTONLINE_SANDBOX_TOKEN" }

local function env_prefix(env)
  local parts = { "env" }
  for _, k in ipairs(UNSET) do parts[#parts + 1] = "-u " .. k end
  local keys = {}
  for k in pairs(env) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    parts[#parts + 1] = k .. "=" .. q(env[k])
  end
  return table.concat(parts, " ")
end

--- run a shell script in the checkout (or opts.cwd), as the reader's shell (opts.user: as that user)
-- --> { code, stdout, stderr }
local function run_sh(name, script, opts)
  opts = opts or {}
  local dir = ctx.root .. "/runs"
  local base = dir .. "/" .. name:gsub("[^%w]+", "-")
  write(base .. ".sh", script)
  write(base .. ".in", opts.stdin or "")
  local as = opts.user and ("runuser -u " .. opts.user .. " -- ") or ""
  sh("cd " .. q(opts.cwd or ctx.checkout) .. " && " .. as .. env_prefix(opts.env or shell_env(opts.connection)) ..
    " timeout " .. (opts.timeout or 300) .. " sh -e " .. q(base .. ".sh") .. " <" .. q(base .. ".in") ..
    " >" .. q(base .. ".out") .. " 2>" .. q(base .. ".err") .. "; echo $? >" .. q(base .. ".rc"))
  return { code = tonumber((read(base .. ".rc") or ""):match("%d+")), stdout = read(base .. ".out") or "",
           stderr = read(base .. ".err") or "", script = script }
end

local function describe_run(res)
  return ("exit %s\n--- script\n%s--- stdout\n%s--- stderr\n%s"):format(tostring(res.code), res.script,
    res.stdout:sub(-3000), res.stderr:sub(-3000))
end

local function lines_of(s)
  local list = {}
  for l in s:gmatch("[^\n]+") do list[#list + 1] = l end
  return list
end

-- a line of stated output: `…` is anything, a run of white space is any white space
local function output_matches(expected, actual)
  local function norm(s) return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")) end
  local parts = {}
  for piece in (norm(expected) .. "…"):gmatch("(.-)…") do
    parts[#parts + 1] = piece:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")
  end
  local pattern = "^" .. table.concat(parts, ".-") .. "$"
  return norm(actual):match(pattern) ~= nil
end

-- what the README states around some blocks, and how to drive the ones a plain run cannot ---------------

local RUNNERS, CHECKS, GIVEN = {}, {}, {}

--- The Quick start: the shell block, then (in the same shell, its sandbox still up) what the prose after it
-- says: the checkout's LUA_PATH line and quickstart.lua, once with the tokens `exactonline auth` stored (it
-- skips exchange) and once with none (it prints the URL and reads the pasted address). Then `kill $!`.
function RUNNERS.quickstart(block)
  local readme = table.concat(readme_lines, "\n")
  local lua_env = readme:match("`(LUA_PATH=\"%$PWD/lua/%?%.lua;[^`]*LUA_CPATH=[^`]*)`")
  assert.is_string(lua_env, "the Quick start no longer gives the checkout's LUA_PATH line")
  local browser = [[curl -s -o /dev/null -w '%{redirect_url}\n' --cacert "$EXACT_CAFILE" ]] ..
    [["$EXACT_BASE_URL/api/oauth2/auth?client_id=$EXACT_CLIENT_ID&redirect_uri=$EXACT_REDIRECT_URI]] ..
    [[&response_type=code&state=k3y"]]
  local script = table.concat({
    "trap 'kill $! 2>/dev/null || true' EXIT   # the spec's safety net: the sandbox stops even if a line fails",
    substitute(block.text),
    lua_env .. " lua5.4 quickstart.lua > quickstart-tokens.out",
    "export XDG_CONFIG_HOME=\"$PWD/fresh-config\"   # no tokens yet",
    browser .. " > pasted.txt   # the browser, as in the block: the sandbox consents at once",
    lua_env .. " lua5.4 quickstart.lua < pasted.txt > quickstart-first.out",
    "kill $!; wait $! || true   # until it has stopped (its status after a TERM is not the block's)",
    "",
  }, "\n")
  return run_sh("quickstart", script, { connection = false })
end

-- rows of an RFC 4180 file: CRLF ends a row (a field may hold a bare LF)
local function csv_rows(path)
  local _, n = (read(path) or ""):gsub("\r\n", "")
  return n - 1
end

-- the accounts the sandbox holds now, in one division or all
local function accounts_now(division)
  if division then return ctx.sb:entity("accounts", { division = division }).count end
  local n = 0
  for d = ctx.division, ctx.division + ctx.divisions - 1 do n = n + accounts_now(d) end
  return n
end

function CHECKS.quickstart()
  assert.are.equal(250, csv_rows(ctx.checkout .. "/accounts.csv")) -- "# 250 accounts, CSV"
  -- with the token file from `exactonline auth`: no exchange, the accounts at once
  local with_tokens = read(ctx.checkout .. "/quickstart-tokens.out") or ""
  assert.is_nil(with_tokens:find("open https://", 1, true), with_tokens)
  assert.are.equal(250, #lines_of(with_tokens))
  -- with none: the authorization URL, the prompt, then the accounts
  local first = read(ctx.checkout .. "/quickstart-first.out") or ""
  assert.matches("^open https://localhost:%d+/api/oauth2/auth%?[^\n]*state=k3y", first)
  assert.matches("paste the address the browser was sent to: ", first, 1, true)
  assert.are.equal(251, #lines_of(first), first:sub(1, 500)) -- the URL, then the prompt and the first row, 249 more
  assert.is_true(helpers.exists(ctx.checkout .. "/fresh-config/exactonline/tokens.json"))
end

--- a delivery as Exact sends it, signed with the sandbox's webhook secret (HMAC-SHA256 made by openssl)
function GIVEN.webhook()
  local content = ('{"Topic":"Accounts","ClientId":"%s","Division":%d,"Action":"Update",' ..
    '"Key":"0b8f3c2e-5d4a-4c1b-9e7f-1a2b3c4d5e6f","ExactOnlineEndpoint":"%s\\/api\\/v1\\/%d\\/crm\\/Accounts",' ..
    '"EventCreatedOn":"\\/Date(1700000000000)\\/"}'):format(ctx.client_id, ctx.division,
    ctx.base_url:gsub("/", "\\/"), ctx.division)
  local hex = helpers.capture("printf %s " .. q(content) .. " | openssl dgst -sha256 -hmac " ..
    q(ctx.webhook_secret) .. " -r"):match("^(%x+)")
  assert(hex and #hex == 64, "openssl gave no HMAC")
  return { raw_body = '{"Content":' .. content .. ',"HashCode":"' .. hex:upper() .. '"}' }
end

function CHECKS.cli(res)
  assert.matches("Connected as", res.stdout, 1, true)
  -- every account of the division (the examples above added one through the XML API)
  local count = accounts_now(ctx.division)
  assert.are.equal(count, csv_rows(ctx.checkout .. "/accounts.csv"))
  local jsonl = lines_of(read(ctx.checkout .. "/accounts.jsonl") or "")
  assert.are.equal(count, #jsonl)
  local row = cjson.decode(jsonl[1])
  assert.is_string(row.ID)
  assert.is_string(row.Code)
  assert.is_string(row.Name)
  assert.is_true(#lines_of(read(ctx.checkout .. "/changes.csv") or "") > 1)
end

function CHECKS.replicate(res)
  -- the last lines are sqlite3's answer to revenue.sql: code|name|revenue, ten customers
  local rows = {}
  for _, l in ipairs(lines_of(res.stdout)) do
    if l:match("^[^|]*|[^|]*|%-?[%d.]+$") then rows[#rows + 1] = l end
  end
  assert.are.equal(10, #rows, res.stdout)
  -- and the same administrations in PostgreSQL
  local ok, out = sh("psql " .. q(ctx.pg_conninfo) .. " -tAc 'SELECT count(*) FROM crm_accounts'")
  assert.is_true(ok, out)
  assert.are.equal(accounts_now(), tonumber(out:match("%d+")))
end

--- the gateway: nginx as the README starts it (as root, workers as nobody), stopped as the README says
local function nginx_stop()
  local prefix = ctx.root .. "/srv/app"
  sh("nginx -p " .. q(prefix) .. " -c conf/nginx.conf -s stop 2>/dev/null")
  sh("i=0; while [ -e " .. q(prefix .. "/logs/nginx.pid") .. " ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done")
end

local function gateway_get()
  local status, _, body = helpers.http("GET", "http://localhost:" .. ctx.nginx_port .. "/accounts.json",
    { timeout = 30 })
  return status, body
end

local function needs_root()
  if helpers.is_root() then return false end
  pending("needs root: the README sets the gateway up as root (nginx's workers then run as nobody)")
  return true
end

function RUNNERS.openresty(block)
  if needs_root() then return nil end
  local prefix = ctx.root .. "/srv/app"
  runner.watchdog({ pid = prefix .. "/logs/nginx.pid", prefix = prefix .. "/none" }, helpers.pid())
  helpers.on_cleanup(nginx_stop)
  return run_sh("openresty", substitute(block.text), { stdin = ctx.fresh_code() .. "\n" })
end

--- "survives a refresh when set up exactly as the README says": the access token's 600 s pass (the sandbox
-- clock), and the gateway keeps answering, its workers (nobody) refreshing and writing the token file
function CHECKS.openresty(res)
  local out = lines_of(res.stdout)
  local answer = cjson.decode(out[#out]) -- curl's, after what `exactonline auth` printed
  assert.are.equal(20, #answer.accounts)
  assert.is_string(answer.accounts[1].Code)
  assert.is_string(answer.accounts[1].Name)
  local path = ctx.root .. "/var/lib/app/tokens.json"
  local saved, before = cjson.decode(read(path)).tokens, ctx.sb:stats()
  ctx.sb:advance(601)
  for _ = 1, 6 do
    local status, body = gateway_get()
    assert.are.equal(200, status, body)
    assert.are.equal(20, #cjson.decode(body).accounts)
  end
  local after = ctx.sb:stats()
  assert.are.equal(before.refreshes + 1, after.refreshes)
  assert.are.equal(before.old_refresh_used, after.old_refresh_used)
  local now = cjson.decode(read(path)).tokens
  assert.are_not.equal(saved.refresh_token, now.refresh_token)
  local _, owner = sh("stat -c %U " .. q(path) .. " " .. q(path .. ".lock"))
  assert.are.equal("nobody\nnobody\n", owner)
  -- what nginx writes is under the prefix: its pid file (naming the running master), temp folders, logs
  local prefix = ctx.root .. "/srv/app"
  local pid = tonumber(read(prefix .. "/logs/nginx.pid"))
  assert.is_number(pid, "no pid file under the prefix")
  assert.is_true((sh("kill -0 " .. pid)))
  for _, f in ipairs { "/tmp/body", "/tmp/proxy", "/logs/access.log", "/logs/error.log" } do
    assert.is_true(helpers.exists(prefix .. f), f .. " is not under the prefix")
  end
  nginx_stop()
end

--- the sandbox command: in the background here (Ctrl-C for a reader; TERM here: a background process of a
-- non-interactive shell ignores SIGINT); it prints what the comment says and answers
function RUNNERS.sandbox(block)
  local line = substitute(block.text):match("^([^\n#]-)%s*\n")
  local log = ctx.root .. "/runs/sandbox.log"
  local port = line:match("%-%-port (%d+)")
  local pid = tonumber(helpers.capture("cd " .. q(ctx.checkout) .. " && " .. env_prefix(shell_env(false)) ..
    " sh -c " .. q("exec " .. line) .. " >" .. q(log) .. " 2>&1 </dev/null & echo $!"):match("%d+"))
  local cafile = ctx.root .. "/home/.cache/exactonline-sandbox/ca.pem"
  -- nginx may answer a moment before the command has seen it listen and printed its banner (under ASan the
  -- moment is long): wait for both
  local status, out
  for _ = 1, 600 do
    status = status or helpers.http("GET", "https://localhost:" .. port .. "/", { cafile = cafile, timeout = 2 })
    out = read(log) or ""
    if status and out:find("Ctrl-C stops it", 1, true) then break end
    sh("sleep 0.05")
  end
  sh("kill -TERM " .. pid .. "; i=0; while kill -0 " .. pid .. " 2>/dev/null && [ $i -lt 200 ]; do " ..
    "sleep 0.05; i=$((i+1)); done")
  return { code = status and 0 or 1, stdout = out, stderr = "", script = line .. "\n" }
end

function CHECKS.sandbox(res)
  -- "prints the base URL, CA file, client id, secret, redirect URI, division and control token"
  for _, label in ipairs { "Exact Online sandbox on https://localhost:", "CA file:", "client id:",
                           "client secret:", "redirect URI:", "division:", "control token:", "Ctrl-C stops it" } do
    assert.matches(label, res.stdout, 1, true)
  end
end

--- The gateway's commands are a menu, not one script (two of them are servers that run until Ctrl-C), and
-- the calls block after them needs a running one. The reader is an ordinary user (as root the token file
-- would have to move where nobody, the workers' user, can reach it: the prose says so, and the gateway's
-- own specs run that); here nobody, in a home of its own. As a reader uses them: `auth` and `--new-key`
-- as written; the server in the background on a free port (--listen: the reader's own; the default 8080
-- may be taken here) until it answers /healthz; the calls block against it; `--list-keys`; then the TLS
-- line, with a certificate for localhost made here (the reader's gw.pem/gw.key), until /healthz answers
-- over HTTPS; `--revoke-key` and a call with that key, refused at once ("no restart").
local function gateway_lines(text)
  local lines = {}
  for l in text:gmatch("[^\n]+") do
    local cmd = l:match("^(exactonline[^#]-)%s*#") or l:match("^(exactonline.-)%s*$")
    if cmd then
      local key = cmd:match("^exactonline auth") and "auth" or cmd:match("%-%-new%-key") and "new_key"
        or cmd:match("%-%-tls%-cert") and "tls" or cmd:match("%-%-list%-keys") and "list"
        or cmd:match("%-%-revoke%-key") and "revoke" or cmd:match("^exactonline gateway$") and "server"
      if key then lines[key] = cmd end
    end
  end
  for _, k in ipairs { "auth", "new_key", "server", "tls", "list", "revoke" } do
    assert(lines[k], "the gateway block no longer has its " .. k .. " line")
  end
  return lines
end

function RUNNERS.gateway(block)
  local calls
  for _, b in ipairs(blocks) do if b.arg == "gateway-calls" then calls = b end end
  assert(calls, "the README has no `spec: run gateway-calls` block")
  local text = substitute(block.text)
  local L = gateway_lines(text)
  local port, tls_port = helpers.free_port(), text:match("0%.0%.0%.0:(%d+)")
  local wait = function(url, extra)
    return "until curl -s -o /dev/null " .. (extra or "") .. " " .. url .. "; do kill -0 $! || exit 1; " ..
      "sleep 0.1; done"
  end
  local script = table.concat({
    "trap 'kill $! 2>/dev/null || true' EXIT   # the spec's safety net",
    L.auth,
    L.new_key,
    L.server .. " --listen 127.0.0.1:" .. port .. " > gateway.log 2> gateway.err &",
    wait("http://127.0.0.1:" .. port .. "/healthz"),
    "( " .. plain_replace(substitute(calls.text), "127.0.0.1:" .. ctx.nginx_port, "127.0.0.1:" .. port)
      .. ") > gateway-calls.out",
    L.list .. " > gateway-keys.out",
    "kill $!; wait $! || true",
    "openssl req -x509 -newkey rsa:2048 -nodes -keyout gw.key -out gw.pem -days 1 -subj /CN=localhost " ..
      "-addext subjectAltName=DNS:localhost 2>/dev/null   # the reader's certificate",
    L.tls .. " > gateway-tls.log 2> gateway-tls.err &",
    wait("https://localhost:" .. tls_port .. "/healthz", "--cacert gw.pem"),
    "curl -s --cacert gw.pem https://localhost:" .. tls_port .. "/healthz > gateway-tls-health.out",
    L.revoke,
    "curl -s -o /dev/null -w '%{http_code}\\n' --cacert gw.pem -H \"X-Api-Key: $(cat adf.key)\" " ..
      "https://localhost:" .. tls_port .. "/api/v1/current/Me > gateway-revoked.out",
    "kill $!; wait $! || true",
    "",
  }, "\n")
  local home = ctx.root .. "/gateway-user"
  local env = shell_env()
  env.HOME = home
  local user = helpers.is_root() and "nobody" or nil
  local res = run_sh("gateway", script, { stdin = ctx.fresh_code() .. "\n", cwd = home, env = env, user = user })
  for _, f in ipairs { "gateway.err", "gateway-tls.err" } do
    res.stderr = res.stderr .. "--- " .. f .. "\n" .. (read(home .. "/" .. f) or "")
  end
  ctx.gateway = { port = port, res = res }
  return res
end

function CHECKS.gateway(res)
  local dir = ctx.root .. "/gateway-user"
  assert.matches("^eogw_%x+\n$", read(dir .. "/adf.key") or "")
  assert.matches("adf", read(dir .. "/gateway-keys.out") or "", 1, true)
  assert.are.equal("401\n", read(dir .. "/gateway-revoked.out"), "a revoked key is refused from the next call on")
  assert.matches('"state":"ok"', read(dir .. "/gateway-tls-health.out") or "", 1, true)
  -- the key is never in the access log
  local key = (read(dir .. "/adf.key") or ""):match("%S+")
  assert.is_nil((read(dir .. "/gateway.log") or ""):find(key, 1, true))
  ctx.gateway.ok = res.code == 0
end

--- the calls block ran inside RUNNERS.gateway, against the gateway it started; here its stated output
RUNNERS["gateway-calls"] = function()
  assert(ctx.gateway and ctx.gateway.ok, "runs inside the gateway block above, which did not pass")
  local out = read(ctx.root .. "/gateway-user/gateway-calls.out") or ""
  return { code = 0, stdout = out, stderr = "", script = "(inside the gateway block's run)\n" }
end

CHECKS["gateway-calls"] = function(res)
  local port = ctx.gateway.port
  assert.matches('"CurrentDivision":' .. ctx.division, res.stdout, 1, true) -- current/Me, through the gateway
  -- "# http://127.0.0.1:8080/api/v1/3167822/crm/Accounts?$select=ID,Name&$skiptoken=…"
  assert.matches("http://127.0.0.1:" .. port .. "/api/v1/" .. ctx.division ..
    "/crm/Accounts?$select=ID,Name&$skiptoken=", res.stdout, 1, true)
  assert.matches("<eExact", res.stdout, 1, true) -- the XML download
  -- "# {"state":"ok","days_left":29.9,…}" (its members in any order: it is JSON)
  local health = cjson.decode(res.stdout:match('(%{[^{}]*"state"[^{}]*%})%s*$') or "null")
  assert.is_table(health, res.stdout:sub(-300))
  assert.are.equal("ok", health.state)
  assert.is_true(health.days_left > 29 and health.days_left < 31)
end

-- the spec ---------------------------------------------------------------------------------------------------

local function check_stated_output(block, result)
  local by_line = {}
  for _, p in ipairs(result.prints or {}) do
    by_line[p.line] = by_line[p.line] or p.text
  end
  local n = 0
  for code_line in (block.text):gmatch("([^\n]*)\n") do
    n = n + 1
    local code, expected = code_line:match("^(.-)%-%->%s?(.*)$")
    if code and not code:match("^%s*%-%-") then
      assert(code:find("print(", 1, true), block.title .. " line " .. n .. ": `-->` states output, and only " ..
        "a print line has any (write `print(…) --> value` or make it a plain `--` comment)")
      expected = substitute(expected, OUTPUT_SUBSTITUTIONS)
      local actual = by_line[n]
      assert.is_string(actual, block.title .. " line " .. n .. " printed nothing; it states: " .. expected)
      assert.is_true(output_matches(expected, actual), block.title .. " line " .. n .. ":\n  states  " ..
        expected .. "\n  printed " .. actual)
    end
  end
end

describe("README.md's code blocks, run as written against a sandbox", function()
  local lua_results

  setup(function()
    ctx.root = helpers.tmpdir()
    sh("chmod 755 " .. q(ctx.root)) -- as /srv and /var/lib are: nginx's workers (nobody) pass through
    for _, d in ipairs { "home", "bin", "runs", "checkout", "srv", "var/lib", "tmp" } do
      sh("mkdir -p " .. q(ctx.root .. "/" .. d))
    end
    for _, d in ipairs(FOLDERS) do sh("mkdir -p " .. q(ctx.root .. d)) end
    sh("mkdir -p " .. q(ctx.root .. "/gateway-user"))
    if helpers.is_root() then sh("chown nobody " .. q(ctx.root .. "/gateway-user")) end
    -- a checkout to work in: the real one's files, seen through symlinks, so what blocks write stays here
    ctx.checkout = ctx.root .. "/checkout"
    sh("for f in " .. q(helpers.root) .. "/*; do ln -s \"$f\" " .. q(ctx.checkout) .. "/; done")
    -- `exactonline`, installed: the checkout's CLI under the VM running this spec (lua5.4 for 5.3/5.1)
    write(ctx.root .. "/bin/exactonline", "#!/bin/sh\nexec " .. helpers.cli_lua() .. " " ..
      q(helpers.root .. "/bin/exactonline") .. " \"$@\"\n")
    sh("chmod 755 " .. q(ctx.root .. "/bin/exactonline"))

    local sb = helpers.sandbox { limits = { minutely = 100000, daily = 100000 } }
    ctx.sb = sb
    ctx.base_url = "https://localhost:" .. sb.port -- a host name: nginx verifies certificates by name
    -- the reader's copy of the CA file the sandbox printed (its own folder is root's, 0700)
    ctx.cafile = ctx.root .. "/sandbox-ca.pem"
    sh("cp " .. q(sb.cafile) .. " " .. q(ctx.cafile) .. " && chmod 644 " .. q(ctx.cafile))
    ctx.client_id, ctx.client_secret = sb.client_id, sb.client_secret
    ctx.redirect_uri, ctx.division, ctx.divisions = sb.redirect_uri, sb.division, sb.divisions
    ctx.webhook_secret = sb.info.webhook_secret
    ctx.nginx_port = helpers.free_port()
    ctx.fresh_code = function() return sb:code() end
    ctx.fresh_redirect = function(state) return (assert(sb:authorize { state = state })) end
    local pg = require("support.postgres").start()
    ctx.pg_conninfo = pg.conninfo

    -- the files the blocks use, where the README puts them
    for _, b in ipairs(blocks) do
      if b.kind == "file" then
        local path = substitute(b.arg)
        if path:sub(1, 1) ~= "/" then path = ctx.checkout .. "/" .. path end
        sh("mkdir -p " .. q(path:match("^(.*)/")))
        write(path, substitute(b.text))
        b.path = path
      end
    end
    -- what the reader did first (the Quick start): `exactonline auth`, tokens in their HOME
    local res = run_sh("authorize", "exactonline auth --redirect-url " .. q(sb:code()) .. "\n")
    assert(res.code == 0, describe_run(res))
  end)

  it("every code block is fenced, has a language and a spec: marker (see the top of this file)", function()
    assert.is_true(#blocks > 0)
    assert.are.same({}, problems)
    -- hooks name blocks that exist: a renamed block does not silently lose its checks
    local names = {}
    for _, b in ipairs(blocks) do if b.kind == "run" and b.arg then names[b.arg] = true end end
    for what, t in pairs { RUNNERS = RUNNERS, CHECKS = CHECKS, GIVEN = GIVEN } do
      for name in pairs(t) do assert.is_true(names[name], what .. "." .. name .. " names no README block") end
    end
  end)

  -- the Lua blocks that run, as one script, once
  local function run_lua_blocks()
    if lua_results then return lua_results end
    local list = {}
    for _, b in ipairs(blocks) do
      if b.kind == "run" and b.lang == "lua" then
        local given = b.arg and GIVEN[b.arg] and GIVEN[b.arg]()
        list[#list + 1] = { name = b.title, code = substitute(b.text), given = given }
        b.index = #list
      end
    end
    local input, output = ctx.root .. "/runs/lua-blocks.json", ctx.root .. "/runs/lua-results.json"
    write(input, cjson.encode { blocks = list })
    local env = shell_env()
    env.PATH = os.getenv("PATH")
    local ok, out = sh("cd " .. q(ctx.checkout) .. " && " .. env_prefix(env) .. " " .. helpers.lua_env() ..
      " timeout 600 " .. helpers.lua() .. " " .. q(helpers.root .. "/spec/support/readme_lua.lua") .. " " ..
      q(input) .. " " .. q(output))
    local text = read(output)
    assert(text, "the README's Lua blocks did not finish:\n" .. out:sub(-3000))
    lua_results = cjson.decode(text)
    lua_results.output = ok and "" or out
    return lua_results
  end

  for _, block in ipairs(blocks) do
    it(block.title, function()
      if not block.kind then error("unclassified: see the first test") end
      if block.kind == "needs" then
        return pending("not run here: needs " .. block.arg)
      end
      if block.kind == "fragment" or (block.kind == "file" and block.lang ~= "sql") then
        local tmp = ctx.root .. "/runs/syntax-" .. block.line
        if block.lang == "lua" then
          local ok, err = (rawget(_G, "loadstring") or load)(block.text, "=" .. block.title)
          assert(ok, err)
        elseif block.lang == "sh" then
          write(tmp, block.text)
          local ok, out = sh("sh -n " .. q(tmp))
          assert(ok, out)
        elseif block.lang == "json" then
          local ok = pcall(cjson.decode, block.text) or pcall(cjson.decode, "{" .. block.text .. "}")
          assert(ok, block.title .. ": not JSON, nor the members of a JSON object")
        elseif block.lang == "nginx" then
          -- a whole configuration: tested where it is, as nginx will read it
          local conf, prefix = block.path, block.path and block.path:match("^(.*)/conf/[^/]+$")
          if not conf then
            write(tmp, block.text)
            conf, prefix = tmp, ctx.root .. "/runs"
          end
          local ok, out = sh("nginx -t -q -p " .. q(prefix) .. " -c " .. q(conf))
          assert(ok, out)
        end
        return
      end
      if block.kind == "file" then return end -- sql: read by the block that runs it (sqlite3 < revenue.sql)
      -- run
      if block.lang == "lua" then
        local results = run_lua_blocks()
        local r = results[block.index]
        assert(r, "no result for this block:\n" .. (results.output or ""))
        assert(r.ok, block.title .. " failed:\n" .. tostring(r.error) .. "\n--- as run:\n" .. substitute(block.text))
        check_stated_output(block, r)
        return
      end
      local name = block.arg
      local res
      if name and RUNNERS[name] then
        res = RUNNERS[name](block)
        if res == nil then return end -- pending, said by the runner
      else
        local text = substitute(block.text)
        res = run_sh(name or ("line-" .. block.line), text,
          { stdin = text:find("exactonline auth", 1, true) and (ctx.fresh_code() .. "\n") or nil })
      end
      assert(res.code == 0, block.title .. ":\n" .. describe_run(res))
      assert.is_nil((res.stdout .. res.stderr):find("stack traceback", 1, true), describe_run(res))
      if name and CHECKS[name] then CHECKS[name](res) end
    end)
  end

  it("README OpenResty: a forgotten chown fails the first request with the command to run, and the chown " ..
     "fixes it without a restart", function()
    if needs_root() then return end
    local block
    for _, b in ipairs(blocks) do if b.arg == "openresty" then block = b end end
    assert(block, "the README has no `spec: run openresty` block")
    -- the reader who skips the chown line; /var/lib/app as on a fresh machine
    assert(sh("rm -rf " .. q(ctx.root .. "/var/lib/app") .. " " .. q(ctx.root .. "/srv/app/logs/error.log")))
    local chown = substitute(block.text):match("\n(chown [^\n#]-)%s*#[^\n]*\n")
    assert.is_string(chown)
    local text = substitute(block.text):gsub("\nchown [^\n]*\n", "\n")
    local res = run_sh("openresty-forgot", text, { stdin = ctx.fresh_code() .. "\n" })
    assert(res.code == 0, describe_run(res))
    local status = gateway_get()
    assert.are.equal(500, status)
    local log = read(ctx.root .. "/srv/app/logs/error.log") or ""
    assert.matches("chown -R nobody " .. ctx.root .. "/var/lib/app", log, 1, true)
    assert(sh(chown))
    local body
    status, body = gateway_get()
    assert.are.equal(200, status, body)
    assert.are.equal(20, #cjson.decode(body).accounts)
    nginx_stop()
  end)
end)
