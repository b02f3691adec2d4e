-- `exactonline gateway` as a command: client keys (--new-key prints only the key, the file keeps only its
-- SHA-256; --revoke-key, --list-keys), clear refusals to start (no key file, a key file others can read, no
-- tokens yet, a port taken, a token file the workers cannot use), and HTTPS with --tls-cert/--tls-key.
local helpers = require "helpers"
local gw_harness = require "support.gateway"
local core = require "exactonline.core"
local cjson = require "cjson"

local q = helpers.quote

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

describe("exactonline gateway, the command", function()
  local sb, gw

  setup(function()
    sb = helpers.sandbox { accounts = 5 }
    gw = gw_harness.prepare { sandbox = sb, keys = { "first" } }
  end)

  teardown(function()
    if gw then gw:stop() end
    if sb then sb:stop() end
  end)

  it("--new-key prints the key alone on stdout and stores only its SHA-256, in a 0600 file", function()
    local key, r = gw:new_key("adf")
    assert.matches("^eogw_%x+$", key)
    assert.equal(5 + 64, #key)
    assert.equal(key .. "\n", r.stdout)
    assert.matches("made the key adf", r.stderr)
    assert.is_nil(r.stderr:find(key, 1, true))
    local text = read(gw.key_file)
    assert.is_nil(text:find(key:sub(6), 1, true))
    local doc = cjson.decode(text)
    assert.equal(core.sha256_hex(key), doc.keys[2].sha256)
    assert.equal(384, core.stat(gw.key_file).mode) -- 0600
    -- two keys are never alike
    assert.are_not.equal(gw.keys.first, key)
  end)

  it("refuses a second key of the same name and a bad name, and lists names without keys", function()
    local r = gw:cli { "--new-key", "adf" }
    assert.equal(1, r.code)
    assert.matches("a key named adf exists already: revoke it first", r.stderr)
    assert.equal("", r.stdout)
    r = gw:cli { "--new-key", "no spaces" }
    assert.equal(1, r.code)
    assert.matches("a key name is", r.stderr)
    r = gw:cli { "--list-keys" }
    assert.equal(0, r.code, r.stderr)
    assert.matches("first%s+%d%d%d%d%-%d%d%-%d%d", r.stdout)
    assert.matches("adf ", r.stdout)
    for _, key in pairs(gw.keys) do assert.is_nil(r.stdout:find(key:sub(6), 1, true)) end
  end)

  it("--revoke-key marks a key revoked (once), and a revoked name can get a new key", function()
    local r = gw:cli { "--revoke-key", "adf" }
    assert.equal(0, r.code, r.stderr)
    assert.matches("revoked the key adf", r.stderr)
    r = gw:cli { "--revoke-key", "adf" }
    assert.equal(1, r.code)
    assert.matches("revoked already", r.stderr)
    r = gw:cli { "--revoke-key", "nobody-has-this" }
    assert.equal(1, r.code)
    assert.matches("no key named nobody%-has%-this", r.stderr)
    r = gw:cli { "--list-keys" }
    assert.matches("adf%s+%S+ %S+ UTC%s+%d%d%d%d%-", r.stdout)
    local old = gw.keys.adf
    local key = gw:new_key("adf")
    assert.are_not.equal(old, key)
  end)

  it("will not start without a key file, with one others can read, or without any usable key", function()
    local env = gw:env()
    local r = gw:cli({ "--keys", gw.dir .. "/state/none.json", "--listen", "127.0.0.1:" .. gw.port }, env)
    assert.equal(2, r.code)
    assert.matches("no gateway key file at .*none%.json yet: make a key first", r.stderr)
    local loose = gw.dir .. "/state/loose.json"
    os.execute("cp " .. q(gw.key_file) .. " " .. q(loose) .. " && chmod 644 " .. q(loose))
    r = gw:cli({ "--keys", loose, "--listen", "127.0.0.1:" .. gw.port }, env)
    assert.equal(2, r.code)
    assert.matches("cannot read the gateway key file .*loose%.json: .*other users %(mode 644%)", r.stderr)
  end)

  it("will not start before `exactonline auth` has left tokens, and says so", function()
    local bare = gw_harness.prepare { sandbox = sb, keys = { "k" }, tokens = false }
    local r = bare:cli { "--listen", "127.0.0.1:" .. bare.port }
    assert.equal(2, r.code)
    assert.matches("there are no tokens in .*tokens%.json yet: run `exactonline auth` first", r.stderr)
  end)

  it("will not start on a port that is taken", function()
    local socket = require "socket"
    local holder = assert(socket.bind("127.0.0.1", 0))
    local _, port = holder:getsockname()
    local r = gw:cli { "--listen", "127.0.0.1:" .. port }
    holder:close()
    assert.equal(1, r.code)
    assert.matches("127%.0%.0%.1:" .. port .. " is taken %(another gateway or program listens there%): choose "
      .. "another with %-%-listen", r.stderr)
    r = gw:cli { "--listen", "nonsense" }
    assert.equal(2, r.code)
    assert.matches("%-%-listen takes PORT, HOST:PORT", r.stderr)
    r = gw:cli { "--tls-cert", gw.key_file }
    assert.equal(2, r.code)
    assert.matches("give both %-%-tls%-cert and %-%-tls%-key", r.stderr)
  end)

  it("started as root, says what to chown so its workers (nobody) can use the token file", function()
    if not gw_harness.is_root() then return pending("runs as root only") end
    local mine = gw_harness.prepare { sandbox = sb, keys = { "k" } }
    os.execute("chown root:root " .. q(mine.token_file) .. " " .. q(mine.dir .. "/state"))
    local r = mine:cli { "--listen", "127.0.0.1:" .. mine.port }
    assert.equal(2, r.code)
    assert.matches("runs its nginx workers as nobody", r.stderr)
    assert.matches("chown nobody:nogroup " .. mine.dir:gsub("%p", "%%%0") .. "/state " ..
      mine.token_file:gsub("%p", "%%%0"), r.stderr)
  end)

  it("starts for a region (Exact's own host, found through the system's resolver) and answers /healthz", function()
    local g = gw_harness.prepare { sandbox = sb, keys = { "k" } }
    g:launch { workers = 1, env = { EXACT_BASE_URL = false, EXACT_REGION = "nl", EXACT_CAFILE = false } }
    local status, _, body = g:get("/healthz")
    assert.equal(200, status, body)
    g:stop()
    local _, err = g:logs()
    assert.matches("%-> Exact Online %(nl%)", err)
  end)

  it("serves HTTPS with --tls-cert and --tls-key", function()
    local tls = helpers.tls_dir
    gw.url = "https://localhost:" .. gw.port
    gw:launch { workers = 1, args = { "--tls-cert", tls .. "/server.pem", "--tls-key", tls .. "/server.key" } }
    local status, _, body = gw:get("/api/v1/current/Me", { key = gw.keys.first })
    assert.equal(200, status, body)
    assert.equal(sb.division, cjson.decode(body).d.results[1].CurrentDivision)
    gw:stop() -- returns once nginx no longer answers
    assert.equal(143, gw.code) -- stopped by SIGTERM
    local _, err = gw:logs()
    assert.matches("exactonline gateway on https://127%.0%.0%.1:" .. gw.port, err)
  end)
end)
