-- The token file store with real files and real processes: atomic replace under kill -9,
-- full disk, read-only folder, wrong modes, corrupt and foreign files, locks between processes.
local exactonline = require "exactonline"
local file_store = require "exactonline.store.file"
local cjson = require "cjson"
local helpers = require "helpers"
local proc = require "support.proc"

local q = helpers.quote

local function pair(n, extra)
  local t = { access_token = "A" .. n, refresh_token = "R" .. n, expires_at = 1000 + n + 600,
    obtained_at = 1000 + n, refresh_obtained_at = 1000 + n }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

local function mode_of(path)
  local ok, out = helpers.sh("stat -c %a " .. q(path))
  assert(ok, out)
  return out:match("%d+")
end

local function temps_in(dir)
  local _, out = helpers.sh("ls -A " .. q(dir))
  local n = 0
  for name in out:gmatch("[^\n]+") do
    if name:find("%.tmp%.") then n = n + 1 end
  end
  return n
end

describe("file store", function()
  local dir, path

  before_each(function()
    dir = helpers.tmpdir()
    path = dir .. "/conf/exactonline/tokens.json"
  end)

  it("loads nothing from a missing file, then saves and loads a pair with private modes", function()
    local store = exactonline.file_store(path)
    local t, err = store.load()
    assert.is_nil(t)
    assert.is_nil(err)
    assert.is_true(store.save(pair(1)))
    assert.are.equal("600", mode_of(path))
    assert.are.equal("700", mode_of(dir .. "/conf/exactonline"))
    assert.are.equal("700", mode_of(dir .. "/conf"))
    assert.are.same(pair(1), store.load())
    local doc = cjson.decode(helpers.read(path))
    assert.are.equal("exactonline-tokens/1", doc.format)
    assert.are.same(pair(1), doc.tokens)
    -- another store on the same file sees it
    assert.are.same(pair(1), file_store.new(path).load())
  end)

  it("never saves an older chain over a newer one", function()
    local store = file_store.new(path)
    assert.is_true(store.save(pair(5)))
    local ok, why = store.save(pair(3))
    assert.is_true(ok)
    assert.are.equal("kept_newer", why)
    assert.are.same(pair(5), store.load())
    -- same refresh token, newer access token: saved
    local t = pair(5, { access_token = "A5b", obtained_at = 1010, expires_at = 1610 })
    assert.is_true(store.save(t))
    assert.are.same(t, store.load())
    assert.is_true(store.save(pair(9)))
    assert.are.same(pair(9), store.load())
  end)

  it("expands ~ and $XDG_CONFIG_HOME, and has a default path under XDG_CONFIG_HOME", function()
    local home = os.getenv("HOME")
    local s = file_store.new("~/x/tokens.json")
    assert.are.equal(home .. "/x/tokens.json", s.path)
    local xdg = os.getenv("XDG_CONFIG_HOME")
    local expected = (xdg and xdg ~= "" and xdg or home .. "/.config") .. "/exactonline/tokens.json"
    assert.are.equal(expected, file_store.new("$XDG_CONFIG_HOME/exactonline/tokens.json").path)
    assert.are.equal(expected, file_store.new("${XDG_CONFIG_HOME}/exactonline/tokens.json").path)
    assert.are.equal(expected, file_store.default_path())
    assert.are.equal(expected, file_store.new().path)
    -- the CLI's default path is honoured when XDG_CONFIG_HOME is set, in a child process
    local cmd, done = proc.script([[
      local fs = require "exactonline.store.file"
      io.write(fs.default_path(), "\n", fs.new("$XDG_CONFIG_HOME/t.json").path)
    ]])
    local ok, out = helpers.sh("XDG_CONFIG_HOME=" .. q(dir) .. " " .. cmd)
    done()
    assert.is_true(ok, out)
    assert.are.equal(dir .. "/exactonline/tokens.json\n" .. dir .. "/t.json", out)
    assert.has_error(function() file_store.new("$EXACTONLINE_SURELY_UNSET_VAR/t.json") end)
  end)

  describe("refuses a file it must not use, and overwrites nothing", function()
    local function check_refused(content, code, words, setup)
      local store = file_store.new(path)
      assert.is_true(store.save(pair(1)))
      if content then helpers.write(path, content) end
      if setup then setup() end
      local before = helpers.read(path)
      local t, err = store.load()
      assert.is_nil(t)
      assert.is_truthy(exactonline.is_error(err))
      assert.are.equal("store", err.kind)
      assert.are.equal(code, err.code)
      assert.is_truthy(tostring(err):find(words, 1, true), tostring(err))
      local ok, serr = store.save(pair(2))
      assert.is_nil(ok)
      assert.are.equal(code, serr.code)
      assert.are.equal(before, helpers.read(path))
      return store
    end

    it("a token file readable by others (0644): names chmod 600", function()
      check_refused(nil, "file_mode", "chmod 600", function() helpers.sh("chmod 644 " .. q(path)) end)
      assert.are.equal("644", mode_of(path))
      helpers.sh("chmod 600 " .. q(path))
      assert.are.same(pair(1), file_store.new(path).load())
    end)

    it("a group-writable token file (0620)", function()
      check_refused(nil, "file_mode", "chmod 600", function() helpers.sh("chmod 620 " .. q(path)) end)
    end)

    it("a corrupt file", function()
      check_refused('{"format":"exactonline-tokens/1","tokens":{"access_tok', "corrupt", "not valid JSON")
    end)

    it("an empty file", function()
      check_refused("", "corrupt", "is empty")
    end)

    it("a foreign JSON file, unless force = true", function()
      check_refused('{"access_token":"x","refresh_token":"y"}', "foreign", "not an exactonline token file")
      local forced = file_store.new(path, { force = true })
      assert.is_true(forced.save(pair(2)))
      assert.are.same(pair(2), file_store.new(path).load())
    end)

    it("a folder where the file should be", function()
      helpers.sh("mkdir -p " .. q(path))
      local store = file_store.new(path)
      local t, err = store.load()
      assert.is_nil(t)
      assert.are.equal("is_directory", err.code)
      assert.is_truthy(tostring(err):find("is a folder", 1, true))
      local ok, serr = store.save(pair(1))
      assert.is_nil(ok)
      assert.is_truthy(tostring(serr):find(path, 1, true))
      assert.are.equal("", (select(2, helpers.sh("ls -A " .. q(path)))))
    end)

    it("a symbolic link (the atomic replace would replace the link)", function()
      local store = file_store.new(path)
      assert.is_true(store.save(pair(1)))
      helpers.sh("mv " .. q(path) .. " " .. q(path .. ".real") .. " && ln -s tokens.json.real " .. q(path))
      local t, err = store.load()
      assert.is_nil(t)
      assert.are.equal("ELOOP", err.code)
      assert.is_nil((store.save(pair(2))))
      assert.are.same(pair(1), file_store.new(path .. ".real").load())
    end)
  end)

  describe("lock", function()
    it("is exclusive within one store and unlock is safe twice", function()
      local store = file_store.new(path)
      assert.is_true(store.lock(1))
      local ok, err = store.lock(1)
      assert.is_nil(ok)
      assert.are.equal("lock_held", err.code)
      -- save while holding the lock does not wait for itself
      assert.is_true(store.save(pair(1)))
      -- another store (another open file) on the same path cannot have it
      local other = file_store.new(path)
      local ok2, err2 = other.lock(0.1)
      assert.is_nil(ok2)
      assert.are.equal("lock_timeout", err2.code)
      store.unlock()
      store.unlock()
      assert.is_true(other.lock(1))
      other.unlock()
    end)

    it("between processes: the second one times out with a clear error; kill -9 releases it", function()
      local store = file_store.new(path)
      assert.is_true(store.save(pair(1)))
      local holder = proc.lock_holder(("local s = require('exactonline.store.file').new(%q)"):format(path))
      local ok, err = store.lock(0.3)
      assert.is_nil(ok)
      assert.are.equal("lock_timeout", err.code)
      assert.is_truthy(tostring(err):find("another process holds the lock", 1, true), tostring(err))
      -- save without the lock must wait for it too, and says so
      local sok, serr = file_store.new(path, { lock_timeout = 0.2 }).save(pair(2))
      assert.is_nil(sok)
      assert.are.equal("lock_timeout", serr.code)
      holder.kill9()
      assert.is_true(store.lock(10))
      store.unlock()
      assert.are.same(pair(1), store.load())
    end)
  end)

  it("removes temp files left by a crashed writer on the next lock or save", function()
    local store = file_store.new(path)
    assert.is_true(store.save(pair(1)))
    local _, out = helpers.sh("sh -c 'echo $$'") -- a pid that has just exited
    local dead = out:match("%d+")
    local d = dir .. "/conf/exactonline/"
    helpers.write(d .. ".tokens.json.tmp." .. dead .. ".0badc0de", "{half")
    helpers.write(d .. ".other.json.tmp." .. dead .. ".0badc0de", "not ours")
    helpers.write(d .. ".tokens.json.tmp.1.0000cafe", "pid 1 lives: maybe in use")
    assert.is_true(store.save(pair(2)))
    assert.is_nil(helpers.read(d .. ".tokens.json.tmp." .. dead .. ".0badc0de"))
    assert.is_not_nil(helpers.read(d .. ".other.json.tmp." .. dead .. ".0badc0de"))
    assert.is_not_nil(helpers.read(d .. ".tokens.json.tmp.1.0000cafe"))
    -- ...unless it is older than any live write could be
    helpers.sh("touch -d '1 hour ago' " .. q(d .. ".tokens.json.tmp.1.0000cafe"))
    assert.is_true(store.lock(1))
    store.unlock()
    assert.is_nil(helpers.read(d .. ".tokens.json.tmp.1.0000cafe"))
    assert.are.same(pair(2), store.load())
  end)

  it("survives 200 kill -9 at random moments of a save loop: always one whole pair, no litter", function()
    local store = file_store.new(path)
    assert.is_true(store.save({ access_token = "A0", refresh_token = "R0", obtained_at = 0, expires_at = 600 }))
    local snaps = dir .. "/snaps"
    helpers.sh("mkdir " .. q(snaps))
    -- long tokens make each write span more than one syscall's worth of time; the child says when its
    -- loop runs (after its first save), so every kill lands inside the loop whatever the machine's load
    local cmd, done = proc.script(([[
      local s = require("exactonline.store.file").new(%q)
      local pad = string.rep("x", 8000)
      local n = tonumber(arg[1]) * 100000
      while true do
        n = n + 1
        local t = { access_token = "A" .. n .. pad, refresh_token = "R" .. n .. pad, expires_at = n + 600,
                    obtained_at = n, refresh_obtained_at = n }
        assert(s.save(t))
        if n %% 100000 == 1 then io.open(%q .. "/started." .. arg[1], "w"):close() end
      end
    ]]):format(path, snaps))
    -- one shell runs all 200 rounds (fast); each round kills the writer a random 0..15 ms into its loop
    local delays = {}
    math.randomseed(os.time())
    for i = 1, 200 do delays[i] = ("0.%03d"):format(math.random(0, 15)) end
    local ok, out = helpers.sh(([[
      i=1
      for delay in %s; do
        %s $i & pid=$!
        while [ ! -e %s/started.$i ] && kill -0 $pid 2>/dev/null; do sleep 0.002; done
        sleep $delay
        kill -9 $pid; wait $pid 2>/dev/null
        cp %s %s/$i 2>/dev/null || echo "missing after round $i"
        i=$((i+1))
      done
    ]]):format(table.concat(delays, " "), cmd, q(snaps), q(path), q(snaps)))
    done()
    assert.is_true(ok, out)
    assert.are.equal("", out)
    local newest = 0
    for i = 1, 200 do
      local text = helpers.read(snaps .. "/" .. i)
      local okj, doc = pcall(cjson.decode, text)
      assert.is_true(okj, "round " .. i .. " left a torn file")
      local t = doc.tokens
      local n = tonumber(t.access_token:match("^A(%d+)"))
      assert.is_not_nil(n, "round " .. i)
      assert.are.equal("R" .. n, t.refresh_token:match("^R%d+"), "round " .. i .. " holds a mixed pair")
      assert.are.equal(n, t.obtained_at)
      -- round i's writer saved at least once before it was killed: the file is its pair, not an older one
      assert.is_true(n > i * 100000, "round " .. i .. " lost a completed save")
      if n > newest then newest = n end
    end
    -- the writers did get to save during the rounds (otherwise this test proved nothing)
    assert.is_true(newest > 200 * 100000, "the last child never saved")
    assert.is_true(temps_in(dir .. "/conf/exactonline") <= 2, "temp files pile up")
    assert.is_true(store.lock(1))
    store.unlock()
    assert.are.equal(0, temps_in(dir .. "/conf/exactonline"))
    assert.is_not_nil(store.load())
  end)

  describe("a failed write leaves the old tokens in place", function()
    it("file size limit reached (ulimit -f, SIGXFSZ ignored): EFBIG with a clear error", function()
      local store = file_store.new(path)
      assert.is_true(store.save(pair(1)))
      local cmd, done = proc.script(([[
        local s = require("exactonline.store.file").new(%q)
        local big = string.rep("y", 4096)
        local ok, err = s.save({ access_token = big, refresh_token = big, obtained_at = 5000,
                                 refresh_obtained_at = 5000, expires_at = 5600 })
        io.write(tostring(ok), "|", err and err.code or "", "|", tostring(err))
      ]]):format(path))
      local ok, out = helpers.sh("trap '' XFSZ; ulimit -f 1; " .. cmd)
      done()
      assert.is_true(ok, out)
      local res, code = out:match("^(%w+)|(%w*)|")
      assert.are.equal("nil", res, out)
      assert.are.equal("EFBIG", code, out)
      assert.is_truthy(out:find("the old token file is untouched", 1, true), out)
      assert.are.same(pair(1), store.load())
      assert.are.equal(0, temps_in(dir .. "/conf/exactonline"))
    end)

    it("full disk (a 64 KiB tmpfs, where mounting works): ENOSPC with a clear error", function()
      local mnt = dir .. "/small"
      helpers.sh("mkdir " .. q(mnt))
      if not helpers.sh("mount -t tmpfs -o size=64k,mode=700 tmpfs " .. q(mnt)) then
        pending("mount is not allowed here; the ulimit -f case covers a failed write")
        return
      end
      local ok, res = pcall(function()
        local store = file_store.new(mnt .. "/tokens.json")
        assert.is_true(store.save(pair(1)))
        helpers.sh("dd if=/dev/zero of=" .. q(mnt .. "/fill") .. " bs=4k 2>/dev/null")
        local big = string.rep("z", 16384)
        local sok, err = store.save(pair(2, { access_token = big }))
        assert.is_nil(sok)
        assert.are.equal("ENOSPC", err.code)
        assert.is_truthy(tostring(err):find("disk is full", 1, true), tostring(err))
        assert.are.same(pair(1), store.load())
        assert.are.equal(0, temps_in(mnt))
      end)
      helpers.sh("umount " .. q(mnt))
      assert(ok, res)
    end)

    it("read-only folder: EACCES with a clear error (modes enforced even for root)", function()
      local store = file_store.new(path)
      assert.is_true(store.save(pair(1)))
      local d = dir .. "/conf/exactonline"
      helpers.sh("chmod 500 " .. q(d))
      local cmd, done = proc.script(([[
        local s = require("exactonline.store.file").new(%q)
        local ok, err = s.save({ access_token = "A9", refresh_token = "R9", obtained_at = 9000,
                                 refresh_obtained_at = 9000, expires_at = 9600 })
        io.write(tostring(ok), "|", err and err.code or "", "|", tostring(err))
      ]]):format(path))
      local ok, out = helpers.sh(proc.without_root_powers() .. cmd)
      done()
      helpers.sh("chmod 700 " .. q(d))
      assert.is_true(ok, out)
      local res, code = out:match("^(%w+)|(%w*)|")
      assert.are.equal("nil", res, out)
      assert.are.equal("EACCES", code, out)
      assert.is_truthy(out:find("Permission denied", 1, true), out)
      assert.is_truthy(out:find("chmod 700", 1, true), out)
      assert.are.same(pair(1), store.load())
    end)
  end)
end)

