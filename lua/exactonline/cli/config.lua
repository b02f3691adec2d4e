--- CLI configuration: the one list of connection settings (their flags, EXACT_* variables and config-file
-- keys), resolved flags > environment > the Lua config file ($XDG_CONFIG_HOME/exactonline/config.lua).
-- Also the shared connect step every command that talks to Exact Online uses.
local io, ipairs, os, pairs, pcall, require, setmetatable, tonumber, tostring, type =
  io, ipairs, os, pairs, pcall, require, setmetatable, tonumber, tostring, type
local floor, format = math.floor, string.format
local load, loadstring, setfenv = load, rawget(_G, "loadstring"), rawget(_G, "setfenv")

local core = require "exactonline.core"
local dirname = require("exactonline.cli.util").dirname
local parser = require "exactonline.cli.parser"

local _M = {}

--- key, flag, environment variable, argname, what it is (for "missing …"), help, extras.
-- Every command that connects gets these flags; resolve() reads the same list. config is the file itself.
_M.settings = {
  { key = "client_id", flag = "--client-id", env = "EXACT_CLIENT_ID", argname = "ID",
    what = "the app's client id", help = "the app's client id" },
  { key = "client_secret", flag = "--client-secret", env = "EXACT_CLIENT_SECRET", argname = "SECRET",
    what = "the app's client secret",
    help = "the app's client secret (other users see it in ps: prefer the variable or --client-secret-file)" },
  { key = "client_secret_file", flag = "--client-secret-file", env = "EXACT_CLIENT_SECRET_FILE", argname = "FILE",
    what = "the file holding the client secret", help = "read the client secret from FILE (- for stdin)" },
  { key = "redirect_uri", flag = "--redirect-uri", env = "EXACT_REDIRECT_URI", argname = "URI",
    what = "the app's redirect URI", help = "the redirect URI registered for the app" },
  { key = "region", flag = "--region", env = "EXACT_REGION", argname = "R",
    what = "the region (nl be de fr es uk us: where the administration lives; there is no default)",
    help = "nl be de fr es uk us (required unless --base-url)" },
  { key = "base_url", flag = "--base-url", env = "EXACT_BASE_URL", argname = "URL",
    what = "the base URL", help = "use this host instead of a region's" },
  { key = "division", flag = "--division", env = "EXACT_DIVISION", argname = "N", number = true,
    what = "the division", help = "division to work in (default: the user's current)" },
  { key = "token_file", flag = "--token-file", env = "EXACT_TOKEN_FILE", argname = "FILE",
    what = "the token file", help = "where tokens are kept" },
  { key = "cafile", flag = "--cafile", env = "EXACT_CAFILE", argname = "FILE",
    what = "the CA file", help = "extra CA certificates to trust" },
  { key = "retries", flag = "--retries", env = "EXACT_RETRIES", argname = "N", number = true,
    what = "the tries per call", help = "most tries per call (on 5xx, timeouts, drops; default 4)" },
  { key = "retry_delay", flag = "--retry-delay", env = "EXACT_RETRY_DELAY", argname = "S", number = true,
    what = "the first retry's wait", help = "seconds before the first retry, doubling (default 1)" },
  { key = "config", flag = "--config", env = "EXACT_CONFIG", argname = "FILE", file = false,
    what = "the config file", help = "the Lua config file" },
}

local by_key = {}
for _, def in ipairs(_M.settings) do by_key[def.key] = def end

_M.CONNECTION_TITLE = "connection (flags > EXACT_* environment > config file)"

--- Add the connection flags to a command (parser.command).
function _M.add_flags(cmd)
  for _, def in ipairs(_M.settings) do
    parser.option(cmd, def.flag, def.argname, def.help .. " (" .. def.env .. ")",
      { group = "connection", number = def.number })
  end
end

local function config_home()
  local xdg = os.getenv("XDG_CONFIG_HOME")
  if xdg and xdg ~= "" then return xdg end
  return (os.getenv("HOME") or ".") .. "/.config"
end
_M.config_home = config_home

local function bit(mode, b) return floor(mode / b) % 2 == 1 end

