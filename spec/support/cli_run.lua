--- Run bin/exactonline as a child process (the spec's VM where the CLI runs on it: helpers.cli_lua()), with an
-- environment, capturing stdout, stderr and the exit code; or interactively under a real pty (script(1)) with the
-- spec answering the printed authorization URL.
local helpers = require "helpers"
local io, pairs, ipairs, tonumber, error, assert = io, pairs, ipairs, tonumber, error, assert
local concat = table.concat

local _M = {}

local q, sh, read = helpers.quote, helpers.sh, helpers.read

--- The environment a user would set for the sandbox (and nothing from the spec runner's own env).
function _M.env_for(sb, dir, extra)
  local env = {
    XDG_CONFIG_HOME = dir .. "/config",
    EXACT_CLIENT_ID = sb.client_id,
    EXACT_CLIENT_SECRET = sb.client_secret,
    EXACT_REDIRECT_URI = sb.redirect_uri,
    EXACT_BASE_URL = sb.base_url,
    EXACT_CAFILE = sb.cafile,
  }
  for k, v in pairs(extra or {}) do
    if v == false then env[k] = nil else env[k] = v end
  end
  return env
end

local function env_prefix(env)
  local parts = { "env -u EXACT_DIVISION -u EXACT_TOKEN_FILE -u EXACT_REGION -u EXACT_CONFIG -u DISPLAY",
                  "-u WAYLAND_DISPLAY -u EXACTONLINE_DEBUG" }
  for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. q(v) end
  return concat(parts, " ")
end

function _M.command(env, args)
  local words = {}
  for i, a in ipairs(args) do words[i] = q(a) end
  return env_prefix(env) .. " " .. helpers.cli_lua() .. " bin/exactonline " .. concat(words, " ")
end

--- run(env, {args…}, { stdin = "text" }) --> { code, stdout, stderr }
function _M.run(env, args, opts)
  opts = opts or {}
  local dir = helpers.tmpdir()
  local input = "/dev/null"
  if opts.stdin then
    input = dir .. "/stdin"
    helpers.write(input, opts.stdin)
  end
  local cmd = _M.command(env, args) .. " <" .. q(input) .. " >" .. q(dir .. "/out") .. " 2>" .. q(dir .. "/err")
    .. "; echo $? >" .. q(dir .. "/rc")
  sh("sh -c " .. q(cmd))
  local res = {
    code = tonumber((read(dir .. "/rc") or ""):match("%d+")),
    stdout = read(dir .. "/out") or "",
    stderr = read(dir .. "/err") or "",
  }
  helpers.rm_rf(dir)
  return res
end

--- A fresh temp home (XDG_CONFIG_HOME under it) authorized against the sandbox by `exactonline auth
-- --redirect-url CODE`: --> dir, env (as env_for)
function _M.authorized_home(sb)
  local dir = helpers.tmpdir()
  local env = _M.env_for(sb, dir)
  local res = _M.run(env, { "auth", "--redirect-url", sb:code() })
  assert(res.code == 0, "exactonline auth failed: " .. res.stderr)
  return dir, env
end

--- Start the CLI in the background: --> { pid = …, wait = function() --> code end, dir = … }
function _M.spawn(env, args)
  local dir = helpers.tmpdir()
  local cmd = _M.command(env, args) .. " </dev/null >" .. q(dir .. "/out") .. " 2>" .. q(dir .. "/err")
  -- the shell prints the CLI's pid, waits for it and records its exit code
  local p = io.popen("sh -c " .. q(cmd .. " & echo $!; wait $!; echo $? >" .. q(dir .. "/rc"))
    .. " </dev/null 2>/dev/null &") -- the wrapper's "Killed" notice is not the CLI's output
  local pid = tonumber(p:read("*l"))
  local h = { pid = pid, dir = dir }
  function h.wait()
    for _ = 1, 600 do
      local rc = read(dir .. "/rc")
      if rc and rc:match("%d") then
        p:close()
        h.code = tonumber(rc:match("%d+"))
        h.stdout = read(dir .. "/out") or ""
        h.stderr = read(dir .. "/err") or ""
        helpers.rm_rf(dir)
        return h.code
      end
      sh("sleep 0.05")
    end
    error("the CLI did not finish")
  end
  return h
end

--- Interactive auth under a real pty: script(1) runs `exactonline auth`; the spec's answer(url) returns
-- the line a person would paste. --> { code, output }
function _M.auth_pty(env, answer, extra_args)
  local dir = helpers.tmpdir()
  local fifo = dir .. "/paste"
  sh("mkfifo " .. q(fifo))
  local args = { "auth" }
  for _, a in ipairs(extra_args or {}) do args[#args + 1] = a end
  local inner = _M.command(env, args)
  local cmd = "script -qec " .. q(inner) .. " /dev/null <" .. q(fifo) .. " >" .. q(dir .. "/out") .. " 2>&1; echo $? >"
    .. q(dir .. "/rc")
  sh("sh -c " .. q(cmd) .. " </dev/null >/dev/null 2>&1 &")
  local paste = assert(io.open(fifo, "w"))
  local url
  for _ = 1, 400 do
    local text = read(dir .. "/out") or ""
    url = text:match("(https://%S+/api/oauth2/auth%?[^%s\27]+)")
    if url and text:find("> ", 1, true) then break end
    if helpers.exists(dir .. "/rc") and (read(dir .. "/rc") or ""):match("%d") then break end
    sh("sleep 0.05")
  end
  local line = url and answer(url) or ""
  paste:write(line, "\n")
  paste:flush()
  local code
  for _ = 1, 600 do
    local rc = read(dir .. "/rc")
    if rc and rc:match("%d") then code = tonumber(rc:match("%d+")) break end
    sh("sleep 0.05")
  end
  paste:close()
  local res = { code = code, output = read(dir .. "/out") or "", url = url }
  helpers.rm_rf(dir)
  return res
end

--- The token file as a table (format written by the file store).
function _M.token_doc(dir)
  return helpers.json.decode(read(dir .. "/config/exactonline/tokens.json"))
end

function _M.write_token_doc(dir, doc)
  local path = dir .. "/config/exactonline/tokens.json"
  helpers.write(path, helpers.json.encode(doc))
  sh("chmod 600 " .. q(path))
end

return _M
