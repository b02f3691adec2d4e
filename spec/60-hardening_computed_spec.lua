-- Memory safety (issue 11): every value the C core reads may be computed on access. Each table here is
-- a proxy whose __index runs a full garbage collection and then returns a fresh copy of its value, so a
-- C function that keeps a pointer into a value it no longer holds on the Lua stack reads freed memory
-- (valgrind in `make memcheck`, ASan in `make asan`) instead of working by luck. Every entry point:
-- the config, a store's load, options, query and header tables, a Lua transport's answer, error fields.
local helpers = require "helpers"
local exactonline = require "exactonline"
local core = require "exactonline.core"
local curl_transport = require "exactonline.transport.curl"

local collectgarbage, setmetatable, type, pairs = collectgarbage, setmetatable, type, pairs

-- a new string object with s's bytes (long strings are never shared; short ones are rebuilt)
local function fresh(s)
  return (s .. "#"):sub(1, -2)
end

-- a table computing each read: full GC first (frees whatever the previous read returned and the reader
-- dropped), then a fresh copy; a function value is called to build a fresh nested value
local function computed(t)
  return setmetatable({}, { __index = function(_, k)
    collectgarbage()
    local v = t[k]
    if type(v) == "function" then return v() end
    if type(v) == "string" then return fresh(v) end
    return v
  end })
end

local LONG_STATE = "state-" .. ("s"):rep(60)

describe("hardening: values computed on access (a full GC on every read)", function()
  local sb = helpers.use_sandbox{ accounts = 30 }

  local function pair()
    local t = sb:tokens()
    local now = core.now()
    return { access_token = t.access_token, refresh_token = t.refresh_token, obtained_at = now,
             expires_at = now + 600, refresh_obtained_at = now }
  end

  it("a computed config: credentials, URLs, numbers and choices are read right", function()
    local cfg = computed(sb:client_config{ division = sb.division, timeout = 20, max_wait = 30,
      max_response_size = 1024 * 1024, on_rate_limit = "wait" })
    local c = assert(exactonline.new(cfg))
    local url = c:authorization_url{ state = LONG_STATE }
    assert.equal(sb.base_url .. "/api/oauth2/auth?client_id=" .. helpers.escape(sb.client_id) .. "&redirect_uri="
      .. helpers.escape(sb.redirect_uri) .. "&response_type=code&state=" .. LONG_STATE, url)
    assert(c:exchange(sb:code())) -- client id, secret, redirect URI and cafile all right
    local rows = assert(c:get("crm/Accounts", { ["$top"] = 2 }))
    assert.equal(2, #rows)
    assert.truthy(tostring(c):find(sb.base_url .. " division " .. sb.division, 1, true))
    c:close()

    local uk = assert(exactonline.new(computed{ region = "uk", client_id = "computed-client-" .. ("i"):rep(40),
      client_secret = "computed-secret-" .. ("x"):rep(40), redirect_uri = "https://app.example/" .. ("r"):rep(50),
      on_rate_limit = "error" }))
    assert.truthy(tostring(uk):find("https://start.exactonline.co.uk division ?", 1, true))
    assert.truthy(uk:authorization_url():find("redirect_uri=https%3A%2F%2Fapp.example%2F" .. ("r"):rep(50), 1,
      true))
    uk:close()
  end)

  it("computed tokens from a store's load: the client sends exactly them", function()
    local t = pair()
    local saved
    local store = {
      load = function() return computed(t) end,
      save = function(new) saved = new return true end,
    }
    local c = assert(exactonline.new(sb:client_config{ store = store, division = sb.division }))
    local rows = assert(c:get("crm/Accounts", { ["$top"] = 3 }))
    assert.equal(3, #rows)
    local info = c:token_info()
    assert.is_true(info.has_access_token and info.has_refresh_token)
    assert.equal(math.floor(t.expires_at), info.expires_at)
    assert.is_nil(saved) -- nothing new to save
    c:close()
  end)

  it("computed options, query, headers and body of a request", function()
    local c = assert(exactonline.new(sb:client_config{ division = sb.division }))
    assert(c:exchange(sb:code()))
    local name = "Computed " .. ("n"):rep(50)
    local made = assert(c:request("POST", "crm/Accounts", computed{
      body = function() return { Name = fresh(name) } end,
      headers = function() return { Prefer = fresh("return=representation"), ["X-Long"] = fresh(("h"):rep(80)) } end,
    }))
    assert.equal(201, made.status)
    assert.equal(name, made.data.d.Name)
    local res = assert(c:request("GET", "crm/Accounts", computed{
      query = function()
        return { ["$filter"] = fresh("Name eq '" .. name .. "'"), ["$select"] = fresh("ID,Name"), ["$top"] = 5 }
      end,
      headers = function() return { ["X-Trace"] = fresh(("t"):rep(90)) } end,
    }))
    local rows = res.data.d.results
    assert.equal(1, #rows)
    assert.equal(name, rows[1].Name)
    assert.equal(made.data.d.ID, rows[1].ID)
    assert.is_nil(rows[1].Code) -- $select reached the sandbox
    c:close()
  end)

  it("a Lua transport whose answers (status, headers, body) are computed", function()
    local real
    local c = assert(exactonline.new(sb:client_config{ division = sb.division, transport = {
      request = function(_, req)
        -- what reaches libcurl is computed too (the header table itself is iterated, so it is a fresh copy)
        local resp, err = real:request(computed{ method = req.method, url = req.url, body = req.body,
          timeout = req.timeout, headers = function()
            local h = {}
            for k, v in pairs(req.headers) do h[fresh(k)] = fresh(v) end
            return h
          end })
        if not resp then return nil, err end
        local h = resp.headers
        return computed{ status = resp.status, body = resp.body, headers = function() return computed(h) end }
      end,
    } }))
    real = curl_transport.new(c)
    assert(c:exchange(sb:authorize{ state = LONG_STATE }, LONG_STATE)) -- a token answer
    local rows = assert(c:get("crm/Accounts", { ["$top"] = 4 }))
    assert.equal(4, #rows)
    local rl = c:rate_limits()
    assert.is_number(rl.minutely_remaining)
    assert.is_number(rl.daily_limit)
    local none, err = c:get("crm/NoSuchEntity")
    assert.is_nil(none)
    assert.equal(404, err.status)
    assert.is_string(err.message)
    c:close()
  end)

  it("error fields that are numbers or computed read right in tostring", function()
    local err = core.error{ kind = "api", status = 500, code = 500, message = 42, hint = 1.5 }
    assert.equal("exactonline: Exact Online API request failed (HTTP 500 500): 42\n  What to do: 1.5", tostring(err))
    err.code = 404
    err.message = 4040
    assert.equal("exactonline: Exact Online API request failed (HTTP 500 404): 4040\n  What to do: 1.5",
      tostring(err))
    local words = "Forbidden - " .. ("w"):rep(60)
    local text = core.Error.__tostring(computed{ kind = "api", status = 403, code = "code-" .. ("c"):rep(50),
      message = words, reason = "Reason " .. ("r"):rep(60), hint = "do " .. ("h"):rep(60) })
    assert.equal("exactonline: Exact Online API request failed (HTTP 403 code-" .. ("c"):rep(50) .. "): " .. words ..
      "\n  Reason: Reason " .. ("r"):rep(60) .. "\n  What to do: do " .. ("h"):rep(60), text)
    local copy = core.error(computed{ kind = "store", code = "code-" .. ("k"):rep(50), message = words })
    assert.equal("store", copy.kind)
    assert.equal("code-" .. ("k"):rep(50), copy.code)
    assert.equal(words, copy.message)
  end)
end)
