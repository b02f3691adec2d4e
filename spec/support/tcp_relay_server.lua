--- The child process behind spec/support/tcp_relay.lua: `<vm> tcp_relay_server.lua PORT TO_PORT DIR`. Listens
-- on 127.0.0.1:PORT (DIR/ready once it does) and relays each connection's bytes both ways to 127.0.0.1:TO_PORT
-- (TLS passes through untouched), one select loop for every connection.
local socket = require "socket"

local port, to, dir = tonumber(arg[1]), tonumber(arg[2]), arg[3]
local srv = assert(socket.bind("127.0.0.1", port))
srv:settimeout(0)
io.open(dir .. "/ready", "w"):close()

local peer = {} -- socket -> the socket its bytes go to
local socks = { srv }

local function drop(s)
  local p = peer[s]
  for _, x in ipairs{ s, p } do
    if x then
      x:close()
      peer[x] = nil
      for i = #socks, 1, -1 do if socks[i] == x then table.remove(socks, i) end end
    end
  end
end

while true do
  local readable = socket.select(socks, nil, 1)
  for _, s in ipairs(readable) do
    if s == srv then
      local c = srv:accept()
      if c then
        local u = socket.tcp()
        if u:connect("127.0.0.1", to) then
          c:settimeout(0)
          u:settimeout(0)
          peer[c], peer[u] = u, c
          socks[#socks + 1], socks[#socks + 2] = c, u
        else
          c:close()
        end
      end
    elseif peer[s] then
      local data, err, partial = s:receive(65536)
      data = data or partial
      if data and data ~= "" then
        local p = peer[s]
        p:settimeout(5)
        p:send(data)
        p:settimeout(0)
      end
      if err == "closed" then drop(s) end
    end
  end
end
