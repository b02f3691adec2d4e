--- exactonline.client: the object a user holds.
-- A Lua object whose metatable has exactly the documented methods (README "API"). Its C half, the
-- exactonline.Client userdata (csrc/client.c), is private to it (self._handle): it holds the secrets
-- and decides and parses (URLs and their origin, headers, token and API answers, rate-limit waits).
-- This side drives: stores, the transport, single-flight refresh, the 401 retry, rate-limit sleeps
-- and the pagination iterators. Nothing here is called from C, so it may yield (OpenResty).
-- One request attempt: handle:prepare (C: the request and the wait) -> transport:request -> handle:absorb.
local core = require "exactonline.core"
local memory_store = require "exactonline.store.memory"
local store_contract = require "exactonline.store.contract"
local curl_transport = require "exactonline.transport.curl"
local retry = require "exactonline.retry"
local exact_clock = require "exactonline.clock"
local budget = require "exactonline.budget"

local type, pairs, pcall, error, tostring, tonumber, setmetatable, require =
  type, pairs, pcall, error, tostring, tonumber, setmetatable, require
local os_date = os.date
local io_stderr = io.stderr
local string_format = string.format
local math_ceil, math_floor, math_min = math.ceil, math.floor, math.min
local ngx = rawget(_G, "ngx")

local _M = {}

local methods = {} -- the documented methods, and nothing else
local Client = { __index = methods, __name = "exactonline.Client" }
local warned_default = false -- the default warning prints once per process

local WARN_DAYS = 7
local REPLACE = { replace = true } -- store.save's option for a chain a person just authorized

-- The C handle of a client that is open; raises at the caller's line otherwise.
local function live(self)
  local h = type(self) == "table" and self._handle
  if not h then error("exactonline: this client was not made by exactonline.new", 3) end
  if self._closed then error("attempt to use a closed exactonline client", 3) end
  return h
end

-- Our clock's reading, checked before anything decides on it (a NaN would pass every comparison silently).
local function local_now(self)
  return exact_clock.check(self._now())
end

-- Exact's clock, at the earliest it can read now: what rate-limit resets and token times are compared with
local function exact_now(self)
  return self._clock:lower(local_now(self))
end

-- An answer to a call sent at `sent` (before its first try): its Date tells how far Exact's clock is from ours.
local function learn(self, resp, sent)
  if resp then
    self._clock:learn(type(resp.headers) == "table" and resp.headers.date or nil, sent, local_now(self))
  end
end

-- When a token answer just received was issued, on Exact's clock at the latest (the 570 s rule counts from
-- there, so a refresh is never sent too early).
local function issued_now(self)
  return self._clock:upper(local_now(self))
end

local function store_error(what, e)
  if core.is_error(e) then return e end
  return core.error {
    kind = "store", code = what,
    message = "the token store's " .. what .. "() failed: " .. tostring(e),
    hint = "check the token store (path, permissions, database); the tokens in memory are kept",
  }
end

-- ---- store callbacks, each under pcall ----

local function store_load(self) --> tokens | false | nil, err
  local ok, t, err = pcall(self._store.load)
  if not ok then return nil, store_error("load", t) end
  if t == nil and err ~= nil then return nil, store_error("load", err) end
  if t ~= nil and type(t) ~= "table" then return nil, store_error("load", "it returned a " .. type(t)) end
  return t or false
end

local function store_save(self, tokens, opts) --> true | nil, err
  local ok, r, err = pcall(self._store.save, tokens, opts)
  if not ok then return nil, store_error("save", r) end
  if not r then return nil, store_error("save", err or "it returned nothing") end
  self._unsaved = nil
  return true
end

-- Run fn(...) between store.lock() and store.unlock(); the unlock happens on every path.
local function locked(self, fn, ...)
  local store = self._store
  if store.lock then
    local ok, r, err = pcall(store.lock)
    if not ok then
      -- a lock() that took the lock and then raised must not leave it held
      if store.unlock then pcall(store.unlock) end
      return nil, store_error("lock", r)
    end
    if not r then return nil, store_error("lock", err or "the lock was refused") end
  end
  local ok, a, b = pcall(fn, ...)
  if store.unlock then
    local uok, uerr = pcall(store.unlock)
    if ok and a and not uok then return nil, store_error("unlock", uerr) end
  end
  if not ok then error(a, 0) end
  return a, b
end

-- The tokens changed (adopted, refreshed, exchanged): when does the refresh token die? For warn().
local function tokens_changed(self)
  self._refresh_expires_at = self._handle:token_info().refresh_expires_at
