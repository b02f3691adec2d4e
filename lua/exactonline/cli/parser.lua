--- How every command meets lua-argparse: one help layout (usage, description, arguments, options,
-- connection settings, examples), one way to turn argparse's errors into the CLI's one-line usage errors,
-- and `-h/--help` that prints help instead of exiting from inside the parser.
local error, ipairs, tonumber, tostring, type = error, ipairs, tonumber, tostring, type
local concat, unpack = table.concat, table.unpack or rawget(_G, "unpack")
local argparse = require "argparse"

local _M = {}

local WIDTH = 110 -- columns of --help

--- The root parser: `exactonline COMMAND …`. shown_help receives the parser whose --help was asked.
function _M.root(on_help)
  local p = argparse("exactonline")
    :add_help(false)
    :command_target("command")
    :help_usage_margin(2)
    :help_description_margin(30)
    :help_max_width(WIDTH)
  p._eo_on_help = on_help
  return p
end

local function add_help_flag(p)
  local on_help = p._eo_on_help
  return p:flag("--help", "show this help (also -h)"):hidden_name("-h")
    :target("show_help")
    :action(function() on_help(p) end)
end

--- A command: spec = { summary, usage, description, examples = { … } }. Returns it with :opt/:flag/:arg
-- helpers that remember which group each element goes in.
function _M.command(root, name, spec)
  local c = root:command(name)
    :summary(spec.summary)
    :description(spec.description or spec.summary)
    :usage("usage: exactonline " .. name .. " " .. (spec.usage or "[options]"))
    :add_help(false)
  c._eo_on_help = root._eo_on_help
  c._eo_groups = { arguments = {}, options = { add_help_flag(c) }, connection = {} }
  if spec.examples then
    local lines = { "examples:" }
    for _, e in ipairs(spec.examples) do
      -- argparse would wrap a longer one, and a wrapped example is two broken commands to whoever copies it
      if #e + 2 > WIDTH then error("exactonline " .. name .. ": a --help example is wider than " .. WIDTH
        .. " columns: " .. e, 2) end
      lines[#lines + 1] = "  " .. e
    end
    c:epilog(concat(lines, "\n"))
  end
  return c
end

local function remember(c, group, element)
  local g = c._eo_groups[group]
  g[#g + 1] = element
  return element
end

--- A number option's converter, with the CLI's message.
function _M.number(flag)
  return function(v)
    local n = tonumber(v)
    if not n then return nil, "option " .. flag .. " needs a number, not '" .. tostring(v) .. "'" end
    return n
  end
end

-- "--select -s" --> "--select", "-s": the long name is shown, short ones are named in the help text
-- (argparse would otherwise print each alias on a line of its own).
local function names_of(names, help)
  local long, short = names:match("^(%S+)%s*(.*)$")
  if short ~= "" then help = help .. " (also " .. short:gsub("%s+", ", ") .. ")" end
  return long, short, help
end

--- c, "--select -s", "FIELDS", "help" [, { number = true, multi = true, group = "connection" }]
function _M.option(c, names, argname, help, o)
  o = o or {}
  local long, short
  long, short, help = names_of(names, help)
  local opt = c:option(long, help):argname(argname)
  if short ~= "" then opt:hidden_name(short) end
  if o.number then opt:convert(_M.number(long)) end
  if o.multi then opt:count("*") end
  if o.target then opt:target(o.target) end
  if o.default ~= nil then opt:default(o.default):show_default(false) end
  return remember(c, o.group or "options", opt)
end

function _M.flag(c, names, help, o)
  o = o or {}
  local long, short
  long, short, help = names_of(names, help)
  local f = c:flag(long, help)
  if short ~= "" then f:hidden_name(short) end
  if o.target then f:target(o.target) end
  return remember(c, o.group or "options", f)
end

function _M.argument(c, name, help, o)
  o = o or {}
  local a = c:argument(name, help):target(o.target or name:lower())
  if o.optional then a:args("?") end
  return remember(c, "arguments", a)
end

--- Put the remembered elements into their help groups (call once, after the last element).
function _M.finish(c, connection_title)
  local g = c._eo_groups
  if #g.arguments > 0 then c:group("arguments", unpack(g.arguments)) end
  c:group("options", unpack(g.options))
  if #g.connection > 0 then c:group(connection_title or "connection", unpack(g.connection)) end
  return c
end

--- The help text of a parser or command.
function _M.help(p)
  return p:get_help()
end

--- argparse's message --> the CLI's: `unknown option --frob`, `option --top needs a value (N)`, `missing PATH`.
function _M.message(msg)
  msg = tostring(msg)
  local text, tip = msg:match("^(.-)\nDid you mean (.-)%?$")
  if not text then text = msg end
  text = text:gsub("^unknown option '([^']*)'", "unknown option %1")
    :gsub("^option '([^']*)' requires an argument", "option %1 needs a value")
    :gsub("^option '([^']*)' does not take arguments", "option %1 takes no value")
    :gsub("^missing argument '([^']*)'", function(n) return "missing " .. n:upper() end)
    :gsub("^too many arguments", "unexpected argument")
  if tip then text = text .. " (did you mean " .. tip:gsub("'", "") .. "?)" end
  return text
end

--- parse(root, argv) --> args | nil, message. argparse raises nothing past here.
function _M.parse(root, argv)
  local ok, res = root:pparse(argv)
  if not ok then return nil, _M.message(res) end
  if type(res) ~= "table" then return nil, tostring(res) end
  return res
end

return _M
