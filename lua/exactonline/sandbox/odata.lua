--- OData v2 query options as Exact Online reads them: $filter (comparisons, and/or/not, parentheses,
-- substringof/startswith), $select, literals guid'…', datetime'…', 'it''s', numbers (123, 123L).
local string, table, math = string, table, math
local cjson = require "cjson.safe"
local tonumber, tostring, type, error, pcall = tonumber, tostring, type, error, pcall

local _M = {}

_M.null = cjson.null

local KEYWORDS = { eq = true, ne = true, gt = true, ge = true, lt = true, le = true,
                   ["and"] = true, ["or"] = true, ["not"] = true }

local function days_from_civil(y, m, d)
  y = (m <= 2) and (y - 1) or y
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

--- datetime'2026-01-29T00:00:00' text --> epoch ms (UTC)
function _M.datetime_ms(s)
  local y, mo, d, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  if not y then return nil end
  local h, mi, se = rest:match("^T(%d%d):(%d%d):?(%d*%.?%d*)")
  local secs = days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400 +
    (tonumber(h) or 0) * 3600 + (tonumber(mi) or 0) * 60 + (tonumber(se) or 0)
  return secs * 1000
end

local function tokenize(s)
  local toks, i, n = {}, 1, #s
  while i <= n do
    local c = s:sub(i, i)
    if c:match("%s") then
      i = i + 1
    elseif c == "(" or c == ")" or c == "," then
      toks[#toks + 1] = { t = c }
      i = i + 1
    elseif c == "'" then
      local j, buf = i + 1, {}
      while true do
        if j > n then error("unterminated string literal in $filter", 0) end
        local ch = s:sub(j, j)
        if ch == "'" then
          if s:sub(j + 1, j + 1) == "'" then buf[#buf + 1] = "'"; j = j + 2
          else break end
        else
          buf[#buf + 1] = ch; j = j + 1
        end
      end
      toks[#toks + 1] = { t = "lit", kind = "string", v = table.concat(buf) }
      i = j + 1
    elseif c:match("[%-%d]") then
      local num = s:match("^%-?%d+%.?%d*", i)
      if not num then error("syntax error in $filter at position " .. i, 0) end
      i = i + #num
      local suffix = s:sub(i, i)
      if suffix:match("[LlMmDdFf]") then i = i + 1 end
      toks[#toks + 1] = { t = "lit", kind = "number", v = tonumber(num) }
    elseif c:match("[%a_]") then
      local word = s:match("^[%w_/%.]+", i)
      i = i + #word
      local lw = word:lower()
      if s:sub(i, i) == "'" and (lw == "guid" or lw == "datetime" or lw == "datetimeoffset") then
        local close = s:find("'", i + 1, true)
        if not close then error("unterminated " .. lw .. " literal in $filter", 0) end
        local text = s:sub(i + 1, close - 1)
        i = close + 1
        if lw == "guid" then
          if not text:match("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$") then
            error("invalid guid literal: guid'" .. text .. "'", 0)
          end
          toks[#toks + 1] = { t = "lit", kind = "guid", v = text:lower() }
        else
          local ms = _M.datetime_ms(text)
          if not ms then error("invalid datetime literal: " .. text, 0) end
          toks[#toks + 1] = { t = "lit", kind = "datetime", v = ms }
        end
      elseif KEYWORDS[lw] then
        toks[#toks + 1] = { t = lw }
      elseif lw == "true" or lw == "false" then
        toks[#toks + 1] = { t = "lit", kind = "bool", v = (lw == "true") }
      elseif lw == "null" then
        toks[#toks + 1] = { t = "lit", kind = "null" }
      else
        toks[#toks + 1] = { t = "id", v = word }
      end
    else
      error("syntax error in $filter at '" .. s:sub(i, i + 10) .. "'", 0)
    end
  end
  return toks
end

local CMP = {
  eq = function(a, b) return a == b end, ne = function(a, b) return a ~= b end,
  gt = function(a, b) return a > b end, ge = function(a, b) return a >= b end,
  lt = function(a, b) return a < b end, le = function(a, b) return a <= b end,
}

-- a row value made comparable with a literal of the given kind
local function coerce(v, kind)
  if v == nil or v == _M.null then return nil end
  if kind == "guid" then return tostring(v):lower() end
  if kind == "datetime" then
    return tonumber((tostring(v)):match("^/Date%((%-?%d+)"))
  end
  if kind == "number" then return tonumber(v) end
  return v
end

--- compile(filter, fields) --> predicate(row), nil, used | nil, err.  fields: set of known property names;
-- used: the set of properties the filter names (for Exact's mandatory filters).
function _M.compile(filter, fields)
  local used = {}
  local ok, res = pcall(function()
    local toks = tokenize(filter)
    local pos = 1
    local function peek() return toks[pos] end
    local function take(t)
      local tok = toks[pos]
      if not tok or (t and tok.t ~= t) then
        error("syntax error in $filter" .. (t and (": expected " .. t) or ""), 0)
      end
      pos = pos + 1
      return tok
    end
    local function field(name)
      if not fields[name] then error("Property '" .. name .. "' does not exist", 0) end
      used[name] = true
      return name
    end
    local expr
    local function func(name)
      take("(")
      local a = expr()
      take(",")
      local b = expr()
      take(")")
      return name, a, b
    end
    local function value_of(tok)
      if tok.t == "id" then
        local f = field(tok.v)
        return function(row) return row[f] end
      elseif tok.t == "lit" then
        local v = tok.v
        return function() return v end
      end
      error("syntax error in $filter", 0)
    end
    local function primary()
      local tok = peek()
      if not tok then error("syntax error in $filter: unexpected end", 0) end
      if tok.t == "(" then
        take("(")
        local e = expr()
        take(")")
        return e
      elseif tok.t == "not" then
        take("not")
        local e = primary()
        return function(row) return not e(row) end
      elseif tok.t == "id" and toks[pos + 1] and toks[pos + 1].t == "(" then
        take("id")
        local lname = tok.v:lower()
        if lname ~= "substringof" and lname ~= "startswith" and lname ~= "endswith" then
          error("unsupported function " .. tok.v .. " in $filter", 0)
        end
        local _, a, b = func(lname)
        local pred = function(row)
          local x, y = a(row), b(row)
          if type(x) ~= "string" or type(y) ~= "string" then return false end
          x, y = x:lower(), y:lower()
          if lname == "substringof" then return y:find(x, 1, true) ~= nil end
          if lname == "startswith" then return x:sub(1, #y) == y end
          return y == "" or x:sub(-#y) == y
        end
        if peek() and CMP[peek().t] then
          local op = take().t
          local lit = take("lit")
          return function(row) return CMP[op](pred(row), lit.v) end
        end
        return pred
      elseif tok.t == "id" then
        take("id")
        local f = field(tok.v)
        local optok = take()
        local cmp = CMP[optok.t]
        if not cmp then error("expected a comparison after " .. f .. " in $filter", 0) end
        local lit = take("lit")
        local kind, lv = lit.kind, lit.v
        if kind == "null" then
          return function(row)
            local v = row[f]
            local isnull = (v == nil or v == _M.null)
            if optok.t == "eq" then return isnull end
            if optok.t == "ne" then return not isnull end
            return false
          end
        end
        return function(row)
          local v = coerce(row[f], kind)
          if v == nil or type(v) ~= type(lv) then return optok.t == "ne" end
          return cmp(v, lv)
        end
      elseif tok.t == "lit" then
        -- literal on the left: 'x' eq Name
        local left = value_of(take())
        local optok = take()
        local cmp = CMP[optok.t]
        if not cmp then error("syntax error in $filter", 0) end
        local right = take("id")
        local f = field(right.v)
        return function(row)
          local lv = left()
          local v = coerce(row[f], tok.kind)
          if v == nil or type(v) ~= type(lv) then return optok.t == "ne" end
          return cmp(lv, v)
        end
      end
      error("syntax error in $filter", 0)
    end
    local function conj()
      local e = primary()
      while peek() and peek().t == "and" do
        take("and")
        local l, r = e, primary()
        e = function(row) return l(row) and r(row) end
      end
      return e
    end
    expr = function()
      local tok = peek()
      if tok and tok.t == "lit" and toks[pos + 1] and (toks[pos + 1].t == "," or toks[pos + 1].t == ")") then
        return value_of(take())
      end
      if tok and tok.t == "id" and toks[pos + 1] and (toks[pos + 1].t == "," or toks[pos + 1].t == ")") then
        return value_of(take())
      end
      local e = conj()
      while peek() and peek().t == "or" do
        take("or")
        local l, r = e, conj()
        e = function(row) return l(row) or r(row) end
      end
      return e
    end
    local e = expr()
    if pos <= #toks then error("syntax error in $filter near token " .. pos, 0) end
    return e
  end)
  if not ok then return nil, tostring(res) end
  return res, nil, used
end

--- lower_bound(filter, name) --> N when every row the filter keeps has name > N (from "name gt N" or
-- "name ge N+1" in a filter of and-ed terms), else nil: lets a sync read start where the filter starts
function _M.lower_bound(filter, name)
  if not filter or filter:lower():find("%f[%w]or%f[^%w]") or filter:lower():find("%f[%w]not%f[^%w]") then
    return nil
  end
  local best
  local lname = name:lower()
  for field, op, num in filter:gmatch("([%w_]+)%s+(%a%a)%s+(%-?%d+)[Ll]?") do
    if field:lower() == lname then
      local n = tonumber(num)
      op = op:lower()
      if op == "ge" then n = n - 1 end
      if (op == "gt" or op == "ge") and (not best or n > best) then best = n end
    end
  end
  return best
end

--- select(list, fields) --> array of names | nil (all) | nil, err
function _M.select(list, fields, all)
  if list == nil or list == "" then return nil end
  local out = {}
  for name in list:gmatch("[^,]+") do
    name = name:match("^%s*(.-)%s*$")
    if name == "*" then return all end
    if not fields[name] then return nil, "Property '" .. name .. "' does not exist" end
    out[#out + 1] = name
  end
  return out
end

--- percent-encode for query values: keeps what OData URLs show literally ($ ' , ( ) : * !)
function _M.escape_query(s)
  return (tostring(s):gsub("[^%w%-%._~%$',%(%):%*!/]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

--- percent-encode for a redirect's query (RFC 3986 unreserved only: a code's ! becomes %21)
function _M.escape_strict(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

function _M.xml_escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                                         ['"'] = "&quot;", ["'"] = "&apos;" }))
end

return _M
