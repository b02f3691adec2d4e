--- exactonline export PATH: every row of an entity to CSV or JSON Lines, through the bulk endpoint when
-- the entity has one (1000 rows per call instead of 60). Temp file + rename: a failed export leaves no file.
local assert, error, io, ipairs, os, pcall, require, select, tostring, type =
  assert, error, io, ipairs, os, pcall, require, select, tostring, type

local util = require "exactonline.cli.util"
local format = require "exactonline.cli.format"
local progress = require "exactonline.cli.progress"
local config = require "exactonline.cli.config"
local parser = require "exactonline.cli.parser"
local resume = require "exactonline.cli.resume"
local core = require "exactonline.core"

local _M = {}

_M.summary = "export every row of an entity to CSV or JSON Lines"

--- Entities with a bulk endpoint: service/Entity (lower-case service) --> bulk path.
_M.bulk = {
  ["crm/accounts"] = "bulk/CRM/Accounts",
  ["crm/contacts"] = "bulk/CRM/Contacts",
  ["crm/addresses"] = "bulk/CRM/Addresses",
  ["crm/quotations"] = "bulk/CRM/Quotations",
  ["crm/quotationlines"] = "bulk/CRM/QuotationLines",
  ["cashflow/payments"] = "bulk/Cashflow/Payments",
  ["cashflow/receivables"] = "bulk/Cashflow/Receivables",
  ["documents/documents"] = "bulk/Documents/Documents",
  ["documents/documentattachments"] = "bulk/Documents/DocumentAttachments",
  ["financial/glaccounts"] = "bulk/Financial/GLAccounts",
  ["financialtransaction/transactionlines"] = "bulk/Financial/TransactionLines",
  ["logistics/items"] = "bulk/Logistics/Items",
  ["logistics/salesitemprices"] = "bulk/Logistics/SalesItemPrices",
  ["project/projectwbs"] = "bulk/Project/ProjectWBS",
  ["salesinvoice/salesinvoicelines"] = "bulk/SalesInvoice/SalesInvoiceLines",
  ["salesorder/salesorderlines"] = "bulk/SalesOrder/SalesOrderLines",
  ["salesorder/goodsdeliveries"] = "bulk/SalesOrder/GoodsDeliveries",
  ["salesorder/goodsdeliverylines"] = "bulk/SalesOrder/GoodsDeliveryLines",
}

--- The bulk path for an API path, or nil.
function _M.bulk_path(path)
  local p = path:gsub("^/+", ""):gsub("%?.*$", "")
  return _M.bulk[p:lower()]
end

--- --select, --filter and --query, shared by get, export and sync.
function _M.add_query_options(c, o)
  o = o or {}
  parser.option(c, "--select -s", "FIELDS", o.select or "$select")
  if not o.no_filter then
    parser.option(c, "--filter", "EXPR", "$filter, e.g. \"Status eq 'C'\"")
    parser.option(c, "--query -q", "K=V", "any other query option, e.g. '$orderby=Name' (repeatable)",
      { multi = true })
  end
end

--- --format, --output, --iso-dates, --csv-safe and the progress flags, shared by export and sync.
function _M.add_output_options(c, o)
  o = o or {}
  parser.option(c, "--output -o", "FILE", o.output or "write here (default: stdout)")
  parser.option(c, "--format -f", "csv|jsonl", "output format (default: from FILE's extension, else csv)")
  parser.flag(c, "--iso-dates", "write /Date(ms)/ values as ISO 8601 (UTC)")
  parser.flag(c, "--csv-safe", "prefix CSV text starting with = + - @ with ' (no formulas in spreadsheets)")
  parser.flag(c, "--progress", "force the progress line")
  parser.flag(c, "--no-progress", "no progress output")
  parser.flag(c, "--resume", "continue a stopped run from FILE.resume (with the options it was started with)")
end

