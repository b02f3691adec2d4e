-- The build: the module loads on this VM, the rockspec is current and installs into a tree offline.
local helpers_ok, helpers = pcall(require, "helpers")

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  return rc, (out:gsub("__rc=%d+%s*$", ""))
end

describe("build", function()
  it("loads exactonline and its C core on this VM", function()
    local exactonline = require "exactonline"
    assert.is_string(exactonline.version)
    assert.matches("^%d+%.%d+%.%d+", exactonline.version)
    assert.is_function(exactonline.core.error)
  end)

  it("exports only luaopen_exactonline_core from the shared object", function()
    local vm = os.getenv("EXACTONLINE_VM") or "lua5.4"
    local rc, out = sh("nm -D --defined-only build/" .. vm .. "/exactonline/core.so | awk '$2 == \"T\" {print $3}'")
    assert.equal(0, rc)
    assert.equal("luaopen_exactonline_core", (out:gsub("%s+$", "")))
  end)

  it("error objects read well and carry their fields", function()
    local core = require "exactonline.core"
    local err = core.error { kind = "oauth", status = 400, code = "invalid_grant", message = "Code expired",
                             hint = "get a new code", extra = 5 }
    assert.is_true(core.is_error(err))
    assert.equal("oauth", err.kind)
    assert.equal(400, err.status)
    assert.equal(5, err.extra)
    assert.equal("exactonline: authorization failed (HTTP 400 invalid_grant): Code expired\n"
      .. "  What to do: get a new code", tostring(err))
    assert.is_false(core.is_error({ kind = "oauth" }))
  end)

  it("the rockspec lists every Lua module and C source", function()
    local rc, out = sh("lua5.4 rockspec/gen.lua --check")
    assert.equal(0, rc, out)
  end)

  it("luarocks builds and installs the rockspec into a tree offline, and require works from it", function()
    local tmp = os.tmpname()
    os.remove(tmp)
    local src, tree = tmp .. "/src", tmp .. "/tree"
    assert.equal(0, (sh("mkdir -p " .. src .. " && cp -r csrc lua bin rockspec README.md LICENSE " .. src .. "/")))
    local rc, out = sh("cd " .. src .. " && luarocks --lua-version=5.4 --tree=" .. tree
      .. " make --deps-mode=none rockspec/exactonline-scm-1.rockspec")
    assert.equal(0, rc, out)
    rc, out = sh("cd / && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 LUA_PATH='" .. tree .. "/share/lua/5.4/?.lua;"
      .. tree .. "/share/lua/5.4/?/init.lua;;' "
      .. "LUA_CPATH='" .. tree .. "/lib/lua/5.4/?.so;;' "
      .. "lua5.4 -e 'local e = require \"exactonline\"; assert(package.searchpath(\"exactonline.core\", package.cpath)"
      .. ":find(\"" .. tree .. "\", 1, true)); print(e.version)'")
    assert.equal(0, rc, out)
    assert.matches("%d+%.%d+%.%d+", out)
    rc, out = sh("cd / && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 LUA_PATH='" .. tree .. "/share/lua/5.4/?.lua;"
      .. tree .. "/share/lua/5.4/?/init.lua;;' LUA_CPATH='" .. tree .. "/lib/lua/5.4/?.so;;' "
      .. tree .. "/bin/exactonline --version")
    assert.equal(0, rc, out)
    assert.matches("exactonline %d", out)
    sh("rm -rf " .. tmp)
  end)
end)

if helpers_ok and helpers.sandbox then
  -- a smoke check that the spec helpers and the sandbox start (deeper checks in 10-sandbox_*)
  describe("spec helpers", function()
    it("start a sandbox that answers over HTTPS", function()
      local sb = helpers.sandbox()
      local status = helpers.http("GET", sb.base_url .. "/_sandbox/stats", { cafile = sb.cafile })
      sb:stop()
      assert.equal(200, status)
    end)
  end)
end
