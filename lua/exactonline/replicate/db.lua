--- exactonline.replicate.db: open a replica database from what --to names.
--   "sqlite:PATH", "PATH.db" / ".sqlite" / ".sqlite3"      --> SQLite
--   "postgresql://user@host/db", "postgres://…", "host=… dbname=…"  --> PostgreSQL
local sql = require "exactonline.replicate.sql"

local type, require = type, require

local _M = {}

--- kind(target) --> "sqlite", path | "postgres", conninfo | nil, err
function _M.kind(target)
  if type(target) ~= "string" or target == "" then
    return nil, sql.error("bad_target", "no database given", "give --to sqlite:PATH, PATH.db or postgresql://…")
  end
  local path = target:match("^sqlite3?:(.+)$")
  if path then return "sqlite", path end
  if target:match("^postgres[q]?[l]?://") or target:match("^%s*%a+%s*=") then return "postgres", target end
  if target:match("%.db$") or target:match("%.sqlite3?$") then return "sqlite", target end
  return nil, sql.error("bad_target", "cannot tell which database '" .. target .. "' names",
    "give sqlite:PATH, a path ending in .db/.sqlite, postgresql://user@host/db or a conninfo (host=… dbname=…)")
end

--- open(target, opts) --> replica | nil, err
function _M.open(target, opts)
  local kind, where = _M.kind(target)
  if not kind then return nil, where end
  if kind == "sqlite" then return require("exactonline.replicate.sqlite").open(where, opts) end
  return require("exactonline.replicate.postgres").open(where, opts)
end

return _M
