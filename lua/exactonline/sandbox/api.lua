--- The sandbox's REST (OData v2) API: Bearer check, divisions, rate limits per app and division, and every
-- catalog entity on its regular, bulk/ and sync/ endpoints ($select/$filter/$top/$skiptoken/$inlinecount,
-- mandatory filters when switched on), sync/Deleted, read/sync/Sync/SyncTimestamp, writes, Atom XML without
-- `Accept: application/json`. The XML API is exactonline.sandbox.xml.
local ngx = ngx
local cjson = require "cjson.safe"
local catalog = require "exactonline.sandbox.catalog"
local store = require "exactonline.sandbox.store"
local change = require "exactonline.sandbox.change"
local gen = require "exactonline.sandbox.gen"
local odata = require "exactonline.sandbox.odata"
local string, table, math, os, io = string, table, math, os, io
local tostring, tonumber, type, ipairs, pairs = tostring, tonumber, type, ipairs, pairs

local _M = {}

-- every change (REST write, XML upload, /_sandbox/change) is offered to the webhook subscriptions
function change.notify(div, e, rows, action, the_app)
  require("exactonline.sandbox.webhooks").notify(the_app, _M, div, e, rows, action)
end

local state = ngx.shared.eo_sandbox_state
local app -- exactonline.sandbox.app, set per request

local xesc = odata.xml_escape
local null = cjson.null

local function wants_json()
  local accept = ngx.var.http_accept or ""
  return accept:lower():find("application/json", 1, true) ~= nil
end

local function base_url()
  return ngx.var.scheme .. "://" .. (ngx.var.http_host or ("localhost:" .. ngx.var.server_port))
end
_M.base_url = base_url

local function send(status, ctype, text)
  ngx.status = status
  ngx.header["Content-Type"] = ctype
  ngx.header["Cache-Control"] = "private"
  ngx.header["Content-Length"] = #text
  if text ~= "" then ngx.print(text) end
  return ngx.exit(status)
end
_M.send = send

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
_M.fail = fail

-- rate limits ---------------------------------------------------------------------------------------

local function fmt_ms(x) return string.format("%.0f", x) end

--- count one call for client+division; answers 429 itself (returns false) when a limit is spent
function _M.rate_limit(client_id, division)
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

-- what Exact sends for a property without a value: booleans false, numbers 0, the rest null
local DEFAULTS = { Boolean = false, Int16 = 0, Int32 = 0, Int64 = 0, Double = 0 }

--- project(row, fields, types, uri, etype, nav) --> the JSON object of one row
local function project(row, fields, types, uri, etype, nav)
  local out = { __metadata = { uri = uri, type = etype } }
  for _, f in ipairs(fields) do
    local v = row[f]
    if v == nil then
      if nav and nav[f] then
        v = { __deferred = { uri = uri .. "/" .. f } }
      else
        v = DEFAULTS[types[f]]
        if v == nil then v = null end
      end
    end
    out[f] = v
  end
  return out
end
_M.project = project

local function edm(v)
  if type(v) == "boolean" then return ' m:type="Edm.Boolean"', tostring(v) end
  if type(v) == "number" then
    return ' m:type="Edm.Int64"', (v == math.floor(v)) and fmt_ms(v) or tostring(v)
  end
  if v == nil or v == null then return ' m:null="true"', "" end
  if type(v) == "table" then return "", "" end
  local ms = tonumber((tostring(v)):match("^/Date%((%-?%d+)%)/$"))
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

-- query options ---------------------------------------------------------------------------------------

local function first(v)
  if type(v) == "table" then return v[1] end
  return v
end

local function set_of(list)
  local s = {}
  for _, k in ipairs(list) do s[k] = true end
  return s
end

