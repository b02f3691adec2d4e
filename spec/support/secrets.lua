--- Collects every string a user could see (error texts, tostring, log lines, CLI output) while a spec
-- runs, and finds any secret among them.
--   local secrets = require "support.secrets"
--   local seen = secrets.new()
--   seen:add("what", text)          -- anything printable; error objects through tostring
--   seen:secret(s)                  -- a client secret or a token that must never show
--   seen:leaks() --> { "what: …" }  -- empty when nothing leaked
local ipairs, pairs, setmetatable, tostring, type = ipairs, pairs, setmetatable, tostring, type

local _M = {}
local Seen = {}
Seen.__index = Seen

function _M.new()
  return setmetatable({ texts = {}, secrets = {} }, Seen)
end

function Seen:add(what, v)
  if v == nil then return v end
  local text = type(v) == "string" and v or tostring(v)
  self.texts[#self.texts + 1] = { what = what, text = text }
  if type(v) == "table" then -- an error object: each field too (reason, hint, message)
    for k, x in pairs(v) do
      if type(x) == "string" then self.texts[#self.texts + 1] = { what = what .. "." .. tostring(k), text = x } end
    end
  end
  return v
end

function Seen:secret(s)
  if type(s) == "string" and #s >= 8 then self.secrets[#self.secrets + 1] = s end
end

function Seen:count() return #self.texts end

function Seen:leaks()
  local out = {}
  for _, t in ipairs(self.texts) do
    for _, s in ipairs(self.secrets) do
      if t.text:find(s, 1, true) then out[#out + 1] = t.what .. ": " .. t.text:sub(1, 200) end
    end
  end
  return out
end

return _M
