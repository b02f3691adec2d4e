--- exactonline replicate [ENTITY...] [--to DB] [--division N[,N...]|all] [--full]: whole administrations
-- into SQLite or PostgreSQL, every division at once. A thin layer over exactonline.replicate(client, opts):
-- it picks the database, prints progress per division and entity, and ends with a summary table.
-- Exit 0 done, 1 failed (what failed, what was kept), 3 paused on a spent daily budget (run again).
local io, os, ipairs, require, tonumber, tostring, type = io, os, ipairs, require, tonumber, tostring, type
local string_format, table_concat = string.format, table.concat
local math_floor = math.floor

local util = require "exactonline.cli.util"
local progress = require "exactonline.cli.progress"
local config = require "exactonline.cli.config"
local parser = require "exactonline.cli.parser"

local _M = {}

_M.summary = "keep whole administrations in SQLite/PostgreSQL, every division at once"

function _M.add_to_parser(root)
  local c = parser.command(root, "replicate", {
    summary = _M.summary,
    usage = "[ENTITY...] [--to DB] [--division N[,N...]|all] [--full] [--progress|--no-progress] [options]",
    description = "Replicate entities into a database and keep them current: the sync endpoints from the last\n"
      .. "Timestamp (rows and cursor commit together, page by page), deletions from sync/Deleted, entities\n"
      .. "without sync read whole and swapped in at once. Every division runs at the same time, each within\n"
      .. "its own rate limits; a division whose daily budget is spent pauses (exit 3) and the next run\n"
      .. "continues where it stopped. Without ENTITY: the standard set (see the README). Exit 0 done, 1 failed.",
    examples = {
      "exactonline replicate                                 # the standard set, current division, into exact.db",
      "exactonline replicate --division all --to postgresql://etl@db/exact",
      "exactonline replicate crm/Accounts financialtransaction/TransactionLines --division 3167822,3167823",
      "sqlite3 ~/.local/share/exactonline/exact.db 'select name, city from crm_accounts limit 5'",
    },
  })
  parser.argument(c, "ENTITY", "entities as API paths, e.g. crm/Accounts (default: the standard set)",
    { target = "entities" }):args("*")
  parser.option(c, "--to -t", "DB", "sqlite:PATH, PATH.db, postgresql://user@host/db or a conninfo "
    .. "(default $XDG_DATA_HOME/exactonline/exact.db)")
  parser.flag(c, "--full", "read everything again (cursors start over); rows are upserted, none dropped first")
  parser.flag(c, "--progress", "force the progress display")
  parser.flag(c, "--no-progress", "no progress output, only the summary")
  for _, def in ipairs(config.settings) do
    if def.key == "division" then
      parser.option(c, "--division", "N[,N...]|all", "the divisions to replicate: one, a list, or all of "
        .. "system/Divisions (default: EXACT_DIVISION, else the user's current)", { group = "connection" })
    else
      parser.option(c, def.flag, def.argname, def.help .. " (" .. def.env .. ")", { group = "connection" })
    end
  end
  return parser.finish(c, config.CONNECTION_TITLE)
end

local function data_home()
  local xdg = os.getenv("XDG_DATA_HOME")
  if xdg and xdg ~= "" then return xdg end
  return (os.getenv("HOME") or ".") .. "/.local/share"
end

--- The database --to names, the default made ready (its folder created, 0700).
function _M.target(to)
  if to and to ~= "" then return to end
  local dir = data_home() .. "/exactonline"
  local ok, err = require("exactonline.core").mkdir_p(dir, 448)
  if not ok then return nil, err end
  return "sqlite:" .. dir .. "/exact.db"
end

