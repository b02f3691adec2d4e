--- The child process behind spec/support/webhook_sink.lua: `lua5.4 webhook_sink_server.lua PORT LOG [FAILS]`.
-- A webhook callback on a loopback port: answers 200 (500 to the first FAILS deliveries with a body) and logs
-- each request as a JSON line { line, headers, body, status } to LOG.
local socket, cjson = require "socket", require "cjson"
local port, log, fails = tonumber(arg[1]), arg[2], tonumber(arg[3]) or 0
local server = assert(socket.bind("127.0.0.1", port))
server:settimeout(60)
while true do
  local c = server:accept()
  if not c then break end
  c:settimeout(5)
  local line = c:receive("*l")
  local headers = {}
  while true do
    local h = c:receive("*l")
    if not h or h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
  end
  local len = tonumber(headers["content-length"]) or 0
  local body = len > 0 and c:receive(len) or ""
  local status = 200
  if #body > 0 and fails > 0 then fails = fails - 1; status = 500 end
  if line then -- (not the spec's probe that it listens)
    local f = io.open(log, "a")
    f:write(cjson.encode{ line = line, headers = headers, body = body or "", status = status }, "\n")
    f:close()
  end
  c:send("HTTP/1.1 " .. status .. " X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
  c:close()
end
