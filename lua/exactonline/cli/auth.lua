--- exactonline auth: authorize the app once, as a person. Prints the authorization URL (opens it when
-- there is a display), takes the redirect URL or code (stdin, --redirect-url, or --listen for a
-- localhost redirect URI), exchanges it at once (codes live 3 minutes), stores the tokens, says who is connected.
local io, os, require, tonumber, type = io, os, require, tonumber, type

local util = require "exactonline.cli.util"
local config = require "exactonline.cli.config"
local parser = require "exactonline.cli.parser"

local _M = {}

_M.summary = "authorize an app: print the URL, take the redirect, store the tokens"

function _M.add_to_parser(root)
  local c = parser.command(root, "auth", {
    summary = _M.summary,
    usage = "[--redirect-url URL | --listen] [options]",
    description = "Authorize the app: open the printed URL, log in, consent, and paste the address the browser was\n"
      .. "sent to (or just the code). The code is exchanged at once and the tokens go to the token file.",
    examples = {
      "EXACT_CLIENT_ID=… EXACT_CLIENT_SECRET=… EXACT_REDIRECT_URI=… EXACT_REGION=nl exactonline auth",
      "exactonline auth --redirect-url 'https://example.com/callback?code=stampNL001.abc%21IAAA…&state=…'",
      "exactonline auth --redirect-uri https://localhost:8765/callback --listen",
    },
  })
  parser.option(c, "--redirect-url", "URL", "the redirect URL (or code) instead of reading it from stdin")
  parser.option(c, "--state", "STATE", "with --redirect-url: the state the login was started with (checked)")
  parser.flag(c, "--listen", "catch the redirect on https://localhost:PORT (when that is the redirect URI)")
  parser.option(c, "--timeout", "SECONDS", "how long --listen waits (default 300)", { number = true })
  parser.flag(c, "--no-browser", "do not run xdg-open")
  parser.flag(c, "--force-login", "ask Exact to show the login page even when a session exists")
  config.add_flags(c)
  return parser.finish(c, config.CONNECTION_TITLE)
end

--- Who is connected: current/Me --> row | nil, err
local function whoami(client)
  local data, err = client:get("/api/v1/current/Me")
  if not data then return nil, err end
  if type(data) == "table" and data[1] then data = data[1] end
  return data
end
_M.whoami = whoami

local HTTPS_NOTE = [[
The browser will warn that the connection is not private: the certificate was made just now for
localhost and no authority signed it. Choose "Advanced" and "Proceed to localhost" (or "Accept the
risk and continue"); or copy the address from the browser's address bar, paste it here and press Enter.
]]

-- The address or code, from --redirect-url, --listen or stdin. --> text | nil, message
local function redirect_from(args, s, client, state, out)
  if args.redirect_url then return args.redirect_url end
  local url = client:authorization_url { state = state, force_login = args.force_login and true or false }
  out:write("Open this address in a browser, log in to Exact Online and allow access:\n\n  ", url, "\n\n")
  if not args.no_browser and (os.getenv("DISPLAY") or os.getenv("WAYLAND_DISPLAY")) then
    util.spawn({ "xdg-open", url }, { quiet = true }) -- without the secret in its environment
  end
  if args.listen then
    return require("exactonline.cli.listen").listen(s.redirect_uri, {
      state = state, timeout = args.timeout, stdin = true,
      on_ready = function()
        out:write("Waiting for the redirect on ", s.redirect_uri, " …\n")
        if s.redirect_uri:match("^https:") then out:write(HTTPS_NOTE) end
        out:flush()
      end,
      on_ignored = function(why) io.stderr:write("exactonline auth: ignored ", util.clean(why), "\n") end,
    })
  end
  out:write("Then paste the address the browser was sent to (or just the code) and press Enter:\n> ")
  out:flush()
  local input = io.stdin:read("*l")
  if not input or input:match("^%s*$") then
    return nil, "no redirect URL or code given (stdin was empty); run exactonline auth again"
  end
  return input
end

function _M.run(args)
  local client, s, code = config.connect(args, nil, { "redirect_uri" })
  if not client then return nil, s, code end
  local out = io.stdout
  local state = util.random_hex(16)
  local input, ierr = redirect_from(args, s, client, state, out)
  if not input then return nil, ierr, 1 end
  input = input:gsub("^%s+", ""):gsub("%s+$", "")

  -- A redirect URL from the login this run started carries our state; a bare code carries none, and a URL
  -- given with --redirect-url comes from a login started elsewhere (checked only against --state).
  local expected = (input:find("[?&]code=") or input:find("[?&]error=")) and state or nil
  if args.redirect_url then expected = args.state end
  local tokens, err = client:exchange(input, expected)
  if not tokens then return nil, err, 1 end

  local me, merr = whoami(client)
  local division = s.division or (me and tonumber(me.CurrentDivision))
  config.write_info(s, {
    division = division,
    user = me and (me.FullName or me.UserName) or nil,
    base_url = s.base_url, region = (not s.base_url) and s.region or nil,
    authorized_at = os.time(),
  })
  out:write("Tokens stored in ", s.token_file, "\n")
  if me then
    -- names come from Exact: printed without control characters
    out:write("Connected as ", util.clean(me.FullName or me.UserName or "?"),
      me.Email and (" <" .. util.clean(me.Email) .. ">") or "", "\n")
    out:write("Division: ", division and require("exactonline.cli.format").number(division) or "?",
      me.DivisionCustomerName and (" (" .. util.clean(me.DivisionCustomerName) .. ")") or "", "\n")
  else
    out:write("Authorized, but reading current/Me failed: ", util.clean(util.message(merr)), "\n")
  end
  out:flush()
  client:close()
  return 0
end

return _M
