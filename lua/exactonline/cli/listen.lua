--- `exactonline auth --listen`: catch the browser's redirect on a localhost redirect URI, itself.
-- Listens on 127.0.0.1 and ::1 (a browser may try either for "localhost", and another program must not get
-- the code on the family we left free), over HTTPS with a certificate made on the fly when the redirect
-- URI is https:// (Exact requires HTTPS redirect URIs). Only a request carrying this login's state ends
-- the wait; anything else is answered and ignored. Every connection is bounded in bytes, lines and time.
-- A line pasted on stdin (the address the browser shows) is taken too.
local io, ipairs, os, pcall, require, tonumber, tostring = io, ipairs, os, pcall, require, tonumber, tostring
local char, format = string.char, string.format

local core = require "exactonline.core"
local util = require "exactonline.cli.util"

local _M = {}

_M.MAX_LINE = 8192       -- bytes in one request line or header line
_M.MAX_HEAD = 32768      -- bytes before the blank line that ends the headers
_M.MAX_LINES = 100       -- header lines
_M.CONN_SECONDS = 10     -- a connection has this long to send its request
_M.MAX_CONNS = 32        -- open connections at once

--- The redirect URI's parts when it is on localhost, 127.0.0.1 or [::1] (http or https), else nil.
function _M.target(uri)
  local scheme, after = uri:match("^(https?)://(.*)$")
  if not scheme then return nil end
  local host = after:match("^%[[%x:]+%]") or after:match("^[%w%.%-]+")
  if not host then return nil end
  local rest = after:sub(#host + 1)
  local port = rest:match("^:(%d+)")
  if port then rest = rest:sub(#port + 2) end
  local path = rest:match("^[^?#]*")
  if path == "" then path = "/" end
  if host ~= "localhost" and host ~= "127.0.0.1" and host ~= "[::1]" then return nil end
  return { scheme = scheme, host = host, port = tonumber(port) or (scheme == "https" and 443 or 80), path = path }
end

local function unescape(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

local function param(query, name)
  for pair in query:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    if unescape(k) == name then return unescape(v) end
  end
  return nil
end

-- A certificate for localhost, 127.0.0.1 and ::1, valid one day, made by openssl in a private temp folder.
local function make_certificate()
  local dir, err = core.mkdtemp("/tmp/exactonline-auth")
  if not dir then return nil, err end
  local key, cert = dir .. "/key.pem", dir .. "/cert.pem"
  local rc, serr = util.spawn({ "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
    "-keyout", key, "-out", cert }, { wait = true, quiet = true })
  local function cleanup()
    os.remove(key)
    os.remove(cert)
    os.remove(dir)
  end
  if rc ~= 0 then
    cleanup()
    return nil, "cannot make a certificate for https://localhost (openssl: " .. tostring(serr or ("exit " .. rc))
      .. "); install openssl, or paste the address instead of --listen"
  end
  local ok, ssl = pcall(require, "ssl")
  if not ok then
    cleanup()
    return nil, "--listen on https:// needs LuaSec (Debian: lua-sec)"
  end
  local ctx, cerr = ssl.newcontext { mode = "server", protocol = "any", key = key, certificate = cert,
    options = { "all", "no_sslv2", "no_sslv3" } }
  cleanup() -- the context holds key and certificate in memory now
  if not ctx then return nil, "cannot load the certificate for --listen: " .. tostring(cerr) end
  return ssl, ctx
end

local function page(status, title, text)
  local body = "<!doctype html><meta charset=utf-8><title>exactonline</title><h1>" .. title .. "</h1><p>"
    .. text .. "</p>\n"
  return format("HTTP/1.1 %s\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\n"
    .. "Cache-Control: no-store\r\nConnection: close\r\n\r\n%s", status, #body, body)
end

local DONE = page("200 OK", "Done",
  "exactonline has the answer: you can close this window and go back to the terminal.")
local OTHER = page("400 Bad Request", "Not this login",
  "This is not the login <code>exactonline auth</code> is waiting for (no matching state); it keeps waiting.")
local TOO_BIG = page("431 Request Header Fields Too Large", "Request too large", "The request was too large.")
local NOT_FOUND = page("404 Not Found", "Not found", "Nothing here.")

local function bind_all(socket, port)
  local servers = {}
  for _, host in ipairs { "127.0.0.1", "::1" } do
    local s, err = socket.bind(host, port, 16)
    if s then
      s:settimeout(0)
      servers[#servers + 1] = s
    elseif err and err:find("in use", 1, true) then
      for _, o in ipairs(servers) do o:close() end
      return nil, "cannot listen on " .. host .. " port " .. port .. ": " .. err
        .. " (another program listens there: stop it, or choose another port in the redirect URI)"
    elseif host == "127.0.0.1" then
      return nil, "cannot listen on 127.0.0.1 port " .. port .. ": " .. tostring(err)
    end
    -- ::1 missing (no IPv6 loopback here): then nobody else can listen on it either
  end
  return servers
end

--- listen(uri, { state = "…", timeout = 300, stdin = true, on_ready = function() end,
--                 on_ignored = function(why) end })
-- --> the redirect URL (or the line pasted on stdin) | nil, message
function _M.listen(uri, opts)
  local t = _M.target(uri)
  if not t then
    return nil, "--listen needs a redirect URI on https://localhost:PORT/… (or http://, 127.0.0.1, [::1]), not "
      .. uri
  end
  local ok, socket = pcall(require, "socket")
  if not ok then return nil, "--listen needs luasocket (Debian: lua-socket)" end
  local ssl, ctx
  if t.scheme == "https" then
    ssl, ctx = make_certificate()
    if not ssl then return nil, ctx end
  end
  local servers, berr = bind_all(socket, t.port)
  if not servers then return nil, berr end
  if opts.on_ready then opts.on_ready() end -- listening now: the browser may come

  local conns, stdin = {}, nil
  if opts.stdin then
    stdin = { getfd = function() return 0 end, dirty = function() return false end }
  end
  local deadline = socket.gettime() + (opts.timeout or 300)
  local result

  local function close(c)
    for i, x in ipairs(conns) do
      if x == c then table.remove(conns, i) break end
    end
    c.sock:close()
  end

  local function answer(c, text)
    c.sock:settimeout(2)
    c.sock:send(text)
    close(c)
  end

  -- A whole request head has arrived: is it the browser coming back from this login?
  local function handle(c, head)
    local method, target = head:match("^(%u+) (%S+) HTTP/1%.[01]\r?\n")
    if method ~= "GET" or not target then return answer(c, OTHER) end
    local path, query = target:match("^([^?#]*)%??([^#]*)")
    if path ~= t.path then return answer(c, NOT_FOUND) end
    local got = param(query, "state")
    if got ~= opts.state or not (param(query, "code") or param(query, "error")) then
      if opts.on_ignored then opts.on_ignored("a request to " .. path .. " without this login's state") end
      return answer(c, OTHER)
    end
    answer(c, DONE)
    result = t.scheme .. "://" .. t.host .. ":" .. t.port .. target
  end

  local function receive(c)
    while true do
      local data, err, partial = c.sock:receive(4096)
      local chunk = data or partial
      if chunk and chunk ~= "" then c.buf = c.buf .. chunk end
      local head_end = c.buf:find("\r?\n\r?\n")
      local head = head_end and c.buf:sub(1, head_end) or c.buf
      local lines, longest = 0, 0
      for line in (head .. "\n"):gmatch("([^\n]*)\n") do
        lines = lines + 1
        if #line > longest then longest = #line end
      end
      if #head > _M.MAX_HEAD or longest > _M.MAX_LINE or lines > _M.MAX_LINES then return answer(c, TOO_BIG) end
      if head_end then return handle(c, c.buf) end
      if err == "closed" then return close(c) end
      if not data then return end -- nothing more for now
    end
  end

  local function step(c)
    if c.handshaking then
      local done, err = c.sock:dohandshake()
      if done then
        c.handshaking = false
      elseif err == "wantread" or err == "wantwrite" then
        c.want = err
        return
      else
        return close(c)
      end
    end
    receive(c)
  end

  while not result do
    local now = socket.gettime()
    if now >= deadline then break end
    for i = #conns, 1, -1 do
      if now >= conns[i].deadline then close(conns[i]) end
    end
    local readers, writers, wait = {}, {}, deadline - now
    for _, s in ipairs(servers) do readers[#readers + 1] = s end
    if stdin then readers[#readers + 1] = stdin end
    for _, c in ipairs(conns) do
      if c.want == "wantwrite" then writers[#writers + 1] = c.sock else readers[#readers + 1] = c.sock end
      if c.deadline - now < wait then wait = c.deadline - now end
    end
    local r, w = socket.select(readers, writers, wait)
    local ready = {}
    for _, x in ipairs(r or {}) do ready[x] = true end
    for _, x in ipairs(w or {}) do ready[x] = true end
    if stdin and ready[stdin] then
      local line = io.stdin:read("*l")
      if line == nil then
        stdin = nil -- nothing to paste from (stdin is not a terminal, or was closed)
      elseif line:match("%S") then
        result = line
      end
    end
    for _, s in ipairs(servers) do
      if ready[s] and not result then
        local sock = s:accept()
        if sock then
          if #conns >= _M.MAX_CONNS then
            sock:close()
          else
            sock:settimeout(0)
            local c = { sock = sock, buf = "", deadline = socket.gettime() + _M.CONN_SECONDS }
            if ssl then
              local wrapped = ssl.wrap(sock, ctx)
              if wrapped then
                wrapped:settimeout(0)
                c.sock, c.handshaking = wrapped, true
              else
                sock:close()
                c = nil
              end
            end
            if c then
              conns[#conns + 1] = c
              step(c)
            end
          end
        end
      end
    end
    for i = #conns, 1, -1 do
      local c = conns[i]
      if c and not result and (ready[c.sock] or (c.sock.dirty and c.sock:dirty())) then step(c) end
    end
  end
  for i = #conns, 1, -1 do close(conns[i]) end
  for _, s in ipairs(servers) do s:close() end
  if not result then
    return nil, "no redirect arrived on " .. uri .. " within " .. (opts.timeout or 300) .. " s"
  end
  return result
end

return _M
