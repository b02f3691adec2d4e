--- A scheduler of coroutines over one libcurl multi handle, and transports bound to it: many clients
-- (one per division) talk at once, and a client's wait (a rate-limit reset) yields to the others
-- instead of blocking the process.
--   local sched = require("exactonline.transport.multi").scheduler()
--   local t = sched:transport()                 -- config.transport for a client; then t:bind(client)
--   sched:spawn(function() … client:get(…) … end)
--   sched:run()                                 -- until every coroutine has ended
-- Outside one of the scheduler's coroutines a bound transport works as the blocking curl transport.
-- Lua 5.1 (not LuaJIT) cannot yield across pcall or out of a for-in iterator, and a client's call passes
-- through both: there (multi.concurrent is false) the coroutines run one after another, each request and
-- sleep blocking, with the same results.
local core = require "exactonline.core"

local setmetatable, select, next, pairs, pcall, require = setmetatable, select, next, pairs, pcall, require
local unpack = table.unpack or unpack -- luacheck: ignore
local co_create, co_resume, co_yield, co_running, co_status =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.running, coroutine.status
local table_remove = table.remove
local math_max = math.max

local _M = {}

--- true where a coroutine can yield from inside pcall (Lua 5.2+, LuaJIT); false on Lua 5.1
_M.concurrent = select(2, co_resume(co_create(function() return pcall(co_yield, true) end))) == true

local Scheduler = {}
Scheduler.__index = Scheduler

local Transport = {}
Transport.__index = Transport

--- scheduler{ now = fn } --> a scheduler with its own multi handle
function _M.scheduler(opts)
  opts = opts or {}
  return setmetatable({
    multi = core.multi_new(),
    now = opts.now or core.now,
    ready = {},     -- { co, value } to resume
    sleepers = {},  -- { at, co }
    waiting = {},   -- a client's C half -> co whose transfer runs
    mine = setmetatable({}, { __mode = "k" }), -- coroutines this scheduler runs
    tasks = 0,
    errors = {},
  }, Scheduler)
end

--- spawn(fn, ...): fn runs in a coroutine of its own once run() is called (or is running)
function Scheduler:spawn(fn, ...)
  local args = { n = select("#", ...), ... }
  local co = co_create(function() return fn(unpack(args, 1, args.n)) end)
  self.mine[co] = true
  self.tasks = self.tasks + 1
  self.ready[#self.ready + 1] = { co }
  return co
end

--- Is the running coroutine one of ours?
function Scheduler:inside()
  local co = co_running()
  return _M.concurrent and co ~= nil and self.mine[co] == true
end

--- sleep(seconds): yields to the others when called from one of our coroutines; else blocks
function Scheduler:sleep(seconds)
  if not self:inside() then return core.sleep(seconds) end
  local s = self.sleepers
  s[#s + 1] = { at = self.now() + math_max(seconds or 0, 0), co = co_running() }
  co_yield()
end

local function resume(self, co, value)
  local ok, err = co_resume(co, value)
  if not ok then self.errors[#self.errors + 1] = err end
  if co_status(co) == "dead" then
    self.mine[co] = nil
    self.tasks = self.tasks - 1
  end
end

--- run(): until every spawned coroutine has ended; errors raised inside them are returned as a list
function Scheduler:run()
  while self.tasks > 0 do
    while #self.ready > 0 do
      local r = table_remove(self.ready, 1)
      resume(self, r[1], r[2])
    end
    if self.tasks == 0 then break end
    local now = self.now()
    local wake
    for i = 1, #self.sleepers do
      local at = self.sleepers[i].at
      if not wake or at < wake then wake = at end
    end
    local busy = next(self.waiting) ~= nil
    if not busy and not wake then
      self.errors[#self.errors + 1] = "exactonline scheduler: coroutines wait for nothing (a yield outside a wait)"
      break
    end
    local timeout = wake and math_max(wake - now, 0) or 1
    if busy and timeout > 1 then timeout = 1 end
    local done, running = self.multi:poll(timeout)
    for i = 1, #done do
      local client = done[i]
      local co = self.waiting[client]
      self.waiting[client] = nil
      if co then self.ready[#self.ready + 1] = { co, "done" } end
    end
    if running == 0 then
      -- a client closed while its transfer ran: its coroutine hears so instead of waiting forever
      for client, co in pairs(self.waiting) do
        self.waiting[client] = nil
        self.ready[#self.ready + 1] = { co, "closed" }
      end
    end
    now = self.now()
    local keep = {}
    for i = 1, #self.sleepers do
      local s = self.sleepers[i]
      if s.at <= now then self.ready[#self.ready + 1] = { s.co } else keep[#keep + 1] = s end
    end
    self.sleepers = keep
  end
  return self.errors
end

function Scheduler:close()
  self.multi:close()
end

--- transport(): a transport for one client (bind it to the client once made)
function Scheduler:transport()
  return setmetatable({ sched = self, ref = setmetatable({}, { __mode = "v" }) }, Transport)
end

--- bind(client) --> client: this transport now drives that client's libcurl handle (its C half)
function Transport:bind(client, ...)
  if client then self.ref[1] = require("exactonline.client").core(client) end
  return client, ...
end

function Transport:request(req)
  local handle = self.ref[1]
  if not handle then
    return nil, core.error { kind = "network", message = "this transport is bound to no client (or it was closed)" }
  end
  local sched = self.sched
  if not sched:inside() then return handle:perform(req) end
  local ok, err = sched.multi:add(handle, req)
  if not ok then return nil, err end
  sched.waiting[handle] = co_running()
  if co_yield() ~= "done" then
    return nil, core.error { kind = "network", code = "closed",
      message = "the client was closed while its request ran", hint = "keep the client open until it answers" }
  end
  return sched.multi:take(handle)
end

function Transport:sleep(seconds)
  return self.sched:sleep(seconds)
end

function Transport:now()
  return self.sched.now()
end

--- A lock for stores shared by our coroutines: one holder at a time; the others yield while they wait.
function Scheduler:mutex()
  local holder
  local sched = self
  return {
    lock = function()
      local me = co_running()
      while holder and holder ~= me do sched:sleep(0.005) end
      holder = me
      return true
    end,
    unlock = function() holder = nil end,
  }
end

return _M
