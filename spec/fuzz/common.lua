--- Shared by the fuzz targets (spec/fuzz/<target>.lua): a client with distinctive secrets, and
-- the properties every answer to untrusted bytes must have.
local core = require "exactonline.core"

local _M = { core = core }

_M.SECRET = "fuzz-client-secret-7f3a9c"
_M.ACCESS = "fuzz-access-token-51e0bd"
_M.REFRESH = "fuzz-refresh-token-c28d44"
_M.NOW = 1700000000

function _M.client(division)
  return core.client_new {
    base_url = "https://start.exactonline.nl", client_id = "fuzz-client",
    client_secret = _M.SECRET, redirect_uri = "https://app.example/callback",
    division = division,
  }
end

function _M.authorized(division)
  local c = _M.client(division)
  c:set_tokens { access_token = _M.ACCESS, refresh_token = _M.REFRESH, obtained_at = _M.NOW - 590 }
  return c
end

--- the current input: a secret the "server" itself sent back may be echoed (Exact's own words), also in
-- another case (a host name is lower-cased before an error names it)
_M.input = ""

--- an error object: an exactonline.Error with a kind and a printable message, no secret in it
function _M.check_error(err, where)
  if not core.is_error(err) then error(where .. ": not an error object: " .. tostring(err)) end
  if type(err.kind) ~= "string" then error(where .. ": error without a kind") end
  local text = tostring(err)
  if type(text) ~= "string" or text == "" then error(where .. ": error does not print") end
  _M.no_secret(text, where)
  return err
end

function _M.no_secret(text, where)
  for _, s in ipairs { _M.SECRET, _M.ACCESS, _M.REFRESH } do
    if text:lower():find(s, 1, true) and not _M.input:lower():find(s, 1, true) then
      error(where .. ": a secret leaked into " .. text)
    end
  end
end

--- split the input at the first NUL... or at byte k: two independent untrusted strings
function _M.split(data)
  local at = data:find("\0", 1, true)
  if not at then return data, "" end
  return data:sub(1, at - 1), data:sub(at + 1)
end

return _M
