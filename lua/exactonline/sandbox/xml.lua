--- The XML API on accounts: /docs/XMLDownload.aspx (pages of 100 in Timestamp order, `ts_d` / TSPaging) and
-- /docs/XMLUpload.aspx (creates or updates `<Account code="…"><Name>…</Name></Account>`).
local ngx = ngx
local catalog = require "exactonline.sandbox.catalog"
local store = require "exactonline.sandbox.store"
local change = require "exactonline.sandbox.change"
local gen = require "exactonline.sandbox.gen"
local odata = require "exactonline.sandbox.odata"
local string, table, math = string, table, math
local io = io
local tonumber, type, pairs, ipairs = tonumber, type, pairs, ipairs

local _M = {}

local PAGE = 100
local xesc = odata.xml_escape

local function first(v)
  if type(v) == "table" then return v[1] end
  return v
end

local function xml_send(api, status, body)
  return api.send(status, "application/xml; charset=utf-8", '<?xml version="1.0" encoding="utf-8"?>' .. body)
end

local function message(text)
  return '<eExact><Messages><Message type="0"><Description>' .. xesc(text) .. "</Description></Message>" ..
    "</Messages></eExact>"
end

local function download(api, division, args)
  local from = 0
  local paging = first(args.TSPaging)
  if type(paging) == "string" and paging ~= "" then
    from = tonumber(paging:match("^0[xX](%x+)$") or "", 16)
    if not from then return xml_send(api, 400, message("Invalid TSPaging")) end
  end
  local rows = store.sync(division, "accounts", from, PAGE)
  local parts, last = {}, from
  for _, r in ipairs(rows) do
    last = r.Timestamp
    parts[#parts + 1] = '<Account code="' .. xesc(r.Code) .. '" status="' .. xesc(r.Status or "") .. '" ID="{' ..
      r.ID:upper() .. '}"><Name>' .. xesc(r.Name or "") .. "</Name><Email>" .. xesc(r.Email or "") ..
      "</Email><Phone>" .. xesc(r.Phone or "") .. "</Phone><Address><City>" .. xesc(r.City or "") ..
      '</City><Country code="' .. xesc(r.Country or "") .. '" /></Address></Account>'
  end
  return xml_send(api, 200, '<eExact xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ' ..
    'xsi:noNamespaceSchemaLocation="eExact-Schema.xsd"><Accounts>' .. table.concat(parts) ..
    '</Accounts><Topics><Topic code="Accounts" ts_d="' .. string.format("0x%016X", last) .. '" count="' ..
    #parts .. '" pagesize="' .. PAGE .. '" /></Topics></eExact>')
end

local function unescape(s)
  return (s:gsub("&(%w+);", { amp = "&", lt = "<", gt = ">", quot = '"', apos = "'" }))
end

--- accounts(body) --> array of { attrs, inner }: every <Account …>…</Account>, in one pass over the body
-- (each search starts where the previous one ended, and a missing close tag ends the scan)
function _M.accounts(body)
  local out, pos = {}, 1
  while true do
    local s = body:find("<Account", pos, true)
    if not s then break end
    local c = body:sub(s + 8, s + 8)
    if c == ">" or c:match("%s") then
      local gt = body:find(">", s + 8, true)
      if not gt then break end
      local close = body:find("</Account>", gt + 1, true)
      if not close then break end
      out[#out + 1] = { attrs = body:sub(s + 8, gt - 1), inner = body:sub(gt + 1, close - 1) }
      pos = close + 10
    else
      pos = s + 8
    end
  end
  return out
end

local function find_code(division, code)
  local c = tonumber(code)
  if c and c >= 1 and c <= store.base("accounts") and c == math.floor(c) then
    local r = store.get(division, "accounts", c)
    if r and r.Code == code then return c end
  end
  for i in pairs(store.changed_indexes(division, "accounts")) do
    local r = store.get(division, "accounts", i)
    if r and r.Code == code then return i end
  end
  return nil
end

local function upload(app, api, division)
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then -- larger than client_body_buffer_size: nginx kept it in a file
    local file = ngx.req.get_body_file()
    local f = file and io.open(file, "rb")
    body = f and f:read("*a") or ""
    if f then f:close() end
  end
  local e = catalog.by_name.accounts
  local msgs = {}
  for _, a in ipairs(_M.accounts(body)) do
    local code = a.attrs:match('code="([^"]*)"')
    local name = a.inner:match("<Name>(.-)</Name>")
    if not code or not name then
      msgs[#msgs + 1] = '<Message type="0"><Topic code="Accounts" node="Account" /><Description>' ..
        "Account: code and Name are mandatory</Description></Message>"
    else
      code, name = gen.pad_code(unescape(code)), unescape(name)
      local i = find_code(division, code)
      local ok, what
      if i then
        ok = change.update(division, e, { i }, { Name = name }, app)
        what = "Updated"
      else
        ok = change.create(division, e, 1, { Code = code, Name = name }, app)
        what = "Created"
      end
      msgs[#msgs + 1] = '<Message type="2"><Topic code="Accounts" node="Account"><Data keyAlt="' ..
        xesc(code:match("^%s*(.-)$")) .. '" /></Topic><Description>' .. (ok and what or "Failed") ..
        "</Description></Message>"
    end
  end
  return xml_send(api, 200, "<eExact><Messages>" .. table.concat(msgs) .. "</Messages></eExact>")
end

function _M.handle(app, api, division, lower, method, args)
  local topic = first(args.Topic) or first(args.topic)
  if type(topic) ~= "string" or topic:lower() ~= "accounts" then
    return xml_send(api, 400, message("Unknown topic"))
  end
  if lower == "/docs/xmldownload.aspx" then return download(api, division, args) end
  if method ~= "POST" then return api.fail(405, "Use POST") end
  return upload(app, api, division)
end

return _M
