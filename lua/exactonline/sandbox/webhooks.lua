--- Webhook subscriptions (webhooks/WebhookSubscriptions): not imitated yet.
local _M = {}

function _M.handle(_, api)
  return api.fail(404, "Not found: webhooks/WebhookSubscriptions")
end

return _M
