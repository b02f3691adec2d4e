package = "exactonline"
version = "scm-1"
source = {
  url = "git+file:///exactonline",
}
description = {
  summary = "Exact Online API client: OAuth 2.0 with safe refresh-token rotation, REST, CLI and sandbox",
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
  "lua-cjson",
}
-- By library only: Debian keeps curl.h under /usr/include/x86_64-linux-gnu.
external_dependencies = {
  CURL = { library = "curl" },
  OPENSSL = { library = "crypto" },
}
build = {
  type = "builtin",
  modules = {
    -- generated list: keep in sync with lua/ and csrc/ (spec/00-build_spec.lua checks)
  },
  install = {
    bin = { exactonline = "bin/exactonline" },
  },
}
