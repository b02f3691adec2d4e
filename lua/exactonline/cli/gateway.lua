--- exactonline gateway: Exact Online on a local URL for tools that cannot keep a token chain (Data Factory,
-- Power BI, curl in cron). Runs nginx in the foreground (exactonline.gateway); manages the client keys.
local io, os, ipairs, require, tostring = io, os, ipairs, require, tostring
local date, floor = os.date, math.floor

local config = require "exactonline.cli.config"
local parser = require "exactonline.cli.parser"
local util = require "exactonline.cli.util"

local _M = {}

_M.summary = "serve Exact Online on a local URL with the bearer added (nginx), for tools without OAuth"

function _M.add_to_parser(root)
  local c = parser.command(root, "gateway", {
    summary = _M.summary,
    usage = "[--listen HOST:PORT] [--workers N] [--keys FILE] [--tls-cert F --tls-key F] [options]\n"
      .. "       exactonline gateway --new-key NAME | --revoke-key NAME | --list-keys",
    description = "Forwards /api/v1/... (every method), /docs/XMLDownload.aspx and /docs/XMLUpload.aspx to Exact\n"
      .. "Online with the gateway's own bearer token, refreshed once per expiry for all workers. Clients send a\n"
      .. "gateway key (Authorization: Bearer KEY or X-Api-Key: KEY); Exact's tokens never reach them. __next and\n"
      .. "other absolute Exact URLs in answers point at the gateway. Calls wait their turn for a division's\n"
      .. "minutely limit (up to --max-wait); a spent daily budget is a 429 with Retry-After. GET /healthz and\n"
      .. "GET /metrics (Prometheus) need no key. Runs in the foreground until Ctrl-C or SIGTERM; the access log\n"
      .. "goes to stdout (--access-log FILE), errors to stderr. Started as root, its workers run as nobody.\n"
      .. "--new-key prints the new key, and only that, on stdout; the key file keeps its SHA-256 only.",
    examples = {
      "exactonline gateway --new-key adf > adf.key     # the key, shown once; the key file keeps its SHA-256",
      "exactonline gateway                             # on 127.0.0.1:8080 until Ctrl-C",
      "curl -s -H \"Authorization: Bearer $(cat adf.key)\" http://127.0.0.1:8080/api/v1/current/Me",
      "exactonline gateway --listen 0.0.0.0:8443 --tls-cert /etc/ssl/gw.pem --tls-key /etc/ssl/gw.key",
      "exactonline gateway --list-keys",
      "exactonline gateway --revoke-key adf",
    },
  })
  parser.option(c, "--listen", "HOST:PORT", "where clients connect (default 127.0.0.1:8080, loopback)")
  parser.option(c, "--workers", "N", "nginx worker processes (default 2)", { number = true })
  parser.option(c, "--keys", "FILE", "the client key file (default gateway-keys.json beside the token file)")
  parser.option(c, "--tls-cert", "FILE", "serve HTTPS with this certificate (PEM, chain included)")
  parser.option(c, "--tls-key", "FILE", "... and this private key")
  parser.option(c, "--public-url", "URL", "the gateway's URL as clients see it, for rewritten links (default: "
    .. "the request's own scheme and Host)")
  parser.option(c, "--max-wait", "S", "longest a call waits for a rate-limit window (default 65 s)",
    { number = true })
  parser.option(c, "--error-budget", "N|off", "error answers (400/401/403/404) one endpoint may get an hour "
    .. "before calls to it are refused (default 9; Exact blocks the app at 10)")
  parser.option(c, "--access-log", "FILE", "write the access log to FILE instead of stdout")
  parser.option(c, "--token-db", "CONNINFO", "keep the token chain in PostgreSQL (exactonline.stores.postgres) "
    .. "instead of the token file")
  parser.option(c, "--new-key", "NAME", "make a client key called NAME; print it (only it) on stdout")
  parser.option(c, "--revoke-key", "NAME", "revoke the key called NAME (refused from the next request on)")
  parser.flag(c, "--list-keys", "list the keys' names, when they were made and revoked (never the keys)")
  config.add_flags(c)
  return parser.finish(c, config.CONNECTION_TITLE)
