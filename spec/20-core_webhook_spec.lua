-- Webhook deliveries: the HashCode is checked over the raw bytes of the one Content object, and what is
-- returned is that object decoded, so a caller never reads a Content other than the one Exact signed.
-- HMACs are made with the openssl CLI, independently of csrc/webhook.c.
local helpers = require "helpers"
local exactonline = require "exactonline"
local cjson = require "cjson"

local SECRET = "whsec-123"

local function sign(content, secret)
  local p = io.popen("printf %s " .. helpers.quote(content) .. " | openssl dgst -sha256 -hmac " ..
    helpers.quote(secret or SECRET) .. " -r")
  local hex = p:read("*a"):match("^(%x+)")
  p:close()
  assert(hex and #hex == 64, "openssl dgst gave no HMAC")
  return hex:upper()
end

-- key order and escapes as Exact sends them: re-encoding would change the bytes
local CONTENT = '{"Topic":"Accounts","ClientId":"c","Division":3167822,"Action":"Update",' ..
  '"Key":"a1b2","ExactOnlineEndpoint":"https:\\/\\/start.exactonline.nl\\/api\\/v1\\/x","Note":"}{\\"",' ..
  '"EventCreatedOn":"\\/Date(1700000000000)\\/"}'
local FORGED = '{"Topic":"Accounts","ClientId":"c","Division":3167822,"Action":"Delete","Key":"ffff"}'

describe("verify_webhook", function()
  local hash = sign(CONTENT)

  it("returns true and the decoded Content for Exact's HashCode over the raw bytes", function()
    for _, body in ipairs {
      '{"Content":' .. CONTENT .. ',"HashCode":"' .. hash .. '"}',
      '{ "Content" : ' .. CONTENT .. ' ,\n\t"HashCode" : "' .. hash:lower() .. '" }\r\n',
      '{"HashCode":"' .. hash .. '","Content":' .. CONTENT .. ',"Extra":[{"Content":{}}]}',
    } do
      local ok, content = exactonline.verify_webhook(body, SECRET)
      assert.is_true(ok)
      assert.same(cjson.decode(CONTENT), content)
      assert.equal("Update", content.Action)
      assert.equal("https://start.exactonline.nl/api/v1/x", content.ExactOnlineEndpoint)
    end
  end)

  it("reads top-level names decoded: an escaped Content is the Content", function()
    local body = '{"Con\\u0074ent":' .. CONTENT .. ',"Hash\\u0043ode":"' .. hash .. '"}'
    local ok, content = exactonline.verify_webhook(body, SECRET)
    assert.is_true(ok)
    assert.equal("a1b2", content.Key)
  end)

  it("refuses a captured delivery with a second Content appended (issue 17)", function()
    -- cjson, like every parser a user calls next, keeps the last Content: the forged one
    local body = '{"Content":' .. CONTENT .. ',"HashCode":"' .. hash .. '","Content":' .. FORGED .. '}'
    assert.equal("Delete", cjson.decode(body).Content.Action)
    local ok, why = exactonline.verify_webhook(body, SECRET)
    assert.is_false(ok)
    assert.matches("more than one Content", why, 1, true)
  end)

  it("refuses a second Content spelled with an escape (issue 17)", function()
    for _, body in ipairs {
      '{"Content":' .. CONTENT .. ',"HashCode":"' .. hash .. '","Con\\u0074ent":' .. FORGED .. '}',
      '{"Cont\\u0065nt":' .. FORGED .. ',"Content":' .. CONTENT .. ',"HashCode":"' .. hash .. '"}',
    } do
      local ok, why = exactonline.verify_webhook(body, SECRET)
      assert.is_false(ok)
      assert.matches("more than one Content", why, 1, true)
    end
  end)

  it("refuses two HashCodes, a Content that is not an object, bytes after a NUL", function()
    local ok, why = exactonline.verify_webhook('{"HashCode":"00","Content":' .. CONTENT .. ',"HashCode":"' ..
      hash .. '"}', SECRET)
    assert.is_false(ok)
    assert.matches("more than one HashCode", why, 1, true)
    local text = cjson.encode(CONTENT)
    ok, why = exactonline.verify_webhook('{"Content":' .. text .. ',"HashCode":"' .. sign(text) .. '"}', SECRET)
    assert.is_false(ok)
    assert.matches("no Content object", why, 1, true)
    -- cjson stops reading at a NUL: what follows it would be unseen
    ok, why = exactonline.verify_webhook('{"Content":' .. CONTENT .. ',"HashCode":"' .. hash .. '"}\0,"x":1',
      SECRET)
    assert.is_false(ok)
    assert.matches("not a JSON object", why, 1, true)
  end)

  it("refuses a wrong secret or a changed body; explains the empty validation POST", function()
    local body = '{"Content":' .. CONTENT .. ',"HashCode":"' .. hash .. '"}'
    local ok, why = exactonline.verify_webhook(body, "other")
    assert.is_false(ok)
    assert.matches("does not match", why, 1, true)
    ok, why = exactonline.verify_webhook((body:gsub("Update", "Delete")), SECRET)
    assert.is_false(ok)
    assert.matches("does not match", why, 1, true)
    local empties = { "", " \r\n", nil, n = 3 } -- nil: ngx.req.get_body_data() for an empty body
    for i = 1, empties.n do
      ok, why = exactonline.verify_webhook(empties[i], SECRET)
      assert.is_false(ok)
      assert.matches("validation", why, 1, true)
    end
    ok, why = exactonline.verify_webhook('[{"Content":' .. CONTENT .. ',"HashCode":"' .. hash .. '"}]', SECRET)
    assert.is_false(ok)
    assert.matches("not a JSON object", why, 1, true)
    ok, why = exactonline.verify_webhook('{"HashCode":"AB"}', SECRET)
    assert.is_false(ok)
    assert.matches("Content", why, 1, true)
  end)

  it("answers false, 'no webhook secret' for a nil or empty secret (issue 18)", function()
    local body = '{"Content":' .. CONTENT .. ',"HashCode":"' .. hash .. '"}'
    local secrets = { "", nil, n = 2 }
    for i = 1, secrets.n do
      local ok, why = exactonline.verify_webhook(body, secrets[i])
      assert.is_false(ok)
      assert.matches("^no webhook secret", why)
    end
    assert.is_false((exactonline.verify_webhook(body, os.getenv("EXACTONLINE_NO_SUCH_VARIABLE"))))
    assert.has_error(function() exactonline.verify_webhook(body, {}) end)
  end)
end)
