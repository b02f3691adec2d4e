--- Resumable exports: what `export -o FILE` and `sync -o FILE` keep when they stop part-way (the daily
-- limit, a failure, Ctrl-C, SIGTERM): the rows so far in FILE.partial and, in FILE.resume (0600, JSON), the
-- next page's link, the rows and bytes written so far and the options that shape the output, so that
-- `--resume` continues with the page after the last whole one and ends byte-identical to a run that never
-- stopped. FILE.resume is written after every page (the page's rows flushed first), so even kill -9 leaves
-- a state to continue from.
local io, ipairs, os, pcall, require, tostring, type = io, ipairs, os, pcall, require, tostring, type

local concat = table.concat

local core = require "exactonline.core"
local cjson = require "cjson"

local _M = {}

_M.EXIT = 3       -- stopped, resumable (Ctrl-C and SIGTERM keep 130 and 143, and are resumable too)
_M.VERSION = 1

function _M.sidecar(output) return output .. ".resume" end
function _M.kept(output) return output .. ".partial" end

--- Save the state after a whole page. --> true | nil, err
function _M.save(output, state)
  state.version = _M.VERSION
  return core.atomic_write(_M.sidecar(output), cjson.encode(state) .. "\n", 384) -- 0600: the link is data
end

--- The state a stopped run left for output. --> state | nil, message
function _M.load(output)
  local path = _M.sidecar(output)
  local f = io.open(path, "rb")
  if not f then
    return nil, "nothing to resume: there is no " .. path .. " (run the command without --resume to start)"
  end
  local text = f:read("*a")
  f:close()
  local ok, st = pcall(cjson.decode, text)
  if not ok or type(st) ~= "table" or st.version ~= _M.VERSION or type(st.next) ~= "string"
    or type(st.partial) ~= "string" or type(st.bytes) ~= "number" then
    return nil, path .. " is not a resume state this version wrote; run without --resume to start over"
  end
  local fst = core.stat(st.partial, true)
  if not fst or fst.type ~= "file" then
    return nil, "the rows so far (" .. st.partial .. ") are gone; run without --resume to start over"
  end
  return st
end

--- After success: the state and any rows kept by an earlier stop are obsolete.
function _M.forget(output)
  os.remove(_M.sidecar(output))
  os.remove(_M.kept(output))
end

local function quote(s)
  if s:match("^[%w%-%._/:=,@%%+]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- The command that continues: the one given, without a client secret, with --resume.
function _M.command(argv)
  local words, skip, has = { "exactonline" }, false, false
  for _, a in ipairs(argv or {}) do
    if skip then
      skip = false
    elseif a == "--client-secret" then
      skip = true
    elseif not a:match("^%-%-client%-secret=") then
      if a == "--resume" then has = true end
      words[#words + 1] = quote(a)
    end
  end
  if not has then words[#words + 1] = "--resume" end
  return concat(words, " ")
end

--- The message for a stop that left a state, and its exit code.
function _M.stopped(reason, output, rows, argv, code)
  return tostring(reason) .. "\n" .. output .. " was not written; the " .. ("%d"):format(rows)
    .. " rows so far are kept in "
    .. _M.kept(output) .. ". To continue where it stopped:\n  " .. _M.command(argv), code or _M.EXIT
end

--- An output that continues the kept rows of state (cut back to its last whole page).
-- --> out (as util.atomic_output's: file, commit, abort, tmp) | nil, message
function _M.output(path, state)
  local ok, err = core.truncate(state.partial, state.bytes)
  if not ok then return nil, err end
  local f, ferr = core.append_file(state.partial)
  if not f then return nil, ferr end
  local out = { file = f, path = path, tmp = state.partial, resumed = true }
  function out.commit()
    local fok, werr = f:flush(true)
    if not fok then f:close(); return nil, "cannot write " .. path .. ": " .. tostring(werr) end
    f:close()
    local rok, rerr = os.rename(state.partial, path)
    if not rok then return nil, "cannot rename onto " .. path .. ": " .. tostring(rerr) end
    return true
  end
  function out.abort() f:close() end -- the kept rows stay: still resumable
  return out
end

return _M
