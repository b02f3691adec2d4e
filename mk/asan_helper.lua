-- busted --helper for `make asan`: this process (and only this one: children keep LUA_CPATH's
-- build/lua5.4) loads the ASan+UBSan build of the core. EXACTONLINE_ASAN_GC=1 adds the aggressive
-- garbage collector of spec/support/gc_stress.lua.
local cpath = os.getenv("EXACTONLINE_ASAN_CPATH")
if cpath then package.cpath = cpath .. ";" .. package.cpath end
if os.getenv("EXACTONLINE_ASAN_GC") == "1" then dofile("spec/support/gc_stress.lua") end
