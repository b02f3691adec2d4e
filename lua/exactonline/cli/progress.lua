--- Progress for long exports: a self-updating line on stderr when it is a terminal, plain log lines
-- otherwise (cron mails, CI logs). Shows rows, pages, rows/s and the calls left this minute and today.
local io, os, pcall, require, type = io, os, pcall, require, type
local floor, format = math.floor, string.format

local _M = {}

local clock
do
  local ok, socket = pcall(require, "socket")
  if ok and type(socket) == "table" and socket.gettime then clock = socket.gettime else clock = os.time end
end
_M.clock = clock

--- Is stderr a terminal?
function _M.stderr_is_tty()
  return require("exactonline.core").isatty(2)
end

local function left(limits)
  if type(limits) ~= "table" then return "" end
  local m, d = limits.minutely_remaining, limits.daily_remaining
  if not m and not d then return "" end
  return format(", calls left %s this minute, %s today", m and format("%d", m) or "?", d and format("%d", d) or "?")
end

--- new{ label = "export crm/Accounts", tty = bool, out = io.stderr, limits = function() … end,
--       rows = N, pages = N (a resumed export's so far) }
function _M.new(opts)
  local p = {
    label = opts.label or "export", tty = opts.tty, out = opts.out or io.stderr,
    limits = opts.limits, rows = opts.rows or 0, pages = opts.pages or 0, started = clock(),
  }
  p.first_rows = p.rows

  local function line()
    local elapsed = clock() - p.started
    local rate = elapsed > 0 and floor((p.rows - p.first_rows) / elapsed + 0.5) or (p.rows - p.first_rows)
    local lim = p.limits and p.limits() or nil
    return format("%s: %d rows, %d %s, %d rows/s%s", p.label, p.rows, p.pages, p.pages == 1 and "page" or "pages",
      rate, left(lim))
  end

  function p.page(_, n)
    p.pages = p.pages + 1
    p.rows = p.rows + (n or 0)
    if p.tty then
      p.out:write("\r", line(), "\27[K")
    else
      p.out:write(line(), "\n")
    end
    p.out:flush()
  end

  function p.done(_, msg)
    if p.tty then p.out:write("\r", line(), "\27[K\n") end
    if msg then p.out:write(msg, "\n") end
    p.out:flush()
  end

  function p.abort()
    if p.tty and p.pages > 0 then p.out:write("\n") end
    p.out:flush()
  end

  return p
end

return _M
