--- exactonline auth: authorize the app once, as a person. Prints the authorization URL (opens it when
-- there is a display), takes the redirect URL or code (stdin, --redirect-url, or --listen for a
-- localhost redirect URI), exchanges it at once (codes live 3 minutes), stores the tokens, says who is connected.
local io, os, pcall, require, tonumber, tostring, type = io, os, pcall, require, tonumber, tostring, type

local util = require "exactonline.cli.util"
local config = require "exactonline.cli.config"

local _M = {}

_M.spec = {
  usage = "[--redirect-url URL | --listen] [options]",
  description = "Authorize the app: open the printed URL, log in, consent, and paste the address the browser was\n"
    .. "sent to (or just the code). The code is exchanged at once and the tokens go to the token file.",
  connection = true,
  options = {
    { "--redirect-url", value = "URL", help = "the redirect URL (or code) instead of reading it from stdin" },
    { "--state", value = "STATE", help = "with --redirect-url: the state the login was started with (checked)" },
    { "--listen", help = "catch the redirect on http://localhost:PORT (when that is the redirect URI)" },
    { "--timeout", value = "SECONDS", number = true, help = "how long --listen waits (default 300)" },
    { "--no-browser", help = "do not run xdg-open" },
    { "--force-login", help = "ask Exact to show the login page even when a session exists" },
  },
  examples = {
    "EXACT_CLIENT_ID=… EXACT_CLIENT_SECRET=… EXACT_REDIRECT_URI=https://example.com/callback exactonline auth",
    "exactonline auth --redirect-url 'https://example.com/callback?code=stampNL001.abc%21IAAA…&state=…'",
    "exactonline auth --redirect-uri http://localhost:8765/callback --listen",
  },
}

-- The redirect URI's port when it is http on localhost / 127.0.0.1.
local function listen_target(uri)
  local host, port = uri:match("^http://([%w%.]+):(%d+)")
  if not host then
    host = uri:match("^http://([%w%.]+)[/?]?")
    port = host and "80"
  end
  if host ~= "localhost" and host ~= "127.0.0.1" then return nil end
  return host, tonumber(port)
end

--- Wait for the browser's GET on the redirect URI; answer it, return the full redirect URL.
local function listen(uri, timeout)
  local host, port = listen_target(uri)
  if not host then
    return nil, "--listen needs a redirect URI on http://localhost:PORT or http://127.0.0.1:PORT, not " .. uri
  end
  local ok, socket = pcall(require, "socket")
  if not ok then return nil, "--listen needs luasocket (Debian: lua-socket)" end
  local server, err = socket.bind("127.0.0.1", port)
  if not server then return nil, "cannot listen on 127.0.0.1:" .. port .. ": " .. tostring(err) end
  server:settimeout(timeout or 300)
  local deadline = socket.gettime() + (timeout or 300)
  while true do
    local conn, aerr = server:accept()
    if not conn then
      server:close()
      return nil, "no redirect arrived on " .. uri .. " (" .. tostring(aerr) .. ")"
    end
    conn:settimeout(10)
    local line = conn:receive("*l")
    repeat local h = conn:receive("*l") until not h or h == ""
    local target = line and line:match("^GET (%S+) HTTP/")
    if target and (target:find("code=", 1, true) or target:find("error=", 1, true)) then
      local body = "<!doctype html><title>exactonline</title><p>Done: you can close this window and go back to"
        .. " the terminal.</p>\n"
      conn:send("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: " .. #body
        .. "\r\nConnection: close\r\n\r\n" .. body)
      conn:close()
      server:close()
      return "http://" .. host .. ":" .. port .. target
    end
    conn:send("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    conn:close()
    if socket.gettime() > deadline then
      server:close()
      return nil, "no redirect arrived on " .. uri
    end
  end
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- Who is connected: current/Me --> row | nil, err
local function whoami(client)
  local data, err = client:get("/api/v1/current/Me")
  if not data then return nil, err end
  if type(data) == "table" and data[1] then data = data[1] end
  return data
end
_M.whoami = whoami

function _M.main(argv)
  local name = "auth"
  local opts, code = util.parse(name, argv, _M.spec)
  if not opts then return code end
  local s, serr = util.settings(opts)
  if not s then return util.fail(name, serr, 2) end
  local ok, nerr = config.need(s, config.client_keys)
  if not ok then return util.fail(name, nerr, 2) end
  local client, cerr = config.client(s)
  if not client then return util.fail(name, cerr, 2) end

  local state = util.random_hex(16)
  local url = client:authorization_url { state = state, force_login = opts.force_login and true or false }
  local out = io.stdout
  local input = opts.redirect_url
  if not input then
    out:write("Open this address in a browser, log in to Exact Online and allow access:\n\n  ", url, "\n\n")
    if not opts.no_browser and (os.getenv("DISPLAY") or os.getenv("WAYLAND_DISPLAY")) then
      os.execute("xdg-open " .. shell_quote(url) .. " >/dev/null 2>&1 &")
    end
    if opts.listen then
      out:write("Waiting for the redirect on ", s.redirect_uri, " …\n")
      out:flush()
      local got, lerr = listen(s.redirect_uri, opts.timeout)
      if not got then return util.fail(name, lerr, 1) end
      input = got
    else
      out:write("Then paste the address the browser was sent to (or just the code) and press Enter:\n> ")
      out:flush()
      input = io.stdin:read("*l")
      if not input or input:match("^%s*$") then
        return util.fail(name, "no redirect URL or code given (stdin was empty); run exactonline auth again", 1)
      end
    end
  end
  input = input:gsub("^%s+", ""):gsub("%s+$", "")

  -- A redirect URL from the login this run started carries our state; a bare code carries none, and a URL
  -- given with --redirect-url comes from a login started elsewhere (checked only against --state).
  local expected = (input:find("[?&]code=") or input:find("[?&]error=")) and state or nil
  if opts.redirect_url then expected = opts.state end
  local tokens, err = client:exchange(input, expected)
  if not tokens then return util.fail(name, err, 1) end

  local me, merr = whoami(client)
  local division = s.division or (me and tonumber(me.CurrentDivision))
  local info = {
    division = division,
    user = me and (me.FullName or me.UserName) or nil,
    base_url = s.base_url, region = (not s.base_url) and (s.region or "nl") or nil,
    authorized_at = os.time(),
  }
  config.write_info(s, info)
  out:write("Tokens stored in ", s.token_file, "\n")
  if me then
    out:write("Connected as ", tostring(me.FullName or me.UserName or "?"),
      me.Email and (" <" .. tostring(me.Email) .. ">") or "", "\n")
    out:write("Division: ", division and require("exactonline.cli.format").number(division) or "?",
      me.DivisionCustomerName and (" (" .. tostring(me.DivisionCustomerName) .. ")") or "", "\n")
  else
    out:write("Authorized, but reading current/Me failed: ", util.message(merr), "\n")
  end
  out:flush()
  client:close()
  return 0
end

_M.listen = listen
return _M
