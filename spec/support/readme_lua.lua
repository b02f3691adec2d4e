--- The README's Lua blocks, run by spec/90-readme_spec.lua as one reader's script: a child process (so
-- HOME, os.getenv and the current folder are the reader's), one chunk per block, in README order.
--   lua readme_lua.lua INPUT.json OUTPUT.json
-- INPUT: { blocks = { { name, code, given = { NAME = value } } } }. A block's top-level locals (lines that
-- start with `local`) are visible to the blocks after it, as if the README were one file; `given` adds names
-- the README says come from elsewhere. OUTPUT: per block { ok, error, prints = { { line, text } } }: what
-- each print wrote, with the block's line it was called from.
local cjson = require "cjson"

local io, ipairs, pairs, tostring, select, load, table, debug, xpcall, setmetatable, assert =
  io, ipairs, pairs, tostring, select, load, table, debug, xpcall, setmetatable, assert
local setfenv = rawget(_G, "setfenv")

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

--- the names a block declares at its top level: `local a, b = …`, `local function f`
local function top_level_locals(code)
  local names = {}
  for line in (code .. "\n"):gmatch("([^\n]*)\n") do
    local fn = line:match("^local%s+function%s+([%a_][%w_]*)")
    if fn then
      names[#names + 1] = fn
    else
      local list = line:match("^local%s+([%a_][%w_%s,<>]*)=") or line:match("^local%s+([%a_][%w_%s,<>]*)$")
      for name in (list or ""):gmatch("([%a_][%w_]*)") do
        if name ~= "const" and name ~= "close" then names[#names + 1] = name end
      end
    end
  end
  return names
end

local input = cjson.decode(read(arg[1]))
local state, known, order = {}, {}, {}
local function know(name)
  if not known[name] then
    known[name] = true
    order[#order + 1] = name
  end
end

local results = {}
for i, block in ipairs(input.blocks) do
  for k, v in pairs(block.given or {}) do
    know(k)
    state[k] = v
  end
  local before = {}
  for _, n in ipairs(order) do before[#before + 1] = n end
  for _, n in ipairs(top_level_locals(block.code)) do know(n) end
  -- the prelude shares line 1 with the block's first line, so line numbers stay the block's own
  local prelude = "local __S = ...; "
  if #before > 0 then
    local reads = {}
    for j, n in ipairs(before) do reads[j] = "__S." .. n end
    prelude = prelude .. "local " .. table.concat(before, ", ") .. " = " .. table.concat(reads, ", ") .. "; "
  end
  local writes = {}
  for j, n in ipairs(order) do writes[j] = "__S." .. n end
  local epilogue = "\n" .. table.concat(writes, ", ") .. " = " .. table.concat(order, ", ")

  local chunkname = "=README block " .. i
  local prints = {}
  local env = setmetatable({}, { __index = _G })
  env.print = function(...)
    local parts = {}
    for j = 1, select("#", ...) do parts[j] = tostring((select(j, ...))) end
    local text = table.concat(parts, "\t")
    -- the line of this block the print was called from (also from a callback the block defined)
    local line
    for level = 2, 40 do
      local info = debug.getinfo(level, "Sl")
      if not info then break end
      if info.source == chunkname then line = info.currentline break end
    end
    prints[#prints + 1] = { line = line or 0, text = text }
    io.stdout:write(text, "\n")
  end
  local chunk, err
  if setfenv then -- Lua 5.1 (its load takes no string) and LuaJIT
    chunk, err = (loadstring or load)(prelude .. block.code .. epilogue, chunkname)
    if chunk then setfenv(chunk, env) end
  else
    chunk, err = load(prelude .. block.code .. epilogue, chunkname, "t", env)
  end
  local ok = chunk ~= nil
  if chunk then
    ok, err = xpcall(function() return chunk(state) end, function(e) return debug.traceback(tostring(e), 2) end)
  end
  results[i] = { name = block.name, ok = ok, error = (not ok) and tostring(err) or nil, prints = prints }
end

local f = assert(io.open(arg[2], "wb"))
f:write(cjson.encode(results))
f:close()
