-- Fuzz target: the authorization code from whatever a user pasted (bare code, %21-encoded code,
-- query string, whole redirect URL). Input: <pasted>[\0<expected state>].
local f = require "common"

function fuzz(data) -- luacheck: ignore 111
  f.input = data
  local pasted, state = f.split(data)
  local c = f.client()
  for _, expected in ipairs { false, state } do
    local code, err = c:code_from(pasted, expected or nil)
    if code == nil then
      f.check_error(err, "code_from")
      if err.kind ~= "oauth" then error("code_from: kind " .. tostring(err.kind)) end
    elseif type(code) ~= "string" or code == "" then
      error("code_from: returned an empty or non-string code")
    end
  end
  c:close()
end
