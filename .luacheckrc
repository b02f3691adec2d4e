-- luacheck configuration: std per folder
std = "max"
max_line_length = 120
codes = true
exclude_files = { "build/", "luarocks-tree/", "demo/" }

files["spec/"] = { std = "+busted" }
files["lua/exactonline/sandbox/"] = { std = "ngx_lua" }
files["lua/exactonline/transport/ngx.lua"] = { std = "ngx_lua" }
files["lua/exactonline/store/shdict.lua"] = { std = "ngx_lua" }
files["lua/exactonline/gateway/"] = { std = "ngx_lua" }
files["bin/exactonline"] = { std = "max" }
