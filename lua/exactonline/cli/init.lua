--- The command-line tool on lua-argparse: one parser, each command in exactonline.cli.COMMAND adding itself
-- to it (add_to_parser) and running the parsed arguments (run(args, root) --> exit code | nil, message, code).
local io, ipairs, os, pcall, require, tostring, type, xpcall = io, ipairs, os, pcall, require, tostring, type, xpcall
local traceback = debug.traceback
local unpack = table.unpack or rawget(_G, "unpack")

local parser = require "exactonline.cli.parser"
local util = require "exactonline.cli.util"

local _M = {}

-- The order `exactonline --help` lists them in.
local NAMES = { "auth", "token", "refresh", "get", "export", "sync", "replicate", "gateway", "sandbox", "demo" }

local modules, broken = {}, {}
for _, name in ipairs(NAMES) do
  local ok, mod = pcall(require, "exactonline.cli." .. name)
  if ok then modules[name] = mod else broken[name] = tostring(mod) end
end

--- { { name, summary }, … } for every command.
_M.commands = {}
for _, name in ipairs(NAMES) do
  _M.commands[#_M.commands + 1] = { name, modules[name] and modules[name].summary or "(not available)" }
end

local EPILOG = [[
configuration: flags > environment (EXACT_CLIENT_ID, EXACT_CLIENT_SECRET or EXACT_CLIENT_SECRET_FILE,
EXACT_REDIRECT_URI, EXACT_REGION or EXACT_BASE_URL, EXACT_DIVISION, EXACT_TOKEN_FILE, EXACT_CAFILE)
> the Lua file EXACT_CONFIG, by default $XDG_CONFIG_HOME/exactonline/config.lua,
e.g. return { client_id = "…", region = "nl" }

example:
  exactonline auth && exactonline export crm/Accounts -o accounts.csv && exactonline token]]

--- The whole parser. on_help(p) is called with the parser or command whose --help was given.
function _M.parser(on_help)
  local root = parser.root(on_help)
    :usage("usage: exactonline COMMAND [options]   (exactonline COMMAND --help for more)")
    :epilog(EPILOG)
    :require_command(false)
  local flags = {
    root:flag("--help", "show this help (also -h)"):hidden_name("-h"):target("show_help")
      :action(function() on_help(root) end),
    root:flag("--version", "print the version"),
  }
  local commands = {}
  for _, name in ipairs(NAMES) do
    if modules[name] then
      commands[#commands + 1] = modules[name].add_to_parser(root)
    else -- still listed, and says why it cannot run
      commands[#commands + 1] = root:command(name):summary("(not available)"):add_help(false)
        :handle_options(false)
      commands[#commands]:argument("rest"):args("*")
    end
  end
  local help = root:command("help"):summary("show a command's help (exactonline help export)"):add_help(false)
  help:argument("topic"):args("?")
  commands[#commands + 1] = help
  root:group("commands", unpack(commands))
  root:group("options", flags[1], flags[2])
  return root
end

local function usage_error(name, msg)
  local who = name and ("exactonline " .. name) or "exactonline"
  io.stderr:write(who, ": ", msg, "\n(", who, " --help for more)\n")
  return 2
end

--- main(args, root) --> exit code
function _M.main(argv, root)
  local asked
  local p = _M.parser(function(which) asked = asked or which end)
  if #argv == 0 then
    io.stderr:write(parser.help(p), "\n")
    return 2
  end
  local args, err = parser.parse(p, argv)
  if asked then
    io.stdout:write(parser.help(asked), "\n")
    return 0
  end
  local name = argv[1]
  if not args then
    if not modules[name] and not broken[name] and name ~= "help" then
      if name:sub(1, 1) ~= "-" then
        io.stderr:write("exactonline: unknown command '", name, "'\n", parser.help(p), "\n")
        return 2
      end
      return usage_error(nil, err)
    end
    return usage_error(name, err)
  end
  if args.version then
    io.stdout:write("exactonline ", require("exactonline.core").version, "\n")
    return 0
  end
  name = args.command
  if not name then
    io.stderr:write(parser.help(p), "\n")
    return 2
  end
  if name == "help" then
    local topic = args.topic
    if topic == nil then
      io.stdout:write(parser.help(p), "\n")
      return 0
    end
    for _, c in ipairs(p._commands) do
      if c._name == topic then
        io.stdout:write(parser.help(c), "\n")
        return 0
      end
    end
    return usage_error("help", "unknown command '" .. tostring(topic) .. "'")
  end
  if broken[name] then
    io.stderr:write("exactonline: command '", name, "' is not available: ", broken[name], "\n")
    return 2
  end
  -- Failures print as one line (tostring of the error object); EXACTONLINE_DEBUG=1 adds a traceback.
  local debug_on = os.getenv("EXACTONLINE_DEBUG")
  args._argv = argv -- for the command that continues a stopped export
  local ok, code, msg, ecode = xpcall(function() return modules[name].run(args, root) end, function(e)
    if debug_on and debug_on ~= "" and debug_on ~= "0" then return traceback(tostring(e), 2) end
    return e
  end)
  if not ok then
    local text = util.message(code)
    if text:match("interrupted!?$") then
      io.stderr:write("exactonline ", name, ": interrupted\n")
      return 130
    end
    io.stderr:write("exactonline ", name, ": ", util.clean(text, true), "\n")
    return 1
  end
  if code == nil and msg ~= nil then
    -- what failed, in words that may have come from outside (Exact, a browser): no control characters
    local text = util.message(msg):gsub("%s+$", ""):gsub("^exactonline: ", "")
    io.stderr:write("exactonline ", name, ": ", util.clean(text, true), "\n")
    io.stderr:flush()
    return ecode or 1
  end
  if type(code) ~= "number" then return 0 end
  return code
end

return _M
