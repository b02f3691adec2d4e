--- The sandbox's REST (OData v2) and XML APIs: Bearer check, divisions, rate limits, crm/Accounts with
-- $select/$filter/$top/$skiptoken, bulk/ and sync/ variants, POST/PUT/DELETE, Atom XML without
-- `Accept: application/json`, and /docs/XMLDownload.aspx + XMLUpload.aspx.
local ngx = ngx
local cjson = require "cjson.safe"
local data = require "exactonline.sandbox.data"
local odata = require "exactonline.sandbox.odata"
local string, table, math, os, io = string, table, math, os, io
local tostring, tonumber, type, ipairs, pairs = tostring, tonumber, type, ipairs, pairs

local _M = {}

local state = ngx.shared.eo_sandbox_state
local app -- exactonline.sandbox.app, set per request

local ACCOUNT = "Exact.Web.Api.Models.Account"
local xesc = odata.xml_escape

local function set_of(list)
  local s = {}
  for _, k in ipairs(list) do s[k] = true end
  return s
end

local ACCOUNT_FIELDS = data.account_fields
local ACCOUNT_SET = set_of(ACCOUNT_FIELDS)
local SYNC_FIELDS = {}
for i, k in ipairs(ACCOUNT_FIELDS) do SYNC_FIELDS[i] = k end
SYNC_FIELDS[#SYNC_FIELDS + 1] = "Timestamp"
local SYNC_SET = set_of(SYNC_FIELDS)
local WRITABLE = { Code = true, Name = true, City = true, Country = true, Postcode = true, AddressLine1 = true,
                   Email = true, Phone = true, Website = true, Status = true, IsSupplier = true, IsSales = true,
                   VATNumber = true, Blocked = true }

local function wants_json()
  local accept = ngx.var.http_accept or ""
  return accept:lower():find("application/json", 1, true) ~= nil
end

local function base_url()
  return ngx.var.scheme .. "://" .. (ngx.var.http_host or ("localhost:" .. ngx.var.server_port))
end

local function send(status, ctype, text)
  ngx.status = status
  ngx.header["Content-Type"] = ctype
  ngx.header["Cache-Control"] = "private"
  ngx.header["Content-Length"] = #text
  if text ~= "" then ngx.print(text) end
  return ngx.exit(status)
end

--- the error envelope, as JSON or (without Accept: application/json) XML
local function fail(status, message, reason)
  if reason then ngx.header["Reason"] = reason end
  if wants_json() then
    return send(status, "application/json; charset=utf-8",
      cjson.encode{ error = { code = "", message = { lang = "", value = message } } })
  end
  return send(status, "application/xml; charset=utf-8",
    '<?xml version="1.0" encoding="utf-8"?><error xmlns="http://schemas.microsoft.com/ado/2007/08/dataservices' ..
    '/metadata"><code></code><message xml:lang="">' .. xesc(message) .. '</message></error>')
end

-- rate limits ---------------------------------------------------------------------------------------

local function fmt_ms(x) return string.format("%.0f", x) end

--- count one call for client+division; answers 429 itself (returns false) when a limit is spent
local function rate_limit(client_id, division)
  local m, d, w = app.limits()
  local now = app.now()
  local widx = math.floor(now / w)
  local day = math.floor(now / 86400)
  local mkey = "rl:m:" .. client_id .. ":" .. division .. ":" .. w .. ":" .. widx
  local dkey = "rl:d:" .. client_id .. ":" .. division .. ":" .. day
  local mreset = fmt_ms((widx + 1) * w * 1000)
  local dreset = fmt_ms((day + 1) * 86400 * 1000)
  local bare = state:get("cfg:no429headers") -- a 429 without any X-RateLimit header, as older reports saw
  local dc = state:incr(dkey, 1, 0)
  if dc > d then
    state:incr(dkey, -1)
    app.stat("rate_limited")
    if not bare then
      ngx.header["X-RateLimit-Limit"] = tostring(d)
      ngx.header["X-RateLimit-Remaining"] = "0"
      ngx.header["X-RateLimit-Reset"] = dreset
    end
    fail(429, "Too many requests: daily rate limit exceeded.")
    return false
  end
  local mc = state:incr(mkey, 1, 0)
  if mc > m then
    state:incr(mkey, -1)
    state:incr(dkey, -1)
    app.stat("rate_limited")
    if not bare then
      ngx.header["X-RateLimit-Minutely-Limit"] = tostring(m)
      ngx.header["X-RateLimit-Minutely-Remaining"] = "0"
      ngx.header["X-RateLimit-Minutely-Reset"] = mreset
    end
    fail(429, "Too many requests: minutely rate limit exceeded.")
    return false
  end
  ngx.header["X-RateLimit-Limit"] = tostring(d)
  ngx.header["X-RateLimit-Remaining"] = tostring(d - dc)
  ngx.header["X-RateLimit-Reset"] = dreset
  ngx.header["X-RateLimit-Minutely-Limit"] = tostring(m)
  ngx.header["X-RateLimit-Minutely-Remaining"] = tostring(m - mc)
  ngx.header["X-RateLimit-Minutely-Reset"] = mreset
  return true
end

-- rendering -----------------------------------------------------------------------------------------

local function project(row, fields, uri, etype)
  local out = { __metadata = { uri = uri, type = etype } }
  for _, f in ipairs(fields) do
    local v = row[f]
    if v == nil then v = cjson.null end
    out[f] = v
  end
  return out
end

local function edm(v)
  if type(v) == "boolean" then return ' m:type="Edm.Boolean"', tostring(v) end
  if type(v) == "number" then
    return ' m:type="Edm.Int64"', (v == math.floor(v)) and fmt_ms(v) or tostring(v)
  end
  if v == nil or v == cjson.null then return ' m:null="true"', "" end
  local ms = data.date_ms(v)
  if ms then return ' m:type="Edm.DateTime"', os.date("!%Y-%m-%dT%H:%M:%S", math.floor(ms / 1000)) end
  return "", tostring(v)
end

local function atom_entry(obj)
  local props = {}
  for k, v in pairs(obj) do
    if k ~= "__metadata" then
      local attr, text = edm(v)
      props[#props + 1] = "<d:" .. k .. attr .. ">" .. xesc(text) .. "</d:" .. k .. ">"
    end
  end
  table.sort(props)
  local id = obj.__metadata and obj.__metadata.uri or ""
  return "<entry><id>" .. xesc(id) .. '</id><title type="text" /><updated>' ..
    os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(app.now())) .. '</updated><category term="' ..
    xesc(obj.__metadata and obj.__metadata.type or "") ..
    '" scheme="http://schemas.microsoft.com/ado/2007/08/dataservices/scheme" />' ..
    '<content type="application/xml"><m:properties>' .. table.concat(props) .. "</m:properties></content></entry>"
end

local NS = ' xmlns="http://www.w3.org/2005/Atom" xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices"' ..
  ' xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"'

local function reply_list(title, objs, next_url, count)
  if wants_json() then
    local enc = {}
    for i, o in ipairs(objs) do enc[i] = cjson.encode(o) end
    local tail = ""
    if count then tail = tail .. ',"__count":"' .. count .. '"' end
    if next_url then tail = tail .. ',"__next":' .. cjson.encode(next_url) end
    return send(200, "application/json; charset=utf-8",
      '{"d":{"results":[' .. table.concat(enc, ",") .. "]" .. tail .. "}}")
  end
  local entries = {}
  for i, o in ipairs(objs) do entries[i] = atom_entry(o) end
  local nxt = next_url and ('<link rel="next" href="' .. xesc(next_url) .. '" />') or ""
  return send(200, "application/atom+xml;type=feed;charset=utf-8",
    '<?xml version="1.0" encoding="utf-8"?><feed xml:base="' .. xesc(base_url()) .. '/api/v1/"' .. NS ..
    '><id>' .. xesc(base_url() .. ngx.var.request_uri) .. '</id><title type="text">' .. xesc(title) ..
    "</title>" .. table.concat(entries) .. nxt .. "</feed>")
end

local function reply_entity(status, obj, headers)
  if headers then for k, v in pairs(headers) do ngx.header[k] = v end end
  if wants_json() then
    return send(status, "application/json; charset=utf-8", cjson.encode{ d = obj })
  end
  return send(status, "application/atom+xml;type=entry;charset=utf-8",
    '<?xml version="1.0" encoding="utf-8"?>' .. atom_entry(obj):gsub("^<entry>", "<entry" .. NS .. ">"))
end

-- lists ---------------------------------------------------------------------------------------------

local function first(v)
  if type(v) == "table" then return v[1] end
  return v
end

--- a list answer with OData paging. spec = { rows, fields (array), set, page, order = "id"|"ts",
-- need_select, uri_of(row), etype, title }
local function list(spec)
  local args = ngx.req.get_uri_args(100)
  local select_arg, filter_arg = first(args["$select"]), first(args["$filter"])
  local top_arg, skip_arg = first(args["$top"]), first(args["$skiptoken"])
  if type(select_arg) ~= "string" then select_arg = nil end
  if type(filter_arg) ~= "string" then filter_arg = nil end
  if spec.need_select and not select_arg then
    return fail(400, "$select is mandatory for bulk endpoints: specify the properties to return.")
  end
  local fields, err = odata.select(select_arg, spec.set, spec.fields)
  if err then return fail(400, err) end
  fields = fields or spec.fields
  local pred
  if filter_arg and filter_arg ~= "" then
    pred, err = odata.compile(filter_arg, spec.set)
    if not pred then return fail(400, err) end
  end
  local top = tonumber(top_arg)
  if top_arg and (not top or top < 0) then return fail(400, "$top must be a non-negative integer.") end
  local after
  if type(skip_arg) == "string" and skip_arg ~= "" then
    if spec.order == "ts" then
      after = tonumber(skip_arg:match("^(%d+)[Ll]?$"))
    else
      after = skip_arg:match("^guid'(.-)'$")
      after = after and after:lower()
    end
    if not after then return fail(400, "Invalid $skiptoken.") end
  end
  local page = spec.page
  local limit = top and math.min(top, page) or page
  local out, last, more, total = {}, nil, false, 0
  local count_all = first(args["$inlinecount"]) == "allpages"
  for _, row in ipairs(spec.rows) do
    local key = spec.order == "ts" and row.Timestamp or row.ID
    if (not pred or pred(row)) then
      total = total + 1
      if after == nil or key > after then
        if #out < limit then
          out[#out + 1] = project(row, fields, spec.uri_of(row), spec.etype)
          last = key
        else
          more = true
          if not count_all then break end
        end
      end
    end
  end
  if top and top <= page then more = false end
  local next_url
  if more and last then
    local q = {}
    if select_arg then q[#q + 1] = "$select=" .. odata.escape_query(select_arg) end
    if filter_arg then q[#q + 1] = "$filter=" .. odata.escape_query(filter_arg) end
    if top then q[#q + 1] = "$top=" .. (top - #out) end
    if count_all then q[#q + 1] = "$inlinecount=allpages" end
    if spec.order == "ts" then
      q[#q + 1] = "$skiptoken=" .. fmt_ms(last) .. "L"
    else
      q[#q + 1] = "$skiptoken=guid'" .. last .. "'"
    end
    next_url = base_url() .. ngx.var.uri .. "?" .. table.concat(q, "&")
  end
  return reply_list(spec.title, out, next_url, count_all and total or nil)
end

-- endpoints -----------------------------------------------------------------------------------------

local function me(division)
  local fields = { "UserID", "UserName", "FullName", "FirstName", "LastName", "Email", "CurrentDivision",
                   "DivisionCustomer", "DivisionCustomerName", "Language", "LanguageCode" }
  local row = { UserID = "5a8e1d30-7c6b-4e2f-9a14-3b0c5d7e9f21", UserName = "sandbox@example.com",
                FullName = "Sandbox Gebruiker", FirstName = "Sandbox", LastName = "Gebruiker",
                Email = "sandbox@example.com", CurrentDivision = division,
                DivisionCustomer = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9", DivisionCustomerName = "Sandbox BV",
                Language = "NL-NL", LanguageCode = "nl-NL" }
  return list{ rows = { row }, fields = fields, set = set_of(fields), page = 60, order = "id",
               etype = "Exact.Web.Api.System.Me", title = "Me",
               uri_of = function(r) return base_url() .. "/api/v1/current/Me(guid'" .. r.UserID .. "')" end }
end

local function divisions(division)
  local fields = { "Code", "Description", "HID", "Customer", "CustomerName", "Country", "Currency", "Current",
                   "Started", "Status" }
  local rows = {}
  for i, d in ipairs(app.divisions()) do
    rows[i] = { Code = d, Description = (i == 1) and "Sandbox BV" or ("Sandbox Dochter " .. i), HID = i,
                Customer = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9", CustomerName = "Sandbox BV", Country = "NL",
                Currency = "EUR", Current = (d == app.settings.division), Started = "/Date(1577836800000)/",
                Status = 1, ID = tostring(d) }
  end
  return list{ rows = rows, fields = fields, set = set_of(fields), page = 60, order = "id",
               etype = "Exact.Web.Api.Models.HRM.Division", title = "Divisions",
               uri_of = function(r) return base_url() .. "/api/v1/" .. division .. "/system/Divisions(" ..
                 r.Code .. ")" end }
end

local function account_uri(division, id)
  return base_url() .. "/api/v1/" .. division .. "/crm/Accounts(guid'" .. id .. "')"
end

local function read_json_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then
    local file = ngx.req.get_body_file()
    if file then
      local f = io.open(file, "rb")
      if f then body = f:read("*a") f:close() end
    end
  end
  if not body or body == "" then return nil, "The request body is empty." end
  local obj = cjson.decode(body)
  if type(obj) ~= "table" then return nil, "The request body is not valid JSON." end
  return obj
end

local function apply(row, obj)
  for k, v in pairs(obj) do
    if not WRITABLE[k] and not ACCOUNT_SET[k] then
      return nil, "Property '" .. tostring(k) .. "' does not exist on type '" .. ACCOUNT .. "'."
    end
    if WRITABLE[k] then
      if k == "Code" then v = data.pad_code(v) end
      row[k] = v
    end
  end
  return true
end

local function accounts(division, method, key)
  local rows = data.rows(division)
  if not rows then return fail(404, "Not found") end
  if method == "GET" and not key then
    return list{ rows = rows, fields = ACCOUNT_FIELDS, set = ACCOUNT_SET, page = 60, order = "id",
                 etype = ACCOUNT, title = "Accounts",
                 uri_of = function(r) return account_uri(division, r.ID) end }
  end
  local _, by_id = data.rows(division)
  if method == "GET" then
    local row = by_id[key]
    if not row then return fail(404, "Account not found.") end
    local args = ngx.req.get_uri_args(20)
    local fields, err = odata.select(first(args["$select"]), ACCOUNT_SET, ACCOUNT_FIELDS)
    if err then return fail(400, err) end
    return reply_entity(200, project(row, fields or ACCOUNT_FIELDS, account_uri(division, row.ID), ACCOUNT))
  elseif method == "POST" and not key then
    local obj, err = read_json_body()
    if not obj then return fail(400, err) end
    if type(obj.Name) ~= "string" or obj.Name == "" then return fail(400, "Name: mandatory field.") end
    local created, cerr = data.modify(division, function(all)
      local row = { ID = data.new_guid(), Division = division, Status = "C", IsSupplier = false, IsSales = true,
                    Blocked = false }
      local maxcode = 0
      for _, r in ipairs(all) do maxcode = math.max(maxcode, tonumber(r.Code) or 0) end
      local ok, aerr = apply(row, obj)
      if not ok then return nil, aerr end
      if row.Code == nil then row.Code = data.pad_code(maxcode + 1) end
      for _, r in ipairs(all) do
        if r.Code == row.Code then return nil, "Code: the code '" .. row.Code:match("^%s*(.-)$") ..
          "' already exists." end
      end
      local ms = app.now() * 1000
      row.Created, row.Modified = data.now_date(ms), data.now_date(ms)
      row.Timestamp = data.next_timestamp()
      all[#all + 1] = row
      return row
    end)
    if not created then return fail(400, cerr or "Could not create the account.") end
    return reply_entity(201, project(created, ACCOUNT_FIELDS, account_uri(division, created.ID), ACCOUNT),
      { Location = account_uri(division, created.ID) })
  elseif method == "PUT" and key then
    if not by_id[key] then return fail(404, "Account not found.") end
    local obj, err = read_json_body()
    if not obj then return fail(400, err) end
    local ok, merr = data.modify(division, function(all)
      for _, r in ipairs(all) do
        if r.ID == key then
          local done, aerr = apply(r, obj)
          if not done then return nil, aerr end
          r.Modified = data.now_date(app.now() * 1000)
          r.Timestamp = data.next_timestamp()
          return true
        end
      end
      return nil, "Account not found."
    end)
    if not ok then return fail(merr == "Account not found." and 404 or 400, merr) end
    return send(204, "application/json; charset=utf-8", "")
  elseif method == "DELETE" and key then
    local ok = data.modify(division, function(all)
      for i, r in ipairs(all) do
        if r.ID == key then
          table.remove(all, i)
          return true
        end
      end
      return nil
    end)
    if not ok then return fail(404, "Account not found.") end
    return send(204, "application/json; charset=utf-8", "")
  end
  return fail(405, "Method not allowed.")
end

local function bulk_accounts(division)
  local rows = data.rows(division)
  return list{ rows = rows, fields = ACCOUNT_FIELDS, set = ACCOUNT_SET, page = 1000, order = "id",
               need_select = true, etype = ACCOUNT, title = "Accounts",
               uri_of = function(r) return account_uri(division, r.ID) end }
end

local function sync_accounts(division)
  return list{ rows = data.rows_by_timestamp(division), fields = SYNC_FIELDS, set = SYNC_SET, page = 1000, order = "ts",
               etype = "Exact.Web.Api.Models.Sync.CRM.Account", title = "Accounts",
               uri_of = function(r) return base_url() .. "/api/v1/" .. division .. "/sync/CRM/Accounts(" ..
                 fmt_ms(r.Timestamp) .. "L)" end }
end

-- XML API -------------------------------------------------------------------------------------------

local XML_PAGE = 100

local function xml_send(status, body)
  return send(status, "application/xml; charset=utf-8", '<?xml version="1.0" encoding="utf-8"?>' .. body)
end

local function xml_download(division, args)
  local topic = first(args.Topic) or first(args.topic)
  if type(topic) ~= "string" or topic:lower() ~= "accounts" then
    return xml_send(400, "<eExact><Messages><Message type=\"0\"><Description>Unknown topic</Description>" ..
      "</Message></Messages></eExact>")
  end
  local from = 0
  local paging = first(args.TSPaging)
  if type(paging) == "string" and paging ~= "" then
    from = tonumber(paging:match("^0[xX](%x+)$") or "", 16)
    if not from then return xml_send(400, "<eExact><Messages><Message type=\"0\"><Description>Invalid TSPaging" ..
      "</Description></Message></Messages></eExact>") end
  end
  local sorted = {}
  for _, r in ipairs(data.rows_by_timestamp(division)) do
    if r.Timestamp > from then sorted[#sorted + 1] = r end
  end
  local parts, last = {}, from
  for i = 1, math.min(XML_PAGE, #sorted) do
    local r = sorted[i]
    last = r.Timestamp
    parts[#parts + 1] = '<Account code="' .. xesc(r.Code) .. '" status="' .. xesc(r.Status) .. '" ID="{' ..
      r.ID:upper() .. '}"><Name>' .. xesc(r.Name) .. "</Name><Email>" .. xesc(r.Email) .. "</Email><Phone>" ..
      xesc(r.Phone) .. "</Phone><Address><City>" .. xesc(r.City) .. '</City><Country code="' ..
      xesc(r.Country) .. '" /></Address></Account>'
  end
  return xml_send(200, '<eExact xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ' ..
    'xsi:noNamespaceSchemaLocation="eExact-Schema.xsd"><Accounts>' .. table.concat(parts) ..
    '</Accounts><Topics><Topic code="Accounts" ts_d="' .. string.format("0x%016X", last) .. '" count="' ..
    #parts .. '" pagesize="' .. XML_PAGE .. '" /></Topics></eExact>')
end

local function xml_unescape(s)
  return (s:gsub("&(%w+);", { amp = "&", lt = "<", gt = ">", quot = '"', apos = "'" }))
end

local function xml_upload(division, args)
  local topic = first(args.Topic) or first(args.topic)
  if type(topic) ~= "string" or topic:lower() ~= "accounts" then
    return xml_send(400, "<eExact><Messages><Message type=\"0\"><Description>Unknown topic</Description>" ..
      "</Message></Messages></eExact>")
  end
  ngx.req.read_body()
  local body = ngx.req.get_body_data() or ""
  local msgs = {}
  for attrs, inner in body:gmatch("<Account(%s[^>]*)>(.-)</Account>") do
    local code = attrs:match('code="([^"]*)"')
    local name = inner:match("<Name>(.-)</Name>")
    if not code or not name then
      msgs[#msgs + 1] = '<Message type="0"><Topic code="Accounts" node="Account" /><Description>' ..
        "Account: code and Name are mandatory</Description></Message>"
    else
      code, name = data.pad_code(xml_unescape(code)), xml_unescape(name)
      local what = data.modify(division, function(all)
        local ms = app.now() * 1000
        for _, r in ipairs(all) do
          if r.Code == code then
            r.Name = name
            r.Modified = data.now_date(ms)
            r.Timestamp = data.next_timestamp()
            return "Updated"
          end
        end
        all[#all + 1] = { ID = data.new_guid(), Code = code, Name = name, Division = division, Status = "C",
                          IsSupplier = false, IsSales = true, Blocked = false, Created = data.now_date(ms),
                          Modified = data.now_date(ms), Timestamp = data.next_timestamp() }
        return "Created"
      end)
      msgs[#msgs + 1] = '<Message type="2"><Topic code="Accounts" node="Account"><Data keyAlt="' ..
        xesc(code:match("^%s*(.-)$")) .. '" /></Topic><Description>' .. (what or "Failed") ..
        "</Description></Message>"
    end
  end
  return xml_send(200, "<eExact><Messages>" .. table.concat(msgs) .. "</Messages></eExact>")
end

-- dispatch ------------------------------------------------------------------------------------------

local function allowed(division)
  for _, d in ipairs(app.divisions()) do
    if d == division then return true end
  end
  return false
end

function _M.handle(the_app)
  app = the_app
  local uri = ngx.var.uri
  local lower = uri:lower()
  local is_xml = lower == "/docs/xmldownload.aspx" or lower == "/docs/xmlupload.aspx"
  if not is_xml and not lower:match("^/api/v1/") then
    return fail(404, "Not found: " .. uri)
  end
  app.stat("api_calls")
  app.remember("api")
  if is_xml then app.stat("xml_calls") end
  local kind, seconds = app.take_fault("api")
  if kind and app.serve_fault(kind, seconds) then return end

  local tok = app.bearer()
  if not tok then
    app.stat("unauthorized")
    ngx.header["WWW-Authenticate"] = "Bearer"
    return fail(401, "Unauthorized")
  end
  local method = ngx.req.get_method()

  if is_xml then
    local args = ngx.req.get_uri_args(100)
    local division = tonumber(first(args._Division_)) or app.settings.division
    if not allowed(division) then return fail(403, "Forbidden - WrongDivision") end
    if not rate_limit(tok.client_id, division) then return end
    if lower == "/docs/xmldownload.aspx" then return xml_download(division, args) end
    if method ~= "POST" then return fail(405, "Use POST") end
    return xml_upload(division, args)
  end

  local div, rest = uri:match("^/api/v1/([^/]+)/(.+)$")
  if not div then return fail(404, "Not found: " .. uri) end
  local lrest = rest:lower()
  local division
  if div == "current" then
    if lrest ~= "me" then return fail(404, "Not found: " .. uri) end
    division = app.settings.division
  else
    division = tonumber(div)
    if not division or not allowed(division) then return fail(403, "Forbidden - WrongDivision") end
  end
  if not rate_limit(tok.client_id, division) then return end

  if div == "current" then
    if method ~= "GET" then return fail(405, "Method not allowed.") end
    return me(division)
  end
  if lrest == "system/divisions" or lrest == "system/alldivisions" or lrest == "hrm/divisions" then
    if method ~= "GET" then return fail(405, "Method not allowed.") end
    return divisions(division)
  end
  if lrest == "crm/accounts" then
    return accounts(division, method, nil)
  end
  local key = lrest:match("^crm/accounts%(guid'(%x+%-%x+%-%x+%-%x+%-%x+)'%)$")
  if key then
    return accounts(division, method, key)
  end
  if lrest == "bulk/crm/accounts" then
    if method ~= "GET" then return fail(405, "Method not allowed.") end
    return bulk_accounts(division)
  end
  if lrest == "sync/crm/accounts" then
    if method ~= "GET" then return fail(405, "Method not allowed.") end
    return sync_accounts(division)
  end
  return fail(404, "Not found: " .. uri)
end

return _M
