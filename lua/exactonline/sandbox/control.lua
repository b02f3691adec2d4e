--- The /_sandbox/ control endpoints (tests only; app.lua checks the X-Sandbox-Token first): advance, config,
-- fault, stats, reset, change, entity, requests.
local ngx = ngx
local cjson = require "cjson.safe"
local catalog = require "exactonline.sandbox.catalog"
local store = require "exactonline.sandbox.store"
local change = require "exactonline.sandbox.change"
local faults = require "exactonline.sandbox.faults"
local math, table = math, table
local tostring, tonumber, type, ipairs, pairs = tostring, tonumber, type, ipairs, pairs

local _M = {}

local state = ngx.shared.eo_sandbox_state
local app -- exactonline.sandbox.app, set per call

local function json_reply(status, body) return app.json_reply(status, body) end

-- on/off switches of /_sandbox/config (1 or 0): how token answers and 429s look
local FLAGS = { "no429headers", "expires_in_number", "refresh_keeps", "mandatory_filters" }

local function stats()
  local out = {}
  for _, name in ipairs(app.STATS) do out[name] = app.stat_value(name) end
  out.clock = app.now()
  out.clock_offset = state:get("clock_offset") or 0
  local m, d, w = app.limits()
  out.limits = { minutely = m, daily = d, window = w }
  out.faults_pending = { api = faults.pending("api"), token = faults.pending("token") }
  local api_list, api_calls = faults.list("api")
  local token_list, token_calls = faults.list("token")
  out.faults = { api = api_list, token = token_list }
  out.calls = { api = api_calls, token = token_calls }
  out.options = { token_type = state:get("cfg:token_type") or "bearer" }
  for _, k in ipairs(FLAGS) do out.options[k] = state:get("cfg:" .. k) or false end
  -- what the last API and token requests looked like on the wire (headers, connection reuse)
  out.last_api_request = app.record("last:api")
  out.last_token_request = app.record("last:token")
  return out
end

