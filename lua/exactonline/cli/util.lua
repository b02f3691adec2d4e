--- Small helpers shared by the CLI commands.
local io, os, tostring, type, require = io, os, tostring, type, require

local _M = {}

--- Print a one-line error for a command and return its exit code.
function _M.fail(name, err, code)
  local msg = tostring(err):gsub("%s+$", ""):gsub("^exactonline: ", "")
  io.stderr:write("exactonline ", name, ": ", msg, "\n")
  io.stderr:flush()
  return code or 1
end

--- Parse a command's arguments; prints help or the usage error. --> opts | nil, exit code
function _M.parse(name, argv, spec)
  local args = require "exactonline.cli.args"
  local opts, err = args.parse(argv, spec)
  if not opts then
    io.stderr:write("exactonline ", name, ": ", err, "\n", "(exactonline ", name, " --help for more)\n")
    return nil, 2
  end
  if opts.help then
    io.stdout:write(args.help(name, spec), "\n")
    return nil, 0
  end
  return opts
end

--- Settings from flags, environment and config file. --> settings | nil, message
function _M.settings(opts)
  local args = require "exactonline.cli.args"
  local flags = args.connection_flags(opts)
  return require("exactonline.cli.config").resolve(flags)
end

--- Random hex from /dev/urandom (state parameter).
function _M.random_hex(n)
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(n) or tostring(os.time()) .. tostring({})
  if f then f:close() end
  return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

--- Our process id (Linux), for temp file names.
function _M.pid()
  local f = io.open("/proc/self/stat", "r")
  if not f then return tostring(os.time()) end
  local s = f:read("*l") or ""
  f:close()
  return s:match("^(%d+)") or tostring(os.time())
end

--- Remove `path.partial-PID` files whose process is gone (an export killed with -9). --> number removed
function _M.clean_partials(path)
  local dir, base = path:match("^(.*)/([^/]+)$")
  if not dir then dir, base = ".", path end
  if dir == "" then dir = "/" end
  local core = require "exactonline.core"
  return core.clean_partials(dir, base)
end

--- A file written to `path.partial-PID` and renamed over `path` on commit; abort removes it.
-- Partials of dead processes beside it are removed first, so kill -9 leaves no growing litter.
function _M.atomic_output(path)
  if path == nil or path == "-" then
    return { file = io.stdout, commit = function() io.stdout:flush() return true end, abort = function() end }
  end
  _M.clean_partials(path)
  local tmp = path .. ".partial-" .. _M.pid()
  local f, err = io.open(tmp, "wb")
  if not f then return nil, "cannot write " .. tostring(path) .. ": " .. tostring(err) end
  local out = { file = f, path = path, tmp = tmp }
  function out.commit()
    local ok, werr = f:flush()
    if not ok then f:close(); os.remove(tmp); return nil, "cannot write " .. path .. ": " .. tostring(werr) end
    f:close()
    local rok, rerr = os.rename(tmp, path)
    if not rok then os.remove(tmp); return nil, "cannot rename onto " .. path .. ": " .. tostring(rerr) end
    return true
  end
  function out.abort()
    if io.type(f) == "file" then f:close() end
    os.remove(tmp)
  end
  return out
end

--- Is v an exactonline error object (or anything with a message)?
function _M.message(err)
  if type(err) == "table" then return tostring(err) end
  local s = tostring(err)
  -- strip "file.lua:123: " from errors raised with a position
  return (s:gsub("^[^%s:]+%.lua:%d+: ", ""))
end

return _M
