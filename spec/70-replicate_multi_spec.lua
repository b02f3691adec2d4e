-- Many divisions at once in one process: clients (one per division) over one libcurl multi handle,
-- coroutines whose rate-limit waits yield to the others. Real HTTPS to the sandbox.
local helpers = require "helpers"
local exactonline = require "exactonline"
local multi = require "exactonline.transport.multi"
local client_mod = require "exactonline.client"

local SEQUENTIAL = "Lua 5.1 cannot yield across pcall or a for-in iterator: there the scheduler runs its "
  .. "coroutines one after another (multi.concurrent is false)"

describe("multi transport and scheduler", function()
  local sb = helpers.use_sandbox { accounts = 300, reset = false }
  local client

  setup(function()
    client = assert(exactonline.new(sb:client_config {}))
    assert(client:exchange(sb:code()))
  end)

  teardown(function()
    if client then client:close() end
  end)

  before_each(function()
    sb:limits { minutely = 60, daily = 5000, window = 60 }
  end)

  local function sibling(sched, division)
    local t = sched:transport()
    return t:bind(client_mod.sibling(client, { division = division, transport = t }))
  end

  it("runs two divisions' requests at once: one waiting for its reset never holds up the other", function()
    if not multi.concurrent then pending(SEQUENTIAL) end
    local A, B = sb.division, sb.division + 1
    -- 8 calls per 2-second window: A needs three windows, B fits in its first
    sb:limits { minutely = 8, window = 2 }
    local before = sb:stats().rate_limited
    local sched = multi.scheduler()
    local a, b = sibling(sched, A), sibling(sched, B)
    local log = {}
    sched:spawn(function()
      for i = 1, 20 do
        assert(a:get("crm/Accounts", { ["$select"] = "ID", ["$top"] = 1 }))
        log[#log + 1] = "A" .. i
      end
    end)
    sched:spawn(function()
      for i = 1, 8 do
        assert(b:get("crm/Accounts", { ["$select"] = "ID", ["$top"] = 1 }))
        log[#log + 1] = "B" .. i
      end
    end)
    local errors = sched:run()
    sched:close()
    assert.are.same({}, errors)
    local at = {}
    for i, v in ipairs(log) do at[v] = i end
    -- B's eight calls are done before A's ninth, which had to wait for A's next window
    assert.is_true(at.B8 < at.A9, table.concat(log, " "))
    assert.are.equal(28, #log)
    -- the client waited before each window ran out: Exact never had to refuse a call
    assert.are.equal(before, sb:stats().rate_limited)
    a:close()
    b:close()
  end)

  it("gives each division its own rate-limit state", function()
    local sched = multi.scheduler()
    local a, b = sibling(sched, sb.division), sibling(sched, sb.division + 1)
    sched:spawn(function()
      for _ = 1, 3 do assert(a:get("crm/Accounts", { ["$top"] = 1 })) end
      assert(b:get("crm/Accounts", { ["$top"] = 1 }))
    end)
    assert.are.same({}, sched:run())
    sched:close()
    local ra, rb = a:rate_limits(), b:rate_limits()
    assert.is_true(ra.daily_remaining < rb.daily_remaining)
    assert.are.equal(ra.minutely_remaining + 2, rb.minutely_remaining)
    a:close()
    b:close()
  end)

  it("interleaves where a coroutine can yield inside pcall (Lua 5.2+, LuaJIT), runs one after another on 5.1",
    function()
    assert.are.equal(_VERSION ~= "Lua 5.1" or rawget(_G, "jit") ~= nil, multi.concurrent)
    local sched, order = multi.scheduler(), {}
    for _, name in ipairs { "a", "b" } do
      sched:spawn(function()
        order[#order + 1] = name .. "1"
        assert(pcall(sched.sleep, sched, 0.05))
        order[#order + 1] = name .. "2"
      end)
    end
    assert.are.same({}, sched:run())
    sched:close()
    assert.are.same(multi.concurrent and { "a1", "b1", "a2", "b2" } or { "a1", "a2", "b1", "b2" }, order)
  end)

  it("works as the blocking transport outside the scheduler's coroutines", function()
    local sched = multi.scheduler()
    local a = sibling(sched, sb.division)
    local rows = assert(a:get("crm/Accounts", { ["$select"] = "ID,Name", ["$top"] = 3 }))
    assert.are.equal(3, #rows)
    a:close()
    sched:close()
  end)

  it("tells a coroutine whose client was closed mid-request, and leaves the scheduler usable", function()
    if not multi.concurrent then pending(SEQUENTIAL) end
    sb:fault("slow", 1, 1) -- the next API answer takes a second
    local sched = multi.scheduler()
    local a, b = sibling(sched, sb.division), sibling(sched, sb.division)
    local got, gerr
    sched:spawn(function() got, gerr = a:get("crm/Accounts", { ["$top"] = 1 }) end)
    sched:spawn(function()
      sched:sleep(0.2)
      a:close()
    end)
    assert.are.same({}, sched:run())
    assert.is_nil(got)
    assert.are.equal("closed", gerr.code)
    local ok
    sched:spawn(function() ok = b:get("crm/Accounts", { ["$top"] = 1 }) end)
    assert.are.same({}, sched:run())
    assert.are.equal(1, #ok)
    b:close()
    sched:close()
    assert.has_error(function() sched.multi:poll(0) end, "attempt to use a closed exactonline multi handle")
  end)

  it("shares one token chain: a refresh by one division is adopted by the others, never repeated", function()
    local store = exactonline.memory_store()
    local c0 = assert(exactonline.new(sb:client_config { store = store }))
    assert(c0:exchange(sb:code()))
    sb:advance(601) -- the access token has expired on Exact's clock: every division gets a 401 at once
    local before = sb:stats()
    local sched = multi.scheduler()
    local shared = sched:mutex()
    local wrapped = { load = store.load, save = store.save, lock = shared.lock, unlock = shared.unlock }
    local clients = {}
    for i = 1, 4 do
      local t = sched:transport()
      clients[i] = t:bind(client_mod.sibling(c0, { division = sb.division + (i % 2), transport = t, store = wrapped }))
      sched:spawn(function() assert(clients[i]:get("crm/Accounts", { ["$top"] = 1 })) end)
    end
    assert.are.same({}, sched:run())
    sched:close()
    local after = sb:stats()
    assert.are.equal(1, after.refresh_attempts - before.refresh_attempts)
    for _, c in ipairs(clients) do c:close() end
    -- the first client adopts the stored pair instead of refreshing with a dead refresh token
    assert(c0:get("crm/Accounts", { ["$top"] = 1 }))
    assert.are.equal(after.refresh_attempts, sb:stats().refresh_attempts)
    assert.are.equal(before.old_refresh_used, sb:stats().old_refresh_used)
    c0:close()
  end)
end)
