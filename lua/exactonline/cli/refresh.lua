--- exactonline refresh: the keep-alive for cron or a systemd timer. Asks the library to refresh; when Exact
-- would refuse it yet (too soon after the last token request), the library says so without a token call,
-- and this prints when it is allowed. Exit codes as `exactonline token`.
local io, ipairs, os, require, tonumber = io, ipairs, os, require, tonumber
local floor, format = math.floor, string.format

local config = require "exactonline.cli.config"
local parser = require "exactonline.cli.parser"
local token = require "exactonline.cli.token"
local progress = require "exactonline.cli.progress"

local _M = {}

_M.summary = "refresh the tokens when allowed (for cron / systemd timers)"

function _M.add_to_parser(root)
  local c = parser.command(root, "refresh", {
    summary = _M.summary,
    description = "Refresh the stored tokens when Exact allows it (570 s after the last token request), so the\n"
      .. "30-day refresh token chain never runs out. Exit status: 0 fine, 1 fewer than 7 days left,\n"
      .. "2 expired, missing or refused (a person must run `exactonline auth`).",
    examples = {
      "exactonline refresh",
      "# crontab, every day at 06:00 (cron's environment is bare: the settings come from config.lua)",
      "0 6 * * *  exactonline refresh",
    },
  })
  config.add_flags(c)
  return parser.finish(c, config.CONNECTION_TITLE)
end

function _M.run(args)
  local client, s, code = config.connect(args)
  if not client then return nil, s, code end
  if not client:token_info().has_refresh_token then
    client:close()
    return nil, "no tokens in " .. s.token_file .. ": run `exactonline auth` first", 2
  end
  local out = io.stdout
  local fresh, err = client:refresh()
  client:close()
  local now = os.time()
  if fresh then
    out:write("refreshed: new access token valid until ", token.when(tonumber(fresh.expires_at) or now), "\n")
  elseif err.code == "too_early" and err.allowed_at then
    -- allowed_at is the library's 570 s rule on Exact's clock (rounded up to a whole second); retry_after
    -- counts to it from Exact's now, and rounded down the wait is at most 570 s, as Exact states it
    local at, wait = err.allowed_at, floor(err.retry_after or (err.allowed_at - progress.clock()))
    out:write("not refreshed: Exact allows a refresh from ", token.when(at), " (in ",
      format("%d s", wait > 0 and wait or 0), "); the access token is still fresh\n")
  else
    return nil, err, 2
  end
  local tokens, lerr = token.load(s)
  if not tokens then return nil, lerr or ("no tokens in " .. s.token_file), 2 end
  local rc, lines = token.status(tokens, now)
  for _, l in ipairs(lines) do out:write(l, "\n") end
  return rc
end

return _M
