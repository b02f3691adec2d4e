-- `make demo` runs `bin/exactonline demo`: the whole flow against its own sandbox.
local cli = require "support.cli_run"

describe("exactonline demo", function()
  it("authorizes, exports the accounts to CSV, shows the token and stops its sandbox", function()
    local dir = cli.mktemp()
    local csv = dir .. "/accounts.csv"
    local res = cli.run({ XDG_CONFIG_HOME = dir .. "/config" }, { "demo", "--accounts", "1200", "-o", csv })
    assert.are.equal(0, res.code, res.stdout .. res.stderr)
    assert.matches("Connected as", res.stdout, 1, true)
    assert.matches("exported 1200 rows", res.stderr, 1, true)
    assert.matches("%d+ days left", res.stdout)
    assert.matches("EXACT_CLIENT_ID", res.stdout, 1, true)
    assert.matches("exactonline auth", res.stdout, 1, true)
    assert.is_nil(res.stdout:find("sandbox-secret", 1, true))
    local n = 0
    for _ in cli.read(csv):gmatch("\r\n") do n = n + 1 end
    assert.are.equal(1201, n)
    -- the sandbox is gone: the port it printed no longer answers
    local base = res.stdout:match("(https://localhost:%d+)")
    assert.is_string(base)
    assert.is_false(cli.sh("curl -sk -o /dev/null --max-time 2 " .. cli.q(base .. "/api/v1/current/Me")))
    cli.sh("rm -rf " .. cli.q(dir))
  end)
end)