--- "all" | "1,2" | "3" | nil --> "all" | { 1, 2 } | nil | nil, message
function _M.divisions(v)
  if v == nil then return nil end
  v = tostring(v)
  if v == "all" then return "all" end
  local list = {}
  for part in v:gmatch("[^,%s]+") do
    local n = tonumber(part)
    if not n or n <= 0 or n ~= math_floor(n) then
      return nil, "--division takes a number, a list like 3167822,3167823, or all; not '" .. v .. "'"
    end
    list[#list + 1] = n
  end
  if #list == 0 then return nil, "--division needs a value" end
  return list
end

local function fmt_n(n)
  return n and string_format("%d", n) or "?"
end

-- progress: on a terminal one line per division, redrawn in place; otherwise a log line per event
local function display(tty, quiet, out)
  local lines, order, drawn = {}, {}, 0
  local function redraw()
    if drawn > 0 then out:write(("\27[%dA"):format(drawn)) end
    for _, d in ipairs(order) do out:write("\r", lines[d], "\27[K\n") end
    drawn = #order
    out:flush()
  end
  return function(ev)
    if quiet then return end
    local what
    if ev.phase == "page" or ev.phase == "done" then
      what = string_format("%s %s: %s rows%s", ev.entity, ev.phase == "done" and "done" or "…", fmt_n(ev.rows),
        ev.deleted and ev.deleted > 0 and (", " .. fmt_n(ev.deleted) .. " deleted") or "")
    elseif ev.phase == "waiting" then
      what = ev.message
    else
      what = string_format("%s %s: %s", ev.entity, ev.phase,
        (util.message(ev.error):gsub("\n.*", ""):gsub("^exactonline: ", "")))
    end
    local line = string_format("division %d: %s (calls %s, left today %s)", ev.division, what, fmt_n(ev.calls),
      fmt_n(ev.calls_left))
    if tty then
      if not lines[ev.division] then order[#order + 1] = ev.division end
      lines[ev.division] = line
      redraw()
    elseif ev.phase ~= "page" or (ev.pages or 0) % 10 == 1 then
      out:write(line, "\n")
      out:flush()
    end
  end
end

local function summary_table(s, out)
  local rows = { { "division", "entity", "inserted", "updated", "deleted", "status" } }
  for _, d in ipairs(s.order) do
    local dv = s.divisions[d]
    for _, path in ipairs(s.entities) do
      local st = dv.entities[path]
      rows[#rows + 1] = { fmt_n(d), path, fmt_n(st.inserted), fmt_n(st.updated), fmt_n(st.deleted), st.status }
    end
  end
  local w = {}
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do w[i] = math.max(w[i] or 0, #c) end
  end
  local function line(r)
    return string_format("%-" .. w[1] .. "s  %-" .. w[2] .. "s  %" .. w[3] .. "s  %" .. w[4] .. "s  %" .. w[5] ..
      "s  %s", r[1], r[2], r[3], r[4], r[5], r[6])
  end
  for _, r in ipairs(rows) do out:write(line(r), "\n") end
  out:write("\n")
  local per = { { "division", "calls used", "calls left today", "status" } }
  for _, d in ipairs(s.order) do
    local dv = s.divisions[d]
    per[#per + 1] = { fmt_n(d), fmt_n(dv.calls), fmt_n(dv.calls_left), dv.status }
  end
  local v = {}
  for _, r in ipairs(per) do
    for i, c in ipairs(r) do v[i] = math.max(v[i] or 0, #c) end
  end
  for _, r in ipairs(per) do
    out:write(string_format("%-" .. v[1] .. "s  %" .. v[2] .. "s  %" .. v[3] .. "s  %s", r[1], r[2], r[3], r[4]),
      "\n")
  end
end

function _M.run(args)
  local divisions, derr = _M.divisions(args.division)
  if derr then return nil, derr, 2 end
  -- one division is also the client's; for a list or `all` the client keeps its own (to list them)
  if type(divisions) == "table" and #divisions == 1 then args.division = divisions[1] else args.division = nil end
  local entities = args.entities or {}
  local replicate = require "exactonline.replicate"
  local _, eerr = replicate.entities(entities)
  if eerr then return nil, eerr, 2 end
  local to, terr = _M.target(args.to)
  if not to then return nil, terr, 1 end
  local client, s, code = config.connect(args)
  if not client then return nil, s, code end

  local tty = (progress.stderr_is_tty() or args.progress) and not args.no_progress
  local summary, err = replicate.run(client, {
    to = to, entities = entities, divisions = divisions, full = args.full,
    on_progress = display(tty, args.no_progress, io.stderr),
  })
  client:close()
  if not summary then return nil, err, 1 end
  summary_table(summary, io.stdout)
  io.stdout:flush()
  local failed, paused = {}, {}
  for _, d in ipairs(summary.order) do
    local dv = summary.divisions[d]
    if dv.status == "paused" then
      paused[#paused + 1] = d
    end
    for _, path in ipairs(summary.entities) do
      local st = dv.entities[path]
      if st.status == "failed" and st.error then
        failed[#failed + 1] = string_format("division %d, %s: %s", d, path,
          (util.message(st.error):gsub("^exactonline: ", "")))
      end
    end
  end
  for _, f in ipairs(failed) do io.stderr:write("exactonline replicate: ", f, "\n") end
  for _, e in ipairs(summary.errors or {}) do io.stderr:write("exactonline replicate: ", tostring(e), "\n") end
  if #failed > 0 or summary.status == "failed" then
    io.stderr:write("exactonline replicate: everything committed before the failure is kept in ",
      require("exactonline.replicate.postgres").shown(to), "; the next run continues from there\n")
    return 1
  end
  if #paused > 0 then
    local when = {}
    for _, d in ipairs(paused) do
      local reset = summary.divisions[d].daily_reset
      when[#when + 1] = string_format("%d", d) ..
        (reset and os.date("! (resets %Y-%m-%d %H:%M UTC)", math_floor(reset)) or "")
    end
    io.stderr:write("exactonline replicate: paused: the daily API budget of division ", table_concat(when, ", "),
      " is spent; run replicate again after the reset to continue from where it stopped\n")
    return 3
  end
  return 0
end

return _M
