-- Fuzz target: the URL a request goes to, from a path or a __next link the server sent, plus a
-- query value: the bearer token only ever goes to the base URL's origin, and no CR/LF/NUL ever
-- reaches a URL or header. Input: <path>\0<query value>.
local f = require "common"
local BASE = "https://start.exactonline.nl"

local function clean(s) return not s:find("[\r\n%z]") end

function fuzz(data) -- luacheck: ignore 111
  f.input = data
  local path, value = f.split(data)
  local c = f.authorized(123)
  for _, opts in ipairs { {}, { query = { ["$filter"] = value } }, { headers = { ["X-Test"] = value } } } do
    local ok, req, err = pcall(c.prepare, c, "GET", path, opts, f.NOW, true)
    if not ok then
      error("prepare raised on untrusted text: " .. tostring(req))
    elseif req == false then
      error("prepare: a client with tokens and a division asked for " .. tostring(err))
    elseif req then
      local url = req.url
      if url:sub(1, #BASE + 1):lower() ~= BASE .. "/" and url:sub(1, #BASE + 5):lower() ~= BASE .. ":443/" then
        error("prepare: the token would go to " .. url)
      end
      if not clean(url) then error("prepare: CR/LF/NUL in the URL") end
      for k, v in pairs(req.headers) do
        if not clean(k) or not clean(v) then error("prepare: CR/LF/NUL in a header") end
      end
    else
      f.check_error(err, "prepare")
    end
  end
  c:close()
end
