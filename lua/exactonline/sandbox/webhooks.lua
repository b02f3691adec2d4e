--- Webhooks as Exact sends them: `webhooks/WebhookSubscriptions` (POST {CallbackURL, Topic}: first an empty
-- POST to the callback, which must answer 2xx; GET lists, DELETE by key), then on every change of a subscribed
-- topic a POST of `{"Content":{…},"HashCode":"<HEX>"}`, HashCode = HMAC-SHA256 of the Content bytes keyed with
-- the app's webhook secret, uppercase hex; up to 10 tries with growing delays. Callbacks must be on this
-- machine (a loopback address): the sandbox sends nothing elsewhere.
local ngx = ngx
local cjson = require "cjson.safe"
local ffi = require "ffi"
local gen = require "exactonline.sandbox.gen"
local string, table, math, os = string, table, math, os
local tostring, tonumber, type, ipairs, pairs = tostring, tonumber, type, ipairs, pairs

local _M = {}

local state = ngx.shared.eo_sandbox_state

-- the entities Exact has webhook topics for, and the topic's name
_M.TOPICS = { accounts = "Accounts", contacts = "Contacts", glaccounts = "GLAccounts", items = "Items",
              projects = "Projects", salesinvoices = "SalesInvoices", transactionlines = "FinancialTransactions" }

-- libcrypto is already in nginx's process (its TLS): HMAC-SHA256 without a Lua binding
ffi.cdef [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len, const unsigned char *d, size_t n,
                    unsigned char *md, unsigned int *md_len);
]]

