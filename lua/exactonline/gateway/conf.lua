--- The gateway's nginx.conf, from the runner's info (exactonline.gateway.prepare). One template, filled in:
-- Debian's nginx + ngx_lua, workers as nobody when started as root, the access log without keys or tokens,
-- request bodies kept in memory (Exact takes up to 10 MB), TLS towards Exact always verified.
local table_concat, str_format, ipairs, tostring = table.concat, string.format, ipairs, tostring

local _M = {}

-- what each access log line says: who (the key's name, never the key), what, how it went, how long it
-- waited for a rate-limit window, and Exact's own status
_M.LOG_FORMAT = '$remote_addr $gateway_client [$time_iso8601] "$request" $status $body_bytes_sent '
  .. '$request_time division=$gateway_division upstream=$gateway_upstream waited=$gateway_waited'

local TEMPLATE = [[
load_module {modules}/ndk_http_module.so;
load_module {modules}/ngx_http_lua_module.so;
{user}
worker_processes {workers};
pid {pid};
error_log {error_log} warn;
error_log stderr warn;
events { worker_connections 4096; }
http {
  server_tokens off;
  default_type application/json;
  log_format exactonline_gateway '{log_format}';
  access_log {access_log} exactonline_gateway;
  client_body_temp_path {prefix}/tmp/body;
  proxy_temp_path {prefix}/tmp/proxy;
  fastcgi_temp_path {prefix}/tmp/fastcgi;
  uwsgi_temp_path {prefix}/tmp/uwsgi;
  scgi_temp_path {prefix}/tmp/scgi;
  client_body_buffer_size 10m;
  client_max_body_size 10m;
  large_client_header_buffers 4 16k;
  keepalive_timeout 65;
  keepalive_requests 100000;
  lua_package_path "{lua}/?.lua;{lua}/?/init.lua;/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua;;";
  lua_package_cpath "{core}/?.so;{cjson}/?.so;;";
  lua_shared_dict exactonline_gateway 16m;
  lua_ssl_trusted_certificate {cafile};
  lua_ssl_verify_depth 5;
  {resolver}
  init_by_lua_block { require("exactonline.gateway.app").init("{settings}") }
  server {
    listen {listen};
    {tls}
    set $gateway_client "-";
    set $gateway_division "-";
    set $gateway_upstream "-";
    set $gateway_waited "0";
    location / { content_by_lua_block { require("exactonline.gateway.app").handle() } }
  }
}
]]

--- render(info) --> the text of nginx.conf
function _M.render(info)
  local tls = ""
  if info.tls then
    tls = str_format("ssl_certificate %s;\n    ssl_certificate_key %s;\n    ssl_protocols TLSv1.2 TLSv1.3;",
      info.tls.cert, info.tls.key)
  end
  local resolver = ""
  if info.resolvers and #info.resolvers > 0 then
    local list = {}
    for i, r in ipairs(info.resolvers) do list[i] = r end
    resolver = "resolver " .. table_concat(list, " ") .. " ipv6=off;"
  end
  local values = {
    modules = info.modules or "/usr/lib/nginx/modules",
    user = info.user and str_format("user %s %s;", info.user.name, info.user.group or info.user.name) or "",
    workers = info.workers, pid = info.pid, error_log = info.error_log, log_format = _M.LOG_FORMAT,
    access_log = info.access_log, prefix = info.prefix, lua = info.paths.lua, core = info.paths.core,
    cjson = info.cjson, cafile = info.cafile, resolver = resolver, settings = info.settings_path,
    listen = info.listen.text .. (info.tls and " ssl" or ""), tls = tls,
  }
  return (TEMPLATE:gsub("{([%w_]+)}", function(k) return values[k] ~= nil and tostring(values[k]) or "" end))
end

return _M
