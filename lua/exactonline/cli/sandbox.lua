--- `exactonline sandbox`: run a local imitation of Exact Online (nginx + Lua) in the foreground.
local io, os, tonumber, tostring = io, os, tonumber, tostring
local runner = require "exactonline.sandbox"

local _M = {}

local USAGE = [[
usage: exactonline sandbox [--port P] [--tls-dir D] [--client-id ID] [--client-secret S]
                           [--redirect-uri URI] [--division N] [--accounts N] [--workers N]

Runs a local Exact Online (OAuth, REST, XML API, rate limits) on 127.0.0.1:P until Ctrl-C or SIGTERM.
With --tls-dir D it serves HTTPS with D/ca.pem, D/server.pem, D/server.key (created when missing);
point clients at D/ca.pem. Test controls: POST /_sandbox/advance?seconds=N,
/_sandbox/config?minutely=N&daily=N&window=S, /_sandbox/fault?kind=K&count=N, /_sandbox/reset;
GET /_sandbox/stats.

examples:
  exactonline sandbox --port 8443 --tls-dir ~/.cache/exactonline-sandbox
  exactonline sandbox --port 8443 --tls-dir /tmp/eo-tls --accounts 10000 --division 123456
  curl --cacert /tmp/eo-tls/ca.pem -X POST 'https://localhost:8443/_sandbox/advance?seconds=600'
]]

local OPTIONS = {
  ["--port"] = "port", ["--tls-dir"] = "tls_dir", ["--client-id"] = "client_id",
  ["--client-secret"] = "client_secret", ["--redirect-uri"] = "redirect_uri", ["--division"] = "division",
  ["--accounts"] = "accounts", ["--workers"] = "workers",
}
local NUMERIC = { port = true, division = true, accounts = true, workers = true }

function _M.parse(args)
  local opts = {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--help" or a == "-h" then return nil, "help" end
    local name, value = a:match("^(%-%-[%w%-]+)=(.*)$")
    name = name or a
    local key = OPTIONS[name]
    if not key then return nil, "unknown option " .. a end
    if value == nil then
      i = i + 1
      value = args[i]
      if value == nil then return nil, name .. " needs a value" end
    end
    if NUMERIC[key] then
      value = tonumber(value)
      if not value then return nil, name .. " needs a number" end
    end
    opts[key] = value
    i = i + 1
  end
  opts.port = opts.port or 8443
  return opts
end

function _M.main(args, _root)
  local opts, err = _M.parse(args or {})
  if not opts then
    if err == "help" then io.stdout:write(USAGE) return 0 end
    io.stderr:write("exactonline sandbox: ", err, "\n", USAGE)
    return 2
  end
  local info, perr = runner.prepare(opts)
  if not info then
    io.stderr:write("exactonline sandbox: ", tostring(perr), "\n")
    return 1
  end
  local out = io.stdout
  out:write("Exact Online sandbox on ", info.base_url, "  (also ", info.base_url:gsub("localhost", "127.0.0.1"),
    ")\n")
  if info.cafile then out:write("  CA file:        ", info.cafile, "\n") end
  out:write("  client id:      ", info.client_id, "\n")
  -- the sandbox's own made-up secret: printing it is the point of this command
  out:write("  client secret:  ", info.client_secret, "\n")
  out:write("  redirect URI:   ", info.redirect_uri, "\n")
  out:write("  division:       ", tostring(info.division), "  (", tostring(info.accounts), " accounts)\n")
  out:write("  error log:      ", info.error_log, "\n")
  out:write("Ctrl-C stops it.\n")
  out:flush()
  local code = runner.run_foreground(info)
  os.execute("rm -rf " .. runner.quote(info.prefix))
  return code
end

return _M
