--- The default transport: the client's own libcurl handle (blocking; keep-alive and TLS session reuse).
-- Contract (docs/ARCHITECTURE.md): transport:request(req) --> { status, headers, body } | nil, err,
-- plus the optional transport:sleep(seconds) and transport:now() the client uses for rate-limit waits.
local core = require "exactonline.core"

local setmetatable = setmetatable

local _M = {}

local Transport = {}
Transport.__index = Transport

function Transport:request(req)
  local client = self.ref[1]
  if not client then
    return nil, core.error { kind = "network", message = "the client of this transport was closed" }
  end
  return client:perform(req)
end

function Transport.sleep(_, seconds)
  core.sleep(seconds)
end

function Transport.now(_)
  return core.now()
end

--- A transport over `client`'s libcurl handle. It holds the client weakly, so a forgotten
-- client is still collected (LuaJIT's weak tables are not ephemerons).
function _M.new(client)
  return setmetatable({ ref = setmetatable({ client }, { __mode = "v" }) }, Transport)
end

return _M
