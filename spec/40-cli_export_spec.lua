-- exactonline export / sync / get against a sandbox with 10 000 accounts; Python's csv module reads the CSV.
local helpers = require "helpers"
local cli = require "support.cli_run"
local cjson = require "cjson"

local q = helpers.quote

local PY_COMPARE = [[
import csv, json, sys
rows = list(csv.reader(open(sys.argv[1], newline='', encoding='utf-8')))
lines = [json.loads(l) for l in open(sys.argv[2], encoding='utf-8')]
header, data = rows[0], rows[1:]
assert len(data) == len(lines), (len(data), len(lines))
def text(v):
    if v is None: return ''
    if v is True: return 'true'
    if v is False: return 'false'
    if isinstance(v, float) and v.is_integer(): return str(int(v))
    return str(v)
for i, (r, j) in enumerate(zip(data, lines)):
    assert len(r) == len(header), (i, r)
    for name, value in zip(header, r):
        assert value == text(j.get(name)), (i, name, value, j.get(name))
ids = set(r[header.index('ID')] for r in data)
print(json.dumps({"rows": len(data), "ids": len(ids), "header": header}))
]]

describe("exactonline export", function()
  local sb = helpers.use_sandbox { accounts = 10000, limits = { minutely = 100000, daily = 100000 }, reset = false }
  local dir, env

  setup(function()
    dir, env = cli.authorized_home(sb)
  end)

  local function api_calls()
    return sb:stats().api_calls
  end

  -- the export's temp file beside FILE: FILE.partial-PID.RANDOM (an unpredictable name), or nil
  local function partial_of(path, pid)
    local folder, base = path:match("^(.*)/([^/]+)$")
    for name in helpers.capture("ls -a " .. q(folder)):gmatch("[^\n]+") do
      if name:match("^" .. base:gsub("%p", "%%%0") .. "%.partial%-" .. pid .. "%.%x+$") then
        return folder .. "/" .. name
      end
    end
    return nil
  end

  -- the temp file once it holds something, or nil when the export ended first
  local function wait_for_partial(path, h)
    for _ = 1, 600 do
      local p = partial_of(path, h.pid)
      if p and #(helpers.read(p) or "") > 0 then return p end
      if not helpers.sh("kill -0 " .. h.pid) then return nil end
      helpers.sh("sleep 0.05")
    end
    return nil
  end

  -- an export to dir/NAME in the background, parked at its second page (the sandbox holds every call after
  -- the first until the spec clears or replaces the fault), once its temp file holds the first page:
  -- csv, the spawned CLI (h.pid, h.wait()), the temp file. The export cannot finish before the spec acts.
  local function held_export(name)
    local csv = dir .. "/" .. name
    sb:fault("hold", 1000, { after = 1 })
    local h = cli.spawn(env, { "export", "crm/Accounts", "--select", "ID,Name", "-o", csv })
    local partial = wait_for_partial(csv, h)
    if not partial then
      sb:fault("hold", 0)
      error("the export never wrote its first page beside " .. csv .. " (exit " .. tostring(h.wait()) .. "): " ..
        tostring(h.stderr))
    end
    return csv, h, partial
  end

  it("writes 10 000 accounts as RFC 4180 CSV that Python reads back row for row, through the bulk endpoint", function()
    -- one account with every character CSV must quote
    local client = assert(require("exactonline").new {
      client_id = sb.client_id, client_secret = sb.client_secret, redirect_uri = sb.redirect_uri,
      base_url = sb.base_url, cafile = sb.cafile, division = sb.division,
      store = require("exactonline").file_store(dir .. "/config/exactonline/tokens.json"),
    })
    local first = assert(client:get("crm/Accounts", { ["$select"] = "ID", ["$top"] = "1" }))
    local id = first[1].ID
    assert(client:put("crm/Accounts(guid'" .. id .. "')", { Name = 'Quote " comma, line\r\nbreak Zoë' }))
    client:close()

    local before = api_calls()
    local csv = dir .. "/accounts.csv"
    local res = cli.run(env, { "export", "crm/Accounts", "-o", csv })
    assert.are.equal(0, res.code, res.stderr)
    assert.matches("exported 10000 rows", res.stderr, 1, true)
    assert.matches("calls left", res.stderr, 1, true) -- plain progress lines (stderr is not a terminal)
    -- one $top=1 probe for the columns, then 10 pages of 1000
    assert.are.equal(11, api_calls() - before)

    local jsonl = dir .. "/accounts.jsonl"
    res = cli.run(env, { "export", "crm/Accounts", "--format", "jsonl", "-o", jsonl })
    assert.are.equal(0, res.code, res.stderr)

    local py = dir .. "/compare.py"
    helpers.write(py, PY_COMPARE)
    local out = helpers.capture("python3 " .. q(py) .. " " .. q(csv) .. " " .. q(jsonl) .. " 2>&1")
    local ok, summary = pcall(cjson.decode, out)
    assert(ok, out)
    assert.are.equal(10000, summary.rows)
    assert.are.equal(10000, summary.ids)
    assert.are.equal("ID", summary.header[1])

    local text = helpers.read(csv)
    assert.are.equal("\r\n", text:sub(-2))
    assert.matches('"Quote "" comma, line\r\nbreak Zoë"', text, 1, true)
    assert.matches(",                 1,", text, 1, true) -- 18-character codes keep their padding
    -- outside quoted fields every line ends in CRLF
    assert.is_nil((text:gsub('"[^"]*"', "")):find("[^\r]\n"))
  end)

  it("writes the $select columns in order, with ISO 8601 dates", function()
    local res = cli.run(env, { "export", "crm/Accounts", "--select", "Name,Code,Created", "--iso-dates",
      "--filter", "City eq 'Delft'" })
    assert.are.equal(0, res.code, res.stderr)
    local lines = {}
    for l in res.stdout:gmatch("([^\r\n]*)\r\n") do lines[#lines + 1] = l end
    assert.are.equal("Name,Code,Created", lines[1])
    assert.is_true(#lines > 100)
    assert.matches(",%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", lines[2])
  end)

  it("writes JSON Lines, one row per line", function()
    local res = cli.run(env, { "export", "crm/Accounts", "-f", "jsonl", "--select", "ID,Name,IsSupplier",
      "--filter", "City eq 'Köln'" })
    assert.are.equal(0, res.code, res.stderr)
    local n = 0
    for line in res.stdout:gmatch("[^\n]+") do
      local row = cjson.decode(line)
      assert.is_string(row.ID)
      assert.is_boolean(row.IsSupplier)
      assert.is_nil(row.__metadata)
      n = n + 1
    end
    assert.are.equal(1250, n)
  end)

  it("--no-progress keeps stderr quiet", function()
    local res = cli.run(env, { "export", "crm/Accounts", "-f", "jsonl", "--select", "ID", "--no-progress" })
    assert.are.equal(0, res.code, res.stderr)
    assert.are.equal("", res.stderr)
    local _, lines = res.stdout:gsub("\n", "")
    assert.are.equal(10000, lines)
  end)

  it("shows a self-updating progress line when stderr is a terminal", function()
    local csv = dir .. "/tty.csv"
    local cmd = cli.command(env, { "export", "crm/Accounts", "--select", "ID,Name", "-o", csv })
    local out = helpers.capture("script -qec " .. q(cmd) .. " /dev/null </dev/null 2>&1")
    assert.matches("\rexport bulk/CRM/Accounts: 1000 rows, 1 page, %d+ rows/s, "
      .. "calls left %d+ this minute, %d+ today\27%[K", out)
    assert.matches("\rexport bulk/CRM/Accounts: 10000 rows, 10 pages, ", out, 1, true)
    assert.matches("exported 10000 rows", out, 1, true)
    assert.is_true(helpers.exists(csv))
  end)

  it("leaves no file when the sandbox fails mid-export, and exits non-zero", function()
    local csv, h, partial = held_export("broken.csv")
    assert.is_true(#(helpers.read(partial) or "") > 0, "the first page was written to the temp file")
    sb:fault("truncate", 5) -- replaces the hold: the held page is answered, the pages after it are cut short
    local code = h.wait()
    assert.are_not.equal(0, code)
    assert.matches("was not written", h.stderr, 1, true)
    assert.is_false(helpers.exists(csv))
    assert.is_false(helpers.exists(partial))
    sb:fault("truncate", 0)
  end)

  it("leaves no file when interrupted (Ctrl-C)", function()
    local csv, h, partial = held_export("interrupted.csv")
    helpers.sh("kill -INT " .. h.pid)
    sb:fault("hold", 0) -- the held page is answered after the signal came
    local code = h.wait()
    assert.are.equal(130, code, h.stderr)
    assert.is_false(helpers.exists(csv))
    assert.is_false(helpers.exists(partial))
  end)

  it("removes the partial file an export killed with -9 left, at the next export to that file", function()
    local csv, h, partial = held_export("killed.csv")
    helpers.sh("kill -9 " .. h.pid)
    assert.are.equal(137, h.wait())
    sb:fault("hold", 0)
    assert.is_true(helpers.exists(partial), "kill -9 leaves the partial file (nothing can remove it then)")
    assert.is_false(helpers.exists(csv))
    -- beside it: a partial of a live process (pid 1) and one of another file: not ours to remove
    local live, other = csv .. ".partial-1.0abc", dir .. "/other.csv.partial-" .. h.pid .. ".0abc"
    helpers.write(live, "in use")
    helpers.write(other, "another export's")

    local res = cli.run(env, { "export", "crm/Accounts", "--select", "ID,Name", "--filter", "City eq 'Delft'",
      "-o", csv })
    assert.are.equal(0, res.code, res.stderr)
    assert.is_false(helpers.exists(partial), "the dead export's partial file is still there")
    assert.is_true(helpers.exists(live))
    assert.is_true(helpers.exists(other))
    assert.matches("^ID,Name\r\n", helpers.read(csv))
    os.remove(live)
    os.remove(other)
  end)

  it("sync fetches everything first, then only the rows changed since", function()
    local out = dir .. "/sync.jsonl"
    local res = cli.run(env, { "sync", "crm/Accounts", "-o", out, "--select", "ID,Name,Timestamp" })
    assert.are.equal(0, res.code, res.stderr)
    local n = 0
    for _ in helpers.read(out):gmatch("[^\n]+") do n = n + 1 end
    assert.are.equal(10000, n)
    local state = cjson.decode(helpers.read(out .. ".sync-state"))
    assert.is_number(state.timestamp)

    local client = assert(require("exactonline").new {
      client_id = sb.client_id, client_secret = sb.client_secret, redirect_uri = sb.redirect_uri,
      base_url = sb.base_url, cafile = sb.cafile, division = sb.division,
      store = require("exactonline").file_store(dir .. "/config/exactonline/tokens.json"),
    })
    local rows = assert(client:get("crm/Accounts", { ["$select"] = "ID", ["$top"] = "2" }))
    assert(client:put("crm/Accounts(guid'" .. rows[2].ID .. "')", { City = "Haarlem" }))
    client:close()

    local before = api_calls()
    res = cli.run(env, { "sync", "crm/Accounts", "-o", out })
    assert.are.equal(0, res.code, res.stderr)
    assert.matches("synced 1 changed row since Timestamp ", res.stderr, 1, true)
    assert.are.equal(1, api_calls() - before)
    local lines = {}
    for l in helpers.read(out):gmatch("[^\n]+") do lines[#lines + 1] = cjson.decode(l) end
    assert.are.equal(1, #lines)
    assert.are.equal(rows[2].ID, lines[1].ID)
    assert.is_true(cjson.decode(helpers.read(out .. ".sync-state")).timestamp > state.timestamp)

    res = cli.run(env, { "sync", "crm/Accounts", "-o", out })
    assert.are.equal(0, res.code, res.stderr)
    assert.are.equal("", helpers.read(out))
  end)

  it("get prints pretty JSON; API errors are one message, no traceback", function()
    local res = cli.run(env, { "get", "crm/Accounts", "--select", "ID,Name", "--top", "2" })
    assert.are.equal(0, res.code, res.stderr)
    local rows = cjson.decode(res.stdout)
    assert.are.equal(2, #rows)
    assert.matches('\n  {\n    "ID": "', res.stdout, 1, true)
    -- an empty list is [], as JSON has it (lua-cjson decodes [] and {} alike)
    res = cli.run(env, { "get", "crm/Accounts", "--select", "ID,Name", "--filter", "Name eq 'Nobody at all'",
      "--top", "5" })
    assert.are.equal(0, res.code, res.stderr)
    assert.are.equal("[]\n", res.stdout)
    res = cli.run(env, { "get", "crm/Accounts", "--select", "ID", "--filter", "Name eq 'Nobody at all'", "--all" })
    assert.are.equal("[]\n", res.stdout)
    res = cli.run(env, { "get", "crm/Nothing" })
    assert.are.equal(1, res.code)
    assert.matches("^exactonline get: [^\n]+404[^\n]+\n[^\n]*\n?$", res.stderr) -- what failed, what to do
  end)
end)
