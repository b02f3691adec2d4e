-- The CLI as a program: --help on every command, --version, running from a checkout from anywhere,
-- and `make install` putting a bin/exactonline that runs on its own.
local helpers = require "helpers"
local cli = require "support.cli_run"

local q, sh = helpers.quote, helpers.sh

-- from another folder, with no Lua paths from the spec runner
local AWAY = "cd / && env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 "

describe("the exactonline program", function()
  local root = helpers.root
  local version = require("exactonline").version

  it("prints its version", function()
    local res = cli.run({}, { "--version" })
    assert.are.equal(0, res.code, res.stderr)
    assert.are.equal("exactonline " .. version .. "\n", res.stdout)
  end)

  it("has --help with a usage line and examples on every command, exit 0", function()
    local commands = require("exactonline.cli").commands
    assert.is_true(#commands >= 8)
    for _, c in ipairs(commands) do
      local name = c[1]
      local res = cli.run({}, { name, "--help" })
      assert.are.equal(0, res.code, name .. ": " .. res.stderr)
      assert.matches("^usage: exactonline " .. name .. " ", res.stdout)
      local examples = res.stdout:match("\nexamples:\n(.*)$")
      assert.is_string(examples, name .. " --help has no examples")
      assert.matches("\n  [^\n]*exactonline " .. name, "\n" .. examples)
      assert.are.equal(res.stdout, cli.run({}, { "help", name }).stdout)
    end
    local res = cli.run({}, { "--help" })
    assert.are.equal(0, res.code)
    for _, c in ipairs(commands) do assert.matches("\n  " .. c[1] .. " ", res.stdout, 1, true) end
    assert.matches("EXACT_CLIENT_ID", res.stdout, 1, true)
    assert.matches("EXACT_CONFIG", res.stdout, 1, true)
    -- an unknown command or option is a usage error (2), never a traceback
    res = cli.run({}, { "frobnicate" })
    assert.are.equal(2, res.code)
    assert.matches("unknown command 'frobnicate'", res.stderr, 1, true)
    res = cli.run({}, { "export", "--frob" })
    assert.are.equal(2, res.code)
    assert.are.equal("exactonline export: unknown option --frob\n(exactonline export --help for more)\n", res.stderr)
  end)

  -- what `cmd --version` prints, having exited 0
  local function version_from(cmd)
    local ok, out = sh(cmd .. " --version")
    assert.is_true(ok, out)
    return out
  end

  -- argparse wraps help wider than its width, which would split an example into two broken commands
  it("refuses a --help example wider than the help, so none is ever printed wrapped", function()
    local parser = require "exactonline.cli.parser"
    local long = "exactonline get crm/Accounts --select " .. ("Name,"):rep(20) .. "Code"
    local ok, err = pcall(parser.command, parser.root(function() end), "get", { summary = "s", examples = { long } })
    assert.is_false(ok)
    assert.matches("a --help example is wider than 110 columns: " .. long, tostring(err), 1, true)
    assert.is_true(pcall(parser.command, parser.root(function() end), "get", { summary = "s",
      examples = { long:sub(1, 108) } }))
  end)

  -- one rule with the library (exactonline.new raises): no region or base URL is no guessed `nl`
  it("stops with exit 2 naming EXACT_REGION when neither a region nor a base URL is set", function()
    local dir = helpers.tmpdir()
    local env = { XDG_CONFIG_HOME = dir, EXACT_CLIENT_ID = "id", EXACT_CLIENT_SECRET = "secret",
                  EXACT_REDIRECT_URI = "https://example.com/callback" }
    for _, args in ipairs { { "auth", "--redirect-url", "code" }, { "get", "/api/v1/current/Me" },
                             { "refresh" }, { "export", "crm/Accounts", "-o", dir .. "/a.csv" } } do
      local res = cli.run(env, args)
      assert.are.equal(2, res.code, args[1] .. ": " .. res.stdout .. res.stderr)
      assert.matches("missing the region (nl be de fr es uk us", res.stderr, 1, true)
      assert.matches("pass --region R (or --base-url URL) or set EXACT_REGION", res.stderr, 1, true)
      assert.is_nil(res.stderr:find("traceback", 1, true))
    end
    assert.is_false(helpers.exists(dir .. "/exactonline/tokens.json"))
  end)

  it("runs from a checkout, called by its full path from another folder", function()
    local line = "exactonline " .. version .. "\n"
    assert.are.equal(line, version_from(AWAY .. helpers.cli_lua() .. " " .. q(root .. "/bin/exactonline")))
    assert.are.equal(line, version_from(AWAY .. q(root .. "/bin/exactonline"))) -- through its #! line
    local dir = helpers.tmpdir()
    assert.is_true((sh("ln -s " .. q(root .. "/bin/exactonline") .. " " .. q(dir .. "/exactonline"))))
    assert.are.equal(line, version_from(AWAY .. q(dir .. "/exactonline"))) -- through a symlink in ~/bin, say
  end)

  it("make install installs a bin/exactonline that runs from the installed tree alone", function()
    local usr = assert(helpers.make_install())
    assert.is_true(helpers.exists(usr .. "/bin/exactonline"), "no bin/exactonline installed")
    assert.is_true(helpers.exists(usr .. "/lib/lua/5.4/exactonline/core.so"))
    assert.is_true(helpers.exists(usr .. "/share/lua/5.4/exactonline/cli/export.lua"))
    -- away from the checkout, with only the installed tree on the paths
    local env = "cd / && " .. helpers.installed_env(usr) .. " XDG_CONFIG_HOME=" .. q(helpers.tmpdir()) .. " "
    assert.are.equal("exactonline " .. version .. "\n", version_from(env .. q(usr .. "/bin/exactonline")))
    local ok, out = sh(env .. "lua5.4 -e " .. q("print(package.searchpath('exactonline.cli.export', package.path))"))
    assert.is_true(ok, out)
    assert.are.equal(usr .. "/share/lua/5.4/exactonline/cli/export.lua\n", out)
    -- a real command from the installed files: no tokens yet is exit 2 with what to do
    local _, text, rc = sh(env .. "EXACT_CLIENT_ID=x EXACT_CLIENT_SECRET=y EXACT_REDIRECT_URI=https://localhost/cb "
      .. q(usr .. "/bin/exactonline") .. " token")
    assert.are.equal(2, rc, text)
    assert.matches("exactonline auth", text, 1, true)
    assert.is_nil(text:find("traceback", 1, true), text)
  end)
end)