end

local function adopt(self, t)
  local ok, err = pcall(self._handle.set_tokens, self._handle, t)
  if not ok then return nil, store_error("load", err) end
  tokens_changed(self)
  return true
end

-- Is the stored pair newer than the one we hold? (another process refreshed)
local function newer(stored, cur)
  if type(stored) ~= "table" or type(stored.access_token) ~= "string" then return false end
  if not cur then return true end
  if stored.access_token == cur.access_token then return false end
  return not store_contract.newer(cur, stored) -- the stores' one rule; a tie goes to the store (saved last)
end

-- A week before the refresh token dies, say so once (on_warning, or stderr once per process).
local function warn(self, now)
  local rexp = self._refresh_expires_at
  if self._warned or not rexp then return end
  local left = rexp - now
  if left >= WARN_DAYS * 86400 or left ~= left then return end -- a week or more left, or a NaN clock
  self._warned = true
  local msg
  if left <= 0 then
    msg = "the refresh token expired at " .. os_date("!%Y-%m-%d %H:%M UTC", math_ceil(rexp)) ..
      ": a person must authorize again (exactonline auth)"
  else
    msg = string_format("the refresh token expires in %.1f days (%s): use the client before then, or "
      .. "authorize again (exactonline auth)", left / 86400, os_date("!%Y-%m-%d %H:%M UTC", math_ceil(rexp)))
  end
  if self._on_warning then
    pcall(self._on_warning, msg)
  elseif not warned_default then
    warned_default = true
    io_stderr:write("exactonline: warning: ", msg, "\n")
  end
end

-- ---- refresh: lock -> load -> adopt a newer pair, or token call -> save -> unlock ----

local function too_early(allowed_at, now)
  return core.error {
    kind = "oauth", code = "too_early",
    message = string_format("a refresh is allowed from %s (in %d s): Exact refuses a refresh sooner than "
      .. "570 s after the last token request", os_date("!%Y-%m-%d %H:%M:%S UTC", math_ceil(allowed_at)),
      math_ceil(math_min(allowed_at - now, 570))),
    hint = "keep using the current access token; the client refreshes by itself in its last 30 seconds",
    -- never more than 570 s: Exact issued the token by now, whatever the resolution of its Date
    allowed_at = allowed_at, retry_after = math_min(allowed_at - now, 570),
  }
end

-- why: "explicit" (client:refresh()), "due" (last 30 s), "401" (failed: the token the API refused)
local function refresh_under_lock(self, why, failed)
  local h = self._handle
  local stored, err = store_load(self)
  if stored == nil then return nil, err end
  if stored and newer(stored, h:tokens()) then
    local ok, aerr = adopt(self, stored)
    if not ok then return nil, aerr end
    return h:tokens()
  end
  if why == "401" and failed and not h:holds(failed) then
    return h:tokens() -- this process has moved on already
  end
  local held = h:tokens() or {}
  -- Exact blocks apps that pile up errors: a refresh token Exact refused is never sent again
  if self._dead and self._dead.refresh_token == held.refresh_token then return nil, self._dead.err end
  local now = exact_now(self)
  if why == "explicit" then
    local allowed, at = h:refresh_allowed(now)
    if not allowed then return nil, too_early(at, now) end
  elseif why == "due" and not h:refresh_due(now) then -- C says no once Exact's clock refused one
    return h:tokens()
  end
  local req, rerr = h:token_request("refresh")
  if not req then return nil, rerr end
  local sent = local_now(self)
  local resp, terr = retry.perform(self, req, "refresh")
  learn(self, resp, sent)
  if not resp then return nil, terr end
  local tokens, aerr, salvage = h:absorb_token(resp, issued_now(self))
  if not tokens then
    if salvage then
      tokens_changed(self)
      local ok, serr = store_save(self, salvage) -- a refresh token in an error answer is kept too
      if not ok then aerr.store_error = tostring(serr) end
    elseif aerr.status and aerr.status >= 400 and aerr.status < 500 and aerr.code ~= "access_denied" then
      self._dead = { refresh_token = held.refresh_token, err = aerr } -- reused, expired, or a wrong app
    end
    return nil, aerr
  end
  tokens_changed(self)
  -- saved before the new access token is used; on failure it stays in memory and is saved again first
  local ok, serr = store_save(self, tokens)
  if not ok then
    self._unsaved = true
    return nil, serr
  end
  self._warned = nil
  return tokens
end

