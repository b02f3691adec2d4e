-- Resumable exports (issue 13): an export or sync that stops part-way (the daily limit, a failure, Ctrl-C,
-- SIGTERM, kill -9) keeps its rows and where it was, prints the command that continues, exits 3 (130, 143
-- after a signal), and `--resume` ends with a file byte-identical to a run that never stopped, fetching no
-- page twice.
local helpers = require "helpers"
local cli = require "support.cli_run"

local q = helpers.quote
local SELECT = "ID,Code,Name,City"

describe("exactonline export --resume", function()
  -- 5 bulk pages of 1000
  local sb = helpers.use_sandbox { accounts = 5000, limits = { minutely = 100000, daily = 100000 }, reset = false }
  local dir, env, reference

  setup(function()
    dir, env = cli.authorized_home(sb)
    -- `exactonline` on PATH, to run the printed command exactly as printed
    helpers.sh("mkdir -p " .. q(dir .. "/bin"))
    helpers.write(dir .. "/bin/exactonline", "#!/bin/sh\nexec " .. helpers.cli_lua() .. " "
      .. q(helpers.root .. "/bin/exactonline") .. " \"$@\"\n")
    helpers.sh("chmod 755 " .. q(dir .. "/bin/exactonline"))
    local res = cli.run(env, { "export", "crm/Accounts", "--select", SELECT, "-o", dir .. "/reference.csv" })
    assert.are.equal(0, res.code, res.stderr)
    reference = helpers.read(dir .. "/reference.csv")
  end)

  -- A new day on the sandbox's clock. Its first call meets a 401 (the day-old access token), which the error
  -- budget counts, on this machine's clock, which has not moved: a day later its hour would long be over,
  -- so its counts (beside the token file) go, as the day would have taken them
  local function next_day()
    sb:advance(86400)
    os.remove(dir .. "/config/exactonline/tokens.json.counts")
  end

  -- API calls that fetched a page: not a 401 (the day-old access token, refreshed) nor a 429
  local function calls()
    local st = sb:stats()
    return st.api_calls - st.unauthorized - st.rate_limited
  end

  -- the command the stopped export printed, run as a user would paste it
  local function continue_with(stderr)
    local cmd = stderr:match("To continue where it stopped:\n  ([^\n]+)")
    assert.is_string(cmd, stderr)
    local parts = {}
    for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. q(v) end
    local ok, out, rc = helpers.sh("env -u EXACT_DIVISION -u EXACT_TOKEN_FILE -u EXACT_REGION -u EXACT_CONFIG "
      .. table.concat(parts, " ") .. " PATH=" .. q(dir .. "/bin:" .. os.getenv("PATH")) .. " sh -c " .. q(cmd))
    return ok, out, rc, cmd
  end

  local function gone(file)
    assert.is_false(helpers.exists(file .. ".partial"))
    assert.is_false(helpers.exists(file .. ".resume"))
  end

  it("stops on the daily limit with what it has, and continues the next day byte for byte", function()
    local csv = dir .. "/daily.csv"
    next_day() -- a new day on the sandbox's clock, with room for 2 calls
    sb:limits { minutely = 100000, daily = 2 }
    local before = calls()
    local res = cli.run(env, { "export", "crm/Accounts", "--select", SELECT, "-o", csv })
    assert.are.equal(3, res.code, res.stderr)
    assert.matches("daily", res.stderr, 1, true)
    assert.matches(csv .. " was not written; the 2000 rows so far are kept in " .. csv .. ".partial", res.stderr, 1,
      true)
    assert.is_false(helpers.exists(csv))
    assert.are.equal(reference:sub(1, #helpers.read(csv .. ".partial")), helpers.read(csv .. ".partial"))
    assert.are.equal("600", (helpers.capture("stat -c %a " .. q(csv .. ".resume")):gsub("%s+$", "")))
    assert.is_nil(helpers.read(csv .. ".resume"):find(sb.client_secret, 1, true))
    assert.are.equal(2, calls() - before)

    next_day() -- the next day
    sb:limits { minutely = 100000, daily = 100000 }
    before = calls()
    local ok, out, rc, cmd = continue_with(res.stderr)
    assert.is_true(ok, cmd .. " exit " .. tostring(rc) .. "\n" .. out)
    assert.matches("--resume$", cmd)
    assert.are.equal(reference, helpers.read(csv))
    gone(csv)
    -- pages 3 to 5, the first two never again
    assert.are.equal(3, calls() - before)
  end)

  it("a stop on a stop continues too, and a fresh run starts over and clears the state", function()
    local csv = dir .. "/twice.csv"
    next_day()
    sb:limits { minutely = 100000, daily = 1 }
    local res = cli.run(env, { "export", "crm/Accounts", "--select", SELECT, "-o", csv })
    assert.are.equal(3, res.code, res.stderr)
    next_day()
    res = cli.run(env, { "export", "crm/Accounts", "-o", csv, "--resume" })
    assert.are.equal(3, res.code, res.stderr)
    assert.matches("the 2000 rows so far", res.stderr, 1, true)
    next_day()
    sb:limits { minutely = 100000, daily = 100000 }
    res = cli.run(env, { "export", "crm/Accounts", "--select", "ID", "-o", csv }) -- not --resume: start over
    assert.are.equal(0, res.code, res.stderr)
    gone(csv)
    assert.matches("^ID\r\n", helpers.read(csv))
    res = cli.run(env, { "export", "crm/Accounts", "-o", csv, "--resume" })
    assert.are.equal(1, res.code)
    assert.matches("nothing to resume", res.stderr, 1, true)
  end)

  -- the export parked at its second page (the sandbox holds every call after the first until the fault is
  -- cleared), once its state is written: it cannot finish before the spec acts
  local function spawn_and_wait_for_state(csv)
    sb:fault("hold", 1000, { after = 1 })
    local h = cli.spawn(env, { "export", "crm/Accounts", "--select", SELECT, "-o", csv })
    for _ = 1, 600 do
      if helpers.exists(csv .. ".resume") or not helpers.sh("kill -0 " .. h.pid) then break end
      helpers.sh("sleep 0.05")
    end
    if not helpers.exists(csv .. ".resume") then
      sb:fault("hold", 0)
      error("no state after the first page (exit " .. tostring(h.wait()) .. "): " .. tostring(h.stderr))
    end
    return h
  end

  it("kill -9 mid-export, then --resume: byte-identical", function()
    local csv = dir .. "/killed.csv"
    local h = spawn_and_wait_for_state(csv)
    helpers.sh("kill -9 " .. h.pid)
    assert.are.equal(137, h.wait())
    sb:fault("hold", 0)
    local res = cli.run(env, { "export", "crm/Accounts", "-o", csv, "--resume" })
    assert.are.equal(0, res.code, res.stderr)
    assert.are.equal(reference, helpers.read(csv))
    gone(csv)
  end)

  it("Ctrl-C keeps what it has (exit 130), SIGTERM too (exit 143, after the page in hand)", function()
    for _, sig in ipairs { { "INT", 130 }, { "TERM", 143 } } do
      local csv = dir .. "/signal-" .. sig[1] .. ".csv"
      local h = spawn_and_wait_for_state(csv)
      helpers.sh("kill -" .. sig[1] .. " " .. h.pid)
      sb:fault("hold", 0) -- the page in hand is answered after the signal came
      assert.are.equal(sig[2], h.wait(), h.stderr)
      assert.matches("To continue where it stopped:", h.stderr, 1, true)
      assert.is_false(helpers.exists(csv))
      local res = cli.run(env, { "export", "crm/Accounts", "-o", csv, "--resume" })
      assert.are.equal(0, res.code, res.stderr)
      assert.are.equal(reference, helpers.read(csv), sig[1])
      gone(csv)
    end
  end)

  it("never prints the client secret in the command that continues", function()
    local csv = dir .. "/secret.csv"
    next_day()
    sb:limits { minutely = 100000, daily = 1 }
    local res = cli.run(cli.env_for(sb, dir, { EXACT_CLIENT_SECRET = false }), { "export", "crm/Accounts",
      "--client-secret", sb.client_secret, "--select", SELECT, "-o", csv })
    assert.are.equal(3, res.code, res.stderr)
    local cmd = res.stderr:match("To continue where it stopped:\n  ([^\n]+)")
    assert.is_string(cmd)
    assert.is_nil(cmd:find(sb.client_secret, 1, true))
    assert.is_nil(cmd:find("--client-secret", 1, true))
    next_day()
    sb:limits { minutely = 100000, daily = 100000 }
    assert.are.equal(0, cli.run(env, { "export", "crm/Accounts", "-o", csv, "--resume" }).code)
  end)

  it("sync stops and resumes the same way; its Timestamp moves on only once FILE is written", function()
    local ref, out = dir .. "/sync-ref.jsonl", dir .. "/sync.jsonl"
    next_day()
    sb:limits { minutely = 100000, daily = 100000 }
    local res = cli.run(env, { "sync", "crm/Accounts", "--select", "ID,Name,Timestamp", "-o", ref })
    assert.are.equal(0, res.code, res.stderr)
    next_day()
    sb:limits { minutely = 100000, daily = 2 }
    res = cli.run(env, { "sync", "crm/Accounts", "--select", "ID,Name,Timestamp", "-o", out })
    assert.are.equal(3, res.code, res.stderr)
    assert.is_false(helpers.exists(out .. ".sync-state"))
    next_day()
    sb:limits { minutely = 100000, daily = 100000 }
    res = cli.run(env, { "sync", "crm/Accounts", "-o", out, "--resume" })
    assert.are.equal(0, res.code, res.stderr)
    assert.matches("synced 5000 changed rows since Timestamp 1 ", res.stderr, 1, true)
    assert.are.equal(helpers.read(ref), helpers.read(out))
    local cjson = require "cjson"
    assert.are.equal(cjson.decode(helpers.read(ref .. ".sync-state")).timestamp,
      cjson.decode(helpers.read(out .. ".sync-state")).timestamp)
    gone(out)
  end)
end)
