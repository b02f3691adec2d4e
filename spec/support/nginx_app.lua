-- luacheck: globals ngx
--- Handlers for the nginx under test (spec/support/nginx.lua): one exactonline client per worker, tokens in
-- the shared dict "exactonline" (written through to a file store when settings.write_through).
local exactonline = require "exactonline"
local cjson = require "cjson"

local ngx = ngx
local tostring, tonumber, type, dofile, package, assert, require, ipairs =
  tostring, tonumber, type, dofile, package, assert, require, ipairs

local _M = {}

local settings
local client

function _M.init(path)
  settings = dofile(path)
end

local function reply(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.print(type(body) == "string" and body or cjson.encode(body))
  return ngx.exit(status)
end

local function fail(err)
  return reply(502, { kind = err and err.kind, status = err and err.status, code = err and err.code,
    error = tostring(err), worker = ngx.worker.pid() })
end

local function get_client()
  if client then return client end
  local backing = settings.write_through and exactonline.file_store(settings.token_file) or nil
  local c, err = exactonline.new {
    client_id = settings.client_id, client_secret = settings.client_secret,
    redirect_uri = settings.redirect_uri, base_url = settings.base_url, division = settings.division,
    store = exactonline.shdict_store("exactonline", backing),
    timeout = 10, on_rate_limit = settings.on_rate_limit, retry_delay = settings.retry_delay,
    error_budget = settings.error_budget,
  }
  if not c then return nil, err end
  client = c
  return c
end

local routes = {}

function routes.ping()
  return reply(200, tostring(ngx.worker.pid()))
end

function routes.exchange()
  local c, err = get_client()
  if not c then return fail(err) end
  local tokens
  tokens, err = c:exchange(ngx.var.arg_code and ngx.unescape_uri(ngx.var.arg_code) or "")
  if not tokens then return fail(err) end
  return reply(200, { ok = true, expires_at = tokens.expires_at })
end

function routes.accounts()
  local c, err = get_client()
  if not c then return fail(err) end
  local rows
  rows, err = c:get("crm/Accounts", { ["$select"] = "ID,Name", ["$top"] = "5" })
  if not rows then return fail(err) end
  return reply(200, { count = #rows, first = rows[1] and rows[1].Name, worker = ngx.worker.pid() })
end

-- GET ?path= through the worker's client (the error budget specs: 404s, then its refusal)
function routes.get()
  local c, err = get_client()
  if not c then return fail(err) end
  local data
  data, err = c:get(ngx.unescape_uri(ngx.var.arg_path or ""))
  if data == nil then return fail(err) end
  return reply(200, { data = data, worker = ngx.worker.pid() })
end

function routes.me()
  local c, err = get_client()
  if not c then return fail(err) end
  local me
  me, err = c:get("/api/v1/current/Me")
  if not me then return fail(err) end
  local row = me[1] or me
  return reply(200, { division = row.CurrentDivision })
end

-- which transport modules this worker has loaded: the ngx one, and the curl one only if ever needed
function routes.transports()
  return reply(200, { ngx = package.loaded["exactonline.transport.ngx"] ~= nil, phase = ngx.get_phase() })
end

-- the shared-dict store's own rules, exercised inside nginx on a key of its own
function routes.store_rules()
  local store = require("exactonline.store.shdict").new { dict = "exactonline", key = "rules", lock_timeout = 0.2,
    lock_ttl = 5 }
  local out = {}
  out.empty = store.load() == nil
  assert(store.save({ access_token = "new", refresh_token = "r2", obtained_at = 2000, refresh_obtained_at = 2000 }))
  local ok, note = store.save({ access_token = "old", refresh_token = "r1", obtained_at = 1000,
    refresh_obtained_at = 1000 })
  out.older_save = { ok = ok, note = note }
  out.after_older = store.load().access_token
  -- a second light thread waits for the lock, times out with a clear error, and cannot unlock ours
  assert(store.lock())
  local th = ngx.thread.spawn(function()
    local t0 = ngx.now()
    local lok, lerr = store.lock()
    ngx.update_time()
    store.unlock() -- not its lock: must not release ours
    return lok, lerr and lerr.kind, lerr and lerr.code, tostring(lerr), ngx.now() - t0
  end)
  local _, lok, kind, code, msg, waited = ngx.thread.wait(th)
  out.second = { ok = lok or false, kind = kind, code = code, message = msg, waited = waited }
  out.still_held = ngx.shared.exactonline:get("exactonline:rules:lock") ~= nil
  store.unlock()
  out.released = ngx.shared.exactonline:get("exactonline:rules:lock") == nil
  -- after the release, another thread gets it at once
  th = ngx.thread.spawn(function()
    local got = store.lock()
    store.unlock()
    return got
  end)
  local _, again = ngx.thread.wait(th)
  out.again = again or false
  ngx.shared.exactonline:delete("exactonline:rules")
  -- a holder that never unlocks (a worker killed mid-refresh): its lock expires after lock_ttl, and a
  -- waiter gets it then, not before
  local dead = require("exactonline.store.shdict").new { dict = "exactonline", key = "expiry", lock_ttl = 0.3 }
  assert(dead.lock())
  local live = require("exactonline.store.shdict").new { dict = "exactonline", key = "expiry", lock_timeout = 3 }
  th = ngx.thread.spawn(function()
    ngx.update_time()
    local t0 = ngx.now()
    local got, lerr = live.lock()
    ngx.update_time()
    local took = ngx.now() - t0
    live.unlock()
    return got or false, tostring(lerr), took
  end)
  local _, got, lerr, took = ngx.thread.wait(th)
  out.expired = { ok = got, error = lerr, waited = took }
  return reply(200, out)
end

-- the stores' one "newer" rule, on the shared-dict store: each case (JSON in ?cases=) saves `held`, then
-- `offered`, under a key of its own, and reports what save said and what load gives
function routes.store_order()
  local cases = cjson.decode(ngx.unescape_uri(ngx.var.arg_cases or "[]"))
  local out = {}
  for i, c in ipairs(cases) do
    local store = require("exactonline.store.shdict").new { dict = "exactonline", key = "order" .. i }
    assert(store.save(c.held))
    local ok, note = store.save(c.offered)
    out[i] = { ok = ok, note = note or cjson.null, loaded = store.load() }
    ngx.shared.exactonline:delete("exactonline:order" .. i)
  end
  return reply(200, out)
end

-- count() on the shared-dict store: ?name=&window=&n= adds at ?now= (yielding between them, so requests
-- interleave), then one count at ?at= with ?add=; answers the count and the worker's pid
function routes.count()
  local store = require("exactonline.store.shdict").new { dict = "exactonline", key = ngx.var.arg_key or "counts" }
  local name, window, now = ngx.var.arg_name, tonumber(ngx.var.arg_window), tonumber(ngx.var.arg_now)
  for _ = 1, tonumber(ngx.var.arg_n) or 0 do
    assert(store.count(name, now, window, 1))
    ngx.sleep(0)
  end
  local n, oldest = store.count(name, tonumber(ngx.var.arg_at) or now, window, tonumber(ngx.var.arg_add) or 0)
  return reply(200, { n = n, oldest = oldest or cjson.null, worker = ngx.worker.pid() })
end

function _M.handle()
  local name = ngx.var.uri:match("^/([%w_]+)$")
  local route = name and routes[name]
  if not route then return reply(404, { error = "no route" }) end
  return route()
end

return _M
