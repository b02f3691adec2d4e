--- exactonline get PATH: one GET (or every page with --all), pretty JSON on stdout.
local io, ipairs, next, pcall, require = io, ipairs, next, pcall, require

local util = require "exactonline.cli.util"
local format = require "exactonline.cli.format"
local export = require "exactonline.cli.export"

local _M = {}

_M.spec = {
  usage = "PATH [--query K=V …] [--select FIELDS] [--filter EXPR] [--top N] [--all] [options]",
  description = "GET an API path and print the answer as pretty JSON. PATH is relative to /api/v1/{division}/\n"
    .. "(crm/Accounts), or to the host when it starts with / (/api/v1/current/Me).",
  positionals = { "PATH" }, min = 1, max = 1, connection = true,
  options = {
    { "--query", "-q", value = "K=V", multi = true, help = "a query option, e.g. '$orderby=Name' (repeatable)" },
    { "--select", "-s", value = "FIELDS", help = "$select" },
    { "--filter", value = "EXPR", help = "$filter" },
    { "--top", value = "N", number = true, help = "$top" },
    { "--all", help = "follow __next and print every page's rows as one array" },
  },
  examples = {
    "exactonline get /api/v1/current/Me",
    "exactonline get system/Divisions --select Code,Description",
    "exactonline get crm/Accounts --select ID,Name --filter \"Name eq 'Smit'\" --top 5",
    "exactonline get crm/Accounts --select ID,Name --all > accounts.json",
  },
}

function _M.main(argv)
  local name = "get"
  local opts, code = util.parse(name, argv, _M.spec)
  if not opts then return code end
  local query, qerr = export.query(opts)
  if not query then return util.fail(name, qerr, 2) end
  if opts.top then query["$top"] = format.number(opts.top) end
  local s, serr = util.settings(opts)
  if not s then return util.fail(name, serr, 2) end
  local client, cerr = require("exactonline.cli.config").client(s)
  if not client then return util.fail(name, cerr, 2) end

  local data, err
  if opts.all then
    local rows = {}
    local ok, perr = pcall(function()
      for page in client:pages(opts[1], query) do
        for _, row in ipairs(page) do rows[#rows + 1] = row end
      end
    end)
    if ok then data = rows else err = perr end
  else
    data, err = client:get(opts[1], query)
  end
  if data == nil then return util.fail(name, util.message(err), 1) end
  if opts.all and next(data) == nil then
    io.stdout:write("[]\n")
  else
    io.stdout:write(format.pretty(data), "\n")
  end
  client:close()
  return 0
end

return _M