describe("file store: whose folder and files (issue 17, issue 18)", function()
  local dir, tokens_dir, path

  before_each(function()
    dir = helpers.tmpdir()
    tokens_dir = dir .. "/app"
    path = tokens_dir .. "/tokens.json"
  end)

  local function owner_of(p)
    local ok, out = helpers.sh("stat -c %U " .. q(p))
    assert(ok, out)
    return out:match("%S+")
  end

  -- run a store script as another real user (nobody): the script lives where that user can read it
  local function as_nobody(code)
    local scripts = helpers.tmpdir()
    helpers.sh("chmod 755 " .. q(scripts))
    local script = scripts .. "/child.lua"
    helpers.write(script, "local fs = require('exactonline.store.file')\n" .. code)
    helpers.sh("chmod 644 " .. q(script))
    local ok, out = helpers.sh("runuser -u nobody -- " .. helpers.lua() .. " " .. q(script))
    return ok, out
  end

  local function needs_root()
    if not helpers.is_root() then
      pending("needs root to make files owned by another user (runuser -u nobody)")
      return true
    end
  end

  it("refuses a token file another user owns, and overwrites nothing", function()
    if needs_root() then return end
    assert.is_true(file_store.new(path).save(pair(1)))
    helpers.sh("chown nobody " .. q(path))
    local before = helpers.read(path)
    local store = file_store.new(path)
    local t, err = store.load()
    assert.is_nil(t)
    assert.are.equal("owner", err.code)
    assert.matches(path .. " is owned by nobody", tostring(err), 1, true)
    assert.matches("chown root " .. path, tostring(err), 1, true)
    local ok, serr = store.save(pair(2))
    assert.is_nil(ok)
    assert.are.equal("owner", serr.code)
    assert.are.equal(before, helpers.read(path))
    assert.are.equal("nobody", owner_of(path))
  end)

  it("refuses a lock file another user owns (they could hold it forever)", function()
    if needs_root() then return end
    local store = file_store.new(path)
    assert.is_true(store.save(pair(1)))
    helpers.sh("chown nobody " .. q(path .. ".lock"))
    local fresh = file_store.new(path)
    local ok, err = fresh.lock(1)
    assert.is_nil(ok)
    assert.are.equal("owner", err.code)
    assert.matches("chown root " .. path .. ".lock", tostring(err), 1, true)
    assert.is_nil((fresh.save(pair(2))))
    assert.is_nil((fresh.load()))
    helpers.sh("chown root " .. q(path .. ".lock"))
    assert.are.same(pair(1), fresh.load())
    assert.is_true(fresh.lock(1))
    fresh.unlock()
  end)

  it("refuses a folder every user may write (also with the sticky bit), and writes nothing there", function()
    for _, mode in ipairs { "777", "1777", "703" } do
      helpers.sh("mkdir -p " .. q(tokens_dir) .. " && chmod " .. mode .. " " .. q(tokens_dir))
      local store = file_store.new(path)
      local t, err = store.load()
      assert.is_nil(t)
      assert.are.equal("folder_mode", err.code, mode)
      assert.matches("can be written by every user", tostring(err), 1, true)
      local ok, serr = store.save(pair(1))
      assert.is_nil(ok)
      assert.are.equal("folder_mode", serr.code)
      assert.is_nil((store.lock(1)))
      assert.are.equal("", (select(2, helpers.sh("ls -A " .. q(tokens_dir)))))
    end
  end)

  it("refuses a folder that is a symbolic link, naming the real one", function()
    helpers.sh("mkdir -m 700 " .. q(dir .. "/real") .. " && ln -s real " .. q(tokens_dir))
    local store = file_store.new(path)
    local t, err = store.load()
    assert.is_nil(t)
    assert.are.equal("folder_link", err.code)
    assert.matches("is a symbolic link to " .. dir .. "/real", tostring(err), 1, true)
    assert.matches(dir .. "/real/tokens.json", tostring(err), 1, true)
    assert.is_nil((store.save(pair(1))))
    assert.are.equal("", (select(2, helpers.sh("ls -A " .. q(dir .. "/real")))))
    -- the real path works
    assert.is_true(file_store.new(dir .. "/real/tokens.json").save(pair(1)))
  end)

  it("set up by root, used by nobody: the first load says exactly what to chown, and that works", function()
    if needs_root() then return end
    -- as `exactonline auth --token-file` run by root leaves it: folder 0700, file, lock file, all root's
    assert.is_true(file_store.new(path).save(pair(1)))
    helpers.sh("chmod 711 " .. q(dir))
    local ok, out = as_nobody(([[
      local s = fs.new(%q)
      local t, err = s.load()
      io.write(tostring(t), "|", err and err.code or "", "|", tostring(err))
    ]]):format(path))
    assert.is_true(ok, out)
    local res, code = out:match("^(%w+)|(%w*)|")
    assert.are.equal("nil", res, out)
    assert.are.equal("EACCES", code, out)
    assert.matches("nobody (the user this process runs as) cannot keep its tokens here", out, 1, true)
    -- the advice, run as given, is all it takes
    local chown = out:match("(chown [^\n(]-) %(or run this as root%)")
    assert.are.equal("chown -R nobody " .. tokens_dir, chown, out)
    assert(helpers.sh(chown))
    ok, out = as_nobody(([[
      local s = fs.new(%q)
      local t = assert(s.load())
      assert(s.lock(5))
      assert(s.save({ access_token = "A2", refresh_token = "R2", expires_at = 1602, obtained_at = 1002,
                      refresh_obtained_at = 1002 }))
      s.unlock()
      io.write(t.refresh_token, " ", s.load().refresh_token)
    ]]):format(path))
    assert.is_true(ok, out)
    assert.are.equal("R1 R2", out)
    assert.are.equal("nobody", owner_of(path))
    assert.are.equal("600", (select(2, helpers.sh("stat -c %a " .. q(path)))):match("%d+"))
  end)

  it("a folder nobody may see into but not write: lists each file to chown", function()
    if needs_root() then return end
    assert.is_true(file_store.new(path).save(pair(1)))
    helpers.sh("chmod 711 " .. q(dir) .. " && chmod 755 " .. q(tokens_dir))
    local ok, out = as_nobody(([[
      local t, err = fs.new(%q).load()
      io.write(tostring(t), "|", tostring(err))
    ]]):format(path))
    assert.is_true(ok, out)
    assert.matches("chown nobody " .. tokens_dir .. " " .. path .. " " .. path .. ".lock (or run this as root)",
      out, 1, true)
  end)

  it("a folder nobody cannot reach or create: says which folder stops it", function()
    if needs_root() then return end
    -- dir stays 0700 (root's): nobody cannot enter it
    local ok, out = as_nobody(([[
      local t, err = fs.new(%q).load()
      io.write(tostring(t), "|", tostring(err))
    ]]):format(path))
    assert.is_true(ok, out)
    assert.matches("cannot reach the token folder " .. tokens_dir .. ": it may not enter " .. dir, out, 1, true)
    -- a missing folder under one nobody may enter but not write
    helpers.sh("chmod 755 " .. q(dir))
    ok, out = as_nobody(([[
      local t, err = fs.new(%q).load()
      io.write(tostring(t), "|", tostring(err))
    ]]):format(path))
    assert.is_true(ok, out)
    assert.matches("cannot create the token folder " .. tokens_dir .. ": " .. dir .. " is not writable", out, 1, true)
    assert.matches("mkdir -m 700 -p " .. tokens_dir .. " && chown nobody " .. tokens_dir, out, 1, true)
  end)
end)
