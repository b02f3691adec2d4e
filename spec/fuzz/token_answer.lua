-- Fuzz target: the token endpoint's answer (JSON body, status, Reason header) after a code
-- exchange and after a refresh. Input: <status byte><reason>\0<body>.
local f = require "common"
local STATUSES = { 200, 200, 200, 400, 401, 403, 429, 500, 503, 302 }

function fuzz(data) -- luacheck: ignore 111
  f.input = data
  local status = STATUSES[(data:byte(1) or 0) % #STATUSES + 1]
  local reason, body = f.split(data:sub(2))
  for _, refreshing in ipairs { false, true } do
    local c = refreshing and f.authorized() or f.client()
    local before = c:tokens()
    local tokens, err, to_save = c:absorb_token({ status = status, headers = { reason = reason }, body = body },
      f.NOW)
    if tokens then
      if type(tokens.access_token) ~= "string" or tokens.access_token == "" then
        error("absorb_token: tokens without an access token")
      end
      if tokens.expires_at <= f.NOW then error("absorb_token: expires_at not after now") end
    else
      f.check_error(err, "absorb_token")
      if to_save == nil and refreshing then
        -- a failed refresh without a new refresh token keeps the pair it had
        local now = c:tokens()
        if not now or now.refresh_token ~= before.refresh_token then error("absorb_token: lost the refresh token") end
      end
    end
    f.no_secret(tostring(c), "tostring(client)")
    c:close()
  end
end
