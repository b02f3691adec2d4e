--- exactonline demo: the whole first hour against a fresh sandbox, as a user would do it — what `make demo`
-- runs. Starts the sandbox (HTTPS, free port), runs `exactonline auth` with the demo acting as the browser
-- (it fetches the sandbox's redirect and pastes it on auth's stdin), exports the accounts to
-- demo/accounts.csv, shows `exactonline token`, and stops the sandbox on every path.
local assert, io, ipairs, os, pcall, require, tonumber, tostring, type =
  assert, io, ipairs, os, pcall, require, tonumber, tostring, type
local rawget = rawget

local util = require "exactonline.cli.util"
local parser = require "exactonline.cli.parser"
local core = require "exactonline.core"

local _M = {}

_M.summary = "the whole flow against a fresh sandbox (what `make demo` runs)"

function _M.add_to_parser(root)
  local c = parser.command(root, "demo", {
    summary = _M.summary,
    usage = "[--accounts N] [--output FILE] [--keep]",
    description = "Run the whole flow against a fresh local sandbox: auth, export, token. Nothing leaves this\n"
      .. "machine. Ends with how to point the same commands at a real Exact Online app.",
    examples = { "make demo", "exactonline demo --accounts 20000 -o /tmp/accounts.csv" },
  })
  parser.option(c, "--accounts", "N", "accounts in the sandbox (default 5000)", { number = true })
  parser.option(c, "--output -o", "FILE", "the CSV to write (default demo/accounts.csv)")
  parser.flag(c, "--keep", "keep the temp config folder (tokens) and print where it is")
  return parser.finish(c)
