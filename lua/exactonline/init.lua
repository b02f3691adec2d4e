--- exactonline: a client for the Exact Online API.
-- `require "exactonline"` is this file; the C part is `exactonline.core`.
local core = require "exactonline.core"

local require, setmetatable, rawset, pairs, package = require, setmetatable, rawset, pairs, package

local _M = {
  _VERSION = core.version,
  version = core.version,
  core = core,
}

--- Create a client. See README "API". The client module's own function, not a wrapper's tail call: Lua 5.1
-- counts a tail call as a level of its own, and new's errors would lose the caller's line there.
_M.new = require("exactonline.client").new

--- The token stores, one module each in exactonline/store/, each made with new(opts).
--- The atomic, locked JSON file store.
function _M.file_store(path, opts)
  return require("exactonline.store.file").new(path, opts)
end

--- The default in-memory store.
function _M.memory_store(tokens)
  return require("exactonline.store.memory").new { tokens = tokens }
end

--- Tokens in an nginx lua_shared_dict, shared by all workers.
function _M.shdict_store(dict_name, backing_store, opts)
  return require("exactonline.store.shdict").new(dict_name, backing_store, opts)
end

--- Stores by name, e.g. exactonline.stores.postgres{…}. Loaded on first use.
_M.stores = setmetatable({}, {
  __index = function(t, name)
    local mod = require("exactonline.store." .. name)
    rawset(t, name, mod.new)
    return mod.new
  end,
})

-- the stores' module names before they moved to exactonline/store/: scripts in the field require them
for old, new in pairs { file_store = "file", memory_store = "memory", shdict_store = "shdict",
  ["stores.postgres"] = "postgres", tokens = "contract" } do
  package.preload["exactonline." .. old] = package.preload["exactonline." .. old]
    or function() return require("exactonline.store." .. new) end
end

--- Replicate whole administrations into SQLite or PostgreSQL. See README "Replication".
function _M.replicate(client, opts)
  return require("exactonline.replicate").run(client, opts)
end

--- Check an Exact Online webhook delivery: true, content (the verified Content, decoded) | false, reason.
function _M.verify_webhook(raw_body, webhook_secret)
  return core.verify_webhook(raw_body, webhook_secret)
end

--- Is v an exactonline error object?
_M.is_error = core.is_error

return _M
