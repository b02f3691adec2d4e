--- `exactonline sandbox`: run a local imitation of Exact Online (nginx + Lua) in the foreground.
-- A thin layer: each flag in OPTIONS becomes the same-named field of the table given to
-- exactonline.sandbox.prepare (--tls-dir -> tls_dir); add a flag by adding a line.
local io, ipairs, tostring = io, ipairs, tostring
local parser = require "exactonline.cli.parser"

local _M = {}

_M.summary = "run a local imitation of Exact Online (nginx + Lua)"

-- flag, argname, help, extras (number: a number; multi: repeatable, a list; default)
_M.OPTIONS = {
  { "--port", "P", "the port on 127.0.0.1 (default 8443)", number = true, default = 8443 },
  { "--tls-dir", "D", "serve HTTPS with D/ca.pem, D/server.pem, D/server.key (created when missing)" },
  { "--client-id", "ID", "the sandbox app's client id" },
  { "--client-secret", "S", "the sandbox app's client secret" },
  { "--redirect-uri", "URI", "the sandbox app's registered redirect URI" },
  { "--webhook-secret", "S", "the sandbox app's webhook secret (HashCode of deliveries)" },
  { "--division", "N", "the first division's number", number = true },
  { "--divisions", "N", "how many divisions the user has (N, N+1, …; default 2)", number = true },
  { "--accounts", "N", "how many accounts each holds (as --size accounts=N)", number = true },
  { "--size", "ENTITY=N", "rows of an entity per division: accounts contacts addresses glaccounts " ..
    "glclassifications items projects transactionlines salesinvoices (lines and payment terms follow)",
    multi = true },
  { "--workers", "N", "nginx worker processes", number = true },
}

function _M.add_to_parser(root)
  local c = parser.command(root, "sandbox", {
    summary = _M.summary,
    usage = "[--port P] [--tls-dir D] [--client-id ID] [--client-secret S] [--redirect-uri URI] [options]",
    description = "Runs a local Exact Online (OAuth, REST, XML API, rate limits) on 127.0.0.1:P until Ctrl-C or\n"
      .. "SIGTERM. Each division is a generated administration (accounts, contacts, addresses, G/L accounts and\n"
      .. "classifications, items, projects, transaction lines, payment terms, sales invoices and lines).\n"
      .. "With --tls-dir D it serves HTTPS with D/ca.pem, D/server.pem, D/server.key (created when\n"
      .. "missing: mode 0700; a folder of another user, or writable by others, is refused); point clients at\n"
      .. "D/ca.pem. Test controls, each with the header X-Sandbox-Token (printed at start; or set it with\n"
      .. "EXACTONLINE_SANDBOX_TOKEN): POST /_sandbox/advance?seconds=N, /_sandbox/config?minutely=N&daily=N,\n"
      .. "/_sandbox/fault?kind=K&count=N, /_sandbox/change?entity=E&create=N, /_sandbox/reset;\n"
      .. "GET /_sandbox/stats, /_sandbox/entity?entity=E. See lua/exactonline/sandbox/README.md.",
    examples = {
      "exactonline sandbox --port 8443 --tls-dir ~/.cache/eo-sandbox",
      "exactonline sandbox --port 8443 --tls-dir ~/.cache/eo-sandbox --accounts 10000 --division 123456",
      "exactonline sandbox --divisions 50 --size transactionlines=200000 --size salesinvoices=5000",
    },
  })
  for _, o in ipairs(_M.OPTIONS) do
    parser.option(c, o[1], o[2], o[3], { number = o.number, multi = o.multi, default = o.default })
  end
  return parser.finish(c)
end

local function banner(info)
  local out = io.stdout
  out:write("Exact Online sandbox on ", info.base_url, "  (also ", (info.base_url:gsub("localhost", "127.0.0.1")),
    ")\n")
  if info.cafile then out:write("  CA file:        ", info.cafile, "\n") end
  out:write("  client id:      ", info.client_id, "\n")
  -- the sandbox's own made-up secret: printing it is the point of this command
  out:write("  client secret:  ", info.client_secret, "\n")
  out:write("  redirect URI:   ", info.redirect_uri, "\n")
  out:write("  webhook secret: ", info.webhook_secret, "\n")
  out:write("  division:       ", tostring(info.division), "  (", tostring(info.accounts), " accounts)",
    info.divisions > 1 and ("  and " .. (info.divisions - 1) .. " more: " .. (info.division + 1) .. "…" ..
      (info.division + info.divisions - 1)) or "", "\n")
  -- the header every /_sandbox/ call needs (X-Sandbox-Token); EXACTONLINE_SANDBOX_TOKEN sets it
  out:write("  control token:  ", info.control_token, "  (header X-Sandbox-Token on /_sandbox/ calls)\n")
  out:write("  error log:      ", info.error_log, "\n")
  out:write("Ctrl-C stops it.\n")
  out:flush()
end

function _M.run(args)
  local runner = require "exactonline.sandbox"
  local opts = {}
  for _, o in ipairs(_M.OPTIONS) do
    local key = o[1]:gsub("^%-%-", ""):gsub("%-", "_")
    opts[key] = args[key]
  end
  local info, perr = runner.prepare(opts)
  if not info then return nil, perr, 1 end
  local code, listened = runner.run_foreground(info, function() banner(info) end)
  runner.stop(info) -- removes what is left of its prefix
  if not listened then
    return nil, "the sandbox did not start (nginx exited with " .. code .. "): is port " .. tostring(info.port)
      .. " taken? nginx's own words are above", 1
  end
  return code
end

return _M