end

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function sh(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0, a end
  return a == true, c
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local sleep
do
  local ok, socket = pcall(require, "socket")
  if ok and socket.sleep then sleep = socket.sleep else sleep = function(s) sh("sleep " .. s) end end
end

local function free_port()
  local socket = require "socket"
  local s = socket.bind("127.0.0.1", 0)
  local _, port = s:getsockname()
  s:close()
  return port
end

local out = io.stdout
local function say(...)
  out:write(...)
  out:write("\n")
  out:flush()
end
-- characters, not bytes, for lining up columns of names like "Bäckerei Müller"
local function utf8_len(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

local function step(title)
  say("")
  say("== ", title)
end

--- Run `exactonline auth` with a pipe for stdin; act as the browser; paste the redirect URL.
local function authorize(ctx)
  local fifo = ctx.tmp .. "/paste"
  local log = ctx.tmp .. "/auth.out"
  local rcfile = ctx.tmp .. "/auth.rc"
  assert(sh("mkfifo " .. q(fifo)), "mkfifo failed")
  say("$ exactonline auth")
  sh("sh -c " .. q(ctx.cmd("auth --no-browser") .. " <" .. q(fifo) .. " >" .. q(log) ..
    " 2>&1; echo $? >" .. q(rcfile)) .. " </dev/null &")
  -- Opening the FIFO for writing waits for auth to open it for reading.
  local paste = assert(io.open(fifo, "w"))
  local shown, url = 0, nil
  local function show()
    local text = read_file(log) or ""
    if #text > shown then
      local new = text:sub(shown + 1)
      shown = #text
      out:write((new:gsub("([^\n]*)(\n?)", function(l, nl)
        if l == "" and nl == "" then return "" end
        return "   " .. l .. nl
      end)))
      out:flush()
    end
    return text
  end
  for _ = 1, 300 do
    local text = show()
    url = text:match("(https?://%S+/api/oauth2/auth%?%S+)")
    if url and text:find("paste", 1, true) then break end
    if read_file(rcfile) then break end
    sleep(0.05)
  end
  if not url then
    paste:close()
    return nil, "exactonline auth printed no authorization URL"
  end
  say("")
  say("   (the demo plays the browser: it opens that URL, the sandbox logs the user in and redirects)")
  local hdr = ctx.tmp .. "/redirect.hdr"
  sh("curl -s -o /dev/null -D " .. q(hdr) .. " --cacert " .. q(ctx.cafile) .. " " .. q(url))
  local location = (read_file(hdr) or ""):match("\n[Ll]ocation:%s*(%S+)")
  if not location then
    paste:close()
    return nil, "the sandbox did not redirect the authorization request"
  end
  say("   browser was sent to: ", (location:gsub("code=[^&]+", "code=…")))
  say("   pasting that address into exactonline auth …")
  say("")
  paste:write(location, "\n")
  paste:close()
  for _ = 1, 600 do
    if read_file(rcfile) then break end
    sleep(0.05)
  end
  show()
  local rc = tonumber((read_file(rcfile) or ""):match("%d+"))
  if rc ~= 0 then return nil, "exactonline auth failed (exit " .. tostring(rc) .. ")" end
  return true
end

local function run(ctx, root, opts)
  local sandbox = require "exactonline.sandbox"
  step("Starting the sandbox (a local Exact Online: nginx + Lua, HTTPS)")
  local port = free_port()
  local info, err = sandbox.prepare {
    port = port, tls_dir = ctx.tmp .. "/tls", accounts = opts.accounts or 5000,
  }
  if not info then return nil, "sandbox: " .. tostring(err) end
  local ok, serr = sandbox.start(info)
  if not ok then return nil, "sandbox: " .. tostring(serr) end
  ctx.info = info
  sandbox.watchdog(info, core.getpid())
  ctx.cafile = info.cafile
  say("   ", info.base_url, "  (division ", tostring(info.division), ", ", tostring(info.accounts), " accounts)")

  -- wait until it answers
  for _ = 1, 100 do
    if sh("curl -s -o /dev/null --cacert " .. q(info.cafile) .. " " .. q(info.base_url .. "/api/oauth2/auth")) then
      break
    end
    sleep(0.05)
  end

  step("Configuring, as you would for your own app (environment variables)")
  local env = {
    XDG_CONFIG_HOME = ctx.tmp .. "/config",
    EXACT_CLIENT_ID = info.client_id,
    EXACT_CLIENT_SECRET = info.client_secret,
    EXACT_REDIRECT_URI = info.redirect_uri,
    EXACT_BASE_URL = info.base_url,
    EXACT_CAFILE = info.cafile,
  }
  local parts = {}
  for _, k in ipairs { "XDG_CONFIG_HOME", "EXACT_CLIENT_ID", "EXACT_CLIENT_SECRET", "EXACT_REDIRECT_URI",
                       "EXACT_BASE_URL", "EXACT_CAFILE" } do
    parts[#parts + 1] = k .. "=" .. q(env[k])
    say("   export ", k, "=", k == "EXACT_CLIENT_SECRET" and "…(the sandbox app's secret)" or env[k])
  end
  ctx.env = "env -u EXACT_DIVISION -u EXACT_TOKEN_FILE -u EXACT_REGION -u EXACT_CONFIG " .. table.concat(parts, " ")

  step("Authorizing (codes live 3 minutes: auth exchanges the pasted code at once)")
  local aok, aerr = authorize(ctx)
  if not aok then return nil, aerr end

  step("Exporting every account to CSV (bulk endpoint: 1000 rows per call)")
  -- children run in the checkout (cd ROOT), so a relative -o is made absolute first
  local output = opts.output or "demo/accounts.csv"
  if opts.output and not output:match("^/") then output = (os.getenv("PWD") or ".") .. "/" .. output end
  local dir = output:match("^(.*)/[^/]+$")
  if dir then sh("cd " .. q(root) .. " && mkdir -p " .. q(dir)) end
  local shown_out = opts.output or "demo/accounts.csv"
  say("$ exactonline export crm/Accounts -o ", shown_out)
  local eok = sh(ctx.cmd("export crm/Accounts -o " .. q(output)))
  if not eok then return nil, "exactonline export failed" end
  local head = {}
  local f = io.open(output:match("^/") and output or (root .. "/" .. output), "r")
  if f then
    for _ = 1, 3 do head[#head + 1] = f:read("*l") end
    f:close()
  end
  say("   first lines of ", shown_out, ":")
  for _, l in ipairs(head) do say("   ", (l:gsub("\r$", ""))) end

  step("Where the tokens stand (exit 0 fine, 1 fewer than 7 days left, 2 expired: use it in cron)")
  say("$ exactonline token")
  local tok = sh(ctx.cmd("token"))
  if not tok then return nil, "exactonline token did not report fresh tokens" end

  step("Replicating both divisions into SQLite (the standard set; a second run fetches only what changed)")
  local db = output:gsub("[^/]*$", "") .. "exact.db"
  local shown_db = shown_out:gsub("[^/]*$", "") .. "exact.db"
  say("$ exactonline replicate --division all --to ", shown_db)
  local rok = sh(ctx.cmd("replicate --division all --no-progress --to " .. q("sqlite:" .. db)))
  if not rok then return nil, "exactonline replicate failed" end
  step("A question for the replica: revenue per customer, from transaction lines joined with accounts")
  say("$ sqlite3 ", shown_db, " < revenue.sql")
  for l in _M.REVENUE_SQL:gmatch("[^\n]+") do say("   ", l) end
  local tok2, rerr = _M.print_query(db:match("^/") and db or (root .. "/" .. db), _M.REVENUE_SQL)
  if not tok2 then return nil, rerr end
  return output
end

_M.REVENUE_SQL = [[
SELECT ltrim(a.code) AS code, a.name AS customer, round(-sum(t.amountdc), 2) AS revenue
FROM financialtransaction_transactionlines t
JOIN crm_accounts a ON a.division = t.division AND a.id = t.account
WHERE t.glaccountcode LIKE '8%'
GROUP BY a.division, a.code, a.name
ORDER BY revenue DESC
LIMIT 10]]

--- Run a query on a replica and print its rows as a table. --> true | nil, message
function _M.print_query(path, sql)
  local R, err = require("exactonline.replicate.db").open("sqlite:" .. path)
  if not R then return nil, util.message(err) end
  local st, qerr = R:exec(sql)
  if not st then
    R:close()
    return nil, util.message(qerr)
  end
  local names = st:columns()
  local rows, w = {}, {}
  for i, n in ipairs(names) do w[i] = #n end
  for row in st:rows(false) do
    local r = {}
    for i = 1, #names do
      local v = row[i]
      r[i] = type(v) == "number" and ("%.2f"):format(v) or tostring(v == nil and "" or v)
      w[i] = math.max(w[i], utf8_len(r[i]))
    end
    rows[#rows + 1] = r
  end
  R:close()
  local function line(r, sep)
    local parts = {}
    for i = 1, #names do
      local pad = (" "):rep(w[i] - utf8_len(r[i]))
      parts[i] = (i == #names) and (pad .. r[i]) or (r[i] .. pad)
    end
    return "   " .. table.concat(parts, sep)
  end
  say(line(names, " | "))
  local dashes = {}
  for i = 1, #names do dashes[i] = ("-"):rep(w[i]) end
  say(line(dashes, "-+-"))
  for _, r in ipairs(rows) do say(line(r, " | ")) end
  say("   (", tostring(#rows), " rows)")
  return true
end

local REAL = [[

== Now with your real Exact Online app
1. Register an app in the Exact Online App Centre (https://apps.exactonline.com, "Manage apps" ->
   "Register an app"), with an HTTPS redirect URI you control, e.g. https://example.com/callback
   (Exact accepts only HTTPS redirect URIs; the page need not exist: you paste the address you land on).
2. Tell the tool about it (or put the same keys in ~/.config/exactonline/config.lua):
     export EXACT_CLIENT_ID=…  EXACT_CLIENT_SECRET=…
     export EXACT_REDIRECT_URI=https://example.com/callback   # exactly as registered
     export EXACT_REGION=nl                                   # nl be de fr es uk us: where the account lives
3. Authorize once, then use it:
     exactonline auth                      # open the URL, log in, paste the address you land on
     exactonline export crm/Accounts -o accounts.csv
     exactonline token                     # and `exactonline refresh` daily from cron
]]

function _M.run(opts, root)
  root = root or "."
  local vm = rawget(_G, "jit") and "luajit" or "lua5.4"
  local tmp, terr = core.mkdtemp("/tmp/exactonline-demo")
  if not tmp then return nil, terr, 1 end
  local ctx = { tmp = tmp }
  -- `exactonline ARGS` as a user would type it, run from the checkout with the demo's environment
  function ctx.cmd(args)
    return "cd " .. q(root) .. " && " .. ctx.env .. " " .. vm .. " bin/exactonline " .. args
  end
  local ok, res, err = pcall(run, ctx, root, opts)
  if ctx.info then
    step("Stopping the sandbox")
    require("exactonline.sandbox").stop(ctx.info)
  end
  if opts.keep then
    say("   kept ", tmp, " (tokens in ", tmp, "/config/exactonline)")
  else
    sh("rm -rf " .. q(tmp))
  end
  if not ok then return nil, util.message(res), 1 end
  if not res then return nil, err, 1 end
  say("")
  say("Done: ", opts.output or "demo/accounts.csv", " holds the sandbox's accounts, ",
    (opts.output or "demo/accounts.csv"):gsub("[^/]*$", "") .. "exact.db", " a replica of both divisions.")
  out:write(REAL)
  out:flush()
  return 0
end

return _M
