--- exactonline sync ENTITY -o FILE: incremental export through Exact's sync/ endpoints. Remembers the
-- largest Timestamp seen in FILE.sync-state and asks only for rows changed since (Timestamp gt N): what
-- Exact's fair-use policy asks of daily jobs. Each run writes the rows changed since the previous run.
local io, ipairs, os, pairs, pcall, require, tonumber, tostring, type =
  io, ipairs, os, pairs, pcall, require, tonumber, tostring, type

local util = require "exactonline.cli.util"
local format = require "exactonline.cli.format"
local export = require "exactonline.cli.export"
local progress = require "exactonline.cli.progress"

local _M = {}

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

_M.spec = {
  usage = "ENTITY -o FILE [--format csv|jsonl] [--select FIELDS] [--full] [options]",
  description = "Incremental export through the sync/ endpoint (1000 rows per call). The largest Timestamp seen\n"
    .. "is kept in FILE.sync-state; the next run fetches only rows changed since and writes those to FILE\n"
    .. "(temp file + rename; the state moves on only after FILE is written).",
  positionals = { "ENTITY" }, min = 1, max = 1, connection = true,
  options = {
    { "--output", "-o", value = "FILE", help = "where the changed rows go (required)" },
    { "--format", "-f", value = "csv|jsonl", help = "output format (default: from FILE's extension, else csv)" },
    { "--select", "-s", value = "FIELDS", help = "$select (Timestamp is added when missing)" },
    { "--iso-dates", help = "write /Date(ms)/ values as ISO 8601 (UTC)" },
    { "--full", help = "forget the remembered Timestamp and fetch everything" },
    { "--progress", help = "force the progress line" },
    { "--no-progress", help = "no progress output" },
  },
  examples = {
    "exactonline sync crm/Accounts -o accounts.csv      # first run: everything",
    "exactonline sync crm/Accounts -o accounts.csv      # later runs: only what changed",
    "exactonline sync financialtransaction/TransactionLines -o lines.jsonl --select ID,Date,AmountDC",
  },
}

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
  local text = require("cjson").encode(state) .. "\n"
  local ok, core = pcall(require, "exactonline.core")
  if ok and core.atomic_write then return core.atomic_write(path, text, 420) end -- 0644
  local f, err = io.open(path .. ".tmp", "w")
  if not f then return nil, err end
  f:write(text)
  f:close()
  return os.rename(path .. ".tmp", path)
end

function _M.main(argv)
  local name = "sync"
  local opts, code = util.parse(name, argv, _M.spec)
  if not opts then return code end
  if not opts.output or opts.output == "-" then
    return util.fail(name, "sync needs -o FILE (the state goes beside it)", 2)
  end
  local fmt, ferr = export.output_format(opts)
  if not fmt then return util.fail(name, ferr, 2) end
  local endpoint, regular = _M.resolve(opts[1])
  if not endpoint then
    return util.fail(name, "no sync endpoint known for '" .. opts[1]
      .. "'; pass the sync path, e.g. sync/CRM/Accounts", 2)
  end
  local state_path = opts.output .. ".sync-state"
  local state
  if not opts.full then
    local sterr
    state, sterr = read_state(state_path)
    if sterr then return util.fail(name, sterr, 1) end
  end
  local since = state and tonumber(state.timestamp) or 1

  local s, serr = util.settings(opts)
  if not s then return util.fail(name, serr, 2) end
  local client, cerr = require("exactonline.cli.config").client(s)
  if not client then return util.fail(name, cerr, 2) end

  local select = opts.select or (state and state.select)
  if not select then
    if not regular then return util.fail(name, "pass --select FIELDS for " .. endpoint, 2) end
    local data, perr = client:get(regular, { ["$top"] = 1 })
    if not data then return util.fail(name, perr, 1) end
    local row = data[1]
    local cols = {}
    for _, c in ipairs(format.columns(nil, row or {})) do
      if type(row[c]) ~= "table" then cols[#cols + 1] = c end
    end
    if #cols == 0 then return util.fail(name, "pass --select FIELDS for " .. endpoint, 2) end
    select = table.concat(cols, ",")
  end
  if not (("," .. select .. ","):find(",%s*Timestamp%s*,")) then select = select .. ",Timestamp" end

  local largest = since
  local tty = progress.stderr_is_tty() or opts.progress
  local res, err, ecode = export.run(client, endpoint, {
    ["$select"] = select, ["$filter"] = "Timestamp gt " .. format.number(since),
  }, {
    format = fmt, output = opts.output, select = select, iso_dates = opts.iso_dates,
    label = "sync " .. endpoint, tty = tty, quiet = opts.no_progress,
    on_row = function(row)
      local t = tonumber(row.Timestamp)
      if t and t > largest then largest = t end
    end,
  })
  if not res then return util.fail(name, err, ecode) end
  local ok, werr = write_state(state_path, {
    endpoint = endpoint, timestamp = largest, select = select, updated_at = os.time(),
  })
  if not ok then
    return util.fail(name, "wrote " .. opts.output .. " but not " .. state_path .. ": " .. tostring(werr), 1)
  end
  io.stderr:write(("synced %d changed rows since Timestamp %s to %s (next run: Timestamp gt %s)\n")
    :format(res.rows, format.number(since), opts.output, format.number(largest)))
  return 0
end

return _M
