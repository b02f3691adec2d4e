--- exactonline get PATH: one GET (or every page with --all), pretty JSON on stdout.
local io, ipairs, pcall, require = io, ipairs, pcall, require

local format = require "exactonline.cli.format"
local config = require "exactonline.cli.config"
local parser = require "exactonline.cli.parser"
local export = require "exactonline.cli.export"

local _M = {}

_M.summary = "GET an API path and print pretty JSON"

function _M.add_to_parser(root)
  local c = parser.command(root, "get", {
    summary = _M.summary,
    usage = "PATH [--query K=V …] [--select FIELDS] [--filter EXPR] [--top N] [--all] [options]",
    description = "GET an API path and print the answer as pretty JSON. PATH is relative to /api/v1/{division}/\n"
      .. "(crm/Accounts), or to the host when it starts with / (/api/v1/current/Me). A list prints as a JSON\n"
      .. "array ([] when empty).",
    examples = {
      "exactonline get /api/v1/current/Me",
      "exactonline get system/Divisions --select Code,Description",
      "exactonline get crm/Accounts --select ID,Name --filter \"Name eq 'Smit'\" --top 5",
      "exactonline get crm/Accounts --select ID,Name --all > accounts.json",
    },
  })
  parser.argument(c, "PATH", "the API path")
  export.add_query_options(c)
  parser.option(c, "--top", "N", "$top", { number = true })
  parser.flag(c, "--all", "follow __next and print every page's rows as one array")
  config.add_flags(c)
  return parser.finish(c, config.CONNECTION_TITLE)
end

function _M.run(args)
  local query, qerr = export.query(args)
  if not query then return nil, qerr, 2 end
  if args.top then query["$top"] = format.number(args.top) end
  local client, s, code = config.connect(args)
  if not client then return nil, s, code end

  local data, err
  if args.all then
    local rows = {}
    local ok, perr = pcall(function()
      for page in client:pages(args.path, query) do
        for _, row in ipairs(page) do rows[#rows + 1] = row end
      end
    end)
    if ok then data = rows else err = perr end
  else
    data, err = client:get(args.path, query)
  end
  client:close()
  if data == nil then return nil, err, 1 end
  io.stdout:write(format.pretty(data), "\n")
  return 0
end

return _M
