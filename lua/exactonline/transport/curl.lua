--- The default transport: the client's own libcurl handle (blocking; keep-alive and TLS session reuse).
-- Contract (docs/ARCHITECTURE.md): transport:request(req) --> { status, headers, body } | nil, err,
-- plus the optional transport:sleep(seconds) and transport:now() the client uses for rate-limit waits.
local core = require "exactonline.core"

local setmetatable, require = setmetatable, require

local _M = {}

local Transport = {}
Transport.__index = Transport

function Transport:request(req)
  local handle = self.ref[1]
  if not handle then
    return nil, core.error { kind = "network", message = "the client of this transport was closed" }
  end
  return handle:perform(req)
end

function Transport.sleep(_, seconds)
  core.sleep(seconds)
end

function Transport.now(_)
  return core.now()
end

--- A transport over `client`'s libcurl handle (a client, or its C half). It holds that weakly, so a
-- forgotten client is still collected.
function _M.new(client)
  local handle = require("exactonline.client").core(client)
  return setmetatable({ ref = setmetatable({ handle }, { __mode = "v" }) }, Transport)
end

return _M
