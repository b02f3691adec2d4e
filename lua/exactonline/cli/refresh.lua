--- exactonline refresh: the keep-alive for cron or a systemd timer. Refreshes when Exact allows it (570 s
-- after the last token request), otherwise says when it will be allowed. Exit codes as `exactonline token`.
local io, ipairs, os, require, tonumber = io, ipairs, os, require, tonumber

local util = require "exactonline.cli.util"
local config = require "exactonline.cli.config"
local token = require "exactonline.cli.token"

local _M = {}

_M.spec = {
  usage = "[options]",
  description = "Refresh the stored tokens when Exact allows it (570 s after the last token request), so the\n"
    .. "30-day refresh token chain never runs out. Exit status: 0 fine, 1 fewer than 7 days left,\n"
    .. "2 expired, missing or refused (a person must run `exactonline auth`).",
  connection = true,
  options = {},
  examples = {
    "exactonline refresh",
    "# crontab: keep the chain alive every day at 06:00",
    "0 6 * * *  EXACT_CLIENT_ID=… EXACT_CLIENT_SECRET=… EXACT_REDIRECT_URI=… exactonline refresh",
  },
}

function _M.main(argv)
  local name = "refresh"
  local opts, code = util.parse(name, argv, _M.spec)
  if not opts then return code end
  local s, serr = util.settings(opts)
  if not s then return util.fail(name, serr, 2) end
  local ok, nerr = config.need(s, config.client_keys)
  if not ok then return util.fail(name, nerr, 2) end
  local tokens, lerr = token.load(s)
  if not tokens then
    if lerr then return util.fail(name, lerr, 2) end
    return util.fail(name, "no tokens in " .. s.token_file .. ": run `exactonline auth` first", 2)
  end
  local out = io.stdout
  local now = os.time()
  local obtained = tonumber(tokens.obtained_at)
  if obtained and now < obtained + token.REFRESH_AFTER then
    local at = obtained + token.REFRESH_AFTER
    out:write("not refreshed: Exact allows a refresh from ", token.when(at), " (in ", token.span(at - now),
      "); the access token is still fresh\n")
  else
    local client, cerr = config.client(s)
    if not client then return util.fail(name, cerr, 2) end
    local fresh, err = client:refresh()
    if not fresh then
      return util.fail(name, err, 2)
    end
    client:close()
    tokens = token.load(s) or fresh
    out:write("refreshed: new access token valid until ", token.when(tonumber(tokens.expires_at) or now + 600), "\n")
  end
  local rc, lines = token.status(tokens, now)
  for _, l in ipairs(lines) do out:write(l, "\n") end
  return rc
end

return _M
