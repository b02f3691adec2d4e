--- The gateway's client keys: a JSON file (mode 0600) of names and the SHA-256 of each key, never the key
-- itself. A key is shown once, when it is made; a revoked key stays listed (with when) so the log can name it.
--   keys.create(path, name) --> key, entry | nil, message
--   keys.revoke(path, name) --> entry | nil, message
--   keys.read(path)         --> doc | nil, message          (a missing file is an empty key set)
--   keys.matcher(doc)       --> function(presented) --> name | nil, "revoked"|"unknown", name
-- Runs outside nginx (the CLI) and inside it (the gateway re-reads the file when it changes).
local core = require "exactonline.core"
local dirname = require("exactonline.cli.util").dirname
local cjson = require("cjson").new()

local io, type, tostring, ipairs, pcall, os_time, error = io, type, tostring, ipairs, pcall, os.time, error
local str_format, str_byte, str_gsub = string.format, string.byte, string.gsub

local _M = {}

_M.FORMAT = "exactonline-gateway-keys/1"
_M.PREFIX = "eogw_" -- lets secret scanners and people tell a gateway key from anything else

local function hex(bytes)
  return (str_gsub(bytes, ".", function(c) return str_format("%02x", str_byte(c)) end))
end

--- a key's stored form
function _M.hash(key)
  return core.sha256_hex(key)
end

--- the default key file: beside the token file
function _M.default_path(token_file)
  local dir = tostring(token_file):match("^(.*)/[^/]*$") or "."
  return dir .. "/gateway-keys.json"
end

local function valid_name(name)
  return type(name) == "string" and #name <= 64 and name:match("^[%w][%w._@-]*$") ~= nil
end

-- The file's text | false (no file) | nil, message. It holds hashes, not secrets, but whoever can change it
-- can let anyone in: a regular file (no symbolic link), written by nobody but its owner; owned by this user,
-- or (a gateway started as root) by the workers' user it was handed to.
local function read_text(path)
  local st = core.stat(path, true)
  if not st then return false end
  if st.type ~= "file" then return nil, path .. " is not a regular file (a symbolic link or a folder?)" end
  if st.mode % 64 >= 8 or st.mode % 8 >= 1 then
    return nil, ("%s can be read or written by other users (mode %o): chmod 600 %s"):format(path, st.mode, path)
  end
  local me = core.geteuid()
  if st.uid ~= me and me ~= 0 then
    return nil, ("%s belongs to another user (uid %d): it must be yours"):format(path, st.uid)
  end
  local f, err = io.open(path, "rb")
  if not f then return nil, tostring(err) end
  local text = f:read("*a")
  f:close()
  return text
end

--- doc | nil, message. A file that does not exist yet holds no keys.
function _M.read(path)
  local text, err = read_text(path)
  if text == false then return { format = _M.FORMAT, keys = {} }, nil, "missing" end
  if not text then return nil, "cannot read the gateway key file " .. path .. ": " .. tostring(err) end
  local ok, doc = pcall(cjson.decode, text)
  if not ok or type(doc) ~= "table" or doc.format ~= _M.FORMAT or type(doc.keys) ~= "table" then
    return nil, "the gateway key file " .. path .. " is not an exactonline gateway key file (nothing was changed)"
  end
  for _, k in ipairs(doc.keys) do
    if type(k) ~= "table" or not valid_name(k.name) or type(k.sha256) ~= "string" or #k.sha256 ~= 64 then
      return nil, "the gateway key file " .. path .. " holds a malformed entry (nothing was changed)"
    end
  end
  return doc
end

local function find(doc, name)
  for i, k in ipairs(doc.keys) do
    if k.name == name then return k, i end
  end
end

-- write doc atomically (0600); run as root, the file keeps its owner (or takes its folder's), so a
-- gateway whose workers run as another user can still read it
local function write(path, doc)
  local before = core.stat(path)
  local ok, err = core.atomic_write(path, cjson.encode(doc) .. "\n", 384) -- 0600
  if not ok then
    return nil, "cannot write the gateway key file " .. path .. ": " .. tostring(type(err) == "table" and
      err.message or err)
  end
  if core.geteuid() == 0 then
    local owner = before or core.stat(dirname(path))
    if owner and owner.uid ~= 0 then
      local cok, cerr = core.chown(path, owner.uid, owner.gid)
      if not cok then return nil, tostring(cerr) end
    end
  end
  return true
end

-- run fn(doc) under the key file's lock, then write what it returns
local function update(path, fn)
  local ok, merr = core.mkdir_p(dirname(path), 448) -- 0700
  if not ok then return nil, tostring(type(merr) == "table" and merr.message or merr) end
  -- run as root on a key file handed to the workers' user, the lock file is taken back (the workers never lock)
  local lst = core.geteuid() == 0 and core.stat(path .. ".lock", true)
  if lst and lst.type == "file" and lst.uid ~= 0 then core.chown(path .. ".lock", 0, 0) end
  local lock, lerr = core.flock(path .. ".lock", 10)
  if not lock then return nil, tostring(type(lerr) == "table" and lerr.message or lerr) end
  local doc, err = _M.read(path)
  local a, b
  if doc then
    a, b = fn(doc)
    if a then
      local wok, werr = write(path, doc)
      if not wok then a, b = nil, werr end
    end
  else
    a, b = nil, err
  end
  lock:unlock()
  return a, b
end

--- make a key called name; --> key (shown once, never stored), entry | nil, message
function _M.create(path, name)
  if not valid_name(name) then
    return nil, "a key name is 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
  end
  local key = _M.PREFIX .. hex(core.random(32))
  local entry, err = update(path, function(doc)
    local old, i = find(doc, name)
    if old and not old.revoked_at then
      return nil, "a key named " .. name .. " exists already: revoke it first (--revoke-key " .. name .. ")"
    end
    local e = { name = name, sha256 = _M.hash(key), created_at = os_time() }
    if old then doc.keys[i] = e else doc.keys[#doc.keys + 1] = e end
    return e
  end)
  if not entry then return nil, err end
  return key, entry
end

--- revoke the key called name; --> entry | nil, message
function _M.revoke(path, name)
  return update(path, function(doc)
    local k = find(doc, name)
    if not k then return nil, "no key named " .. tostring(name) .. " in " .. path end
    if k.revoked_at then return nil, "the key named " .. name .. " is revoked already" end
    k.revoked_at = os_time()
    return k
  end)
end

--- a checker for the keys in doc: function(presented) --> name | nil, "unknown"|"revoked", name.
-- Every stored hash is compared, in constant time, whatever matched before.
function _M.matcher(doc)
  if type(doc) ~= "table" or type(doc.keys) ~= "table" then error("keys.matcher: a key document", 2) end
  local entries = {}
  for i, k in ipairs(doc.keys) do entries[i] = { k.sha256, k.name, k.revoked_at ~= nil } end
  local n = #entries
  return function(presented)
    if type(presented) ~= "string" or presented == "" then return nil, "missing" end
    local h = core.sha256_hex(presented)
    local found, revoked
    for i = 1, n do
      local e = entries[i]
      if core.secure_equal(h, e[1]) then
        if e[3] then revoked = e[2] else found = e[2] end
      end
    end
    if found then return found end
    if revoked then return nil, "revoked", revoked end
    return nil, "unknown"
  end
end

--- how many keys can be used (not revoked)
function _M.active(doc)
  local n = 0
  for _, k in ipairs(doc.keys) do if not k.revoked_at then n = n + 1 end end
  return n
end

return _M
