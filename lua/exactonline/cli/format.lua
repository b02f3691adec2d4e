--- Output formats for the CLI: RFC 4180 CSV, JSON Lines, pretty JSON.
local cjson = require "cjson"

local floor, huge, type, tostring, tonumber, pairs, ipairs, next =
  math.floor, math.huge, type, tostring, tonumber, pairs, ipairs, next
local concat, sort = table.concat, table.sort
local format, date = string.format, os.date

local null = cjson.null
local _M = {}

--- A number as JSON writes it: integers without ".0", floats round-tripping.
local function number(n)
  if n ~= n or n == huge or n == -huge then return "null" end
  if floor(n) == n and n > -2 ^ 53 and n < 2 ^ 53 then return format("%.0f", n) end
  local s = format("%.15g", n)
  if tonumber(s) ~= n then s = format("%.17g", n) end
  return s
end
_M.number = number

--- "/Date(1700000000000)/" --> "2023-11-14T22:13:20Z" (milliseconds kept when not zero); else nil.
function _M.iso_date(s)
  local ms = s:match("^/Date%((%-?%d+)[%+%-]?%d*%)/$")
  if not ms then return nil end
  ms = tonumber(ms)
  local secs = floor(ms / 1000)
  local rest = ms - secs * 1000
  local d = date("!%Y-%m-%dT%H:%M:%S", secs)
  if rest ~= 0 then d = d .. format(".%03d", rest) end
  return d .. "Z"
end

-- Deferred navigation properties ({"__deferred":{"uri":…}}) and __metadata are not data.
local function is_data(k, v)
  if k == "__metadata" then return false end
  if type(v) == "table" and v.__deferred ~= nil and next(v, next(v)) == nil then return false end
  return true
end

--- Column names: from a $select list, else the first row's keys (ID first, then alphabetical).
function _M.columns(select, row)
  local cols = {}
  if select and select ~= "" then
    for name in select:gmatch("[^,%s]+") do cols[#cols + 1] = name end
    return cols
  end
  for k, v in pairs(row or {}) do
    if type(k) == "string" and is_data(k, v) then cols[#cols + 1] = k end
  end
  sort(cols, function(a, b)
    if a == "ID" then return b ~= "ID" end
    if b == "ID" then return false end
    return a < b
  end)
  return cols
end

--- One CSV field (RFC 4180): quoted when it holds a quote, comma, CR or LF. opts.iso_dates converts
-- /Date(ms)/; opts.csv_safe prefixes text starting with = + - @ (or a tab or CR) with ' so a spreadsheet
-- shows it instead of running it as a formula (numbers are left alone).
local function csv_field(v, opts)
  local t = type(v)
  local s
  if v == nil or v == null then return ""
  elseif t == "string" then s = (opts and opts.iso_dates and _M.iso_date(v)) or v
  elseif t == "number" then return number(v)
  elseif t == "boolean" then return tostring(v)
  else s = _M.json(v) end
  if opts and opts.csv_safe and s:find("^[=+%-@\t\r]") then s = "'" .. s end
  if s:find('[",\r\n]') then s = '"' .. s:gsub('"', '""') .. '"' end
  return s
end
_M.csv_field = csv_field

--- A CSV record with CRLF line end (opts as csv_field's).
function _M.csv_record(values, opts)
  local out = {}
  for i = 1, #values do out[i] = csv_field(values[i], opts) end
  return concat(out, ",") .. "\r\n"
end

--- A CSV writer: w:row(t) writes the header before the first row. A resumed export passes the columns
-- (opts.columns: the header is written already) and the rows so far (opts.rows).
function _M.csv_writer(file, opts)
  opts = opts or {}
  local w = { rows = opts.rows or 0, cols = opts.columns }
  function w.row(_, row)
    if not w.cols then
      w.cols = _M.columns(opts.select, row)
      local names = {}
      for i, c in ipairs(w.cols) do names[i] = c end
      file:write(_M.csv_record(names, opts))
    end
    local values = {}
    for i, c in ipairs(w.cols) do
      local v = row[c]
      values[i] = (v == nil) and null or v
    end
    file:write(_M.csv_record(values, opts))
    w.rows = w.rows + 1
  end
  function w.finish()
    -- an empty export still gets its header when the columns are known
    if not w.cols and opts.select then
      w.cols = _M.columns(opts.select)
      file:write(_M.csv_record(w.cols, opts))
    end
  end
  return w
end

-- Dates converted in place for JSON output (copy; rows are not modified).
local function with_iso(v)
  if type(v) == "string" then return _M.iso_date(v) or v end
  if type(v) ~= "table" or v == null then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = with_iso(x) end
  return t
end

--- A JSON Lines writer: one row per line.
function _M.jsonl_writer(file, opts)
  opts = opts or {}
  local w = { rows = opts.rows or 0 }
  function w.row(_, row)
    local r = {}
    for k, v in pairs(row) do
      if is_data(k, v) then r[k] = opts.iso_dates and with_iso(v) or v end
    end
    file:write(_M.json(r), "\n")
    w.rows = w.rows + 1
  end
  function w.finish() end
  return w
end

local function is_array(t)
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or floor(k) ~= k then return false end
    n = n + 1
  end
  -- an empty table is written as []: lua-cjson decodes [] and {} alike, and in Exact's answers an empty
  -- value is a list (d.results, expanded lines), never an empty object
  return n == #t, n
end

local function encode_string(s)
  return (cjson.encode(s):gsub("\\/", "/"))
end

--- Compact JSON (keys sorted, so output is stable).
function _M.json(v)
  local t = type(v)
  if v == nil or v == null then return "null" end
  if t == "string" then return encode_string(v) end
  if t == "number" then return number(v) end
  if t == "boolean" then return tostring(v) end
  if t ~= "table" then return encode_string(tostring(v)) end
  local arr = is_array(v)
  local out = {}
  if arr then
    for i = 1, #v do out[i] = _M.json(v[i]) end
    return "[" .. concat(out, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  for i, k in ipairs(keys) do
    local x = v[k]
    if x == nil then x = v[tonumber(k)] end
    out[i] = encode_string(k) .. ":" .. _M.json(x)
  end
  return "{" .. concat(out, ",") .. "}"
end

--- Pretty JSON, two-space indent, keys sorted.
function _M.pretty(v, indent)
  indent = indent or ""
  if type(v) ~= "table" or v == null then return _M.json(v) end
  local inner = indent .. "  "
  local out = {}
  if is_array(v) then
    if #v == 0 then return "[]" end
    for i = 1, #v do out[i] = inner .. _M.pretty(v[i], inner) end
    return "[\n" .. concat(out, ",\n") .. "\n" .. indent .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  for i, k in ipairs(keys) do
    local x = v[k]
    if x == nil then x = v[tonumber(k)] end
    out[i] = inner .. encode_string(k) .. ": " .. _M.pretty(x, inner)
  end
  return "{\n" .. concat(out, ",\n") .. "\n" .. indent .. "}"
end

return _M
