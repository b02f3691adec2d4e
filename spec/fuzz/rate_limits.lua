-- Fuzz target: the six X-RateLimit-* header values of an answer, then what the client makes of
-- them (rate_limits(), rate_wait()). Input: up to six values separated by \n.
local f = require "common"
local NAMES = { "x-ratelimit-minutely-limit", "x-ratelimit-minutely-remaining", "x-ratelimit-minutely-reset",
                "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset" }

function fuzz(data) -- luacheck: ignore 111
  f.input = data
  local headers, i = { ["content-type"] = "application/json" }, 0
  for value in (data .. "\n"):gmatch("([^\n]*)\n") do
    i = i + 1
    if i > #NAMES then break end
    headers[NAMES[i]] = value
  end
  local c = f.authorized(1)
  for _, status in ipairs { 200, 429 } do
    local resp, err = c:absorb { status = status, headers = headers, body = "{\"d\":{}}" }
    if not resp then f.check_error(err, "absorb") end
    local limits = c:rate_limits()
    if type(limits) ~= "table" then error("rate_limits: not a table") end
    for _, after_429 in ipairs { false, true } do
      local wait, werr = c:rate_wait(f.NOW, after_429)
      if wait == nil then
        f.check_error(werr, "rate_wait")
      elseif type(wait) ~= "number" or wait < 0 or wait ~= wait then
        error("rate_wait: odd wait " .. tostring(wait))
      end
    end
  end
  c:close()
end