function _M.handle(the_app, path)
  app = the_app
  local args = ngx.req.get_uri_args(50)
  for k, v in pairs(args) do
    if type(v) == "table" then args[k] = v[#v] end
  end
  local method = ngx.req.get_method()
  if path == "stats" then
    return json_reply(200, stats())
  elseif path == "entity" then
    return _M.entity(args)
  elseif path == "requests" then
    return _M.requests(args)
  end
  if method ~= "POST" then
    return json_reply(405, { error = "use POST" })
  end
  if path == "advance" then
    local s = tonumber(args.seconds)
    if not s then return json_reply(400, { error = "seconds required" }) end
    state:incr("clock_offset", s, 0)
    return json_reply(200, { clock = app.now() })
  elseif path == "config" then
    for _, k in ipairs{ "minutely", "daily", "window" } do
      if args[k] then
        local n = tonumber(args[k])
        if not n or n <= 0 then return json_reply(400, { error = k .. " must be a positive number" }) end
        state:set("cfg:" .. k, n)
      end
    end
    if args.webhook_delay then
      -- the first retry delay of a failed webhook delivery (then doubling, up to 10 tries)
      local n = tonumber(args.webhook_delay)
      if not n or n <= 0 then return json_reply(400, { error = "webhook_delay must be a positive number" }) end
      state:set("cfg:webhook_delay", n)
    end
    if args.clock_offset then
      -- the sandbox clock = real time + offset (seconds; negative: behind): its Date header, tokens, limits
      local n = tonumber(args.clock_offset)
      if not n then return json_reply(400, { error = "clock_offset must be a number of seconds" }) end
      state:set("clock_offset", n)
    end
    for _, k in ipairs(FLAGS) do
      local v = args[k]
      if v ~= nil then
        if v ~= "1" and v ~= "0" then return json_reply(400, { error = k .. " must be 1 or 0" }) end
        state:set("cfg:" .. k, v == "1" or nil)
      end
    end
    if args.token_type ~= nil then
      if type(args.token_type) ~= "string" or not args.token_type:match("^%a+$") then
        return json_reply(400, { error = "token_type must be a word" })
      end
      state:set("cfg:token_type", args.token_type)
    end
    return json_reply(200, stats().limits)
  elseif path == "fault" then
    local scope, f = faults.from_args(args)
    if not scope then return json_reply(400, { error = f }) end
    local list = faults.add(scope, f)
    return json_reply(200, { kind = f.kind, scope = scope, count = f.count, after = f.after, scheduled = list })
  elseif path == "reset" then
    -- calls still in flight count in the era they came in, not in the one this reset starts
    app.new_era()
    state:flush_all()
    if args.data == "1" then store.reset_data() end
    return json_reply(200, { reset = true, data = args.data == "1" })
  elseif path == "change" then
    return _M.change(args)
  end
  return json_reply(404, { error = "unknown control endpoint" })
end

-- /_sandbox/change and /_sandbox/entity ---------------------------------------------------------------

local function control_entity(args)
  local div = tonumber(args.division) or app.settings.division
  if not store.has_division(div) then return nil, nil, "unknown division " .. tostring(args.division) end
  local e = catalog.by_name[type(args.entity) == "string" and args.entity:lower() or ""]
  if not e then
    local names = {}
    for _, x in ipairs(catalog.entities) do names[#names + 1] = x.name end
    return nil, nil, "entity must be one of " .. table.concat(names, ", ")
  end
  return div, e
end

local function keys_of(e, rows)
  local out = {}
  for i, r in ipairs(rows) do out[i] = r[e.key] end
  return out
end

--- POST /_sandbox/change?division=D&entity=E&create=N&update=N&delete=N[&keys=K1,K2] (body: fields to set)
function _M.change(args)
  local div, e, err = control_entity(args)
  if not div then return json_reply(400, { error = err }) end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  local fields
  if body and body ~= "" then
    fields = cjson.decode(body)
    if type(fields) ~= "table" then return json_reply(400, { error = "the body must be a JSON object of fields" }) end
  end
  local counts = {}
  for _, k in ipairs{ "create", "update", "delete" } do
    counts[k] = tonumber(args[k] or 0)
    if not counts[k] or counts[k] < 0 or counts[k] ~= math.floor(counts[k]) then
      return json_reply(400, { error = k .. " must be a whole number" })
    end
  end
  local targets
  if type(args.keys) == "string" and args.keys ~= "" then
    targets = {}
    for k in args.keys:gmatch("[^,]+") do
      local i = change.index_of(div, e, k)
      if not i or not change.row(div, e, i) then return json_reply(404, { error = "no row with key " .. k }) end
      targets[#targets + 1] = i
    end
  end
  local out = { division = div, entity = e.name, created = {}, updated = {}, deleted = {} }
  if counts.create > 0 then
    local rows, cerr = change.create(div, e, counts.create, fields, app)
    if not rows then return json_reply(400, { error = cerr }) end
    out.created = keys_of(e, rows)
  end
  if counts.update > 0 or (targets and args.delete == nil and counts.create == 0) then
    local rows, uerr = change.update(div, e, targets or change.pick(div, e, counts.update, "update"), fields, app)
    if not rows then return json_reply(400, { error = uerr }) end
    out.updated = keys_of(e, rows)
  end
  if counts.delete > 0 or (targets and args.delete ~= nil) then
    local rows, derr = change.delete(div, e, targets or change.pick(div, e, counts.delete, "delete"), app)
    if not rows then return json_reply(400, { error = derr }) end
    out.deleted = keys_of(e, rows)
  end
  out.timestamp = store.last_timestamp(div)
  return json_reply(200, out)
end

--- GET /_sandbox/entity?division=D&entity=E[&view=regular|sync]: every live row, to compare a replica with
function _M.entity(args)
  local div, e, err = control_entity(args)
  if not div then return json_reply(400, { error = err }) end
  local view = args.view or (e.sync and "sync" or "regular")
  local api = require "exactonline.sandbox.api"
  local rows = {}
  if view == "sync" then
    if not e.sync then return json_reply(400, { error = e.name .. " has no sync endpoint" }) end
    local all = store.sync(div, e.store, 0, math.huge)
    for i, r in ipairs(all) do rows[i] = api.project(r, e.sync_fields, e.sync_types, "", e.type) end
  elseif view == "regular" then
    if not e.path then return json_reply(400, { error = e.name .. " has no regular endpoint" }) end
    for i = 1, change.count(div, e) do
      local r = change.row(div, e, i)
      if r then rows[#rows + 1] = api.project(r, e.fields, e.types, "", e.type) end
    end
  else
    return json_reply(400, { error = "view must be regular or sync" })
  end
  for _, r in ipairs(rows) do r.__metadata = nil end
  return json_reply(200, { division = div, entity = e.name, view = view, count = #rows, rows = rows,
                           timestamp = store.last_timestamp(div) })
end


function _M.requests(args)
  local since = tonumber(args.since) or 0
  local limit = math.min(tonumber(args.limit) or 5000, app.LOG_KEEP)
  local era = app.era()
  local last = state:get("reqlog:" .. era .. ":n") or 0
  local out = {}
  for n = math.max(since + 1, last - app.LOG_KEEP + 1), last do
    local raw = state:get("reqlog:" .. era .. ":" .. n)
    if raw then out[#out + 1] = cjson.decode(raw) end
    if #out >= limit then break end
  end
  local obj = { last = last, requests = out }
  -- lua-cjson 2.1.0 has no empty-array marker: say it in the text
  local text = cjson.encode(obj)
  if #out == 0 then text = text:gsub('"requests":{}', '"requests":[]') end
  return json_reply(200, text)
end

return _M
