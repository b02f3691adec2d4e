--- exactonline sync ENTITY -o FILE: incremental export through Exact's sync/ endpoints. Remembers the
-- largest Timestamp seen in FILE.sync-state and asks only for rows changed since (Timestamp gt N): what
-- Exact's fair-use policy asks of daily jobs. Each run writes the rows changed since the previous run.
local assert, io, ipairs, os, pairs, pcall, require, tonumber, tostring, type =
  assert, io, ipairs, os, pairs, pcall, require, tonumber, tostring, type

local util = require "exactonline.cli.util"
local format = require "exactonline.cli.format"
local export = require "exactonline.cli.export"
local progress = require "exactonline.cli.progress"
local config = require "exactonline.cli.config"
local parser = require "exactonline.cli.parser"
local resume = require "exactonline.cli.resume"

local _M = {}

_M.summary = "incremental export through the sync/ endpoint"

--- Regular endpoint (lower case) --> sync endpoint.
_M.sync = {
  ["crm/accounts"] = "sync/CRM/Accounts",
  ["crm/addresses"] = "sync/CRM/Addresses",
  ["crm/contacts"] = "sync/CRM/Contacts",
  ["crm/quotationlines"] = "sync/CRM/QuotationLines",
  ["cashflow/payments"] = "sync/Cashflow/Payments",
  ["cashflow/receivables"] = "sync/Cashflow/Receivables",
  ["documents/documents"] = "sync/Documents/Documents",
  ["financial/glaccounts"] = "sync/Financial/GLAccounts",
  ["financialtransaction/transactionlines"] = "sync/Financial/TransactionLines",
  ["logistics/items"] = "sync/Logistics/Items",
  ["logistics/salesitemprices"] = "sync/Logistics/SalesItemPrices",
  ["salesinvoice/salesinvoices"] = "sync/SalesInvoice/SalesInvoices",
  ["salesorder/salesorderlines"] = "sync/SalesOrder/SalesOrderLines",
}

--- ENTITY ("crm/Accounts", "CRM/Accounts", "sync/CRM/Accounts", "Accounts") --> sync path, regular path | nil
function _M.resolve(entity)
  local e = entity:gsub("^/+", "")
  local lower = e:lower()
  if _M.sync[lower] then return _M.sync[lower], e end
  for regular, sync in pairs(_M.sync) do
    local s = sync:lower()
    if lower == s or "sync/" .. lower == s or lower == s:match("[^/]+$") then return sync, regular end
  end
  if lower:match("^sync/") then return e, nil end
  return nil
end

function _M.add_to_parser(root)
  local c = parser.command(root, "sync", {
    summary = _M.summary,
    usage = "ENTITY -o FILE [--format csv|jsonl] [--select FIELDS] [--full] [options]",
    description = "Incremental export through the sync/ endpoint (1000 rows per call). The largest Timestamp seen\n"
      .. "is kept in FILE.sync-state; the next run fetches only rows changed since and writes those to FILE\n"
      .. "(temp file + rename; the state moves on only after FILE is written). A run that stops part-way\n"
      .. "keeps its rows and where it was (FILE.partial, FILE.resume) and exits 3: --resume continues it.",
    examples = {
      "exactonline sync crm/Accounts -o accounts.csv      # first run: everything",
      "exactonline sync crm/Accounts -o accounts.csv      # later runs: only what changed",
      "exactonline sync financialtransaction/TransactionLines -o lines.jsonl --select ID,Date,AmountDC",
    },
  })
  parser.argument(c, "ENTITY", "the entity, e.g. crm/Accounts or sync/CRM/Accounts")
  export.add_output_options(c, { output = "where the changed rows go (required)" })
  export.add_query_options(c, { select = "$select (Timestamp is added when missing)", no_filter = true })
  parser.flag(c, "--full", "forget the remembered Timestamp and fetch everything")
  config.add_flags(c)
  return parser.finish(c, config.CONNECTION_TITLE)
end

