--- exactonline.store.file: one JSON file, replaced atomically, guarded by a sidecar flock.
--   local store = require("exactonline.store.file").new{ path = "~/.config/exactonline/tokens.json" }
--   (or exactonline.file_store(path, opts)) is a table of plain functions (no self):
--   store.load()        --> tokens | nil (no file yet) | nil, err
--   store.save(tokens)  --> true | true, "kept_newer" | nil, err
--   store.lock(timeout) --> true | nil, err      store.unlock()
-- See exactonline.store.contract and README "Token storage".
local core = require "exactonline.core"
local contract = require "exactonline.store.contract"
local cjson = require("cjson").new()

local type, tostring, tonumber, pcall, rawget, ipairs = type, tostring, tonumber, pcall, rawget, ipairs
local os_getenv = os.getenv
local error = error
local math_floor = math.floor
local string_format = string.format
local table_concat = table.concat

local _M = {}

local FORMAT = "exactonline-tokens/1"
_M.FORMAT = FORMAT
local COUNTS_FORMAT = "exactonline-counts/1"

local function store_error(code, message, hint)
  return core.error { kind = "store", code = code, message = message, hint = hint }
end

--- `~`, `~/…`, `$XDG_CONFIG_HOME`, `${XDG_CONFIG_HOME}` and `$HOME` expansion.
function _M.expand(path)
  if type(path) ~= "string" or path == "" then
    error("exactonline.file_store: path must be a non-empty string", 3)
  end
  local home = os_getenv("HOME")
  local xdg = os_getenv("XDG_CONFIG_HOME")
  if not xdg or xdg == "" then xdg = home and (home .. "/.config") end
  local missing
  local function var(name)
    if name == "XDG_CONFIG_HOME" then return xdg end
    local v = os_getenv(name)
    if v == nil then missing = name end
    return v or ""
  end
  if path == "~" or path:sub(1, 2) == "~/" then
    if not home then return nil, store_error("no_home", "cannot expand ~ in " .. path .. ": HOME is not set",
      "set HOME or give an absolute path") end
    path = home .. path:sub(2)
  end
  path = path:gsub("%${([%w_]+)}", var):gsub("%$([%a_][%w_]*)", var)
  if missing then
    return nil, store_error("no_env", "cannot expand $" .. missing .. " in the token path: it is not set",
      "set " .. missing .. " or give an absolute path")
  end
  return path
end

--- `$XDG_CONFIG_HOME/exactonline/tokens.json`, falling back to `~/.config/exactonline/tokens.json`.
function _M.default_path()
  local xdg = os_getenv("XDG_CONFIG_HOME")
  if xdg and xdg ~= "" then return xdg .. "/exactonline/tokens.json" end
  local home = os_getenv("HOME")
  if not home or home == "" then
    return nil, store_error("no_home", "no default token path: neither XDG_CONFIG_HOME nor HOME is set",
      "set XDG_CONFIG_HOME or HOME, or give the store a path")
  end
  return home .. "/.config/exactonline/tokens.json"
end

local newer, copy_tokens = contract.newer, contract.copy

-- Parse the file's text: tokens | nil, err (corrupt, empty or foreign: code "corrupt" / "foreign").
local function parse(path, text)
  if text:match("^%s*$") then
    return nil, store_error("corrupt", path .. " is empty, not an exactonline token file",
      "nothing was overwritten; remove the file (or pass force = true) and log in again")
  end
  local ok, doc = pcall(cjson.decode, text)
  if not ok or type(doc) ~= "table" then
    return nil, store_error("corrupt", path .. " is not valid JSON, so it is not an exactonline token file",
      "nothing was overwritten; inspect it, then remove it (or pass force = true) and log in again")
  end
  if doc.format ~= FORMAT or type(doc.tokens) ~= "table" then
    local fmt = type(doc.format) == "string" and (" (format " .. doc.format .. ")") or ""
    return nil, store_error("foreign", path .. " is JSON but not an exactonline token file" .. fmt,
      "nothing was overwritten; give the store another path, or remove the file and log in again")
  end
  local t = copy_tokens(doc.tokens)
  if type(t.refresh_token) ~= "string" and type(t.access_token) ~= "string" then
    return nil, store_error("corrupt", path .. " holds no tokens",
      "nothing was overwritten; remove the file and log in again")
  end
  return t
end

local function parent_of(p)
  local d = p:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  if d == "" then return "/" end
  return d
end

local ENOENT = 2 -- Linux's errno, as core.stat returns it

local function mode_bit(mode, b) return math_floor(mode / b) % 2 == 1 end

-- inside nginx the store runs as the worker user, which is not the user who set it up more often than not
local function nginx_note()
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and type(ngx.worker) == "table" then
    return "; nginx workers run as the `user` named in nginx.conf (nobody when there is no `user` line)"
  end
  return ""
end