-- No access token held: the store's pair, or a refresh of a lone refresh token.
local function obtain(self)
  local h = self._handle
  local stored, err = store_load(self)
  if stored == nil then return nil, err end
  if stored then
    local ok, aerr = adopt(self, stored)
    if not ok then return nil, aerr end
  end
  local info = h:token_info()
  if not info.has_access_token and info.has_refresh_token then
    -- a refresh token alone (saved from an error answer, or brought from another client): refresh now
    return locked(self, refresh_under_lock, self, "explicit")
  elseif not info.has_access_token then
    return nil, core.error {
      kind = "oauth", code = "not_authorized", message = "there are no tokens yet",
      hint = "authorize first: run `exactonline auth`, or client:exchange(code)",
    }
  end
  return true
end

-- What prepare asked for before it can build the request: tokens, a due refresh, the division.
local function provide(self, what)
  if what == "tokens" then return obtain(self) end
  if what == "division" then return self:division() end
  local t, err = locked(self, refresh_under_lock, self, "due")
  -- Exact's clock rules: a refused early refresh is not fatal, the 401 path decides
  if not t and not (err.status == 400 and err.code == "access_denied") then return nil, err end
  return true
end

--- client:request(method, path, { query, body, headers, raw }) --> { status, headers, body, data } | nil, err
-- raw = true: whatever Exact answered last (any status; body not decoded), after the client's own 401 refresh
-- and 429 wait; only failures before or without an answer are errors (the gateway passes answers through)
function methods:request(method, path, opts)
  local h = live(self)
  if type(method) ~= "string" then error("bad argument #1 to 'request' (method string expected)", 2) end
  if type(path) ~= "string" then error("bad argument #2 to 'request' (path string expected)", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("bad argument #3 to 'request' (table expected)", 2) end
  method = method:upper()
  local refreshed, waited, skip_due, provided = false, false, false, nil
  local raw = opts and opts.raw
  local accept = opts and opts.headers and (opts.headers.Accept or opts.headers.accept)
  local expect_json = accept == nil or tostring(accept):find("json", 1, true) ~= nil
  local tries = retry.start(self, method, path)
  while true do
    local sent = local_now(self)
    local now = self._clock:lower(sent) -- Exact's clock: the resets and token times are on it
    local req, wait = h:prepare(method, path, opts, now, skip_due)
    if req == false then -- wait names what is missing: provide it once, then ask again
      provided = provided or {} -- rare: no table for the common request
      if provided[wait] then
        return nil, core.error { kind = "oauth", code = "not_authorized", message = "there are no usable tokens",
          hint = "authorize first: run `exactonline auth`, or client:exchange(code)" }
      end
      provided[wait] = true
      skip_due = skip_due or wait == "refresh"
      local ok, err = provide(self, wait)
      if not ok then return nil, err end
    elseif not req then
      return nil, wait
    else
      skip_due = true -- a retry (after a 401 refresh or a 429 wait) does not refresh proactively again
      if self._unsaved then
        local ok, err = store_save(self, h:tokens(), self._unsaved == REPLACE and REPLACE or nil)
        if not ok then return nil, err end
      end
      warn(self, now)
      if wait > 0 then
        self._sleep(wait)
        sent = local_now(self)
      end
      local used = req.headers.Authorization:sub(8)
      local resp, aerr = budget.send(self, req) -- within the error budget
      learn(self, resp, sent)
      local status = resp and resp.status
      if raw and resp and not (status == 401 and not refreshed or status == 429 and not waited) then
        h:absorb(resp, "raw") -- the rate-limit headers only
        if not retry.retryable_status(status) then return resp end
        aerr = nil -- a GET is tried again; anything else passes through as Exact sent it
      elseif resp then
        local res
        res, aerr = h:absorb(resp, expect_json)
        if res then return res end
      end
      if aerr and aerr.status == 401 and not refreshed then
        -- the server's 401 rules over our clock: refresh once (or adopt a newer stored pair), retry once
        refreshed = true
        local t, rerr = locked(self, refresh_under_lock, self, "401", used)
        if not t then
          -- refused as too early: Exact says the token is live, so the 401 was passing; a try like the others
          local again, ferr = false, rerr
          if rerr.code == "access_denied" then again, ferr = tries:again(rerr, resp, req) end
          if not again then return nil, ferr end
        end
      elseif aerr and aerr.status == 429 and not waited then
        waited = true
        local secs, e2 = h:rate_wait(exact_now(self), true)
        if not secs then return nil, e2 end
        self._sleep(secs)
      else
        -- no answer, a 5xx or 408, an unreadable 2xx: tried again when that is safe (exactonline.retry)
        local again, ferr = tries:again(aerr, resp, req)
        if not again then
          if raw and resp then return resp end
          return nil, ferr
        end
      end
    end
  end
end

local function unwrap(res)
  local data = res.data
  if data == nil then return true end
  if type(data) == "table" and type(data.d) == "table" then
    if data.d.results ~= nil then return data.d.results end
    return data.d
  end
  return data
end

--- client:get(path, query) --> d.results or d | nil, err
function methods:get(path, query)
  local res, err = self:request("GET", path, { query = query })
  if not res then return nil, err end
  return unwrap(res)
end

--- client:post(path, body) --> the answer's data (d), or true for an empty answer | nil, err
function methods:post(path, body, headers)
  local res, err = self:request("POST", path, { body = body, headers = headers })
  if not res then return nil, err end
  return unwrap(res)
end

function methods:put(path, body, headers)
  local res, err = self:request("PUT", path, { body = body, headers = headers })
  if not res then return nil, err end
  return unwrap(res)
end

function methods:delete(path)
  local res, err = self:request("DELETE", path)
  if not res then return nil, err end
  return unwrap(res)
end

-- A listing (__next links, XML TSPaging) ends with an error instead of looping forever when the server
-- sends a link it sent before, or passes config.max_pages pages.
local function paging_guard(max_pages, what)
  local seen, pages = {}, 1
  return function(link) --> true | nil, err
    if seen[link] then
      return nil, core.error { kind = "api", code = "page_loop",
        message = string_format("Exact Online sent a %s this listing followed already (after page %d): it "
          .. "would loop forever", what, pages),
        hint = "the listing was stopped; try again later, narrow the query ($filter), or report the endpoint" }
    end
    if pages >= max_pages then
      return nil, core.error { kind = "api", code = "max_pages",
        message = string_format("the listing passed config.max_pages (%d pages)", max_pages),
        hint = "raise config.max_pages if the data really is that large, or narrow the query ($filter)" }
    end
    seen[link] = true
    pages = pages + 1
    return true
  end
end

--- for rows, next_link in client:pages(path, query) do … end: one page (array of rows) at a time, following
-- __next (next_link: the page after this one, nil on the last; pages(next_link) continues from there);
-- raises the error object when a page fails.
function methods:pages(path, query)
  local nxt, q = path, query
  local guard = paging_guard(live(self):options().max_pages, "__next link")
  local stop -- a link refused by the guard: raised when the page after the last good one is asked for
  return function()
    if stop then
      local e = stop
      stop = nil
      error(e, 0)
    end
    if not nxt then return nil end
    local res, err = self:request("GET", nxt, { query = q })
    if not res then
      nxt = nil
      error(err, 0)
    end
    q = nil
    nxt = nil
    local d = type(res.data) == "table" and res.data.d
    if type(d) ~= "table" then return {} end
    if type(d.__next) == "string" and d.__next ~= "" then
      local ok, gerr = guard(d.__next)
      if ok then nxt = d.__next else stop = gerr end
    end
    if d.results == nil then return { d }, nxt end
    return d.results, nxt
  end
end

--- for row in client:each(path, query) do … end: rows across all pages, one page in memory.
function methods:each(path, query)
  local pages = self:pages(path, query)
  local rows, i = nil, 0
  return function()
    while true do
      if rows then
        i = i + 1
        local row = rows[i]
        if row ~= nil then return row end
      end
      rows, i = pages(), 0
      if not rows then return nil end
    end
  end
end

--- client:division() --> the current division (config.division, else /api/v1/current/Me, once)
function methods:division()
  local h = live(self)
  local d = h:division_id()
  if d then return d end
  local res, err = self:request("GET", "/api/v1/current/Me")
  if not res then return nil, err end
  local data = type(res.data) == "table" and res.data.d
  local row = type(data) == "table" and (type(data.results) == "table" and data.results[1] or data)
  local cur = type(row) == "table" and tonumber(row.CurrentDivision)
  if not cur or cur < 1 or cur > 2 ^ 53 or cur ~= math_floor(cur) then
    return nil, core.error { kind = "decode", status = res.status,
      message = "/api/v1/current/Me carries no CurrentDivision (a positive whole number)",
      hint = "give config.division" }
  end
  return h:division_id(math_floor(cur))
end

--- client:divisions() --> every division the user can reach (system/Divisions) | nil, err
function methods:divisions()
  local list = {}
  local ok, err = pcall(function()
    for row in self:each("system/Divisions") do list[#list + 1] = row end
  end)
  if not ok then return nil, err end
  return list
end

--- client:authorization_url{ state, force_login } --> the URL of Exact's login and consent page
function methods:authorization_url(opts)
  return live(self):authorization_url(opts)
end

--- client:exchange(code_or_redirect_url, expected_state) --> tokens | nil, err
function methods:exchange(input, expected_state)
  local h = live(self)
  if type(input) ~= "string" then error("bad argument #1 to 'exchange' (code or redirect URL expected)", 2) end
  if expected_state ~= nil and type(expected_state) ~= "string" then
    error("bad argument #2 to 'exchange' (state string expected)", 2)
  end
  local code, err = h:code_from(input, expected_state)
  if not code then return nil, err end
  local req, rerr = h:token_request("authorization_code", code)
  if not req then return nil, rerr end
  local sent = local_now(self)
  local resp, terr = retry.perform(self, req, "exchange")
  learn(self, resp, sent)
  if not resp then return nil, terr end
  local tokens, aerr, salvage = h:absorb_token(resp, issued_now(self))
  if not tokens then
    if salvage then
      tokens_changed(self)
      store_save(self, salvage)
    end
    return nil, aerr
  end
  tokens_changed(self)
  -- a chain a person just authorized is the newest there is, whatever the times of the stored one say
  local ok, serr = locked(self, store_save, self, tokens, REPLACE)
  if not ok then
    self._unsaved = REPLACE -- saved again first, still as the newest
    return nil, serr
  end
  self._warned = nil
  return tokens
end

--- client:refresh() --> tokens | nil, err. Adopts a newer stored pair instead of refreshing;
-- sooner than 570 s after the last token it makes no token call and says when it is allowed.
function methods:refresh()
  local h = live(self)
  if not h:token_info().has_refresh_token then
    local stored, err = store_load(self)
    if stored == nil then return nil, err end
    if stored then
      local ok, aerr = adopt(self, stored)
      if not ok then return nil, aerr end
    end
  end
  return locked(self, refresh_under_lock, self, "explicit")
end

--- client:token_info() --> the token times, never a secret
function methods:token_info()
  return live(self):token_info()
end

--- client:rate_limits() --> the limits Exact reported last (the known ones)
function methods:rate_limits()
  return live(self):rate_limits()
end

--- client:close(): the secrets are wiped and the connection closed; safe twice
function methods:close()
  local h = type(self) == "table" and self._handle
  if not h then error("exactonline: this client was not made by exactonline.new", 2) end
  self._closed = true
  h:close()
end

function Client:__tostring()
  return tostring(self._handle)
end

function Client:__close()
  self:close()
end

local function xml_query(division, topic, params)
  local q = { Topic = topic, _Division_ = tostring(division) }
  if params then
    for k, v in pairs(params) do q[k] = v end
  end
  return q
end

--- client:xml_download(topic, params) --> { xml_page, … } (raw XML, following TSPaging) | nil, err
function methods:xml_download(topic, params)
  if type(topic) ~= "string" then error("bad argument #1 to 'xml_download' (topic string expected)", 2) end
  if params ~= nil and type(params) ~= "table" then error("bad argument #2 to 'xml_download' (table expected)", 2) end
  local d, err = self:division()
  if not d then return nil, err end
  local pages, ts = {}, nil
  local guard = paging_guard(live(self):options().max_pages, "TSPaging value")
  while true do
    local q = xml_query(d, topic, params)
    q.TSPaging = ts
    local res, rerr = self:request("GET", "/docs/XMLDownload.aspx",
      { query = q, headers = { Accept = "application/xml" } })
    if not res then return nil, rerr end
    pages[#pages + 1] = res.body
    local tag = res.body:match("<Topic%s[^>]*>")
    local nts = tag and tag:match('ts_d="([^"]*)"')
    local count = tonumber(tag and tag:match('count="(%d+)"'))
    local size = tonumber(tag and tag:match('pagesize="(%d+)"'))
    if not nts or nts == "" or nts == ts or count == 0 or (count and size and count < size) then break end
    local ok, gerr = guard(nts)
    if not ok then return nil, gerr end
    ts = nts
  end
  return pages
end

--- client:xml_upload(topic, xml) --> Exact's raw XML answer | nil, err
function methods:xml_upload(topic, xml)
  if type(topic) ~= "string" then error("bad argument #1 to 'xml_upload' (topic string expected)", 2) end
  if type(xml) ~= "string" then error("bad argument #2 to 'xml_upload' (XML string expected)", 2) end
  local d, err = self:division()
  if not d then return nil, err end
  local res, rerr = self:request("POST", "/docs/XMLUpload.aspx", {
    query = xml_query(d, topic), body = xml,
    headers = { ["Content-Type"] = "application/xml", Accept = "application/xml" },
  })
  if not res then return nil, rerr end
  return res.body
end

local REQUEST_PHASES = { rewrite = true, access = true, content = true, timer = true, ssl_cert = true,
  ssl_session_fetch = true, balancer = false, header_filter = false, body_filter = false, log = false }

local function pick_transport(config, handle)
  local t = config.transport
  if type(t) == "table" then
    if type(t.request) ~= "function" then error("exactonline.new: config.transport needs a request method", 3) end
    return t
  end
  if t == nil and ngx and ngx.get_phase and REQUEST_PHASES[ngx.get_phase()] then t = "ngx" end
  if t == "ngx" then return require("exactonline.transport.ngx").new(config, handle) end
  if t ~= nil and t ~= "curl" then
    error("exactonline.new: config.transport must be a table, \"curl\" or \"ngx\"", 3)
  end
  return curl_transport.new(handle)
end

--- exactonline.new(config) --> client | nil, err (bad config raises)
function _M.new(config)
  if type(config) ~= "table" then error("exactonline.new: config must be a table", 2) end
  local store = config.store
  if store == nil then
    store = memory_store.new()
  elseif type(store) ~= "table" or type(store.load) ~= "function" or type(store.save) ~= "function" then
    error("exactonline.new: config.store must be a table with load and save functions", 2)
  end
  if config.on_warning ~= nil and type(config.on_warning) ~= "function" then
    error("exactonline.new: config.on_warning must be a function", 2)
  end
  if config.clock ~= nil and type(config.clock) ~= "function" then
    error("exactonline.new: config.clock must be a function", 2)
  end
  local retries = retry.options(config)
  local errors = budget.new(config.error_budget, config.client_id, store, config.timeout, 2) -- 400/401/403/404
  local okc, h = pcall(core.client_new, config)
  if not okc then error(h, 2) end -- a configuration mistake, reported at the caller's line
  retries.max_wait = h:options().max_wait
  local transport = pick_transport(config, h)
  local now = config.clock
  if not now and type(transport.now) == "function" then now = function() return transport:now() end end
  local sleep = core.sleep
  if type(transport.sleep) == "function" then sleep = function(s) return transport:sleep(s) end end
  -- a transport may bring a clock that other clients share (the gateway's workers, the shdict store's)
  local clock = type(transport.clock) == "table" and transport.clock or exact_clock.new()
  local self = setmetatable({ _handle = h, _store = store, _transport = transport, _on_warning = config.on_warning,
    _now = now or core.now, _sleep = sleep, _retry = retries, _clock = clock, _config = {},
    _budget = errors }, Client)
  -- _config: a copy, for sibling()
  for k, v in pairs(config) do self._config[k] = v end
  local stored, err = store_load(self)
  if stored == nil then
    h:close()
    return nil, err
  end
  if stored then
    local ok, aerr = adopt(self, stored)
    if not ok then
      h:close()
      return nil, aerr
    end
    local okw, werr = pcall(function() warn(self, exact_now(self)) end) -- a broken config.clock raises here,
    if not okw then                                                       -- at the caller's line
      h:close()
      error(werr, 2)
    end
  end
  return self
end

--- sibling(client, over) --> a new client with client's configuration and store, `over` applied (e.g.
-- { division = N, transport = t, store = s }): replicate makes one per division, so each division has
-- its own rate-limit state. Internal: not a method users see.
function _M.sibling(client, over)
  live(client)
  local config = {}
  for k, v in pairs(client._config) do config[k] = v end
  config.store = client._store
  for k, v in pairs(over or {}) do config[k] = v end
  return _M.new(config)
end

--- store_of(client) --> the store client uses (replicate shares it between its per-division clients)
function _M.store_of(client)
  live(client)
  return client._store
end

--- core(client) --> the private exactonline.Client userdata inside a client (a userdata is returned as is):
-- for transports that drive its libcurl handle (transport/curl.lua, transport/multi.lua) and for specs of
-- the C half. Internal: its methods are no API.
function _M.core(client)
  if type(client) == "userdata" then return client end
  return live(client)
end

return _M