--- the query options of a list request, checked: { select, filter, top, skip, count_all, fields, pred, used }
local function options(args, field_list, field_set, nav)
  local o = {}
  o.select, o.filter = first(args["$select"]), first(args["$filter"])
  if type(o.select) ~= "string" then o.select = nil end
  if type(o.filter) ~= "string" or o.filter == "" then o.filter = nil end
  local all = field_list
  if nav then
    all = {}
    for i, f in ipairs(field_list) do all[i] = f end
    for _, f in ipairs(nav) do all[#all + 1] = f end
  end
  local sel_set = field_set
  if nav then sel_set = set_of(all) end
  local fields, err = odata.select(o.select, sel_set, all)
  if err then return nil, err end
  o.fields = fields or all
  if o.filter then
    local pred, perr, used = odata.compile(o.filter, field_set)
    if not pred then return nil, perr end
    o.pred, o.used = pred, used
  end
  local top_arg = first(args["$top"])
  if top_arg then
    o.top = tonumber(top_arg)
    if not o.top or o.top < 0 then return nil, "$top must be a non-negative integer." end
  end
  o.skip = first(args["$skiptoken"])
  if type(o.skip) ~= "string" or o.skip == "" then o.skip = nil end
  o.count_all = first(args["$inlinecount"]) == "allpages"
  return o
end

local function next_link(o, taken, token)
  local q = {}
  if o.select then q[#q + 1] = "$select=" .. odata.escape_query(o.select) end
  if o.filter then q[#q + 1] = "$filter=" .. odata.escape_query(o.filter) end
  if o.top then q[#q + 1] = "$top=" .. (o.top - taken) end
  if o.count_all then q[#q + 1] = "$inlinecount=allpages" end
  q[#q + 1] = "$skiptoken=" .. token
  return base_url() .. ngx.var.uri .. "?" .. table.concat(q, "&")
end

local function mandatory_refusal(e, o)
  if not state:get("cfg:mandatory_filters") or not e.mandatory_set then return nil end
  for f in pairs(o.used or {}) do
    if e.mandatory_set[f] then return nil end
  end
  return "This endpoint has mandatory filtering applied. A GET request for this endpoint must have a $filter " ..
    "parameter with one of the following fields in the url:" .. e.mandatory .. "."
end

-- entity endpoints ------------------------------------------------------------------------------------

local function entity_uri(div, e, key)
  return base_url() .. "/api/v1/" .. div .. "/" .. e.path .. "(guid'" .. key .. "')"
end

local function nav_set(e)
  return e.navigation and set_of(e.navigation) or nil
end

--- regular and bulk lists: rows in index order, $skiptoken=guid'<key of the last row>'
local function list_regular(div, e, kind)
  local args = ngx.req.get_uri_args(100)
  local bulk = kind == "bulk"
  if bulk and type(first(args["$select"])) ~= "string" then
    return fail(400, "$select is mandatory for bulk endpoints: specify the properties to return.")
  end
  local o, err = options(args, e.fields, e.field_set, e.navigation)
  if not o then return fail(400, err) end
  local refusal = mandatory_refusal(e, o)
  if refusal then return fail(400, refusal) end
  local after = 0
  if o.skip then
    local g = o.skip:match("^guid'(.-)'$")
    after = g and change.index_of(div, e, g)
    if not after then return fail(400, "Invalid $skiptoken.") end
  end
  local page = bulk and 1000 or 60
  local limit = o.top and math.min(o.top, page) or page
  local nav = nav_set(e)
  local out, last, more, total = {}, nil, false, 0
  local n = change.count(div, e)
  for i = o.count_all and 1 or (after + 1), n do
    local row = change.row(div, e, i)
    if row and (not o.pred or o.pred(row)) then
      total = total + 1
      if i > after then
        if #out < limit then
          out[#out + 1] = project(row, o.fields, e.types, entity_uri(div, e, row[e.key]), e.type, nav)
          last = row[e.key]
        else
          more = true
          if not o.count_all then break end
        end
      end
    end
  end
  if o.top and o.top <= page then more = false end
  local next_url = (more and last) and next_link(o, #out, "guid'" .. last .. "'") or nil
  return reply_list(e.path:match("[^/]+$"), out, next_url, o.count_all and total or nil)
end

--- sync lists: rows in Timestamp order from `Timestamp gt N`, $skiptoken=<last Timestamp>L
local function list_sync(div, e)
  local args = ngx.req.get_uri_args(100)
  local o, err = options(args, e.sync_fields, e.sync_set)
  if not o then return fail(400, err) end
  local after = odata.lower_bound(o.filter, "Timestamp") or 0
  if o.skip then
    local t = tonumber(o.skip:match("^(%d+)[Ll]?$"))
    if not t then return fail(400, "Invalid $skiptoken.") end
    if t > after then after = t end
  end
  local limit = o.top and math.min(o.top, 1000) or 1000
  local rows, more = store.sync(div, e.store, after, limit, o.pred)
  local out = {}
  local prefix = base_url() .. "/api/v1/" .. div .. "/" .. e.sync .. "("
  for i, row in ipairs(rows) do
    out[i] = project(row, o.fields, e.sync_types, prefix .. fmt_ms(row.Timestamp) .. "L)", e.type)
  end
  if o.top and o.top <= 1000 then more = false end
  local next_url = (more and #rows > 0) and next_link(o, #out, fmt_ms(rows[#rows].Timestamp) .. "L") or nil
  return reply_list(e.sync:match("[^/]+$"), out, next_url)
end

local DELETED_TYPES = catalog.deleted_types

local function list_deleted(div)
  local args = ngx.req.get_uri_args(100)
  local names = catalog.deleted_fields
  local o, err = options(args, names, set_of(names))
  if not o then return fail(400, err) end
  local after = odata.lower_bound(o.filter, "Timestamp") or 0
  if o.skip then
    local t = tonumber(o.skip:match("^(%d+)[Ll]?$"))
    if not t then return fail(400, "Invalid $skiptoken.") end
    if t > after then after = t end
  end
  local limit = o.top and math.min(o.top, 1000) or 1000
  local rows, more = store.deleted(div, after, limit, o.pred)
  local out = {}
  local prefix = base_url() .. "/api/v1/" .. div .. "/sync/Deleted("
  for i, row in ipairs(rows) do
    out[i] = project(row, o.fields, DELETED_TYPES, prefix .. fmt_ms(row.Timestamp) .. "L)",
      "Exact.Web.Api.Models.Sync.Deleted")
  end
  if o.top and o.top <= 1000 then more = false end
  local next_url = (more and #rows > 0) and next_link(o, #out, fmt_ms(rows[#rows].Timestamp) .. "L") or nil
  return reply_list("Deleted", out, next_url)
end

-- read/sync/Sync/SyncTimestamp?modified=datetime'…'&endPoint='TransactionLines'
local function sync_timestamp(div)
  local args = ngx.req.get_uri_args(20)
  local modified, endpoint
  for k, v in pairs(args) do
    if k:lower() == "modified" then modified = first(v) end
    if k:lower() == "endpoint" then endpoint = first(v) end
  end
  if type(modified) ~= "string" or type(endpoint) ~= "string" then
    return fail(400, "For this function to work correctly, you must supply all parameters: modified, endPoint.")
  end
  local dt = modified:match("^datetime'(.-)'$") or modified
  local ms = odata.datetime_ms(dt)
  if not ms then return fail(400, "Invalid value for parameter modified: " .. modified) end
  local name = endpoint:match("^'(.-)'$") or endpoint
  local e
  for _, x in ipairs(catalog.entities) do
    if x.sync_endpoint and x.sync_endpoint:lower() == name:lower() then e = x end
  end
  if not e then return fail(400, "The endPoint value '" .. name .. "' is not supported.") end
  local ts = store.first_modified(div, e.store, ms)
  local row = { Modified = gen.date(ms), API = e.sync_endpoint, TimeStampAsBigInt = ts or null }
  local fields = { "Modified", "API", "TimeStampAsBigInt" }
  local o, err = options(args, fields, set_of(fields))
  if not o then return fail(400, err) end
  return reply_list("SyncTimestamp", { project(row, o.fields, { TimeStampAsBigInt = "Int64" },
    base_url() .. "/api/v1/" .. div .. "/read/sync/Sync/SyncTimestamp", "Exact.Web.Api.Models.Sync.SyncTimestamp") })
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

-- what a write may not set
local READ_ONLY = { ID = true, Division = true, Created = true, Creator = true, CreatorFullName = true,
                    Modified = true, Modifier = true, ModifierFullName = true, Timestamp = true, InvoiceID = true }

local function writable(e, obj)
  local out = {}
  for k, v in pairs(obj) do
    if not e.field_set[k] then
      return nil, "Property '" .. tostring(k) .. "' does not exist on type '" .. e.type .. "'."
    end
    if not READ_ONLY[k] then
      if k == "Code" and e.name == "accounts" then v = gen.pad_code(v) end
      out[k] = v
    end
  end
  return out
end

-- an account's Code must be unique; a new account without one gets the highest numeric code + 1.
-- Generated account i has code i: only changed rows need a look.
local function account_code(div, fields)
  local n = store.base("accounts")
  local changed = store.changed_indexes(div, "accounts")
  if fields.Code then
    local c = tonumber(fields.Code)
    local candidates = {}
    if c and c >= 1 and c <= n and c == math.floor(c) then candidates[1] = c end
    for i in pairs(changed) do candidates[#candidates + 1] = i end
    for _, i in ipairs(candidates) do
      local r = store.get(div, "accounts", i)
      if r and r.Code == fields.Code then
        return nil, "Code: the code '" .. fields.Code:match("^%s*(.-)$") .. "' already exists."
      end
    end
    return true
  end
  local max = n
  for i in pairs(changed) do
    local r = store.get(div, "accounts", i)
    if r then max = math.max(max, tonumber(r.Code) or 0) end
  end
  fields.Code = gen.pad_code(max + 1)
  return true
end

local function write(div, e, method, key)
  if not e.allowed[method] then return fail(405, "Method not allowed.") end
  if method == "POST" then
    if key then return fail(405, "Method not allowed.") end
    local obj, err = read_json_body()
    if not obj then return fail(400, err) end
    local fields, werr = writable(e, obj)
    if not fields then return fail(400, werr) end
    if e.name == "accounts" then
      if type(obj.Name) ~= "string" or obj.Name == "" then return fail(400, "Name: mandatory field.") end
      local ok, cerr = account_code(div, fields)
      if not ok then return fail(400, cerr) end
    end
    local made, cerr = change.create(div, e, 1, fields, app)
    if not made then return fail(400, cerr) end
    local row = made[1]
    local uri = entity_uri(div, e, row[e.key])
    return reply_entity(201, project(row, e.fields, e.types, uri, e.type, nav_set(e)), { Location = uri })
  end
  local i = key and change.index_of(div, e, key)
  if not i or not change.row(div, e, i) then return fail(404, "Not found.") end
  if method == "PUT" then
    local obj, err = read_json_body()
    if not obj then return fail(400, err) end
    local fields, werr = writable(e, obj)
    if not fields then return fail(400, werr) end
    local ok, uerr = change.update(div, e, { i }, fields, app)
    if not ok then return fail(400, uerr) end
    return send(204, "application/json; charset=utf-8", "")
  end
  local ok, derr = change.delete(div, e, { i }, app)
  if not ok then return fail(400, derr) end
  return send(204, "application/json; charset=utf-8", "")
end

local function entity(div, e, kind, method, key)
  if kind == "sync" then
    if method ~= "GET" then return fail(405, "Method not allowed.") end
    return list_sync(div, e)
  end
  if kind == "bulk" then
    if method ~= "GET" then return fail(405, "Method not allowed.") end
    return list_regular(div, e, "bulk")
  end
  if method == "GET" and not key then return list_regular(div, e, "regular") end
  if method == "GET" then
    local i = change.index_of(div, e, key)
    local row = i and change.row(div, e, i)
    if not row then return fail(404, "Not found.") end
    local args = ngx.req.get_uri_args(20)
    local o, err = options(args, e.fields, e.field_set, e.navigation)
    if not o then return fail(400, err) end
    return reply_entity(200, project(row, o.fields, e.types, entity_uri(div, e, row[e.key]), e.type, nav_set(e)))
  end
  return write(div, e, method, key)
end

-- system ------------------------------------------------------------------------------------------------

local function me(division)
  local fields = { "UserID", "UserName", "FullName", "FirstName", "LastName", "Email", "CurrentDivision",
                   "DivisionCustomer", "DivisionCustomerName", "Language", "LanguageCode" }
  local row = { UserID = gen.users[1][1], UserName = "sandbox@example.com",
                FullName = "Sandbox Gebruiker", FirstName = "Sandbox", LastName = "Gebruiker",
                Email = "sandbox@example.com", CurrentDivision = division,
                DivisionCustomer = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9", DivisionCustomerName = "Sandbox BV",
                Language = "NL-NL", LanguageCode = "nl-NL" }
  local o, err = options(ngx.req.get_uri_args(20), fields, set_of(fields))
  if not o then return fail(400, err) end
  return reply_list("Me", { project(row, o.fields, {}, base_url() .. "/api/v1/current/Me(guid'" .. row.UserID ..
    "')", "Exact.Web.Api.System.Me") })
end

local DIVISION_TYPES = catalog.division_types

function _M.division_row(d, i)
  return { Code = d, Description = store.division_name(d), Hid = i, Customer = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9",
           CustomerCode = "                 1", CustomerName = "Sandbox BV", Country = "NL", Currency = "EUR",
           Current = (d == app.settings.division), Started = nil, StartDate = "/Date(1577836800000)/",
           Status = 1, Legislation = "NL", BlockingStatus = 0, IsMainDivision = (i == 1),
           IsDossierDivision = false, IsHRDivision = false, IsPracticeDivision = false, TemplateCode = "1",
           City = "Delft", AddressLine1 = "Markt " .. i, Postcode = "2611 GP", VATNumber = "NL00000000" .. i .. "B01",
           Email = "administratie" .. i .. "@sandbox.example", Created = "/Date(1577836800000)/",
           Modified = "/Date(1577836800000)/", Creator = gen.users[1][1], CreatorFullName = gen.users[1][2],
           ShareCapital = 18000 }
end

local function divisions(division, which)
  local rows = {}
  for i, d in ipairs(store.divisions()) do rows[i] = _M.division_row(d, i) end
  local fields = catalog.division_fields
  local o, err = options(ngx.req.get_uri_args(50), fields, set_of(fields))
  if not o then return fail(400, err) end
  local out = {}
  for _, r in ipairs(rows) do
    if not o.pred or o.pred(r) then
      out[#out + 1] = project(r, o.fields, DIVISION_TYPES, base_url() .. "/api/v1/" .. division .. "/" .. which ..
        "(" .. r.Code .. ")", "Exact.Web.Api.Models.HRM.Division")
    end
  end
  return reply_list(which:match("[^/]+$"), out)
end

-- dispatch ------------------------------------------------------------------------------------------

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
  local f = app.take_fault("api")
  if f and app.serve_fault(f) then return end

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
    if not store.has_division(division) then return fail(403, "Forbidden - WrongDivision") end
    if not _M.rate_limit(tok.client_id, division) then return end
    return require("exactonline.sandbox.xml").handle(app, _M, division, lower, method, args)
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
    if not division or not store.has_division(division) then return fail(403, "Forbidden - WrongDivision") end
  end
  if not _M.rate_limit(tok.client_id, division) then return end

  if div == "current" then
    if method ~= "GET" then return fail(405, "Method not allowed.") end
    return me(division)
  end
  if lrest == "system/divisions" or lrest == "system/alldivisions" or lrest == "hrm/divisions" then
    if method ~= "GET" then return fail(405, "Method not allowed.") end
    return divisions(division, rest)
  end
  if lrest == "sync/deleted" then
    if method ~= "GET" then return fail(405, "Method not allowed.") end
    return list_deleted(division)
  end
  if lrest == "read/sync/sync/synctimestamp" then
    if method ~= "GET" then return fail(405, "Method not allowed.") end
    return sync_timestamp(division)
  end
  if lrest == "webhooks/webhooksubscriptions" or lrest:match("^webhooks/webhooksubscriptions%(") then
    return require("exactonline.sandbox.webhooks").handle(app, _M, division, method, rest, tok)
  end
  local path, key = lrest, nil
  local p, k = lrest:match("^(.-)%(guid'(%x+%-%x+%-%x+%-%x+%-%x+)'%)$")
  if p then path, key = p, k end
  local hit = catalog.by_path[path]
  if not hit or (key and hit.kind ~= "regular") then return fail(404, "Not found: " .. uri) end
  return entity(division, hit.entity, hit.kind, method, key)
end

return _M