-- Can this process's user keep the tokens in dir: a real folder (not a symbolic link), not writable by
-- everyone, where it may create files, with the token and lock files its own? Checked at first use, so a
-- store set up by another user (authorized as root, used by nginx workers running as nobody) fails at once,
-- saying what to chown, rather than at the first refresh ten minutes later. true | nil, err
local function preflight(dir, files)
  local me, my_uid = core.user_name(), core.geteuid()
  local st = core.stat(dir, true)
  if st and st.type == "link" then
    local real = core.realpath(dir)
    return nil, store_error("folder_link", "the token folder " .. dir .. " is a symbolic link" ..
      (real and (" to " .. real) or ""), "give the store the real folder's path" ..
      (real and (": " .. real .. "/" .. files[1]:match("[^/]+$")) or ""))
  end
  if st and st.type ~= "dir" then
    return nil, store_error("ENOTDIR", "the token folder " .. dir .. " is not a folder", "check the path")
  end
  if st and mode_bit(st.mode, 2) then
    return nil, store_error("folder_mode", string_format("the token folder %s can be written by every user " ..
      "(mode %03o): anyone could replace or remove the tokens", dir, st.mode % 512),
      "keep the tokens in a private folder (mkdir -m 700), or chmod o-w " .. dir)
  end
  if not st then
    -- missing (created at the first save: its nearest existing parent must let us) or out of reach
    local up = dir
    local ust
    repeat
      up = parent_of(up)
      ust = core.stat(up)
    until ust or up == "/" or up == "."
    local ok, werr = core.writable(dir)
    if not ok and werr.code == "ENOENT" and ust then
      local ok2 = core.writable(up)
      if ok2 then return true end
      return nil, store_error("EACCES", string_format("%s (the user this process runs as) cannot create the " ..
        "token folder %s: %s is not writable by it (owned by %s, mode %03o)", me, dir, up,
        core.user_name(ust.uid), ust.mode % 512), string_format("create it for %s: mkdir -m 700 -p %s && " ..
        "chown %s %s%s", me, dir, me, dir, nginx_note()))
    end
    if not ok and (werr.code == "EACCES" or werr.code == "EPERM") and ust then
      return nil, store_error("EACCES", string_format("%s (the user this process runs as) cannot reach the " ..
        "token folder %s: it may not enter %s (owned by %s, mode %03o)", me, dir, up, core.user_name(ust.uid),
        ust.mode % 512), string_format("keep the tokens in a folder %s can reach, or let it through: " ..
        "chmod o+x %s%s", me, up, nginx_note()))
    end
    return nil, werr
  end
  local theirs = {} -- what another user owns: the folder (when we may not write it), the files
  local hidden -- the folder is closed to us: its files cannot even be seen
  local ok, werr = core.writable(dir)
  if not ok and werr.code ~= "EACCES" and werr.code ~= "EPERM" then return nil, werr end
  if not ok and st.uid ~= my_uid then theirs[#theirs + 1] = dir end
  for _, f in ipairs(files) do
    local fst, _, errno = core.stat(f, true)
    if fst and fst.uid ~= my_uid then theirs[#theirs + 1] = f end
    if not fst and errno ~= ENOENT then hidden = true end
  end
  if #theirs > 0 then
    local owner = core.user_name((st.uid ~= my_uid and st or core.stat(theirs[#theirs], true) or st).uid)
    local what
    if ok then
      what = table_concat(theirs, " and ") .. (#theirs > 1 and " are" or " is") .. " owned by " .. owner
    else
      what = string_format("it cannot write in the token folder %s (owned by %s, mode %03o): Permission denied",
        dir, core.user_name(st.uid), st.mode % 512)
    end
    if hidden and theirs[1] == dir then theirs = { "-R", dir } end
    return nil, store_error(ok and "owner" or "EACCES", me .. " (the user this process runs as) cannot keep " ..
      "its tokens here: " .. what, "chown " .. (theirs[1] == "-R" and "-R " .. me .. " " .. dir or
      me .. " " .. table_concat(theirs, " ")) .. " (or run this as " .. owner .. ")" .. nginx_note())
  end
  if not ok then
    return nil, store_error("EACCES", string_format("%s (the user this process runs as) cannot write in the " ..
      "token folder %s (mode %03o): Permission denied", me, dir, st.mode % 512),
      "chmod 700 " .. dir .. " (its owner, " .. me .. ", may)")
  end
  return true
end

--- new{ path = …, force = false, lock_timeout = 30 } --> store (as before, new(path, opts) works too)
-- opts.path: the token file (default: default_path()); `~` and `$VARS` are expanded
-- opts.force: let save replace a file it cannot parse (default false)
-- opts.lock_timeout: default seconds for lock() (default 30)
function _M.new(...)
  local opts = contract.options({ "path" }, ...)
  local path = opts.path
  if path == nil then
    local err
    path, err = _M.default_path()
    if not path then error(tostring(err), 2) end
  end
  local p, perr = _M.expand(path)
  if not p then error(tostring(perr), 2) end
  path = p
  local dir, base = path:match("^(.*)/([^/]+)$")
  if not dir then dir, base = ".", path end
  if dir == "" then dir = "/" end
  if base == "" or base == "." or base == ".." then
    error("exactonline.file_store: path must name a file, not a folder: " .. path, 2)
  end
  local lock_path = path .. ".lock"
  -- count(): the events live beside the tokens in their own file, behind their own lock, so counting
  -- never waits for a refresh and never rewrites the token file
  local count_path, count_lock = path .. ".counts", path .. ".counts.lock"
  local force = opts.force and true or false
  local default_timeout = tonumber(opts.lock_timeout) or 30

  local store = { path = path, lock_path = lock_path }
  local held -- the lock userdata while this store holds the lock
  local checked -- preflight passed once

  local function check()
    if checked then return true end
    local ok, err = preflight(dir, { path, lock_path, count_path, count_lock })
    if not ok then return nil, err end
    checked = true
    return true
  end

  local function read()
    local text, err = core.read_private(path)
    if text == false then return nil end
    if not text then return nil, err end
    return parse(path, text)
  end

  function store.load()
    local ok, cerr = check()
    if not ok then return nil, cerr end
    local t, err = read()
    if err then return nil, err end
    return t
  end

  -- lock for the duration of fn when the caller does not hold the store's lock
  local function locked(fn, ...)
    if held then return fn(...) end
    local ok, err = store.lock(default_timeout)
    if not ok then return nil, err end
    local pok, a, b = pcall(fn, ...)
    store.unlock()
    if not pok then error(a, 0) end
    return a, b
  end

  local function write(tokens, replace)
    local current, err = read()
    if err and not (force and (err.code == "corrupt" or err.code == "foreign")) then return nil, err end
    if current and not replace and newer(current, tokens) then -- never an older chain over a newer one
      return true, "kept_newer"
    end
    local doc = { format = FORMAT, tokens = copy_tokens(tokens) }
    local ok, werr = core.atomic_write(path, cjson.encode(doc), 384) -- 0600
    if not ok then return nil, werr end
    return true
  end

  function store.save(tokens, opts)
    if type(tokens) ~= "table" then error("exactonline.store.file: save(tokens) needs a table", 2) end
    local ok, err = check()
    if not ok then return nil, err end
    ok, err = core.mkdir_p(dir, 448) -- 0700
    if not ok then return nil, err end
    return locked(write, tokens, type(opts) == "table" and opts.replace)
  end

  function store.lock(timeout)
    if held then
      return nil, store_error("lock_held", "this store already holds the lock on " .. lock_path,
        "call unlock() before lock() again")
    end
    local ok, err = check()
    if not ok then return nil, err end
    ok, err = core.mkdir_p(dir, 448)
    if not ok then return nil, err end
    local lk, lerr = core.flock(lock_path, tonumber(timeout) or default_timeout)
    if not lk then return nil, lerr end
    held = lk
    core.clean_temps(dir, base) -- temp files a crashed writer left; safe under the lock
    return true
  end

  function store.unlock()
    local lk = held
    held = nil
    if lk then lk:unlock() end
    return true
  end

  -- the counts file: { name = { times… } }; a missing, empty or unreadable-as-JSON one counts nothing (it is
  -- bookkeeping, rewritten at the next add); one that others may read or own is an error, as for tokens
  local function read_counts()
    local text, err = core.read_private(count_path)
    if text == false then return {} end
    if not text then return nil, err end
    local ok, doc = pcall(cjson.decode, text)
    if not ok or type(doc) ~= "table" or doc.format ~= COUNTS_FORMAT or type(doc.counts) ~= "table" then
      return {}
    end
    return doc.counts
  end

  --- count(name, now, window, add) --> n, oldest | nil, err: shared by every process using this file
  function store.count(name, now, window, add)
    add = contract.count_args("exactonline.store.file", name, now, window, add)
    local ok, err = check()
    if not ok then return nil, err end
    if add == 0 then -- a look needs no lock: the file is only ever replaced whole
      local counts, cerr = read_counts()
      if not counts then return nil, cerr end
      local _, n, oldest = contract.tally(counts[name], now, window, 0)
      return n, oldest
    end
    ok, err = core.mkdir_p(dir, 448)
    if not ok then return nil, err end
    local lk, lerr = core.flock(count_lock, default_timeout)
    if not lk then return nil, lerr end
    local pok, n, oldest = pcall(function()
      core.clean_temps(dir, base .. ".counts")
      local counts, cerr = read_counts()
      if not counts then return nil, cerr end
      local list, c, first = contract.tally(counts[name], now, window, add)
      counts[name] = c > 0 and list or nil
      local wok, werr = core.atomic_write(count_path, cjson.encode { format = COUNTS_FORMAT, counts = counts }, 384)
      if not wok then return nil, werr end
      return c, first
    end)
    lk:unlock()
    if not pok then error(n, 0) end
    return n, oldest
  end

  return store
end

return _M