-- Whoever can write the config file (or swap it: its folder) can point base_url and cafile elsewhere and
-- receive the client secret and refresh token; so, like the token file: ours (or root's), not writable by
-- group or others. A sticky folder (/tmp) lets nobody else replace our file in it.
local function check_owner(path, st, what)
  local me = core.geteuid()
  if st.uid ~= me and st.uid ~= 0 then
    return nil, format("refusing the config file: %s %s belongs to another user (uid %d); it must be yours",
      what, path, st.uid)
  end
  local sticky = st.type == "dir" and bit(st.mode, 512)
  if (bit(st.mode, 16) or bit(st.mode, 2)) and not sticky then
    return nil, format("refusing the config file: %s %s can be written by other users (mode %04o); "
      .. "run: chmod go-w %s", what, path, st.mode, path)
  end
  return true
end

-- Read the config file: `return { client_id = "…", … }` or plain assignments `client_id = "…"`, as text
-- only (never bytecode), in an empty environment. --> table | nil, message
local function read_file(path, explicit)
  local real = core.realpath(path)
  if not real then
    if explicit then return nil, "cannot read the config file " .. path end
    return {}
  end
  local st, serr = core.stat(real)
  if not st then return nil, "cannot read the config file " .. path .. ": " .. tostring(serr) end
  if st.type ~= "file" then return nil, "the config file " .. path .. " is not a regular file" end
  local ok, why = check_owner(real, st, "the file")
  if not ok then return nil, why end
  local dir = dirname(real)
  local dst = core.stat(dir)
  if dst then
    ok, why = check_owner(dir, dst, "its folder")
    if not ok then return nil, why end
  end
  local f = io.open(real, "rb")
  if not f then return nil, "cannot read the config file " .. path end
  local text = f:read("*a")
  f:close()
  local env = {}
  local chunk, err
  if setfenv and not rawget(_G, "jit") then -- plain Lua 5.1: no mode argument, so refuse bytecode here
    if text:byte(1) == 27 then return nil, "the config file " .. path .. " is not text" end
    chunk, err = loadstring(text, "@" .. path)
    if chunk then setfenv(chunk, env) end
  else
    chunk, err = load(text, "@" .. path, "t", env)
  end
  if not chunk then return nil, "the config file has an error: " .. tostring(err) end
  local cok, ret = pcall(chunk)
  if not cok then return nil, "the config file " .. path .. " failed: " .. tostring(ret) end
  if type(ret) == "table" then return ret end
  return setmetatable(env, nil)
end

local function value(v)
  if v == "" then return nil end
  return v
end

local function read_secret_file(path)
  if path == "-" then
    local line = io.stdin:read("*l")
    if not line or line == "" then return nil, "no client secret on stdin (--client-secret-file -)" end
    return (line:gsub("%s+$", ""))
  end
  local f, err = io.open(path, "rb")
  if not f then return nil, "cannot read the client secret file: " .. tostring(err) end
  local text = f:read("*a") or ""
  f:close()
  text = text:gsub("^%s+", ""):gsub("%s+$", "")
  if text == "" then return nil, "the client secret file " .. path .. " is empty" end
  return text
end

--- resolve(flags) --> settings table | nil, message
-- flags: the parsed arguments (client_id, …, config), as argparse gives them.
function _M.resolve(flags)
  flags = flags or {}
  local explicit = value(flags.config) or value(os.getenv("EXACT_CONFIG"))
  local path = explicit or (config_home() .. "/exactonline/config.lua")
  local file, err = read_file(path, explicit ~= nil)
  if not file then return nil, err end
  local levels = {
    function(def) return value(flags[def.key]) end,
    function(def) return value(os.getenv(def.env)) end,
    function(def) if def.file ~= false then return value(file[def.key]) end end,
  }
  local s = { config_path = path }
  for _, def in ipairs(_M.settings) do
    for _, level in ipairs(levels) do
      local v = level(def)
      if v ~= nil then s[def.key] = v break end
    end
  end
  -- the secret and its file are one setting: the first level that has either decides
  s.client_secret, s.client_secret_file = nil, nil
  for i, level in ipairs(levels) do
    local secret, secret_file = level(by_key.client_secret), level(by_key.client_secret_file)
    if secret and secret_file then
      return nil, "give the client secret once: --client-secret or --client-secret-file, not both"
    end
    if secret or secret_file then
      s.client_secret, s.client_secret_file = secret, secret_file
      s.secret_on_command_line = (i == 1 and secret ~= nil)
      break
    end
  end
  if s.secret_on_command_line then
    io.stderr:write("exactonline: warning: --client-secret on the command line is visible to other users "
      .. "(ps); set EXACT_CLIENT_SECRET or use --client-secret-file FILE\n")
  end
  if s.client_secret_file then
    local secret, serr = read_secret_file(s.client_secret_file)
    if not secret then return nil, serr end
    s.client_secret = secret
  end
  for _, def in ipairs(_M.settings) do
    local v = s[def.key]
    if def.number and v ~= nil then
      s[def.key] = tonumber(v)
      if not s[def.key] then return nil, def.what .. " must be a number, not '" .. tostring(v) .. "'" end
    end
  end
  if not s.token_file then
    s.token_file = require("exactonline.store.file").default_path()
      or (config_home() .. "/exactonline/tokens.json")
  end
  return s
end

--- The one-line error for a missing setting.
function _M.missing(key)
  local def = by_key[key]
  if not def then return "missing setting " .. key end
  local pass = def.flag
  if key == "client_secret" then pass = "--client-secret-file FILE" end
  if key == "region" then pass = "--region R (or --base-url URL)" end
  return ("missing %s: pass %s or set %s (or %s in the config file)"):format(def.what, pass, def.env, key)
end

--- need(s, {"client_id", …}) --> true | nil, message
function _M.need(s, keys)
  for _, k in ipairs(keys) do
    if s[k] == nil then return nil, _M.missing(k) end
  end
  return true
end

--- The settings an authorized client needs (the redirect URI only for `auth`: Exact's refresh takes none).
_M.client_keys = { "client_id", "client_secret" }

-- No default region, as in the library: each region is its own Exact Online, and a wrong one only shows in
-- the browser ("Client with identifier … not found"), so a missing one is said here, before anything runs.
function _M.need_host(s)
  if s.region == nil and s.base_url == nil then return nil, _M.missing("region") end
  return true
end

--- The token file store for these settings.
function _M.store(s)
  local exactonline = require "exactonline"
  local ok, store = pcall(exactonline.file_store, s.token_file)
  if not ok then return nil, tostring(store) end
  return store
end

-- each retry, one line on stderr (on a terminal it replaces a progress line, which the next page redraws)
local function on_retry(info)
  local tty = core.isatty(2)
  io.stderr:write(tty and "\r\27[K" or "", "exactonline: ", require("exactonline.retry").describe(info), "\n")
  io.stderr:flush()
end

--- client(s [, extra]) --> client | nil, message.  Needs client_id, client_secret and a region.
function _M.client(s, extra)
  local ok, err = _M.need(s, _M.client_keys)
  if ok then ok, err = _M.need_host(s) end
  if not ok then return nil, err end
  local exactonline = require "exactonline"
  local store, serr = _M.store(s)
  if not store then return nil, serr end
  local division = s.division
  if not division then
    local info = _M.read_info(s)
    division = info and info.division
  end
  local conf = {
    client_id = s.client_id, client_secret = s.client_secret, redirect_uri = s.redirect_uri,
    region = (not s.base_url) and s.region or nil, base_url = s.base_url,
    division = division, cafile = s.cafile, store = store, retries = s.retries, retry_delay = s.retry_delay,
    on_retry = on_retry,
  }
  for k, v in pairs(extra or {}) do conf[k] = v end
  local ok2, client, cerr = pcall(exactonline.new, conf)
  if not ok2 then return nil, (tostring(client):gsub("^[^%s:]+%.lua:%d+: ", "")) end
  if not client then return nil, tostring(cerr) end
  return client
end

--- The shared connect step: settings, then a client. --> client, settings | nil, message, exit code
function _M.connect(args, extra, keys)
  local s, err = _M.resolve(args)
  if not s then return nil, err, 2 end
  local ok, kerr = _M.need(s, keys or {})
  if not ok then return nil, kerr, 2 end
  local client, cerr = _M.client(s, extra)
  if not client then return nil, cerr, 2 end
  return client, s
end

-- What `auth` learned (who, which division, which host), kept beside the token file, no secrets.
local function info_path(s)
  return s.token_file .. ".info"
end

function _M.read_info(s)
  local f = io.open(info_path(s), "r")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  local ok, t = pcall(require("cjson").decode, text)
  if ok and type(t) == "table" then return t end
  return nil
end

function _M.write_info(s, info)
  return core.atomic_write(info_path(s), require("cjson").encode(info) .. "\n", 384) -- 0600
end

return _M
