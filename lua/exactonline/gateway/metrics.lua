--- The gateway's counters, shared by all workers (lua_shared_dict), and /metrics in Prometheus' text format:
-- requests by status, refused keys, refreshes, rate-limit waits, upstream answers (429s among them) and, per
-- division, the calls left in the minute and the day. No secret, key or token is ever a label or a value.
local ngx = ngx
local tostring, tonumber, ipairs = tostring, tonumber, ipairs
local math_floor, math_max = math.floor, math.max
local str_find, str_match, str_format = string.find, string.match, string.format
local concat, table_sort = table.concat, table.sort
local ngx_now, ngx_update_time = ngx.now, ngx.update_time

local _M = {}

local dict

function _M.init(dict_name)
  dict = ngx.shared[dict_name]
end

local function incr(key, n)
  dict:incr("metric:" .. key, n or 1, 0)
end

--- an answer the gateway gave its client
function _M.request(status)
  incr("req:" .. tostring(status))
end

--- a call refused for its key: "missing" | "unknown" | "revoked"
function _M.refused(why)
  incr("refused:" .. tostring(why))
end

--- a call to Exact's token endpoint (status nil: no answer); body tells a refresh from a code exchange
function _M.token_call(status, body)
  local refresh = body and str_find(body, "grant_type=refresh_token", 1, true)
  if not refresh then return incr("exchanges") end
  if status == 200 then incr("refreshes") else incr("refresh_failures") end
end

--- an API answer from Exact (status nil: none came)
function _M.upstream(status)
  incr("up:" .. (status and tostring(status) or "none"))
end

local function get(key)
  return dict:get("metric:" .. key) or 0
end

-- labelled counters under prefix ("req:" → { ["200"] = n, … })
local function family(prefix)
  local out, names = {}, {}
  for _, k in ipairs(dict:get_keys(0)) do
    local label = str_match(k, "^metric:" .. prefix .. "(.+)$")
    if label then
      out[label] = dict:get(k)
      names[#names + 1] = label
    end
  end
  table_sort(names)
  return out, names
end

local function num(v)
  if v == nil then return nil end
  v = tonumber(v)
  if v == math_floor(v) and v > -1e15 and v < 1e15 then return str_format("%d", v) end
  return str_format("%.3f", v)
end

--- the /metrics page; pacer gives the per-division limits, status the chain's state (chain.status())
function _M.render(pacer, status)
  local L = {}
  local function metric(name, kind, help)
    L[#L + 1] = "# HELP " .. name .. " " .. help
    L[#L + 1] = "# TYPE " .. name .. " " .. kind
  end
  local function sample(name, labels, v)
    if v == nil then return end
    L[#L + 1] = name .. (labels or "") .. " " .. num(v)
  end

  metric("exactonline_gateway_requests_total", "counter", "Answers the gateway gave its clients, by HTTP status.")
  local req, statuses = family("req:")
  for _, s in ipairs(statuses) do sample("exactonline_gateway_requests_total", '{status="' .. s .. '"}', req[s]) end
  metric("exactonline_gateway_refused_total", "counter",
    "Requests refused with 401 before any call to Exact, by reason (missing, unknown, revoked key).")
  for _, why in ipairs { "missing", "unknown", "revoked" } do
    sample("exactonline_gateway_refused_total", '{reason="' .. why .. '"}', get("refused:" .. why))
  end
  metric("exactonline_gateway_refreshes_total", "counter", "Access tokens refreshed (one per expiry, all workers).")
  sample("exactonline_gateway_refreshes_total", nil, get("refreshes"))
  metric("exactonline_gateway_refresh_failures_total", "counter", "Refreshes Exact refused or did not answer.")
  sample("exactonline_gateway_refresh_failures_total", nil, get("refresh_failures"))
  metric("exactonline_gateway_rate_limit_waits_total", "counter",
    "Calls held back until their division's minutely window had room.")
  sample("exactonline_gateway_rate_limit_waits_total", nil, get("waits"))
  metric("exactonline_gateway_rate_limit_wait_seconds_total", "counter", "Time calls spent waiting for a window.")
  sample("exactonline_gateway_rate_limit_wait_seconds_total", nil, get("wait_seconds"))
  metric("exactonline_gateway_rate_limit_refused_total", "counter",
    "Calls answered 429 by the gateway itself (daily budget spent, or a wait longer than max_wait).")
  sample("exactonline_gateway_rate_limit_refused_total", '{limit="minutely"}', get("minutely_refused"))
  sample("exactonline_gateway_rate_limit_refused_total", '{limit="daily"}', get("daily_refused"))
  metric("exactonline_gateway_upstream_responses_total", "counter", "Answers from Exact Online, by HTTP status.")
  local up, ups = family("up:")
  for _, s in ipairs(ups) do sample("exactonline_gateway_upstream_responses_total", '{status="' .. s .. '"}', up[s]) end
  metric("exactonline_gateway_upstream_429_total", "counter", "429 Too Many Requests answers from Exact Online.")
  sample("exactonline_gateway_upstream_429_total", nil, up["429"] or 0)

  local divisions = {}
  for i, d in ipairs(pacer:divisions()) do divisions[i] = { d, pacer:state(d) } end
  metric("exactonline_gateway_calls_left", "gauge",
    "Calls left for a division in the current minute or day, as Exact's last answer said less calls since.")
  for _, x in ipairs(divisions) do
    sample("exactonline_gateway_calls_left", '{division="' .. x[1] .. '",window="minute"}', x[2].minutely_left)
    sample("exactonline_gateway_calls_left", '{division="' .. x[1] .. '",window="day"}', x[2].daily_left)
  end
  metric("exactonline_gateway_calls_limit", "gauge", "Exact's rate limit for a division, per minute or day.")
  for _, x in ipairs(divisions) do
    sample("exactonline_gateway_calls_limit", '{division="' .. x[1] .. '",window="minute"}', x[2].minutely_limit)
    sample("exactonline_gateway_calls_limit", '{division="' .. x[1] .. '",window="day"}', x[2].daily_limit)
  end

  metric("exactonline_gateway_exact_clock_offset_seconds", "gauge",
    "How far Exact's clock runs ahead of this machine's (from its Date headers); rate-limit resets are on it.")
  sample("exactonline_gateway_exact_clock_offset_seconds", nil, pacer:clock_offset())
  metric("exactonline_gateway_chain_ok", "gauge",
    "1 while the token chain works; 0 when a person must run exactonline auth again.")
  local ok = (status.state == "ok" or status.state == "expiring") and 1 or 0
  sample("exactonline_gateway_chain_ok", nil, ok)
  metric("exactonline_gateway_refresh_token_days_left", "gauge", "Days until the refresh token expires unused.")
  sample("exactonline_gateway_refresh_token_days_left", nil, status.days_left)
  ngx_update_time()
  metric("exactonline_gateway_access_token_seconds_left", "gauge", "Seconds until the access token expires.")
  local exp = status.access_token_expires_at
  sample("exactonline_gateway_access_token_seconds_left", nil, exp and math_max(0, exp - ngx_now()))
  L[#L + 1] = ""
  return concat(L, "\n")
end

return _M
