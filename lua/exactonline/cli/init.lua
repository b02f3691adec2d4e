--- The command-line tool: dispatches `exactonline COMMAND …` to exactonline.cli.COMMAND.
local io, ipairs, os, pcall, require, tostring, type, xpcall = io, ipairs, os, pcall, require, tostring, type, xpcall
local traceback = debug.traceback

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
  if name == "help" and args[2] then
    name, args = args[2], { args[2], "--help" }
  end
  if name == nil or name == "--help" or name == "-h" or name == "help" then
    usage(name and io.stdout or io.stderr)
    if name then
      io.stdout:write(
        "\nconfiguration: flags > environment (EXACT_CLIENT_ID, EXACT_CLIENT_SECRET, EXACT_REDIRECT_URI,\n",
        "EXACT_REGION or EXACT_BASE_URL, EXACT_DIVISION, EXACT_TOKEN_FILE, EXACT_CAFILE) > the Lua file\n",
        "$XDG_CONFIG_HOME/exactonline/config.lua, e.g. return { client_id = \"…\", region = \"nl\" }\n\n",
        "example:\n  exactonline auth && exactonline export crm/Accounts -o accounts.csv && exactonline token\n")
    end
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
  -- Failures print as one line (tostring of the error object); EXACTONLINE_DEBUG=1 adds a traceback.
  local debug_on = os.getenv("EXACTONLINE_DEBUG")
  local ok2, code = xpcall(function() return cmd.main(rest, root) end, function(e)
    if debug_on and debug_on ~= "" and debug_on ~= "0" then return traceback(tostring(e), 2) end
    return e
  end)
  if not ok2 then
    local msg = tostring(code)
    if type(code) ~= "table" then msg = msg:gsub("^[^%s:]+%.lua:%d+: ", "") end
    if msg:match("interrupted!?$") then
      io.stderr:write("exactonline ", name, ": interrupted\n")
      return 130
    end
    io.stderr:write("exactonline ", name, ": ", msg, "\n")
    return 1
  end
  return code or 0
end

return _M
