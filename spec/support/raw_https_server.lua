--- The child process behind spec/support/raw_https.lua: `<vm> raw_https_server.lua DIR`. Listens on a free
-- loopback port (written to DIR/port), and for each connection: TLS with DIR/<DIR/cert>.pem (default "good"),
-- reads one request into DIR/requests.log, and sends DIR/answer as raw bytes ("SLEEP": nothing for 2 s).
-- In the answer, {{n}} is the request's number since the log was cleared, {{n%K}} that number modulo K;
-- past 50 requests it answers 500, so a client that would loop forever ends instead.
local socket = require "socket"
local ssl = require "ssl"

local dir = arg[1]

local function read(name)
  local f = io.open(dir .. "/" .. name, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local srv = assert(socket.bind("127.0.0.1", 0))
local _, port = srv:getsockname()
local f = assert(io.open(dir .. "/port.tmp", "w"))
f:write(port)
f:close()
os.rename(dir .. "/port.tmp", dir .. "/port")

local count = 0
while true do
  local cl = srv:accept()
  local cert = read("cert") or "good"
  local ctx = assert(ssl.newcontext { mode = "server", protocol = "any", key = dir .. "/" .. cert .. ".key",
    certificate = dir .. "/" .. cert .. ".pem", options = { "all" } })
  local s = ssl.wrap(cl, ctx)
  s:settimeout(5)
  if s:dohandshake() then
    local lines, len = {}, 0
    while true do
      local line = s:receive("*l")
      if not line or line == "" then break end
      lines[#lines + 1] = line
      local n = line:lower():match("^content%-length:%s*(%d+)")
      if n then len = tonumber(n) end
    end
    local body = len > 0 and s:receive(len) or ""
    local seen = io.open(dir .. "/requests.log", "rb")
    if seen then seen:close() else count = 0 end
    count = count + 1
    local log = assert(io.open(dir .. "/requests.log", "ab"))
    log:write(table.concat(lines, "\n"), "\n\n", body or "", "\n----\n")
    log:close()
    local answer = read("answer") or "HTTP/1.1 500 No answer set\r\nContent-Length: 0\r\n\r\n"
    if count > 50 then answer = "HTTP/1.1 500 Too many requests\r\nContent-Length: 0\r\n\r\n" end
    answer = answer:gsub("{{n%%?(%d*)}}", function(k) return tostring(k == "" and count or count % tonumber(k)) end)
    if answer:sub(1, 5) == "SLEEP" then socket.sleep(2) else s:send(answer) end
  end
  s:close()
end