end

local function when(t)
  return t and date("!%Y-%m-%d %H:%M UTC", floor(t)) or "-"
end

local function manage_keys(args, path)
  local keys = require "exactonline.gateway.keys"
  if args.new_key then
    local key, entry = keys.create(path, args.new_key)
    if not key then return nil, entry, 1 end
    io.stdout:write(key, "\n")
    io.stdout:flush()
    io.stderr:write("exactonline gateway: made the key ", entry.name, " (", path, " keeps only its SHA-256; this is ",
      "the only time it is shown)\n")
    return 0
  end
  if args.revoke_key then
    local entry, err = keys.revoke(path, args.revoke_key)
    if not entry then return nil, err, 1 end
    io.stderr:write("exactonline gateway: revoked the key ", entry.name, " in ", path,
      "; a running gateway refuses it from its next request\n")
    return 0
  end
  local doc, err, missing = keys.read(path)
  if not doc then return nil, err, 1 end
  if missing or #doc.keys == 0 then
    io.stderr:write("exactonline gateway: no keys in ", path, " (make one with --new-key NAME)\n")
    return 0
  end
  io.stdout:write(("%-24s %-22s %s\n"):format("NAME", "MADE", "REVOKED"))
  for _, k in ipairs(doc.keys) do
    io.stdout:write(("%-24s %-22s %s\n"):format(util.clean(k.name), when(k.created_at), when(k.revoked_at)))
  end
  return 0
end

function _M.run(args)
  local s, serr = config.resolve(args)
  if not s then return nil, serr, 2 end
  local gateway = require "exactonline.gateway"
  local key_path = args.keys or require("exactonline.gateway.keys").default_path(s.token_file)
  local modes = (args.new_key and 1 or 0) + (args.revoke_key and 1 or 0) + (args.list_keys and 1 or 0)
  if modes > 1 then return nil, "give one of --new-key, --revoke-key and --list-keys", 2 end
  if modes == 1 then return manage_keys(args, key_path) end

  local ok, err = config.need(s, config.client_keys)
  if ok then ok, err = config.need_host(s) end
  if not ok then return nil, err, 2 end
  local division = s.division
  if not division then
    local info = config.read_info(s)
    division = info and info.division
  end
  local info, perr, pcode = gateway.prepare {
    listen = args.listen, workers = args.workers, keys = key_path, keys_flag = args.keys ~= nil,
    tls_cert = args.tls_cert, tls_key = args.tls_key, public_url = args.public_url, max_wait = args.max_wait,
    error_budget = args.error_budget, access_log = args.access_log, token_db = args.token_db,
    client_id = s.client_id, client_secret = s.client_secret, redirect_uri = s.redirect_uri,
    region = (not s.base_url) and s.region or nil, base_url = s.base_url, division = division,
    token_file = s.token_file, cafile = s.cafile, retries = s.retries, retry_delay = s.retry_delay,
  }
  if not info then return nil, perr, pcode end
  local err_out = io.stderr
  if not info.listen.loopback and not info.tls then
    err_out:write("exactonline gateway: warning: listening on ", info.listen.text, " without TLS: keys and Exact's ",
      "data cross the network in clear text (give --tls-cert and --tls-key)\n")
  end
  err_out:write("exactonline gateway on ", info.url, " -> ", s.base_url or ("Exact Online (" .. s.region ..
    ")"), ", ", tostring(info.workers), " workers", info.user and (" as " .. info.user.name) or "", "\n",
    "  keys: ", key_path, "\n  tokens: ", args.token_db and "PostgreSQL" or s.token_file, "\n",
    "  GET /healthz, GET /metrics; Ctrl-C stops it\n")
  err_out:flush()
  local code, why = gateway.run(info)
  if why then return nil, why, code ~= 0 and code or 1 end
  return code
end

return _M
