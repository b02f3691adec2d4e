-- exactonline export when Exact's clock is 10 minutes ahead of this machine's, or behind (issue 13): the
-- rate-limit resets are read against the answers' Date, so the export fills each window and earns no 429.
-- Real time here (the CLI sleeps for real): windows of 5 s on the sandbox, asserted from its request log.
local helpers = require "helpers"
local cli = require "support.cli_run"

local PAGES = 130 -- 60 rows a page (--no-bulk): at least one window spent, wherever in one the export starts
local WINDOW = 5

describe("exactonline export when Exact's clock is 10 minutes off this machine's", function()
  local sb = helpers.use_sandbox { accounts = 60 * PAGES,
    limits = { minutely = 60, daily = 100000, window = WINDOW } }

  for _, skew in ipairs { 600, -600 } do
    it("paces at 60 calls a window: no 429, no window skipped (Exact " .. (skew > 0 and "ahead" or "behind") .. ")",
      function()
      sb:configure { clock_offset = skew }
      local dir, env = cli.authorized_home(sb)
      local start = sb:requests().last
      local csv = dir .. "/accounts.csv"
      local res = cli.run(env, { "export", "crm/Accounts", "--no-bulk", "--select", "ID", "-o", csv })
      assert.equal(0, res.code, res.stderr)
      assert.equal(60 * PAGES + 1, select(2, helpers.read(csv):gsub("\r\n", "")))
      assert.equal(0, sb:stats().rate_limited)

      local per, windows = {}, {}
      for _, r in ipairs(sb:requests(start).requests) do
        if r.scope == "api" then
          assert.equal(200, r.status, r.uri)
          local w = math.floor(r.clock / WINDOW)
          if not per[w] then windows[#windows + 1] = w end
          per[w] = (per[w] or 0) + 1
        end
      end
      local full = 0
      for i, w in ipairs(windows) do
        assert.is_true(per[w] <= 60)
        if per[w] == 60 then full = full + 1 end
        -- a wait for a spent window ends in the next one, not 10 minutes (or a window) later
        if i > 1 then
          assert.equal(windows[i - 1] + 1, w, "a window skipped after " .. per[windows[i - 1]] .. " calls")
        end
      end
      assert.is_true(full >= 1, "no window was spent: the pacing was not tried") -- 60 calls, then a wait
    end)
  end
end)
