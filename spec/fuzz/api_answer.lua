-- Fuzz target: an API answer (status, Content-Type, body: OData envelopes, HTML error pages,
-- errors inside a 200). Input: <status byte><content-type>\0<body>.
local f = require "common"
local STATUSES = { 200, 200, 201, 204, 400, 401, 403, 404, 429, 500, 503 }

function fuzz(data) -- luacheck: ignore 111
  f.input = data
  local status = STATUSES[(data:byte(1) or 0) % #STATUSES + 1]
  local ctype, body = f.split(data:sub(2))
  local c = f.authorized(1)
  local resp, err = c:absorb { status = status, headers = { ["content-type"] = ctype, reason = ctype }, body = body }
  if resp then
    if status >= 300 then error("absorb: a " .. status .. " answer was taken as a success") end
    if resp.body ~= body then error("absorb: body changed") end
  else
    f.check_error(err, "absorb")
  end
  c:close()
end
