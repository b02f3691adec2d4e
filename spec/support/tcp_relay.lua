--- A TCP relay in a child process (spec/support/tcp_relay_server.lua, luasocket): 127.0.0.1:port forwards to
-- another loopback port, TLS untouched. Until it starts, connections to its port are refused: a client
-- pointed at it meets a refused connection first and the real server after.
--   local relay = require "support.tcp_relay"
--   local r = relay.new(sb.port)    -- r.port: a free port, nothing listening yet; r.base_url
--   r:start()                       -- listening (returns once it is); stopped when the spec file ends
--   r:stop()
local helpers = require "helpers"
local proc = require "support.proc"

local setmetatable, assert = setmetatable, assert

local _M = {}

local Relay = {}
Relay.__index = Relay

function _M.new(to_port)
  local r = setmetatable({ to = to_port, port = helpers.free_port(), dir = helpers.tmpdir() }, Relay)
  r.base_url = "https://127.0.0.1:" .. r.port
  helpers.on_cleanup(function() r:stop() end)
  return r
end

function Relay:start()
  self.pid = proc.spawn("exec env " .. helpers.lua_env() .. " " .. helpers.lua() .. " "
    .. helpers.quote(helpers.root .. "/spec/support/tcp_relay_server.lua") .. " " .. self.port .. " " .. self.to
    .. " " .. helpers.quote(self.dir))
  assert(proc.wait_for(self.dir .. "/ready", 20), "the TCP relay did not start")
  return self
end

function Relay:stop()
  if self.pid then helpers.sh("kill " .. self.pid) end
  self.pid = nil
end

return _M
