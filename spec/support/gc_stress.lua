--- busted --helper for `make asan` (second pass): an aggressive garbage collector, so a userdata or a
-- callback that is freed while C still uses it fails under ASan instead of some day in production.
-- Pause 0: a new cycle starts as soon as one ends; a big step multiplier: each step does a lot of work.
-- The full collections around each test free everything the previous one dropped, with its __gc.
collectgarbage("setpause", 0)
collectgarbage("setstepmul", 1000)
collectgarbage("collect")

local busted = require "busted"
busted.subscribe({ "test", "start" }, function()
  collectgarbage("collect")
  return nil, true
end)
busted.subscribe({ "test", "end" }, function()
  collectgarbage("collect")
  return nil, true
end)