function _M.hmac_hex(key, data)
  local out = ffi.new("unsigned char[32]")
  local len = ffi.new("unsigned int[1]")
  ffi.C.HMAC(ffi.C.EVP_sha256(), key, #key, data, #data, out, len)
  return (ffi.string(out, len[0]):gsub(".", function(c) return string.format("%02X", c:byte()) end))
end

local function subscriptions()
  return cjson.decode(state:get("webhooks") or "[]") or {}
end

local function save(list)
  local text = cjson.encode(list)
  if #list == 0 then text = "[]" end
  state:set("webhooks", text)
end

local function loopback(host)
  return host == "localhost" or host == "::1" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

--- parse(url) --> { scheme, host, port, path } | nil, err
local function parse(url)
  if type(url) ~= "string" then return nil, "CallbackURL: mandatory field." end
  local scheme, host, port, path = url:match("^(https?)://%[?([%w%.%-:]-)%]?:?(%d*)(/[^%s]*)$")
  if not scheme then
    scheme, host, port = url:match("^(https?)://%[?([%w%.%-:]-)%]?:?(%d*)$")
    path = "/"
  end
  if not scheme then return nil, "CallbackURL is not a valid URL: " .. url end
  if not loopback(host:lower()) then
    return nil, "CallbackURL must be on this machine (localhost, 127.0.0.1 or [::1]): the sandbox calls " ..
      "nothing else"
  end
  return { scheme = scheme, host = host, port = tonumber(port) or (scheme == "https" and 443 or 80), path = path }
end

--- post(target, body) --> status | nil, err: one HTTP/1.1 POST over a cosocket
local function post(target, body)
  local sock = ngx.socket.tcp()
  sock:settimeout(5000)
  local ok, err = sock:connect(target.host == "localhost" and "127.0.0.1" or target.host, target.port)
  if not ok then return nil, err end
  if target.scheme == "https" then
    ok, err = sock:sslhandshake(nil, target.host, true)
    if not ok then sock:close() return nil, err end
  end
  local req = "POST " .. target.path .. " HTTP/1.1\r\nHost: " .. target.host .. ":" .. target.port ..
    "\r\nContent-Type: application/json\r\nContent-Length: " .. #body .. "\r\nConnection: close\r\n\r\n" .. body
  ok, err = sock:send(req)
  if not ok then sock:close() return nil, err end
  local line
  line, err = sock:receive("*l")
  sock:close()
  if not line then return nil, err end
  return tonumber(line:match("^HTTP/%d%.%d (%d%d%d)"))
end

-- a delivery and its retries belong to the era of the change (app.era): a reset drops those still to come
local function deliver(premature, app, era, target, body, attempt)
  if premature or app.era() ~= era then return end
  local status = post(target, body)
  if status and status >= 200 and status < 300 then
    app.stat("webhook_deliveries", 1, era)
    return
  end
  app.stat("webhook_failures", 1, era)
  if attempt < 10 then
    local base = tonumber(state:get("cfg:webhook_delay")) or 1
    ngx.timer.at(base * 2 ^ (attempt - 1), deliver, app, era, target, body, attempt + 1)
  end
end

--- notify(app, api, div, e, rows, action): a delivery per subscription of the entity's topic in div
function _M.notify(app, api, div, e, rows, action)
  local topic = _M.TOPICS[e.name]
  if not topic then return end
  local subs = subscriptions()
  if #subs == 0 then return end
  for _, s in ipairs(subs) do
    if s.Division == div and s.Topic == topic then
      local target = parse(s.CallbackURL)
      local app_rec = app.apps[s.ClientID]
      if target and app_rec then
        for _, row in ipairs(rows) do
          local key = e.name == "transactionlines" and row.EntryID or row[e.key]
          local now = app.now()
          local content = cjson.encode{
            Topic = topic, ClientId = s.ClientID, Division = div, Action = action, Key = key,
            ExactOnlineEndpoint = api.base_url() .. "/api/v1/" .. div .. "/" .. e.path .. "(guid'" .. key .. "')",
            EventCreatedOn = os.date("!%Y-%m-%dT%H:%M:%S", math.floor(now)) ..
              string.format(".%03d", math.floor(now * 1000) % 1000),
          }
          local body = '{"Content":' .. content .. ',"HashCode":"' ..
            _M.hmac_hex(app_rec.webhook_secret, content) .. '"}'
          ngx.timer.at(0, deliver, app, app.call_era(), target, body, 1)
        end
      end
    end
  end
end

--- webhooks/WebhookSubscriptions[(guid'…')]: GET, POST, DELETE
function _M.handle(app, api, division, method, rest, tok)
  local key = rest:match("%(guid'(%x+%-%x+%-%x+%-%x+%-%x+)'%)$")
  local fields = { "ID", "CallbackURL", "ClientID", "Created", "Creator", "CreatorFullName", "Description",
                   "Division", "IsInstant", "Topic", "UserID" }
  local types = { IsInstant = "Boolean", Division = "Int32" }
  local function uri(id)
    return api.base_url() .. "/api/v1/" .. division .. "/webhooks/WebhookSubscriptions(guid'" .. id .. "')"
  end
  local etype = "Exact.Web.Api.Models.Webhooks.WebhookSubscription"
  local list = subscriptions()
  if method == "GET" then
    local out = {}
    for _, s in ipairs(list) do
      if s.Division == division and s.ClientID == tok.client_id and (not key or s.ID == key) then
        out[#out + 1] = cjson.encode(api.project(s, fields, types, uri(s.ID), etype))
      end
    end
    return api.send(200, "application/json; charset=utf-8", '{"d":{"results":[' .. table.concat(out, ",") .. "]}}")
  elseif method == "POST" and not key then
    ngx.req.read_body()
    local obj = cjson.decode(ngx.req.get_body_data() or "")
    if type(obj) ~= "table" then return api.fail(400, "The request body is not valid JSON.") end
    local target, err = parse(obj.CallbackURL)
    if not target then return api.fail(400, err) end
    local topic
    for _, t in pairs(_M.TOPICS) do
      if type(obj.Topic) == "string" and t:lower() == obj.Topic:lower() then topic = t end
    end
    if not topic then return api.fail(400, "Topic: '" .. tostring(obj.Topic) .. "' is not a webhook topic.") end
    for _, s in ipairs(list) do
      if s.Division == division and s.ClientID == tok.client_id and s.Topic == topic and
         s.CallbackURL == obj.CallbackURL then
        return api.fail(400, "A subscription for this topic and callback URL already exists.")
      end
    end
    -- Exact first posts an empty body to the callback: it must answer 2xx
    local status, perr = post(target, "")
    if not status or status < 200 or status >= 300 then
      return api.fail(400, "The callback URL could not be validated: " .. tostring(status or perr))
    end
    if app.forgotten() then return ngx.exit(444) end -- a reset came while the callback answered
    local n = state:incr("webhook_seq", 1, 0)
    local s = { ID = gen.guid("webhooks", division, n), CallbackURL = obj.CallbackURL, Topic = topic,
                Division = division, ClientID = tok.client_id, UserID = gen.users[1][1],
                Creator = gen.users[1][1], CreatorFullName = gen.users[1][2],
                Created = gen.date(math.floor(app.now() * 1000)), IsInstant = false,
                Description = type(obj.Description) == "string" and obj.Description or nil }
    list[#list + 1] = s
    save(list)
    app.stat("webhook_subscriptions")
    ngx.header["Location"] = uri(s.ID)
    return api.send(201, "application/json; charset=utf-8", cjson.encode{ d = api.project(s, fields, types,
      uri(s.ID), etype) })
  elseif method == "DELETE" and key then
    for i, s in ipairs(list) do
      if s.ID == key and s.ClientID == tok.client_id then
        table.remove(list, i)
        save(list)
        return api.send(204, "application/json; charset=utf-8", "")
      end
    end
    return api.fail(404, "Not found.")
  end
  return api.fail(405, "Method not allowed.")
end

return _M
