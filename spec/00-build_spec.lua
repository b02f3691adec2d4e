-- The build: the module loads on this VM, the rockspec is current and installs into a tree offline.
local helpers = require "helpers"

local q, sh = helpers.quote, helpers.sh

describe("build", function()
  it("loads exactonline and its C core on this VM", function()
    local exactonline = require "exactonline"
    assert.is_string(exactonline.version)
    assert.matches("^%d+%.%d+%.%d+", exactonline.version)
    assert.is_function(exactonline.core.error)
  end)

  it("exports only luaopen_exactonline_core from the shared object", function()
    local so = "build/" .. helpers.lua() .. "/exactonline/core.so"
    local ok, out = sh("nm -D --defined-only " .. so .. " | awk '$2 == \"T\" {print $3}'")
    assert.is_true(ok, out)
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
    assert.is_true(sh("lua5.4 rockspec/gen.lua --check"))
  end)

  -- for this VM's Lua version (lua5.3, lua5.1: the rockspec's "lua >= 5.1"); under LuaJIT, for 5.4 as the CLI
  it("luarocks builds and installs the rockspec into a tree offline, and require works from it", function()
    local vm = helpers.lua() == "luajit" and "lua5.4" or helpers.lua()
    local version = vm:match("%d+%.%d+")
    local tmp = helpers.tmpdir()
    local src, tree = tmp .. "/src", tmp .. "/tree"
    assert.is_true(sh("mkdir -p " .. q(src) .. " && cp -r csrc lua bin rockspec README.md LICENSE " .. q(src) .. "/"))
    assert.is_true(sh("cd " .. q(src) .. " && luarocks --lua-version=" .. version .. " --tree=" .. q(tree)
      .. " make --deps-mode=none rockspec/exactonline-scm-1.rockspec"))
    local from_tree = "cd / && " .. helpers.installed_env(tree, version) .. " "
    local ok, out = sh(from_tree .. vm .. " -e " .. q("local e = require 'exactonline'; "
      .. "local function where(name, path) for t in path:gmatch('[^;]+') do " -- package.searchpath, not on 5.1
      .. "local p = t:gsub('%?', (name:gsub('%.', '/'))); local f = io.open(p) "
      .. "if f then f:close() return p end end end; "
      .. "assert(where('exactonline.core', package.cpath):find(" .. ("%q"):format(tree) .. ", 1, true)); "
      .. "print(e.version)"))
    assert.is_true(ok, out)
    assert.matches("%d+%.%d+%.%d+", out)
    if version == "5.4" then -- the installed CLI runs the tree's Lua: it is claimed for lua5.4 (and LuaJIT)
      ok, out = sh(from_tree .. q(tree .. "/bin/exactonline") .. " --version")
      assert.is_true(ok, out)
      assert.matches("exactonline %d", out)
    end
  end)
end)

-- a smoke check that the spec helpers and the sandbox start (deeper checks in 10-sandbox_*)
describe("spec helpers", function()
  it("start a sandbox that answers over HTTPS", function()
    local sb = helpers.sandbox()
    local status = helpers.http("GET", sb.base_url .. "/_sandbox/stats", { cafile = sb.cafile,
      headers = sb:control_headers() })
    sb:stop()
    assert.equal(200, status)
  end)
end)
