--- A tiny HTTPS server that answers whatever raw bytes a spec sets and logs every request it gets, for
-- answers the sandbox would never give: a child process (spec/support/raw_https_server.lua, luasocket +
-- luasec) on a free loopback port, with its own CA and certificates.
--   local raw_https = require "support.raw_https"
--   local srv = raw_https.start()      -- srv.base_url, srv.port, srv.cafile; stopped when the spec file ends
--   srv:answer(status, headers, body)  -- "400 Bad Request" or 200, { "Name: value", … }, "…"
--                                      -- (Content-Length unless given, and Connection: close, are added;
--                                      -- {{n}} in body: the request's number, {{n%K}} modulo K)
--   srv:json(status, body, headers)    -- the same with Content-Type: application/json
--   srv:never_answer()                 -- each connection: the request is read, then 2 s of nothing
--   srv:certificate(name)              -- "good" (127.0.0.1, signed by srv.cafile), "othername" (signed,
--                                      -- for other.example) or "selfsigned" (127.0.0.1, signed by itself)
--   srv:requests(), srv:clear()        -- the request log: head lines, a blank line, the body, "----"
--   srv:stop()
local helpers = require "helpers"
local proc = require "support.proc"

local ipairs, pairs, tonumber, setmetatable, assert = ipairs, pairs, tonumber, setmetatable, assert
local concat = table.concat

local _M = {}

local Server = {}
Server.__index = Server

local q = helpers.quote

function Server:answer(status, headers, body)
  body = body or ""
  local out = { "HTTP/1.1 " .. status .. "\r\n" }
  local has_len = false
  for _, h in ipairs(headers or {}) do
    out[#out + 1] = h .. "\r\n"
    if h:lower():match("^content%-length:") then has_len = true end
  end
  -- a templated body changes length on the server: it runs until the connection closes
  if not has_len and not body:find("{{n", 1, true) then out[#out + 1] = "Content-Length: " .. #body .. "\r\n" end
  out[#out + 1] = "Connection: close\r\n\r\n" .. body
  helpers.write(self.dir .. "/answer", concat(out))
end

function Server:json(status, body, extra)
  local h = { "Content-Type: application/json; charset=utf-8" }
  for _, x in ipairs(extra or {}) do h[#h + 1] = x end
  self:answer(status, h, body)
end

function Server:never_answer()
  helpers.write(self.dir .. "/answer", "SLEEP")
end

function Server:certificate(name)
  helpers.write(self.dir .. "/cert", name)
end

function Server:requests()
  return helpers.read(self.dir .. "/requests.log") or ""
end

function Server:clear()
  os.remove(self.dir .. "/requests.log")
end

function Server:stop()
  if self.pid then helpers.sh("kill " .. self.pid) end
  self.pid = nil
end

-- our own CA; a server certificate for 127.0.0.1, one for another name, one self-signed
local function make_certificates(dir)
  local function openssl(args) assert(helpers.sh("cd " .. q(dir) .. " && openssl " .. args)) end
  openssl("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=raw-https-ca -keyout ca.key -out ca.pem")
  for name, san in pairs { good = "IP:127.0.0.1", othername = "DNS:other.example" } do
    helpers.write(dir .. "/" .. name .. ".ext", "subjectAltName=" .. san .. "\n")
    openssl("req -newkey rsa:2048 -nodes -subj /CN=" .. name .. " -keyout " .. name .. ".key -out " .. name .. ".csr")
    openssl("x509 -req -in " .. name .. ".csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile " .. name
      .. ".ext -out " .. name .. ".pem")
  end
  openssl("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
    .. " -keyout selfsigned.key -out selfsigned.pem")
end

--- start() --> a running Server (its certificate "good", no answer set yet: a 500)
function _M.start()
  local dir = helpers.tmpdir()
  make_certificates(dir)
  local server = setmetatable({ dir = dir, cafile = dir .. "/ca.pem" }, Server)
  server.pid = proc.spawn("exec env " .. helpers.lua_env() .. " " .. helpers.lua() .. " "
    .. q(helpers.root .. "/spec/support/raw_https_server.lua") .. " " .. q(dir) .. " >" .. q(dir .. "/server.log")
    .. " 2>&1")
  helpers.on_cleanup(function() server:stop() end)
  for _ = 1, 200 do
    server.port = tonumber(helpers.read(dir .. "/port"))
    if server.port then break end
    helpers.sh("sleep 0.05")
  end
  assert(server.port, "the raw HTTPS server did not start: " .. (helpers.read(dir .. "/server.log") or ""))
  server.base_url = "https://127.0.0.1:" .. server.port
  return server
end

return _M
