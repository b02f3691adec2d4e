--- The command-line tool: dispatches `exactonline COMMAND …` to exactonline.cli.COMMAND.
local io, ipairs, pcall, require, tostring = io, ipairs, pcall, require, tostring

local _M = {}

_M.commands = {
  { "auth",    "authorize an app: print the URL, take the redirect, store the tokens" },
  { "token",   "show the stored tokens' expiry (exit 0 fine, 1 < 7 days left, 2 expired)" },
  { "refresh", "refresh the tokens when allowed (for cron / systemd timers)" },
  { "get",     "GET an API path and print pretty JSON" },
  { "export",  "export every row of an entity to CSV or JSON Lines" },
  { "sync",    "incremental export through the sync/ endpoint" },
  { "sandbox", "run a local imitation of Exact Online (nginx + Lua)" },
  { "demo",    "the whole flow against a fresh sandbox (what `make demo` runs)" },
}

local function usage(out)
  out:write("usage: exactonline COMMAND [options]   (exactonline COMMAND --help for more)\n\ncommands:\n")
  for _, c in ipairs(_M.commands) do
    out:write(("  %-8s  %s\n"):format(c[1], c[2]))
  end
end

--- main(args, root) --> exit code
function _M.main(args, root)
  local name = args[1]
  if name == nil or name == "--help" or name == "-h" or name == "help" then
    usage(name and io.stdout or io.stderr)
    return name and 0 or 2
  end
  if name == "--version" then
    io.stdout:write("exactonline ", require("exactonline.core").version, "\n")
    return 0
  end
  local known = false
  for _, c in ipairs(_M.commands) do
    if c[1] == name then known = true end
  end
  if not known then
    io.stderr:write("exactonline: unknown command '", tostring(name), "'\n")
    usage(io.stderr)
    return 2
  end
  local ok, cmd = pcall(require, "exactonline.cli." .. name)
  if not ok then
    io.stderr:write("exactonline: command '", name, "' is not available: ", tostring(cmd), "\n")
    return 2
  end
  local rest = {}
  for i = 2, #args do rest[#rest + 1] = args[i] end
  local ok2, code = pcall(cmd.main, rest, root)
  if not ok2 then
    io.stderr:write("exactonline ", name, ": ", tostring(code), "\n")
    return 1
  end
  return code or 0
end

return _M
