--- Small helpers shared by the CLI commands.
local io, os, tostring, type, require = io, os, tostring, type, require
local core = require "exactonline.core"

local _M = {}

--- Text that came from outside (Exact's answers, a browser's request, a file) made safe for a terminal:
-- C0 and C1 control characters (escape sequences) and DEL removed; newlines kept only when asked.
function _M.clean(s, keep_newlines)
  s = tostring(s)
  if keep_newlines then
    s = s:gsub("[%z\1-\8\11-\31\127]", "")
  else
    s = s:gsub("[%z\1-\8\10-\31\127]", "")
  end
  return (s:gsub("\194[\128-\159]", ""))
end

--- A one-line message for an error object or a raised string ("file.lua:12: " stripped).
function _M.message(err)
  if type(err) == "table" then return tostring(err) end
  return (tostring(err):gsub("^[^%s:]+%.lua:%d+: ", ""))
end

--- The folder of a path: "a/b" --> "a", "b" --> ".", "/b" --> "/" (the CLI's files, the gateway's key file)
function _M.dirname(path)
  local d = path:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  if d == "" then return "/" end
  return d
end

--- "1 row", "2 rows"
function _M.count(n, word)
  return ("%d %s%s"):format(n, word, n == 1 and "" or "s")
end

--- Random hex from the kernel (the OAuth state, temp names).
function _M.random_hex(n)
  return (core.random(n):gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

--- Our process id.
function _M.pid()
  return core.getpid()
end

local function split(path)
  local dir, base = path:match("^(.*)/([^/]+)$")
  if not dir then return ".", path end
  if dir == "" then dir = "/" end
  return dir, base
end

--- Environment variables a child process (xdg-open and the browser, openssl) never gets: secrets.
_M.SECRET_ENV = { "EXACT_CLIENT_SECRET", "EXACTONLINE_SANDBOX_TOKEN" }

--- Start argv (no shell) without the secrets in its environment.
-- opts: wait (--> exit code), quiet (stdio on /dev/null). --> pid | exit code | nil, message
function _M.spawn(argv, opts)
  opts = opts or {}
  return core.spawn(argv, { unset = _M.SECRET_ENV, wait = opts.wait, quiet = opts.quiet })
end

--- Remove `path.partial-PID.*` files whose process is gone (an export killed with -9). --> number removed
function _M.clean_partials(path)
  local dir, base = split(path)
  return core.clean_partials(dir, base)
end

--- A file written to `path.partial-PID.RANDOM` (created O_EXCL|O_NOFOLLOW, mode 0600 or the existing
-- target's) and renamed over `path` on commit; abort removes it. Partials of dead processes beside it
-- are removed first, so kill -9 leaves no growing litter.
function _M.atomic_output(path)
  if path == nil or path == "-" then
    return { file = io.stdout, commit = function() io.stdout:flush() return true end, abort = function() end }
  end
  _M.clean_partials(path)
  local mode = 384 -- 0600
  local st = core.stat(path)
  if st and st.type == "file" then mode = st.mode % 512 end
  local tmp = path .. ".partial-" .. core.getpid() .. "." .. _M.random_hex(6)
  local f, err = core.create_file(tmp, mode)
  if not f then return nil, "cannot write " .. tostring(path) .. ": " .. tostring(err) end
  local out = { file = f, path = path, tmp = tmp }
  function out.commit()
    local ok, werr = f:flush(true)
    if not ok then f:close(); os.remove(tmp); return nil, "cannot write " .. path .. ": " .. tostring(werr) end
    f:close()
    local rok, rerr = os.rename(tmp, path)
    if not rok then os.remove(tmp); return nil, "cannot rename onto " .. path .. ": " .. tostring(rerr) end
    return true
  end
  function out.abort()
    f:close()
    os.remove(tmp)
  end
  return out
end

return _M