function _M.add_to_parser(root)
  local c = parser.command(root, "export", {
    summary = _M.summary,
    usage = "PATH [--format csv|jsonl] [--select FIELDS] [--filter EXPR] [-o FILE] [options]",
    description = "Stream every row of an entity to CSV (RFC 4180, UTF-8, CRLF) or JSON Lines. Uses the bulk\n"
      .. "endpoint when the entity has one (1000 rows per call instead of 60). With -o, rows go to a temp\n"
      .. "file renamed onto FILE on success. An export that stops part-way (the daily limit, a failure, Ctrl-C,\n"
      .. "SIGTERM) keeps its rows in FILE.partial and where it was in FILE.resume, prints the command that\n"
      .. "continues (--resume), and exits 3 (130 after Ctrl-C, 143 after SIGTERM); FILE is not written.",
    examples = {
      "exactonline export crm/Accounts -o accounts.csv",
      "exactonline export crm/Accounts --select ID,Code,Name,City --iso-dates -o accounts.csv",
      "exactonline export crm/Accounts --select ID,Name --csv-safe -o accounts.csv",
      "exactonline export salesinvoice/SalesInvoices --filter \"InvoiceDate ge datetime'2026-01-01'\" -f jsonl",
      "exactonline export financialtransaction/TransactionLines -o lines.jsonl",
      "exactonline export financialtransaction/TransactionLines -o lines.jsonl --resume   # after exit 3",
    },
  })
  parser.argument(c, "PATH", "the entity, e.g. crm/Accounts")
  _M.add_query_options(c, { select = "$select: the columns, in order (CSV header)" })
  _M.add_output_options(c)
  parser.flag(c, "--no-bulk", "use the regular endpoint (60 rows per call)")
  config.add_flags(c)
  return parser.finish(c, config.CONNECTION_TITLE)
end

local function output_format(opts)
  local f = opts.format
  if not f then
    local o = opts.output or ""
    if o:match("%.jsonl$") or o:match("%.ndjson$") or o:match("%.json$") then f = "jsonl" else f = "csv" end
  end
  if f ~= "csv" and f ~= "jsonl" then return nil, "--format must be csv or jsonl, not '" .. tostring(f) .. "'" end
  return f
end
_M.output_format = output_format

