--- A real `exactonline gateway` in front of a sandbox, for specs: tokens obtained through the library into a
-- token file, client keys made with `exactonline gateway --new-key`, and the command itself started in the
-- background (the spec's VM), its stdout (the access log) and stderr kept for the secrets grep.
--   local gw_harness = require "support.gateway"
--   local gw = gw_harness.start{ sandbox = sb, workers = 2, keys = { "adf", "cron" } }
--   gw.url, gw.keys.adf, gw:get("/api/v1/current/Me", { key = gw.keys.adf }), gw:cli{ "--revoke-key", "cron" }
--   gw:logs() --> access log, stderr;  gw:stop()
local helpers = require "helpers"
local cli = require "support.cli_run"
local exactonline = require "exactonline"

local os, table = os, table
local tostring, ipairs, pairs, error, setmetatable, type, assert, pcall = tostring, ipairs, pairs, error,
  setmetatable, type, assert, pcall

local _M = {}

local q = helpers.quote

local is_root = helpers.is_root
_M.is_root = is_root

local Gateway = {}
Gateway.__index = Gateway

--- the environment the gateway command runs with (a user's EXACT_* settings for the sandbox)
function Gateway:env(extra)
  -- nginx verifies Exact's certificate by host name only: localhost, not 127.0.0.1
  local env = cli.env_for(self.sb, self.dir, { EXACT_TOKEN_FILE = self.token_file,
    EXACT_BASE_URL = "https://localhost:" .. self.sb.port })
  for k, v in pairs(extra or {}) do
    if v == false then env[k] = nil else env[k] = v end
  end
  return env
end

--- run `exactonline gateway ARGS…` to its end: { code, stdout, stderr }
function Gateway:cli(args, env)
  local argv = { "gateway", "--keys", self.key_file }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return cli.run(env or self:env(), argv)
end

--- make a key with the CLI: the key (stdout's one line)
function Gateway:new_key(name)
  local r = self:cli { "--new-key", name }
  if r.code ~= 0 then error("--new-key " .. name .. " failed: " .. r.stderr, 2) end
  local key = r.stdout:match("^(%S+)\n$")
  if not key then error("--new-key printed more than the key: " .. r.stdout, 2) end
  self.keys[name] = key
  self.outputs[#self.outputs + 1] = r.stdout:gsub(key, "") .. r.stderr -- all but the key itself
  return key, r
end

--- one request through the gateway: status, headers, body (each kept for the secrets grep)
-- opts: key (sent as Authorization: Bearer), api_key (sent as X-Api-Key), headers, body, method
function Gateway:request(method, path, opts)
  opts = opts or {}
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  if opts.key then headers.Authorization = "Bearer " .. opts.key end
  if opts.api_key then headers["X-Api-Key"] = opts.api_key end
  local status, h, body = helpers.http(method, self.url .. path, { headers = headers, body = opts.body,
    timeout = opts.timeout or 60 })
  local seen = { tostring(body) }
  for k, v in pairs(type(h) == "table" and h or {}) do seen[#seen + 1] = k .. ": " .. tostring(v) end
  self.answers[#self.answers + 1] = table.concat(seen, "\n")
  return status, h, body
end

function Gateway:get(path, opts)
  return self:request("GET", path, opts)
end

--- what the gateway wrote: access log (stdout), stderr
function Gateway:logs()
  return helpers.read(self.proc.dir .. "/out") or self.proc.stdout or "", helpers.read(self.proc.dir .. "/err") or
    self.proc.stderr or ""
end

--- every token the chain has had (from the token file now, and each pair recorded before)
function Gateway:remember_tokens()
  local text = helpers.read(self.token_file) -- read as it is: the file store refuses another user's file
  local t = text and helpers.json.decode(text).tokens
  if t then
    self.tokens[t.access_token] = true
    self.tokens[t.refresh_token] = true
  end
  return t
end

--- run fn() as the token file's rightful user would: started as root, the state is the workers' (nobody's),
-- so for fn it is root's again, then handed back (what a root running `exactonline auth` must do by hand)
function Gateway:as_owner(fn)
  if not is_root() then return fn() end
  local state = self.dir .. "/state"
  os.execute("chown -R root:root " .. q(state))
  local ok, a, b = pcall(fn)
  os.execute("chown -R nobody:nogroup " .. q(state))
  if not ok then error(a, 0) end
  return a, b
end

function Gateway:wait_ready()
  for _ = 1, 200 do
    local status = helpers.http("GET", self.url .. "/healthz", { timeout = 2 })
    if status == 200 then return true end
    if helpers.read(self.proc.dir .. "/rc") then break end
    os.execute("sleep 0.05")
  end
  local out, err = self:logs()
  error("the gateway did not come up:\n" .. err .. out, 2)
end

function Gateway:stop()
  if not self.proc or self.stopped then return end
  self.stopped = true
  os.execute("kill -TERM " .. self.proc.pid .. " 2>/dev/null")
  self.code = self.proc.wait()
  -- the command is gone; its nginx follows (SIGTERM through setpriv's parent-death signal): wait for the port
  for _ = 1, 200 do
    local status = helpers.http("GET", self.url .. "/healthz", { timeout = 1 })
    if not status then return self.code end
    os.execute("sleep 0.05")
  end
  error("the gateway's nginx still answers after its command stopped")
end

--- prepare{ sandbox = sb, keys = { names… }, tokens = false, share = gw } --> a Gateway not started yet: a
-- token file with the first pair (as `exactonline auth` leaves it; none with tokens = false) and the keys, made
-- with the CLI
-- share = another Gateway: the same token file and keys (two gateways on one chain, as two machines would be)
function _M.prepare(opts)
  local sb = opts.sandbox
  if opts.share then
    local o = opts.share
    return setmetatable({ sb = sb, dir = o.dir, token_file = o.token_file, key_file = o.key_file,
      keys = o.keys, answers = {}, outputs = {}, tokens = o.tokens, port = helpers.free_port() }, Gateway)
  end
  local dir = helpers.tmpdir()
  local g = setmetatable({ sb = sb, dir = dir, token_file = dir .. "/state/tokens.json",
    key_file = dir .. "/state/gateway-keys.json", keys = {}, answers = {}, outputs = {}, tokens = {} }, Gateway)
  os.execute("mkdir -p " .. q(dir .. "/state") .. " && chmod 700 " .. q(dir .. "/state"))
  if opts.tokens ~= false then
    local client = assert(exactonline.new(sb:client_config { store = exactonline.file_store(g.token_file) }))
    assert(client:exchange(sb:code()))
    client:close()
    g:remember_tokens()
  end
  for _, name in ipairs(opts.keys or { "spec" }) do g:new_key(name) end
  if is_root() then -- its workers run as nobody: the state is theirs, as the gateway's own message asks
    os.execute("chown -R nobody:nogroup " .. q(dir) .. " && chmod 711 " .. q(dir))
  end
  g.port = helpers.free_port()
  return g
end

--- launch the command: g:launch{ workers = 2, args = { extra CLI args }, env = { … }, wait = false }
function Gateway:launch(opts)
  opts = opts or {}
  self.url = self.url or ("http://127.0.0.1:" .. self.port)
  local args = { "gateway", "--keys", self.key_file, "--listen", "127.0.0.1:" .. self.port,
    "--workers", tostring(opts.workers or 2) }
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = a end
  self.proc = cli.spawn(self:env(opts.env), args)
  -- stop it if the spec run dies first
  os.execute("nohup sh -c " .. q("while kill -0 " .. helpers.pid() .. " 2>/dev/null && kill -0 " .. self.proc.pid ..
    " 2>/dev/null; do sleep 1; done; kill -TERM " .. self.proc.pid .. " 2>/dev/null") ..
    " >/dev/null 2>&1 </dev/null &")
  helpers.on_cleanup(function() pcall(self.stop, self) end)
  if opts.wait ~= false then self:wait_ready() end
  return self
end

--- start{ sandbox = sb, workers = 2, keys = { names… }, args = { … }, env = { … } } --> a running Gateway
function _M.start(opts)
  return _M.prepare(opts):launch(opts)
end

--- every text a client or an operator saw: answers (bodies and headers), CLI output, the gateway's logs
function Gateway:everything_seen()
  local out, err = self:logs()
  local parts = { out, err }
  for _, a in ipairs(self.answers) do parts[#parts + 1] = a end
  for _, o in ipairs(self.outputs) do parts[#parts + 1] = o end
  return table.concat(parts, "\n")
end

return _M