local function read_state(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  local ok, t = pcall(require("cjson").decode, text)
  if not ok or type(t) ~= "table" or not tonumber(t.timestamp) then
    return nil, path .. " is not a sync state file (remove it, or pass --full)"
  end
  return t
end

local function write_state(path, state)
  return require("exactonline.core").atomic_write(path, require("cjson").encode(state) .. "\n", 420) -- 0644
end

-- Stream the rows changed since `since` and move the sync state on once FILE is written.
-- st: the state of a stopped run to continue (its link, columns, options and the largest Timestamp so far).
local function run_sync(args, client, endpoint, since, select, fmt, st)
  local state_path = args.output .. ".sync-state"
  local largest = st and tonumber(st.extra and st.extra.largest) or since
  local res, err, ecode = export.stream(client, endpoint, {
    ["$select"] = select, ["$filter"] = "Timestamp gt " .. format.number(since),
  }, {
    format = fmt, output = args.output, select = select, iso_dates = st and st.iso_dates or args.iso_dates,
    csv_safe = st and st.csv_safe or args.csv_safe, resume = st,
    label = "sync " .. endpoint, tty = args.progress or progress.stderr_is_tty(), quiet = args.no_progress,
    command = "sync", path = args.entity, argv = args._argv,
    state_extra = function() return { largest = largest, since = since } end,
    on_row = function(row)
      local t = tonumber(row.Timestamp)
      if t and t > largest then largest = t end
    end,
    out = st and assert(resume.output(args.output, st)) or nil,
  })
  client:close()
  if not res then return nil, err, ecode end
  local ok, werr = write_state(state_path, {
    endpoint = endpoint, timestamp = largest, select = select, updated_at = os.time(),
  })
  if not ok then
    return nil, "wrote " .. args.output .. " but not " .. state_path .. ": " .. tostring(werr), 1
  end
  io.stderr:write(("synced %s since Timestamp %s to %s (next run: Timestamp gt %s)\n")
    :format(util.count(res.rows, "changed row"), format.number(since), args.output, format.number(largest)))
  return 0
end

function _M.run(args)
  if not args.output or args.output == "-" then
    return nil, "sync needs -o FILE (the state goes beside it)", 2
  end
  if args.resume then
    local st, serr = resume.load(args.output)
    if not st then return nil, serr, 1 end
    if st.command ~= "sync" or type(st.extra) ~= "table" or not tonumber(st.extra.since) then
      return nil, resume.sidecar(args.output) .. " does not continue a sync to " .. args.output, 2
    end
    local client, s, code = config.connect(args)
    if not client then return nil, s, code end
    return run_sync(args, client, st.endpoint, tonumber(st.extra.since), st.select, st.format, st)
  end
  local fmt, ferr = export.output_format(args)
  if not fmt then return nil, ferr, 2 end
  local endpoint, regular = _M.resolve(args.entity)
  if not endpoint then
    return nil, "no sync endpoint known for '" .. args.entity .. "'; pass the sync path, e.g. sync/CRM/Accounts", 2
  end
  local state
  if not args.full then
    local sterr
    state, sterr = read_state(args.output .. ".sync-state")
    if sterr then return nil, sterr, 1 end
  end
  local since = state and tonumber(state.timestamp) or 1

  local client, s, code = config.connect(args)
  if not client then return nil, s, code end

  local select = args.select or (state and state.select)
  if not select then
    if not regular then return nil, "pass --select FIELDS for " .. endpoint, 2 end
    local data, perr = client:get(regular, { ["$top"] = 1 })
    if not data then return nil, perr, 1 end
    local row = data[1]
    local cols = {}
    for _, c in ipairs(format.columns(nil, row or {})) do
      if type(row[c]) ~= "table" then cols[#cols + 1] = c end
    end
    if #cols == 0 then return nil, "pass --select FIELDS for " .. endpoint, 2 end
    select = table.concat(cols, ",")
  end
  if not (("," .. select .. ","):find(",%s*Timestamp%s*,")) then select = select .. ",Timestamp" end
  return run_sync(args, client, endpoint, since, select, fmt, nil)
end

return _M
