--- A webhook callback for the sandbox to deliver to: a real HTTP server on a loopback port (a child process,
-- spec/support/webhook_sink_server.lua) that logs every request it gets.
--   local webhook_sink = require "support.webhook_sink"
--   local sink = webhook_sink.start(fails)  -- listening; answers 500 to the first `fails` deliveries
--   sink.url, sink.log                      -- http://127.0.0.1:PORT/exact/hook, the request log
--   sink:lines(n)                           -- the logged requests, once there are n (or after 10 s)
--   sink:stop()                             -- at the latest when the spec file ends
local helpers = require "helpers"
local proc = require "support.proc"

local setmetatable, require = setmetatable, require

local _M = {}

local Sink = {}
Sink.__index = Sink

function Sink:lines(n)
  local out = {}
  for _ = 1, 200 do
    out = {}
    for l in (helpers.read(self.log) or ""):gmatch("[^\n]+") do out[#out + 1] = helpers.json.decode(l) end
    if #out >= n then break end
    helpers.sh("sleep 0.05")
  end
  return out
end

function Sink:stop()
  if self.pid then helpers.sh("kill " .. self.pid) end
  self.pid = nil
end

function _M.start(fails)
  local port = helpers.free_port()
  local log = helpers.tmpdir() .. "/sink.log"
  local sink = setmetatable({ url = "http://127.0.0.1:" .. port .. "/exact/hook", log = log }, Sink)
  sink.pid = proc.spawn("exec env " .. helpers.lua_env("lua5.4") .. " lua5.4 "
    .. helpers.quote(helpers.root .. "/spec/support/webhook_sink_server.lua") .. " " .. port .. " "
    .. helpers.quote(log) .. " " .. (fails or 0))
  helpers.on_cleanup(function() sink:stop() end)
  -- wait until it listens
  for _ = 1, 100 do
    local s = require("socket").connect("127.0.0.1", port)
    if s then s:close() break end
    helpers.sh("sleep 0.05")
  end
  return sink
end

return _M
