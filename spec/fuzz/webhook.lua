-- Fuzz target: webhook verification, played as an attacker who holds one captured delivery.
-- Input: <template>[\0<captured Content bytes>]. In the template every \1 becomes the captured Content
-- object and every \2 its genuine HashCode (quoted), so the fuzzer splices a real signature into any
-- structure it likes. Properties:
--   * verified => what lua-cjson decodes as the body's Content is exactly the captured (hashed) object,
--     and so is the content verify_webhook returns; a body is never verified on bytes a parser ignores;
--   * a body with one Content (the captured bytes) and one HashCode (its MAC) is verified;
--   * the scan that finds the members' bytes agrees with cjson on every input: the same names, each
--     name's last value decoding to what cjson holds, and no object where cjson reads none.
local f = require "common"
local cjson = require "cjson" -- what a user would decode the body with

local SECRET = "webhook-secret"
local CAPTURED = '{"Topic":"Accounts","ClientId":"c","Division":3167822,"Action":"Update",' ..
  '"Key":"a1b2","ExactOnlineEndpoint":"https:\\/\\/start.exactonline.nl\\/api\\/v1\\/x"}'
local hmac = hmac_sha256_hex -- luacheck: ignore 113 (from driver.c)

local pairs, ipairs, type, pcall, error = pairs, ipairs, type, pcall, error

-- equality of decoded JSON values: NaN equals NaN (cjson reads `nan`), null is cjson.null
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then return a == b or (a ~= a and b ~= b) end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function decode(s)
  local ok, v = pcall(cjson.decode, s)
  if ok then return v end
  return nil
end

-- the scan's members, checked against cjson's reading of the whole body; doc, members | nil
local function check_scan(body)
  local doc = decode(body)
  local object = type(doc) == "table" and body:match("^[ \t\n\r]*{") and not body:find("\0", 1, true)
  local members = f.core.webhook_members(body)
  if not object then
    if members ~= nil then error("webhook_members: members where cjson reads no object") end
    return nil
  end
  if type(members) ~= "table" then error("webhook_members: cjson reads an object, the scan does not") end
  local last = {}
  for _, m in ipairs(members) do
    if decode(m[2]) ~= m[1] then error("webhook_members: a name decoded otherwise than by cjson") end
    last[m[1]] = m[3]
  end
  for k, v in pairs(doc) do
    if last[k] == nil then error("webhook_members: cjson sees a member the scan missed") end
    local val = decode(last[k])
    if val == nil or not same(val, v) then error("webhook_members: a value's bytes decode otherwise than cjson's") end
  end
  for k in pairs(last) do
    if doc[k] == nil then error("webhook_members: the scan sees a member cjson does not") end
  end
  return doc, members
end

function fuzz(data) -- luacheck: ignore 111
  f.input = data
  local template, captured = f.split(data)
  if captured == "" then captured = CAPTURED end
  local hash = hmac(SECRET, captured)
  local body = template:gsub("\1", function() return captured end)
    :gsub("\2", function() return '"' .. hash .. '"' end)

  local ok, content = f.core.verify_webhook(body, SECRET)
  if ok == true then
    if type(content) ~= "table" then error("verify_webhook: verified without a content table") end
  elseif ok ~= false or type(content) ~= "string" then
    error("verify_webhook: neither true, content nor false, reason")
  end

  local doc, members = check_scan(body)
  local n_content, n_hash, content_bytes = 0, 0, nil
  for _, m in ipairs(members or {}) do
    if m[1] == "Content" then n_content, content_bytes = n_content + 1, m[3] end
    if m[1] == "HashCode" then n_hash = n_hash + 1 end
  end
  if ok then
    local signed = decode(captured)
    if not doc or n_content ~= 1 or n_hash ~= 1 then
      error("verify_webhook: verified a body without exactly one Content and one HashCode")
    end
    if signed == nil or not same(doc.Content, signed) or not same(content, signed) then
      error("verify_webhook: verified, but the Content a parser reads is not what was hashed")
    end
  elseif doc and n_content == 1 and n_hash == 1 and content_bytes == captured and captured:sub(1, 1) == "{"
    and doc.HashCode == hash then
    error("verify_webhook: refused a genuine delivery: " .. content)
  end
end
