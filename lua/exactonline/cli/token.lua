--- exactonline token: where the stored tokens stand. Exit 0 fine, 1 fewer than 7 days left on the refresh
-- token, 2 expired or missing — for cron and monitoring. Reads the token file only: no call to Exact, and
-- no client credentials needed.
local io, ipairs, os, pcall, require = io, ipairs, os, pcall, require
local tonumber, tostring, type = tonumber, tostring, type
local floor, format, date = math.floor, string.format, os.date

local core = require "exactonline.core"
local util = require "exactonline.cli.util"
local config = require "exactonline.cli.config"
local parser = require "exactonline.cli.parser"

local _M = {}

_M.summary = "show the stored tokens' expiry (exit 0 fine, 1 < 7 days left, 2 expired)"
_M.WARN_DAYS = 7 -- the CLI's own warning threshold (exit 1)

function _M.add_to_parser(root)
  local c = parser.command(root, "token", {
    summary = _M.summary,
    description = "Show the access token's expiry, the refresh token's age and days left, and the division.\n"
      .. "Exit status: 0 fine, 1 fewer than 7 days left (authorize again soon), 2 expired or missing.",
    examples = {
      "exactonline token",
      "exactonline token || mail -s 'Exact Online: run exactonline auth' me@example.com < /dev/null",
      "EXACT_TOKEN_FILE=/srv/app/tokens.json exactonline token",
    },
  })
  config.add_flags(c)
  return parser.finish(c, config.CONNECTION_TITLE)
end

local function when(t)
  return date("!%Y-%m-%d %H:%M:%S UTC", floor(t))
end
_M.when = when

local function span(secs)
  secs = floor(secs + 0.5)
  if secs < 0 then secs = -secs end
  if secs < 120 then return format("%d s", secs) end
  if secs < 7200 then return format("%d min", floor(secs / 60)) end
  if secs < 2 * 86400 then return format("%d h", floor(secs / 3600)) end
  return format("%d days", floor(secs / 86400))
end
_M.span = span

--- Load the stored tokens. --> tokens | nil, message (nil, nil when there are none)
function _M.load(s)
  local store, err = config.store(s)
  if not store then return nil, err end
  local ok, tokens, lerr = pcall(store.load)
  if not ok then return nil, util.message(tokens) end
  if not tokens and lerr then return nil, util.message(lerr) end
  if type(tokens) ~= "table" or not tokens.refresh_token then return nil end
  return tokens
end

--- status(tokens, now) --> exit code, { lines }
function _M.status(tokens, now)
  now = now or os.time()
  local lines = {}
  local expires_at = tonumber(tokens.expires_at)
  if expires_at then
    if expires_at > now then
      lines[#lines + 1] = "access token:  valid until " .. when(expires_at)
        .. " (" .. span(expires_at - now) .. " left)"
    else
      lines[#lines + 1] = "access token:  expired " .. when(expires_at) .. " (" .. span(now - expires_at)
        .. " ago; refreshed on next use)"
    end
  end
  local obtained = tonumber(tokens.refresh_obtained_at) or tonumber(tokens.obtained_at)
  local code = 0
  if obtained then
    local refresh_expires = obtained + core.token_rules.refresh_lifetime
    local left = refresh_expires - now
    local days = left / 86400
    lines[#lines + 1] = "refresh token: obtained " .. when(obtained) .. " (" .. span(now - obtained) .. " ago)"
    if left <= 0 then
      lines[#lines + 1] = "               expired " .. when(refresh_expires)
        .. ": a person must run `exactonline auth` again"
      code = 2
    else
      lines[#lines + 1] = format("               expires %s (%d days left)", when(refresh_expires), floor(days))
      if days < _M.WARN_DAYS then
        lines[#lines + 1] = "               fewer than 7 days left: run `exactonline refresh` regularly, "
          .. "or `exactonline auth` again"
        code = 1
      end
    end
  end
  return code, lines
end

function _M.run(args)
  local s, serr = config.resolve(args)
  if not s then return nil, serr, 2 end
  local tokens, err = _M.load(s)
  if not tokens then
    return nil, err or ("no tokens in " .. s.token_file .. ": run `exactonline auth` first"), 2
  end
  local rc, lines = _M.status(tokens)
  local info = config.read_info(s) or {}
  local out = io.stdout
  out:write("token file:    ", s.token_file, "\n")
  for _, l in ipairs(lines) do out:write(l, "\n") end
  local division = tonumber(s.division or info.division)
  out:write("division:      ", division and require("exactonline.cli.format").number(division)
    or "(the user's current division)",
    info.user and ("  (authorized by " .. util.clean(tostring(info.user)) .. ")") or "", "\n")
  return rc
end

return _M
