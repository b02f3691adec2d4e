--- CLI configuration: flags, then EXACT_* environment variables, then the Lua config file
-- ($XDG_CONFIG_HOME/exactonline/config.lua, a Lua table). Also makes the client and its file store.
local io, ipairs, os, pairs, pcall, require, setmetatable, tonumber, tostring, type =
  io, ipairs, os, pairs, pcall, require, setmetatable, tonumber, tostring, type
local loadfile, setfenv = loadfile, rawget(_G, "setfenv")

local _M = {}

-- key, flag, environment variable, what it is (for the one-line "missing" error)
_M.settings = {
  { "client_id", "--client-id", "EXACT_CLIENT_ID", "the app's client id" },
  { "client_secret", "--client-secret", "EXACT_CLIENT_SECRET", "the app's client secret" },
  { "redirect_uri", "--redirect-uri", "EXACT_REDIRECT_URI", "the app's redirect URI" },
  { "region", "--region", "EXACT_REGION", "the region" },
  { "base_url", "--base-url", "EXACT_BASE_URL", "the base URL" },
  { "division", "--division", "EXACT_DIVISION", "the division" },
  { "token_file", "--token-file", "EXACT_TOKEN_FILE", "the token file" },
  { "cafile", "--cafile", "EXACT_CAFILE", "the CA file" },
}

local function config_home()
  local xdg = os.getenv("XDG_CONFIG_HOME")
  if xdg and xdg ~= "" then return xdg end
  return (os.getenv("HOME") or ".") .. "/.config"
end
_M.config_home = config_home

local function fail(msg)
  return nil, msg
end

-- Read the config file: `return { client_id = "…", … }` or plain assignments `client_id = "…"`.
local function read_file(path, explicit)
  local f = io.open(path, "r")
  if not f then
    if explicit then return fail("cannot read the config file " .. path) end
    return {}
  end
  f:close()
  local env = setmetatable({}, { __index = { os = { getenv = os.getenv } } })
  local chunk, err
  if setfenv then
    chunk, err = loadfile(path)
    if chunk then setfenv(chunk, env) end
  else
    chunk, err = loadfile(path, "t", env)
  end
  if not chunk then return fail("the config file has an error: " .. tostring(err)) end
  local ok, ret = pcall(chunk)
  if not ok then return fail("the config file " .. path .. " failed: " .. tostring(ret)) end
  if type(ret) == "table" then return ret end
  return setmetatable(env, nil)
end

--- resolve(flags) --> settings table | nil, message
-- flags: a table with config keys (from args.connection_flags) plus `config` (a config file path).
function _M.resolve(flags)
  flags = flags or {}
  local explicit = flags.config or os.getenv("EXACT_CONFIG")
  local path = explicit
  if not path or path == "" then path = config_home() .. "/exactonline/config.lua" end
  local file, err = read_file(path, explicit and explicit ~= "")
  if not file then return nil, err end
  local s = { config_path = path }
  for _, def in ipairs(_M.settings) do
    local k = def[1]
    local v = flags[k]
    if v == nil or v == "" then v = os.getenv(def[3]) end
    if v == nil or v == "" then v = file[k] end
    if v == "" then v = nil end
    s[k] = v
  end
  if s.division ~= nil then
    local n = tonumber(s.division)
    if not n then return nil, "the division must be a number, not '" .. tostring(s.division) .. "'" end
    s.division = n
  end
  if not s.token_file then
    local ok, fs = pcall(require, "exactonline.file_store")
    if ok and type(fs) == "table" and fs.default_path then
      s.token_file = fs.default_path()
    else
      s.token_file = config_home() .. "/exactonline/tokens.json"
    end
  end
  return s
end

--- The one-line error for a missing setting.
function _M.missing(key)
  for _, def in ipairs(_M.settings) do
    if def[1] == key then
      return ("missing %s: pass %s or set %s (or %s in the config file)"):format(def[4], def[2], def[3], key)
    end
  end
  return "missing setting " .. key
end

--- require_settings(s, {"client_id", …}) --> true | nil, message
function _M.need(s, keys)
  for _, k in ipairs(keys) do
    if s[k] == nil then return nil, _M.missing(k) end
  end
  return true
end

--- The settings an authorized client needs.
_M.client_keys = { "client_id", "client_secret", "redirect_uri" }

--- The token file store for these settings.
function _M.store(s)
  local exactonline = require "exactonline"
  local ok, store = pcall(exactonline.file_store, s.token_file)
  if not ok then return nil, tostring(store) end
  return store
end

--- client(s) --> client | nil, message.  Needs client_id, client_secret, redirect_uri.
function _M.client(s, extra)
  local ok, err = _M.need(s, _M.client_keys)
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
    region = (not s.base_url) and (s.region or "nl") or nil, base_url = s.base_url,
    division = division, cafile = s.cafile, store = store,
  }
  for k, v in pairs(extra or {}) do conf[k] = v end
  local ok2, client, cerr = pcall(exactonline.new, conf)
  if not ok2 then return nil, (tostring(client):gsub("^[^%s:]+%.lua:%d+: ", "")) end
  if not client then return nil, tostring(cerr) end
  return client
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
  local core = require "exactonline.core"
  return core.atomic_write(info_path(s), require("cjson").encode(info) .. "\n", 384) -- 0600
end

return _M
