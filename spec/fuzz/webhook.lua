-- Fuzz target: a webhook delivery's raw body, verified against a secret (HMAC-SHA256 over the
-- raw Content object, constant-time compare). Input: <body>[\0<secret>].
local f = require "common"

function fuzz(data) -- luacheck: ignore 111
  f.input = data
  local body, secret = f.split(data)
  if secret == "" then secret = "webhook-secret" end
  local ok, why = f.core.verify_webhook(body, secret)
  if ok ~= true and (ok ~= false or type(why) ~= "string") then
    error("verify_webhook: neither true nor false, reason")
  end
end