--- Parse repeated --query K=V into a table.
function _M.query(opts)
  local q = {}
  for _, kv in ipairs(opts.query or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k then return nil, "--query needs K=V, not '" .. kv .. "'" end
    q[k] = v
  end
  if opts.select then q["$select"] = opts.select end
  if opts.filter then q["$filter"] = opts.filter end
  return q
end

--- The columns of an entity from one row of its regular endpoint (for bulk, where $select is mandatory).
local function probe_select(client, path)
  local data, err = client:get(path, { ["$top"] = 1 })
  if not data then return nil, err end
  local row = data[1] or (data.ID and data)
  if type(row) ~= "table" then return nil end
  local cols = {}
  for _, c in ipairs(format.columns(nil, row)) do
    if type(row[c]) ~= "table" or row[c] == require("cjson").null then cols[#cols + 1] = c end
  end
  return table.concat(cols, ",")
end

-- What a failure raised, as the words to print and the exit code of a stop.
local function stop_reason(err)
  if type(err) == "table" and err.signal then
    return "stopped by " .. err.signal, err.signal == "SIGHUP" and 129 or 143
  end
  if type(err) == "string" and err:match("interrupted!?$") then return "interrupted", 130 end
  return util.message(err), nil
end

--- Stream rows of `endpoint` into a writer.
-- opts: format, output (or out: an output already open), select, iso_dates, csv_safe, label, tty, quiet,
-- on_row, and for a resumable file: command (the name), path, argv, state_extra() (more to keep),
-- resume (the state of a stopped run: continue from its link). --> { rows, pages } | nil, message, exit code
function _M.stream(client, endpoint, query, opts)
  local out = opts.out
  if not out then
    local oerr
    out, oerr = util.atomic_output(opts.output)
    if not out then return nil, oerr, 1 end
  end
  local resumed = opts.resume
  local wopts = { select = opts.select, iso_dates = opts.iso_dates, csv_safe = opts.csv_safe }
  local bytes = 0
  if resumed then
    wopts.columns, wopts.rows, bytes = resumed.columns, resumed.rows, resumed.bytes
  end
  -- the writer writes through a counter: the state says how many bytes the whole pages take
  local sink = { write = function(_, ...)
    for i = 1, select("#", ...) do bytes = bytes + #select(i, ...) end
    return out.file:write(...)
  end }
  local writer
  if opts.format == "jsonl" then
    writer = format.jsonl_writer(sink, wopts)
  else
    writer = format.csv_writer(sink, wopts)
  end
  local prog
  if not opts.quiet then
    prog = progress.new {
      label = opts.label, tty = opts.tty,
      limits = function() return client:rate_limits() end,
      rows = resumed and resumed.rows, pages = resumed and resumed.pages,
    }
  end
  local resumable = opts.output and opts.output ~= "-" and opts.command
  if resumable then core.trap_signals() end
  local pages, pages_before = 0, resumed and tonumber(resumed.pages) or 0
  local start, q = endpoint, query
  if resumed then start, q = resumed.next, nil end
  local ok, err = pcall(function()
    for page, next_link in client:pages(start, q) do
      for _, row in ipairs(page) do
        writer:row(row)
        if opts.on_row then opts.on_row(row) end
      end
      pages = pages + 1
      if prog then prog:page(#page) end
      if resumable and next_link then
        -- the page's rows reach the file before the state that counts them
        assert(out.file:flush())
        local extra = opts.state_extra and opts.state_extra() or nil
        assert(resume.save(opts.output, {
          command = opts.command, path = opts.path, endpoint = endpoint, next = next_link,
          partial = out.tmp, bytes = bytes, rows = writer.rows, pages = pages_before + pages, columns = writer.cols,
          format = opts.format, select = opts.select, iso_dates = opts.iso_dates or false,
          csv_safe = opts.csv_safe or false, extra = extra,
        }))
      end
      local sig = resumable and core.signalled()
      if sig then error({ signal = sig }, 0) end
    end
    writer:finish()
  end)
  if not ok then
    if prog then prog:abort() end
    local reason, code = stop_reason(err)
    -- a state that counts this output's whole pages (written after any page, even if the stop came at
    -- once after it): keep the rows so far where --resume finds them
    local st = resumable and resume.load(opts.output)
    if st and st.partial == out.tmp then
      out.file:close()
      local kept = resume.kept(opts.output)
      if out.tmp ~= kept and os.rename(out.tmp, kept) then
        st.partial = kept
        resume.save(opts.output, st)
      end
      return nil, resume.stopped(reason, opts.output, st.rows, opts.argv, code)
    end
    out.abort()
    if code == 130 then
      return nil, "interrupted; " .. (opts.output and (opts.output .. " was not written") or "output incomplete"), 130
    end
    return nil, reason .. (opts.output and ("\n" .. opts.output .. " was not written") or ""), code or 1
  end
  local cok, cerr = out.commit()
  if not cok then
    if prog then prog:abort() end
    return nil, cerr, 1
  end
  if resumable then resume.forget(opts.output) end
  if prog then prog:done() end
  return { rows = writer.rows, pages = pages }
end

function _M.run(args)
  if args.resume then return _M.continue(args) end
  local fmt, ferr = output_format(args)
  if not fmt then return nil, ferr, 2 end
  local query, qerr = _M.query(args)
  if not query then return nil, qerr, 2 end
  -- the temp file first, before any call to Exact: can we write there at all?
  local out, oerr = util.atomic_output(args.output)
  if not out then return nil, oerr, 1 end
  local client, s, code = config.connect(args)
  if not client then
    out.abort()
    return nil, s, code
  end

  local path = args.path
  local endpoint = path
  local bulk = not args.no_bulk and not query["$top"] and _M.bulk_path(path)
  if bulk then
    if not query["$select"] then
      local sel, perr = probe_select(client, path)
      if perr then
        out.abort()
        return nil, perr, 1
      end
      query["$select"] = sel
    end
    if query["$select"] then endpoint = bulk end
  end

  local res, err, ecode = _M.stream(client, endpoint, query, {
    out = out, format = fmt, output = args.output, select = query["$select"], iso_dates = args.iso_dates,
    csv_safe = args.csv_safe, label = "export " .. endpoint, tty = args.progress or progress.stderr_is_tty(),
    quiet = args.no_progress, command = "export", path = path, argv = args._argv,
  })
  client:close()
  if not res then return nil, err, ecode end
  if args.output then
    io.stderr:write(("exported %s to %s (%s%s)\n"):format(util.count(res.rows, "row"), args.output,
      util.count(res.pages, "page"), endpoint ~= path and (", bulk endpoint " .. endpoint) or ""))
  end
  return 0
end

--- export --resume: continue a stopped export from its state, with the options it was started with.
function _M.continue(args)
  if not args.output or args.output == "-" then return nil, "--resume needs -o FILE (the state is beside it)", 2 end
  local st, serr = resume.load(args.output)
  if not st then return nil, serr, 1 end
  if st.command ~= "export" or st.path ~= args.path then
    return nil, resume.sidecar(args.output) .. " continues `exactonline " .. tostring(st.command) .. " "
      .. tostring(st.path) .. " -o " .. args.output .. "`, not this export", 2
  end
  local out, oerr = resume.output(args.output, st)
  if not out then return nil, oerr, 1 end
  local client, s, code = config.connect(args)
  if not client then
    out.abort()
    return nil, s, code
  end
  local res, err, ecode = _M.stream(client, st.endpoint, nil, {
    out = out, resume = st, format = st.format, output = args.output, select = st.select,
    iso_dates = st.iso_dates, csv_safe = st.csv_safe, label = "export " .. st.endpoint,
    tty = args.progress or progress.stderr_is_tty(), quiet = args.no_progress,
    command = "export", path = st.path, argv = args._argv,
  })
  client:close()
  if not res then return nil, err, ecode end
  io.stderr:write(("exported %s to %s (%s more, resumed)\n"):format(util.count(res.rows, "row"), args.output,
    util.count(res.pages, "page")))
  return 0
end

return _M
